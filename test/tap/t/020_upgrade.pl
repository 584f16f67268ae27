# ALTER EXTENSION lantern_fdw UPDATE from 0.1.0 to the default version, with
# the new library loaded and tasks in every state: ended tasks keep their
# history, the running one ends normally, the queued ones run once
# afterwards, lantern.tasks looks the same and the new functions work. A
# second database keeps 0.1.0 until the end: its tasks still run under the
# new library, or are refused with an error that names the update; it has
# no task output, so they end at once with their outcome recorded alone,
# and once it is updated their output is recorded.
# (That an updated database has the same objects as a fresh install is
# checked by the regress test 'versions'.)
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LanternFdwTest;

my $OLD = '0.1.0';
my $node = lantern_node('upgrade', conf => "lantern_fdw.max_parallel_tasks = 1\n", no_extension => 1);
my $new = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'lantern_fdw'");
my $paths = $node->safe_psql('postgres',
	"SELECT count(*) FROM pg_extension_update_paths('lantern_fdw') WHERE source = '$OLD' AND target = '$new' AND path IS NOT NULL"
);
if ($new eq $OLD)
{
	$node->stop;
	plan skip_all => "the default version is still $OLD: no update to test";
}
is($paths, '1', "an update path leads from $OLD to $new");

$node->safe_psql('postgres', 'CREATE DATABASE kept');
for my $db ('postgres', 'kept')
{
	$node->safe_psql($db, "CREATE EXTENSION lantern_fdw VERSION '$OLD'; CREATE TABLE runs (tag text NOT NULL)");
	is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'lantern_fdw'"),
		$OLD, "$db: $OLD is installed");
}
my $describe = $node->safe_psql('postgres', '\d lantern.tasks');

# ---- tasks in every state under 0.1.0 ---------------------------------------
my $ok = submit($node, 'postgres', "INSERT INTO runs VALUES ('ended')");
is(wait_ended($node, 'postgres', $ok), 'succeeded', 'before: a task succeeded');
my $bad = submit($node, 'postgres', 'SELECT 1/0');
is(wait_ended($node, 'postgres', $bad), 'failed', 'before: a task failed');
my $sleeper = submit($node, 'postgres', 'SELECT pg_sleep(600)');
wait_sql($node, 'postgres', "SELECT status = 'running' FROM lantern.tasks WHERE jobid = $sleeper",
	't', 'before: the sleeper runs');
$node->safe_psql('postgres', "SELECT lantern.cancel_task($sleeper)");
is(wait_ended($node, 'postgres', $sleeper), 'canceled', 'before: a task was canceled');
my $ended = "$ok, $bad, $sleeper";
my $history_sql =
  "SELECT jobid, query, pg_cron_job_name, job_name, username, started_at, duration, status, error_message FROM lantern.tasks WHERE jobid IN ($ended) ORDER BY jobid";
my $history = $node->safe_psql('postgres', $history_sql);

# One task runs, waiting for a lock the test holds; with max_parallel_tasks = 1
# the others stay queued behind it.
my $locker = $node->background_psql('postgres');
bg_query($locker, 'SELECT pg_advisory_lock(11)');
my $running = submit($node, 'postgres',
	"SELECT pg_advisory_xact_lock_shared(11); INSERT INTO runs VALUES ('running')");
wait_sql($node, 'postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'lantern_fdw task $running' AND wait_event_type = 'Lock'",
	't', 'before: a task runs, waiting for the lock');
my @queued = map { submit($node, 'postgres', "INSERT INTO runs VALUES ('queued-$_')") } 1 .. 3;
my $kept_queued = submit($node, 'kept', "INSERT INTO runs VALUES ('kept-queued')");
my $queued_ids = join(', ', @queued);
is( $node->safe_psql('postgres',
		"SELECT string_agg(status, ',' ORDER BY jobid) FROM lantern.tasks WHERE jobid IN ($running, $queued_ids)"),
	'running,queued,queued,queued', 'before: one task running, three queued');
is($node->safe_psql('kept', "SELECT status FROM lantern.tasks WHERE jobid = $kept_queued"),
	'queued', 'before: a task of the database that keeps 0.1.0 is queued');

# ---- the update --------------------------------------------------------------
$node->safe_psql('postgres', 'ALTER EXTENSION lantern_fdw UPDATE');
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'lantern_fdw'"),
	$new, "after: postgres is at $new");
is($node->safe_psql('kept', "SELECT extversion FROM pg_extension WHERE extname = 'lantern_fdw'"),
	$OLD, "after: kept is still at $OLD");
is($node->safe_psql('postgres', '\d lantern.tasks'), $describe, 'after: \d lantern.tasks is unchanged');
is($node->safe_psql('postgres', $history_sql), $history, 'after: the history of the ended tasks is intact');
is( $node->safe_psql('postgres',
		"SELECT string_agg(status, ',' ORDER BY jobid) FROM lantern.tasks WHERE jobid IN ($running, $queued_ids)"),
	'running,queued,queued,queued', 'after: the running task still runs, the queued ones wait');

bg_query($locker, 'SELECT pg_advisory_unlock(11)');
is(wait_ended($node, 'postgres', $running), 'succeeded', 'after: the running task ended normally');
for my $id (@queued)
{
	is(wait_ended($node, 'postgres', $id), 'succeeded', "after: queued task $id succeeded");
}
$locker->quit;

# The database that keeps 0.1.0: its queued task runs under the new library,
# or ends with an error that names the update; never both, never twice.
my $kept_status = wait_ended($node, 'kept', $kept_queued);
my $kept_msg = $node->safe_psql('kept', "SELECT coalesce(error_message, '') FROM lantern.tasks WHERE jobid = $kept_queued");
my $kept_runs = $node->safe_psql('kept', "SELECT count(*) FROM runs WHERE tag = 'kept-queued'");
if ($kept_status eq 'succeeded')
{
	is($kept_runs, '1', 'kept: the task queued under 0.1.0 ran once under the new library');
}
else
{
	like($kept_msg, qr/ALTER EXTENSION lantern_fdw UPDATE/, 'kept: the task queued under 0.1.0 was refused, naming the update');
	is($kept_runs, '0', 'kept: the refused task did not run');
}

# New tasks in both databases.
my $after = submit($node, 'postgres', "INSERT INTO runs VALUES ('after')");
is(wait_ended($node, 'postgres', $after), 'succeeded', 'after: a new task runs');
my ($rc, $kept_new, $err) = $node->psql('kept', q{SELECT lantern.async_task('INSERT INTO runs VALUES (''kept-after'')')});
if ($rc == 0)
{
	is(wait_ended($node, 'kept', $kept_new), 'succeeded', 'kept: a task submitted under 0.1.0 runs under the new library');
	is($node->safe_psql('kept', "SELECT count(*) FROM runs WHERE tag = 'kept-after'"), '1', 'kept: once');
}
else
{
	like($err, qr/ALTER EXTENSION lantern_fdw UPDATE/, 'kept: submitting is refused with an error that names the update');
}

is( $node->safe_psql('postgres', "SELECT string_agg(tag || ':' || n, ',' ORDER BY tag) FROM (SELECT tag, count(*) AS n FROM runs GROUP BY tag) s"),
	'after:1,ended:1,queued-1:1,queued-2:1,queued-3:1,running:1',
	'after: every task ran exactly once');

# ---- the new functions work --------------------------------------------------
# import_lantern_tasks takes a table shaped like Lantern's lantern.tasks.
$node->safe_psql('postgres',
	"CREATE TABLE old_history AS SELECT * FROM lantern.tasks WHERE jobid = $ok; UPDATE old_history SET jobid = jobid + 1000");
my $imported_id = $ok + 1000;
is($node->safe_psql('postgres', "SELECT lantern.import_lantern_tasks('old_history')"), '1',
	'after: lantern.import_lantern_tasks imports a row');
is( $node->safe_psql('postgres',
		"SELECT query, job_name, username, started_at, duration, status, error_message FROM lantern.tasks WHERE jobid = $imported_id"),
	$node->safe_psql('postgres',
		"SELECT query, job_name, username, started_at, duration, status, error_message FROM lantern.tasks WHERE jobid = $ok"),
	'after: the imported row is in the history as it was');
my $next = submit($node, 'postgres', "INSERT INTO runs VALUES ('after-import')");
ok($next > $imported_id, 'after: new jobids come after the imported ones');
is(wait_ended($node, 'postgres', $next), 'succeeded', 'after: and the task runs');

# ---- a restart with both databases --------------------------------------------
$node->restart;
my $post = submit($node, 'postgres', "INSERT INTO runs VALUES ('after-restart')");
is(wait_ended($node, 'postgres', $post), 'succeeded', 'restart: a task runs in the updated database');
is($node->safe_psql('postgres', 'SELECT count(*) FROM lantern.tasks WHERE duration IS NULL'), '0',
	'restart: nothing is left queued or running in postgres');
is($node->safe_psql('kept', 'SELECT count(*) FROM lantern.tasks WHERE duration IS NULL'), '0',
	'restart: nothing is left queued or running in kept');

# ---- task output in the database that kept 0.1.0 -----------------------------
# Its executor connection is new after the restart: asked with record_start,
# the database has no _lantern_fdw.record_output, so no recording call
# names it and fails (a retry would have recorded the outcome alone, using
# up one of the attempts kept for a late cancel signal).
my @kept_tasks = (
	submit($node, 'kept', q{DO $$BEGIN RAISE NOTICE 'kept %', 1; END$$}),
	submit($node, 'kept', 'SELECT 1/0'),
	submit($node, 'kept', "INSERT INTO runs VALUES ('kept-output')"));
is( join(',', map { wait_ended($node, 'kept', $_) } @kept_tasks),
	'succeeded,failed,succeeded', 'kept at 0.1.0: tasks end with their own outcomes');
is($node->safe_psql('kept', "SELECT error_message FROM lantern.tasks WHERE jobid = $kept_tasks[1]"),
	'ERROR:  division by zero', 'kept at 0.1.0: the failed task has its own error');
is($node->safe_psql('kept', "SELECT count(*) FROM runs WHERE tag = 'kept-output'"), '1', 'kept at 0.1.0: once');
my $log = slurp_file($node->logfile);
unlike($log, qr/function _lantern_fdw\.record_output\(.*\) does not exist/,
	'no recording call failed for want of record_output, in either database');
unlike($log, qr/could not record the end of task/, 'every outcome was recorded through the task connection');

# Updated, the database takes output: the executor asks again with each
# record_start until it does (the idle connection is reused).
$node->safe_psql('kept', 'ALTER EXTENSION lantern_fdw UPDATE');
my $kept_output = submit($node, 'kept', q{DO $$BEGIN RAISE NOTICE 'kept %', 2; END$$});
is(wait_ended($node, 'kept', $kept_output), 'succeeded', 'kept, updated: a task runs');
is( $node->safe_psql('kept',
		"SELECT statement || '|' || command || '|' || rtrim(messages, E'\\n') FROM lantern.task_output WHERE jobid = $kept_output"),
	'1|DO|NOTICE:  kept 2', 'kept, updated: its output is recorded');
my $kept_ids = join(', ', @kept_tasks);
is($node->safe_psql('kept', "SELECT count(*) FROM lantern.task_output WHERE jobid IN ($kept_ids)"),
	'0', 'kept, updated: the tasks that ended under 0.1.0 have no output');

# Created again at 0.1.0 under an idle executor connection that was told it
# could record output: the recording call that names record_output fails,
# and the outcome is recorded alone at once.
$node->safe_psql('kept', "DROP EXTENSION lantern_fdw; CREATE EXTENSION lantern_fdw VERSION '$OLD'");
my $recreated = submit($node, 'kept', 'SELECT 1/0');
is(wait_ended($node, 'kept', $recreated), 'failed', 'kept, created again at 0.1.0: a task ends with its outcome');
is($node->safe_psql('kept', "SELECT error_message FROM lantern.tasks WHERE jobid = $recreated"),
	'ERROR:  division by zero', 'kept, created again at 0.1.0: and its own error');
unlike(slurp_file($node->logfile), qr/could not record the end of task/,
	'kept, created again at 0.1.0: the outcome was recorded through the task connection');

$node->stop;
check_server_log($node);
done_testing();
