# Recovery at scale: 650 tasks queued when the server crashes come back in
# batches (more than one recovery transaction), onto a board that was made
# smaller than the queue across the restart (lantern_fdw.max_tasks = 120, so
# recovery must wait for slots), and the server crashes again while they run.
# At most once holds throughout: no task runs twice; every task ends; a task
# that succeeded ran exactly once.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LanternFdwTest;

my $N = 650;
my $node = lantern_node('batches',
	conf => "lantern_fdw.max_parallel_tasks = 1\nlog_statement = none\n");
$node->safe_psql('postgres', 'CREATE TABLE runs (jobid bigint)');

my $sleeper = submit($node, 'postgres', 'SELECT pg_sleep(600)');
wait_sql($node, 'postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'lantern_fdw task $sleeper' AND state = 'active'",
	't', 'the sleeper holds the only place');
my $task = "INSERT INTO runs SELECT $JOBID_OF_TASK";
(my $lit = $task) =~ s/'/''/g;
$node->safe_psql('postgres',
	"BEGIN; SELECT count(lantern.async_task('$lit')) FROM generate_series(1, $N); COMMIT;");
is($node->safe_psql('postgres', "SELECT count(*) FROM lantern.tasks WHERE status = 'queued'"), $N,
	"$N tasks are queued");

# Crash; come back with a board smaller than the queue and four places.
$node->stop('immediate');
$node->append_conf('postgresql.conf', "lantern_fdw.max_tasks = 120\nlantern_fdw.max_parallel_tasks = 4\n");
$node->start;
is($node->safe_psql('postgres', 'SHOW lantern_fdw.max_tasks'), '120', 'the board now has 120 slots');

# Crash again once some of them have run.
wait_sql($node, 'postgres', 'SELECT count(*) >= 50 FROM runs', 't', 'recovered tasks are running');
$node->stop('immediate');
$node->start;
my $ran_before_second_crash = $node->safe_psql('postgres', 'SELECT count(*) FROM runs');
note "tasks that had run before the second crash: $ran_before_second_crash";

wait_sql($node, 'postgres', 'SELECT count(*) = 0 FROM lantern.tasks WHERE duration IS NULL',
	't', 'every task has ended after the second restart');
is($node->safe_psql('postgres', 'SELECT count(*) FROM runs GROUP BY jobid HAVING count(*) > 1'), '',
	'no task ran twice');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM lantern.tasks t WHERE status = 'succeeded' AND (SELECT count(*) FROM runs r WHERE r.jobid = t.jobid) <> 1"),
	'0', 'every succeeded task ran exactly once');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM runs r WHERE NOT EXISTS (SELECT 1 FROM lantern.tasks t WHERE t.jobid = r.jobid AND t.jobid <> $sleeper)"),
	'0', 'nothing ran that was not submitted');
my $summary = $node->safe_psql('postgres',
	"SELECT string_agg(status || ':' || n, ',' ORDER BY status) FROM (SELECT status, count(*) n FROM lantern.tasks WHERE jobid <> $sleeper GROUP BY status) s");
note "outcomes: $summary";
my %by = map { split /:/ } split /,/, $summary;
is(($by{succeeded} // 0) + ($by{failed} // 0), $N, 'every task succeeded or failed');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM lantern.tasks WHERE status = 'failed' AND error_message <> '$EXPECTED_RESTART_MESSAGE'"),
	'0', 'the failed ones failed because a restart hit them while they ran');
ok(($by{failed} // 0) <= 4, 'at most the tasks running at the second crash failed (4 places)');
# A task whose statement committed just before the crash, but whose end was
# not yet recorded, is reported failed although its work stayed.
note 'failed tasks whose INSERT had committed: '
  . $node->safe_psql('postgres',
	"SELECT count(*) FROM lantern.tasks t WHERE status = 'failed' AND EXISTS (SELECT 1 FROM runs r WHERE r.jobid = t.jobid)");
is(task_row($node, 'postgres', $sleeper), "failed|t|$EXPECTED_RESTART_MESSAGE", 'the sleeper failed with the restart message');

# ---- the executor terminated while recovery is under way ----------------------
{
	my $sleeper2 = submit($node, 'postgres', 'SELECT pg_sleep(600)');
	wait_sql($node, 'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'lantern_fdw task $sleeper2' AND state = 'active'",
		't', 'phase 3: a sleeper runs');
	$node->safe_psql('postgres', 'ALTER SYSTEM SET lantern_fdw.max_parallel_tasks = 1; SELECT pg_reload_conf()');
	wait_sql($node, 'postgres', "SELECT current_setting('lantern_fdw.max_parallel_tasks') = '1'", 't',
		'phase 3: one place');
	my $first = $node->safe_psql('postgres',
		"BEGIN; SELECT min(lantern.async_task('$lit')) FROM generate_series(1, 100); COMMIT;");
	$node->stop('immediate');
	$node->start;
	my @killed;
	for my $round (1 .. 2)
	{
		my $pid;
		for (1 .. 600)
		{
			$pid = executor_pid($node);
			last if $pid > 0 && !grep { $_ == $pid } @killed;
			$pid = 0;
		}
		ok($pid > 0, "phase 3: executor $round is up");
		$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
		push @killed, $pid;
	}
	wait_sql($node, 'postgres', "SELECT count(*) = 0 FROM lantern.tasks WHERE duration IS NULL", 't',
		'phase 3: every task ended although the executor was terminated twice during recovery');
	# A task running when the executor was terminated fails (one place: at
	# most one per termination); every other one succeeded.
	my $failed = $node->safe_psql('postgres',
		"SELECT string_agg(error_message, E'\\n') FROM lantern.tasks WHERE jobid >= $first AND status <> 'succeeded'");
	note "phase 3: tasks not succeeded: " . ($failed eq '' ? 'none' : $failed);
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM lantern.tasks WHERE jobid >= $first AND status <> 'succeeded' AND (status <> 'failed' OR error_message NOT LIKE 'ERROR:  the lantern_fdw executor stopped while the task was running%')"),
		'0', 'phase 3: every recovered task succeeded, or failed because the executor stopped while it ran');
	ok( $node->safe_psql('postgres', "SELECT count(*) FROM lantern.tasks WHERE jobid >= $first AND status = 'failed'") <= 2,
		'phase 3: at most one task failed per termination');
	is($node->safe_psql('postgres', 'SELECT count(*) FROM runs GROUP BY jobid HAVING count(*) > 1'), '',
		'phase 3: no task ran twice');
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM lantern.tasks t WHERE jobid >= $first AND status = 'succeeded' AND (SELECT count(*) FROM runs r WHERE r.jobid = t.jobid) <> 1"),
		'0', 'phase 3: each succeeded task ran exactly once');
}

# ---- canceling tasks recovery has not reached yet ------------------------------
# Their rows are of the earlier server life; the canceler writes them itself.
# Recovery, coming to them later, holds back until the canceler has committed
# and then leaves the canceled ones alone. Such a cancel cannot be prepared.
{
	$node->stop;
	$node->append_conf('postgresql.conf', "lantern_fdw.max_tasks = 1024\n");
	$node->start;
	# A gate that survives the crash: the tasks wait until it opens. With one
	# place, the first recovered task holds it and the board fills up.
	$node->safe_psql('postgres', 'CREATE TABLE gate (open bool); INSERT INTO gate VALUES (false)');
	my $held = 'DO $$ BEGIN WHILE NOT (SELECT open FROM gate) LOOP PERFORM pg_sleep(0.02); END LOOP; END $$; '
	  . "INSERT INTO runs SELECT $JOBID_OF_TASK";
	(my $held_lit = $held) =~ s/'/''/g;
	my $first = $node->safe_psql('postgres',
		"BEGIN; SELECT min(lantern.async_task('$held_lit')) FROM generate_series(1, 300); COMMIT;");
	my $last = $first + 299;
	wait_sql($node, 'postgres', "SELECT status = 'running' FROM lantern.tasks WHERE jobid = $first", 't',
		'phase 4: the first task waits at the gate');
	$node->stop('immediate');
	$node->append_conf('postgresql.conf', "lantern_fdw.max_tasks = 120\nmax_prepared_transactions = 2\n");
	$node->start;
	my $log_offset = -s $node->logfile;
	# The board fills up with recovered tasks (recovery goes in the store's
	# physical order); nothing frees a slot while the gate is closed. Two of
	# the tasks left off the board are the ones to cancel.
	wait_sql($node, 'postgres', "SELECT count(*) = 120 FROM lantern.task_progress", 't',
		'phase 4: the board is full of recovered tasks');
	my ($t2, $t1) = split /\n/, $node->safe_psql('postgres',
		"SELECT jobid FROM lantern.tasks WHERE jobid > $first AND status = 'queued' AND jobid NOT IN (SELECT jobid FROM lantern.task_progress) ORDER BY jobid DESC LIMIT 2"
	);
	ok(defined $t1, 'phase 4: some tasks wait for a slot');
	my ($ret, $out, $err) = $node->psql('postgres',
		"BEGIN; SELECT lantern.cancel_task($t1); PREPARE TRANSACTION 'lantern_phase4'");
	like($err, qr/cannot PREPARE a transaction that has canceled lantern_fdw tasks/,
		'phase 4: a transaction that canceled such a task cannot be prepared');
	my $canceler = $node->background_psql('postgres');
	$canceler->query_safe('BEGIN');
	is(bg_query($canceler, "SELECT lantern.cancel_task($t2)"), 't',
		'phase 4: a task recovery has not reached is canceled');
	$node->safe_psql('postgres', 'UPDATE gate SET open = true');
	# The recovered tasks run and free the board, but recovery puts no more
	# back while the canceler's transaction is open.
	wait_sql($node, 'postgres', "SELECT count(*) = 0 FROM lantern.task_progress", 't',
		'phase 4: the recovered tasks ran');
	ok( $node->safe_psql('postgres', "SELECT count(*) FROM lantern.tasks WHERE jobid <> $t2 AND status = 'queued'")
		  > 0, 'phase 4: recovery holds back while the canceling transaction is open');
	$canceler->query_safe('COMMIT');
	$canceler->quit;
	wait_sql($node, 'postgres', "SELECT count(*) = 0 FROM lantern.tasks WHERE duration IS NULL", 't',
		'phase 4: every task ended');
	is(task_row($node, 'postgres', $t2), 'canceled|t|Canceled by user', 'phase 4: the canceled task is canceled');
	is($node->safe_psql('postgres', "SELECT count(*) FROM runs WHERE jobid = $t2"), '0',
		'phase 4: and it never ran');
	is(task_row($node, 'postgres', $first), "failed|t|$EXPECTED_RESTART_MESSAGE",
		'phase 4: the task at the gate at the crash failed with the restart message');
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM lantern.tasks t WHERE jobid BETWEEN $first + 1 AND $last AND jobid <> $t2 AND (status <> 'succeeded' OR (SELECT count(*) FROM runs r WHERE r.jobid = t.jobid) <> 1)"),
		'0', 'phase 4: every other task succeeded, once');
	unlike(slurp_file($node->logfile, $log_offset), qr/tuple concurrently updated/, 'phase 4: no write conflict');
}

$node->stop;
check_server_log($node);
done_testing();
