# The queue beyond the board: with lantern_fdw.max_tasks = 16, one statement
# submits 20,000 tasks while 4 pgbench clients submit more, half of their
# transactions rolled back. Nothing is refused; every committed task runs
# exactly once, no rolled-back one runs. Then an immediate-mode restart with
# 10,000 tasks still in the store and 1,000 scheduled: they all run, each at
# most once, the scheduled ones not before their run_at.
# Then fairness between databases: a second database's single task starts
# while the first has thousands queued.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use LanternFdwTest;

my $N = 20000;
my $node = lantern_node('queue',
	conf => "lantern_fdw.max_tasks = 16\nlantern_fdw.max_parallel_tasks = 4\nlog_statement = none\nmax_connections = 40\n");
$node->safe_psql('postgres', 'CREATE TABLE runs (jobid bigint, tag text)');
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION lantern_fdw');
$node->safe_psql('other', 'CREATE TABLE runs (jobid bigint, tag text)');

# The task that records its run in runs, tagged; task_sql quotes it for a literal.
sub task_raw
{
	my ($tag) = @_;
	return "INSERT INTO runs SELECT $JOBID_OF_TASK, '$tag'";
}

sub task_sql
{
	(my $task = task_raw(@_)) =~ s/'/''/g;
	return $task;
}

# ---- a burst: one statement and 4 pgbench clients --------------------------
my $dir = PostgreSQL::Test::Utils::tempdir;
my $c = task_sql('bench');
my $r = task_sql('rolled back');
PostgreSQL::Test::Utils::append_to_file("$dir/commit.sql",
	"BEGIN;\nSELECT lantern.async_task('$c', 'bench');\nCOMMIT;\n");
PostgreSQL::Test::Utils::append_to_file("$dir/rollback.sql",
	"BEGIN;\nSELECT lantern.async_task('$r', 'rolled back');\nROLLBACK;\n");
my ($bout, $berr) = ('', '');
my $bench = IPC::Run::start(
	[
		'pgbench', '-n', '-c', '4', '-t', '250', '-f', "$dir/commit.sql\@1", '-f', "$dir/rollback.sql\@1",
		'-h', $node->host, '-p', $node->port, 'postgres'
	],
	'>', \$bout, '2>', \$berr);
my $one = task_sql('one statement');
my ($ret, $out, $err) = $node->psql('postgres',
	"SELECT count(lantern.async_task('$one', 'one statement')) FROM generate_series(1, $N)");
is($ret, 0, "$N tasks in one statement with 16 board slots are accepted") or diag($err);
is($out, $N, "... all $N of them");
$bench->finish;
is($?, 0, 'pgbench: no submission failed') or diag("$bout\n$berr");

# The partial indexes the loaders read hold exactly the rows waiting in the
# store: the rows read through the index and those read without it, in one
# snapshot, are the same.
sub check_waiting_index
{
	my ($pred, $index, $what) = @_;
	(my $noindex = $pred) =~ s/status =/status || '' =/;
	$noindex =~ s/board_id = 0/board_id + 0 = 0/;
	my $through = "SELECT jobid FROM _lantern_fdw.task_log WHERE $pred";
	my $set = 'SET enable_seqscan = off; SET enable_bitmapscan = off;';
	like($node->safe_psql('postgres', "$set EXPLAIN (COSTS OFF) $through"), qr/$index/, "$what: read through $index");
	my $res = $node->safe_psql('postgres',
		"$set SELECT count(*) FILTER (WHERE i.jobid IS NULL OR h.jobid IS NULL), count(h.jobid) > 0
		   FROM ($through) i
		   FULL JOIN (SELECT jobid FROM _lantern_fdw.task_log WHERE $noindex) h USING (jobid)");
	is($res, '0|t', "$what: the index holds exactly the waiting rows");
}
check_waiting_index("status = 'queued' AND board_id = 0", 'task_log_waiting_queued', 'queued in the store');

my $committed = $node->safe_psql('postgres', "SELECT count(*) FROM lantern.tasks WHERE job_name = 'bench'");
note "pgbench committed $committed tasks";
cmp_ok($committed, '>', 0, 'pgbench committed some tasks');
is($node->safe_psql('postgres', "SELECT count(*) FROM lantern.tasks WHERE job_name = 'rolled back'"), '0',
	'no rolled-back submission kept a row');
ok(poll_for($node, 'postgres', 'SELECT count(*) FROM lantern.tasks WHERE duration IS NULL', '0', 600),
	'every task ended');
is($node->safe_psql('postgres', "SELECT count(*) FROM lantern.tasks WHERE status <> 'succeeded'"), '0',
	'every task succeeded');
is($node->safe_psql('postgres', 'SELECT count(*) FROM runs GROUP BY jobid HAVING count(*) > 1'), '',
	'no task ran twice');
is($node->safe_psql('postgres',
		'SELECT count(*) FROM lantern.tasks t WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.jobid = t.jobid)'),
	'0', 'every committed task ran');
is($node->safe_psql('postgres', "SELECT count(*) FROM runs WHERE tag = 'rolled back'"), '0',
	'no rolled-back task ran');
ok(poll_for($node, 'postgres',
		"SELECT idx_scan > 0 FROM pg_stat_all_indexes WHERE indexrelname = 'task_log_waiting_queued'", 't', 60),
	'the loaders read the queued rows through their index');

# ---- an immediate restart with tasks waiting in the store -------------------
$node->safe_psql('postgres', 'TRUNCATE runs; DELETE FROM lantern.tasks');
my $M = 10000;
my $sleeper = submit($node, 'postgres', 'SELECT pg_sleep(600)');
wait_sql($node, 'postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'lantern_fdw task $sleeper' AND state = 'active'",
	't', 'a sleeper runs');
$node->safe_psql('postgres', 'ALTER SYSTEM SET lantern_fdw.max_parallel_tasks = 1');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
my $restart = task_sql('restart');
$node->safe_psql('postgres', "SELECT count(lantern.async_task('$restart')) FROM generate_series(1, $M)");
is($node->safe_psql('postgres', "SELECT count(*) FROM lantern.tasks WHERE status = 'queued'"), $M,
	"$M tasks are queued behind the sleeper");
my $sched = task_sql('scheduled');
$node->safe_psql('postgres',
	"SELECT count(lantern.async_task('$sched', 'scheduled', now() + interval '3 s')) FROM generate_series(1, 1000)");
is($node->safe_psql('postgres', "SELECT count(*) FROM lantern.tasks WHERE status = 'scheduled'"), '1000',
	'1000 tasks are scheduled');
check_waiting_index("status = 'scheduled'", 'task_log_waiting_scheduled', 'scheduled');
$node->stop('immediate');
$node->start;
ok(poll_for($node, 'postgres', 'SELECT count(*) FROM lantern.tasks WHERE duration IS NULL', '0', 300),
	'after the restart, every task ended');
is($node->safe_psql('postgres', 'SELECT count(*) FROM runs GROUP BY jobid HAVING count(*) > 1'), '',
	'after the restart: no task ran twice');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM lantern.tasks t WHERE jobid <> $sleeper AND (status <> 'succeeded' OR NOT EXISTS (SELECT 1 FROM runs r WHERE r.jobid = t.jobid))"),
	'0', 'after the restart: every queued task succeeded and ran');
is($node->safe_psql('postgres', "SELECT status FROM lantern.tasks WHERE jobid = $sleeper"), 'failed',
	'the sleeper failed with the restart');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM lantern.task_details WHERE job_name = 'scheduled' AND status = 'succeeded' AND run_started_at >= run_at"),
	'1000', 'after the restart: the scheduled tasks ran, none before its run_at');

# ---- fairness between databases ---------------------------------------------
$node->safe_psql('postgres', 'ALTER SYSTEM SET lantern_fdw.max_parallel_tasks = 4');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
my $slow = "SELECT pg_sleep(0.2)";
$node->safe_psql('postgres', "SELECT count(lantern.async_task('$slow', 'busy')) FROM generate_series(1, 5000)");
my $lone = submit($node, 'other', task_raw('lone'));
is($node->safe_psql('other', "SELECT lantern.wait_task($lone, '60 s')"), 'succeeded',
	"the other database's task ran");
my $left = $node->safe_psql('postgres', "SELECT count(*) FROM lantern.tasks WHERE job_name = 'busy' AND duration IS NULL");
note "busy tasks still waiting when the other database's task ended: $left";
cmp_ok($left, '>', 4000, "the other database's task did not wait for the busy database's queue");
$node->safe_psql('postgres', "SELECT lantern.cancel_all_async_tasks()");
ok(poll_for($node, 'postgres', 'SELECT count(*) FROM lantern.tasks WHERE duration IS NULL', '0', 120),
	'cancel_all_async_tasks ended the busy queue, in the store too');
is($node->safe_psql('postgres', "SELECT count(*) FROM lantern.tasks WHERE job_name = 'busy' AND status = 'canceled'") > 4000 ? 't' : 'f',
	't', 'most of the busy queue was canceled before it ran');

$node->stop;
check_server_log($node);

# ---- fairness between roles: max_parallel_tasks_per_role --------------------
# Alice submits 20 long tasks in one statement, then bob one: bob's task runs
# while alice's still wait for a lock, on the default board and on a board of
# 16 slots (where alice's tasks could otherwise fill the board, or her
# database's share of queued slots, and keep bob's task in the store).
for my $board ([ 'roles', '' ], [ 'roles_small', "lantern_fdw.max_tasks = 16\n" ])
{
	my ($name, $extra) = @$board;
	my $rn = lantern_node($name,
		conf => "lantern_fdw.max_parallel_tasks = 4\nlantern_fdw.max_parallel_tasks_per_role = 2\n$extra");
	$rn->safe_psql('postgres', q{
		CREATE ROLE queue_alice LOGIN;
		CREATE ROLE queue_bob LOGIN;
		CREATE TABLE seen (who text, running int);
		GRANT INSERT ON seen TO PUBLIC;
	});
	my $long = "INSERT INTO seen SELECT current_user, (SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'lantern_fdw task%' AND usename = current_user AND state = 'active')::int; SELECT pg_advisory_xact_lock_shared(7)";
	(my $long_lit = $long) =~ s/'/''/g;
	my $locker = $rn->background_psql('postgres');
	$locker->query_safe('SELECT pg_advisory_lock(7)');
	my $alice = $rn->safe_psql('postgres',
		"SET ROLE queue_alice; SELECT string_agg(lantern.async_task('$long_lit')::text, ',') FROM generate_series(1, 20)");
	wait_sql($rn, 'postgres',
		"SELECT count(*) = 2 FROM pg_stat_activity WHERE application_name LIKE 'lantern_fdw task%' AND wait_event_type = 'Lock'",
		't', "$name: two of alice's tasks run (waiting for a lock)");
	my $bob = submit($rn, 'postgres', 'SELECT 1', role => 'queue_bob');
	is($rn->safe_psql('postgres', "SELECT lantern.wait_task($bob, '60 s')"), 'succeeded',
		"$name: bob's task, queued after alice's twenty, ran while they waited");
	is($rn->safe_psql('postgres', "SELECT count(*) FROM lantern.tasks WHERE jobid IN ($alice) AND status = 'running'"), '2',
		"$name: alice still has exactly two tasks running");
	is($rn->safe_psql('postgres', "SELECT count(*) FROM lantern.task_details WHERE jobid IN ($alice) AND ended_at IS NOT NULL"),
		'0', "$name: none of alice's tasks had ended when bob's had");
	$locker->query_safe('SELECT pg_advisory_unlock(7)');
	$locker->quit;
	is($rn->safe_psql('postgres',
			"SELECT count(*) FILTER (WHERE lantern.wait_task(jobid, '120 s') = 'succeeded') FROM lantern.tasks WHERE jobid IN ($alice)"),
		'20', "$name: alice's twenty tasks all ran");
	is($rn->safe_psql('postgres', "SELECT max(running) <= 2 AND count(*) = 20 FROM seen WHERE who = 'queue_alice'"), 't',
		"$name: never more than two of alice's tasks ran at once");
	is($rn->safe_psql('postgres', qq{
			SELECT (SELECT run_started_at FROM lantern.task_details WHERE jobid = $bob) < min(ended_at)
			FROM lantern.task_details WHERE jobid IN ($alice)}), 't',
		"$name: bob's task started before the first of alice's ended");
	$rn->stop;
	check_server_log($rn);
}
done_testing();
