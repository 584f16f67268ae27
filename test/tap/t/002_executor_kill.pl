# The executor killed with tasks queued and running.
# SIGTERM: the bgworker comes back, the queued tasks still run (once), the
# running ones end 'failed' with a reason and their backends are gone.
# SIGKILL: the postmaster reinitializes (restart_after_crash = on) and recovery
# does the same: queued ones run once, running ones fail with the restart message.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LanternFdwTest;

my $node = lantern_node('kill',
	conf => "lantern_fdw.max_parallel_tasks = 2\nrestart_after_crash = on\n");
$node->safe_psql('postgres', 'CREATE TABLE runs (tag text NOT NULL)');

my $sleeping_sql =
  "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE application_name LIKE 'lantern_fdw task%' AND query LIKE '%pg_sleep(600)%' AND state = 'active'";

# Two sleepers fill max_parallel_tasks; three inserts wait behind them.
# Returns (sleeper jobids, queued jobids, sleeper backend pids).
sub load_tasks
{
	my ($tag) = @_;
	my @sleepers = map { submit($node, 'postgres', 'SELECT pg_sleep(600)') } 1 .. 2;
	wait_sql($node, 'postgres',
		"SELECT count(*) = 2 FROM pg_stat_activity WHERE application_name LIKE 'lantern_fdw task%' AND query LIKE '%pg_sleep(600)%' AND state = 'active'",
		't', "$tag: two sleepers are running");
	my $pids = $node->safe_psql('postgres', $sleeping_sql);
	my @queued = map { submit($node, 'postgres', "INSERT INTO runs VALUES ('$tag-$_')") } 1 .. 3;
	my $ids = join(',', @queued);
	is( $node->safe_psql('postgres',
			"SELECT string_agg(status, ',') FROM lantern.tasks WHERE jobid IN ($ids)"),
		'queued,queued,queued', "$tag: three tasks are queued");
	return (\@sleepers, \@queued, $pids);
}

sub check_queued_ran_once
{
	my ($tag, $queued) = @_;
	my $ids = join(',', @$queued);
	wait_sql($node, 'postgres',
		"SELECT count(*) = 3 FROM lantern.tasks WHERE jobid IN ($ids) AND duration IS NOT NULL",
		't', "$tag: the queued tasks ended");
	is( $node->safe_psql('postgres',
			"SELECT string_agg(status, ',') FROM lantern.tasks WHERE jobid IN ($ids)"),
		'succeeded,succeeded,succeeded', "$tag: the queued tasks succeeded");
	my $marker = submit($node, 'postgres', "INSERT INTO runs VALUES ('$tag-marker')");
	is(wait_ended($node, 'postgres', $marker), 'succeeded', "$tag: a new task runs");
	is( $node->safe_psql('postgres',
			"SELECT string_agg(tag || ':' || n, ',' ORDER BY tag) FROM (SELECT tag, count(*) AS n FROM runs WHERE tag LIKE '$tag-%' GROUP BY tag) s"
		),
		"$tag-1:1,$tag-2:1,$tag-3:1,$tag-marker:1",
		"$tag: each queued task ran exactly once");
}

# ---- SIGTERM ----------------------------------------------------------------
{
	my ($sleepers, $queued, $pids) = load_tasks('term');
	my $old = executor_pid($node);
	ok($old > 0, 'the executor runs');
	is($node->safe_psql('postgres', "SELECT pg_terminate_backend($old)"), 't',
		'SIGTERM sent to the executor');
	wait_sql($node, 'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'lantern_fdw executor' AND pid <> $old",
		't', 'a new executor has started');

	for my $id (@$sleepers)
	{
		is(wait_ended($node, 'postgres', $id), 'failed', "term: running task $id failed");
		my ($dur, $msg) = split /\|/,
		  $node->safe_psql('postgres',
			"SELECT duration IS NOT NULL, error_message FROM lantern.tasks WHERE jobid = $id");
		is($dur, 't', "term: running task $id has a duration");
		like($msg, qr/^ERROR:  the lantern_fdw executor stopped while the task was running/,
			"term: running task $id failed with a reason");
	}
	wait_sql($node, 'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid IN ($pids)",
		't', 'term: the backends of the running tasks are gone');
	check_queued_ran_once('term', $queued);
	is(task_backends($node, "query LIKE '%pg_sleep%'"), '0', 'term: no sleeper backend lingers');
}

# ---- SIGTERM while the executor records a task's end ------------------------
# The task's statements are done; its recording call waits for a row lock the
# test holds. The executor stops there: its successor records the outcome the
# task had (succeeded), not a failure.
{
	my $holder = $node->background_psql('postgres');
	$holder->query_safe('SELECT pg_advisory_lock(91)');
	my $id = submit($node, 'postgres',
		"SELECT pg_advisory_xact_lock_shared(91); INSERT INTO runs VALUES ('ending')");
	wait_sql($node, 'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'lantern_fdw task $id' AND wait_event = 'advisory'",
		't', 'ending: the task waits at its first statement');
	my $pid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE application_name = 'lantern_fdw task $id'");
	$holder->query_safe("BEGIN; SELECT 1 FROM _lantern_fdw.task_log WHERE jobid = $id FOR UPDATE; SELECT pg_advisory_unlock(91)");
	# (The session reset before the recording call resets application_name.)
	wait_sql($node, 'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = $pid AND query LIKE '%record_end($id,%' AND wait_event_type = 'Lock'",
		't', 'ending: the task is done and its end is being recorded');
	my $old = executor_pid($node);
	is($node->safe_psql('postgres', "SELECT pg_terminate_backend($old)"), 't', 'ending: SIGTERM sent to the executor');
	wait_sql($node, 'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'lantern_fdw executor' AND pid <> $old",
		't', 'ending: a new executor has started');
	$holder->query_safe('ROLLBACK');
	$holder->quit;
	is(wait_ended($node, 'postgres', $id), 'succeeded', 'ending: the task is recorded as succeeded');
	is($node->safe_psql('postgres', "SELECT error_message IS NULL FROM lantern.tasks WHERE jobid = $id"), 't',
		'ending: with no error message');
	is($node->safe_psql('postgres', "SELECT count(*) FROM runs WHERE tag = 'ending'"), '1', 'ending: it ran once');
}

# ---- SIGKILL ----------------------------------------------------------------
{
	my ($sleepers, $queued, $pids) = load_tasks('kill');
	my $old = executor_pid($node);
	ok(kill('KILL', $old), 'SIGKILL sent to the executor');
	# The postmaster reinitializes; poll_query_until retries while it does.
	wait_sql($node, 'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'lantern_fdw executor' AND pid <> $old",
		't', 'kill: the server reinitialized and a new executor runs');
	for my $id (@$sleepers)
	{
		is(wait_ended($node, 'postgres', $id), 'failed', "kill: running task $id failed");
		is(task_row($node, 'postgres', $id), "failed|t|$EXPECTED_RESTART_MESSAGE",
			"kill: running task $id failed with the restart message and a duration");
	}
	check_queued_ran_once('kill', $queued);
	is(task_backends($node, "query LIKE '%pg_sleep%'"), '0', 'kill: no sleeper backend lingers');
	like(slurp_file($node->logfile), qr/lantern_fdw executor.*was terminated by signal 9/,
		'kill: the postmaster saw the executor die');
}

# ---- a task's backend terminated by an administrator ----------------------
{
	my ($sleepers, $queued, $pids) = load_tasks('termtask');
	my $exec = executor_pid($node);
	my ($victim) = split /,/, $pids;
	is($node->safe_psql('postgres', "SELECT pg_terminate_backend($victim)"), 't', 'termtask: a task backend is terminated');
	wait_sql($node, 'postgres',
		"SELECT count(*) = 1 FROM lantern.tasks WHERE jobid IN (" . join(',', @$sleepers) . ") AND status = 'failed'",
		't', 'termtask: its task failed');
	like( $node->safe_psql('postgres',
			"SELECT error_message FROM lantern.tasks WHERE jobid IN (" . join(',', @$sleepers) . ") AND status = 'failed'"),
		qr/terminating connection due to administrator command/, 'termtask: with the server\'s reason');
	is(executor_pid($node), $exec, 'termtask: the executor is the same process');
	# The other sleeper still runs; cancel it to let the queue move.
	$node->safe_psql('postgres', "SELECT lantern.cancel_task(jobid) FROM lantern.tasks WHERE jobid IN (" . join(',', @$sleepers) . ") AND status = 'running'");
	check_queued_ran_once('termtask', $queued);
}

# ---- a task's backend killed with SIGKILL: the postmaster reinitializes ------
{
	my ($sleepers, $queued, $pids) = load_tasks('killtask');
	my $old = executor_pid($node);
	my ($victim) = split /,/, $pids;
	ok(kill('KILL', $victim), 'killtask: SIGKILL sent to a task backend');
	wait_sql($node, 'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'lantern_fdw executor' AND pid <> $old",
		't', 'killtask: the server reinitialized and a new executor runs');
	for my $id (@$sleepers)
	{
		is(wait_ended($node, 'postgres', $id), 'failed', "killtask: running task $id failed");
		is(task_row($node, 'postgres', $id), "failed|t|$EXPECTED_RESTART_MESSAGE",
			"killtask: running task $id failed with the restart message and a duration");
	}
	check_queued_ran_once('killtask', $queued);
}

is($node->safe_psql('postgres', 'SELECT count(*) FROM lantern.tasks WHERE duration IS NULL'),
	'0', 'no task is left queued or running');
$node->stop;
check_server_log($node);
done_testing();
