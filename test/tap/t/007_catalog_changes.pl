# Schema and catalog changes around active tasks: DROP EXTENSION with tasks
# queued and running (and a new CREATE EXTENSION starting clean, even in the
# same transaction), DROP DATABASE right after tasks ran there (not blocked by
# the executor's idle connections), DROP DATABASE with a task queued,
# ALTER DATABASE ... RENAME with a task queued, DROP ROLE of a role with tasks.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use LanternFdwTest;

# One task at a time, so that a blocker keeps the others queued; idle
# connections kept for a minute, so only the utility hook can close them in time.
my $node = lantern_node('catalog',
	conf => "lantern_fdw.max_parallel_tasks = 1\nlantern_fdw.idle_connection_timeout = '60s'\n");
$node->safe_psql('postgres', 'CREATE TABLE runs (tag text)');
my $locker = $node->background_psql('postgres');

# A task in postgres that runs until the lock $key is released; returns its jobid.
sub start_blocker
{
	my ($key) = @_;
	$locker->query_safe("SELECT pg_advisory_lock($key)");
	my $id = submit($node, 'postgres', "SELECT pg_advisory_lock_shared($key)");
	wait_sql($node, 'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'lantern_fdw task $id' AND wait_event_type = 'Lock'",
		't', "blocker $id runs");
	return $id;
}

sub next_task_runs
{
	my ($what) = @_;
	my $id = submit($node, 'postgres', "INSERT INTO runs VALUES ('$what')");
	is(wait_ended($node, 'postgres', $id), 'succeeded', "$what: the next task runs");
}

# ---- DROP EXTENSION with tasks running and queued ------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE dropext');
$node->safe_psql('dropext', 'CREATE EXTENSION lantern_fdw; CREATE TABLE runs (tag text)');
# Advisory locks are per database: the tasks of dropext wait for this session.
my $locker_ext = $node->background_psql('dropext');
{
	$locker_ext->query_safe('SELECT pg_advisory_lock(1)');
	my $running = submit($node, 'dropext', 'SELECT pg_advisory_lock_shared(1)');
	wait_sql($node, 'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = 'dropext' AND application_name = 'lantern_fdw task $running' AND wait_event_type = 'Lock'",
		't', 'drop extension: a task runs');
	my @queued = map { submit($node, 'dropext', "INSERT INTO runs VALUES ('old-queued-$_')") } 1 .. 2;
	$node->safe_psql('dropext', 'DROP EXTENSION lantern_fdw');
	$locker_ext->query_safe('SELECT pg_advisory_unlock(1)');
	wait_sql($node, 'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = 'dropext' AND application_name LIKE 'lantern_fdw task%'",
		't', 'drop extension: the running task is gone');
	next_task_runs('after-drop-extension');
	is($node->safe_psql('dropext', "SELECT count(*) FROM runs WHERE tag LIKE 'old-queued-%'"), '0',
		'drop extension: the queued tasks never ran');

	$node->safe_psql('dropext', 'CREATE EXTENSION lantern_fdw');
	is($node->safe_psql('dropext', 'SELECT count(*) FROM lantern.tasks'), '0',
		'create extension: lantern.tasks starts empty');
	my $new = submit($node, 'dropext', "INSERT INTO runs VALUES ('new-1')");
	is(wait_ended($node, 'dropext', $new), 'succeeded', 'create extension: a new task runs');
	is($node->safe_psql('dropext', "SELECT count(*) FROM runs WHERE tag LIKE 'old-queued-%'"), '0',
		'create extension: the old queued tasks still never ran');
}

# DROP and CREATE in one transaction while a task of the old extension runs:
# the new extension numbers its tasks from 1 again, so the old running task 2
# meets a new task 2. The old task's outcome must not land on the new one.
{
	$locker_ext->query_safe('SELECT pg_advisory_lock(2); SELECT pg_advisory_lock(3)');
	my $old_running = submit($node, 'dropext', 'SELECT pg_advisory_lock_shared(2)');
	is($old_running, '2', 'same transaction: the old running task has jobid 2');
	wait_sql($node, 'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = 'dropext' AND application_name = 'lantern_fdw task $old_running' AND wait_event_type = 'Lock'",
		't', 'same transaction: a task of the old extension runs');
	my $old_queued = submit($node, 'dropext', "INSERT INTO runs VALUES ('old-queued-3')");
	# New task 1 waits for lock 3, so new tasks 2 and 3 stay queued meanwhile.
	my $ids = $node->safe_psql('dropext', q{
		BEGIN;
		DROP EXTENSION lantern_fdw;
		CREATE EXTENSION lantern_fdw;
		SELECT string_agg(lantern.async_task(q)::text, ',' ORDER BY n) FROM (VALUES
			(1, 'SELECT pg_advisory_lock_shared(3)'),
			(2, 'INSERT INTO runs VALUES (''fresh-2'')'),
			(3, 'INSERT INTO runs VALUES (''fresh-3'')')) v(n, q);
		COMMIT;
	});
	is($ids, '1,2,3', 'same transaction: the new extension numbers its tasks from 1');
	wait_sql($node, 'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE datname = 'dropext' AND application_name = 'lantern_fdw task 1' AND wait_event_type = 'Lock'",
		't', 'same transaction: new task 1 runs (the old task 2 was stopped)');
	# Within a couple of seconds the executor and a maintenance worker have
	# dealt with the old task 2; the new task 2 must still be queued.
	ok(!poll_for($node, 'dropext', "SELECT status <> 'queued' OR duration IS NOT NULL FROM lantern.tasks WHERE jobid = 2", 't', 2),
		'same transaction: the old task 2 did not write its outcome into the new task 2');
	is( $node->safe_psql('dropext', "SELECT status || ':' || coalesce(error_message, '') FROM lantern.tasks WHERE jobid = 2"),
		'queued:', 'same transaction: new task 2 is queued, no error');
	$locker_ext->query_safe('SELECT pg_advisory_unlock(3); SELECT pg_advisory_unlock(2)');
	wait_sql($node, 'dropext', 'SELECT count(*) = 3 FROM lantern.tasks WHERE duration IS NOT NULL',
		't', 'same transaction: the three new tasks ended');
	is( $node->safe_psql('dropext',
			"SELECT string_agg(jobid || ':' || status || ':' || coalesce(error_message, ''), ',' ORDER BY jobid) FROM lantern.tasks"),
		'1:succeeded:,2:succeeded:,3:succeeded:',
		"same transaction: each new task has its own outcome, not the old task's");
	is( $node->safe_psql('dropext',
			"SELECT string_agg(tag || ':' || n, ',' ORDER BY tag) FROM (SELECT tag, count(*) n FROM runs WHERE tag LIKE 'fresh-%' OR tag = 'old-queued-3' GROUP BY tag) s"),
		'fresh-2:1,fresh-3:1',
		'same transaction: the new tasks ran once each, the old queued one never');
}
$locker_ext->quit;

# ---- DROP DATABASE right after tasks ran there ----------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE dropme');
$node->safe_psql('dropme', 'CREATE EXTENSION lantern_fdw; CREATE TABLE runs (tag text)');
for my $i (1 .. 2)
{
	my $id = submit($node, 'dropme', "INSERT INTO runs VALUES ('x$i')");
	is(wait_ended($node, 'dropme', $id), 'succeeded', "drop database: task $i ran in dropme");
}
is( $node->safe_psql('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = 'dropme' AND application_name = 'lantern_fdw'"),
	't', 'drop database: the executor keeps an idle connection to dropme');
# DROP DATABASE gives up after waiting 5 s for other sessions to leave; the
# executor's idle connections would stay 60 s: it must close them on demand.
my $t0 = time;
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE dropme');
is($ret, 0, 'drop database: DROP DATABASE is not blocked by the idle connections') or diag($err);
note sprintf('drop database: it took %.1f s', time - $t0);
next_task_runs('after-drop-database');

# ---- DROP DATABASE with a task queued there -------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE dropq');
$node->safe_psql('dropq', 'CREATE EXTENSION lantern_fdw; CREATE TABLE runs (tag text)');
{
	my $blocker = start_blocker(3);
	my $q = submit($node, 'dropq', "INSERT INTO runs VALUES ('never')");
	($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE dropq');
	is($ret, 0, 'drop database with a queued task: dropped') or diag($err);
	$locker->query_safe('SELECT pg_advisory_unlock(3)');
	is(wait_ended($node, 'postgres', $blocker), 'succeeded', 'drop database with a queued task: the blocker ended');
	next_task_runs('after-drop-queued-database');
}

# ---- ALTER DATABASE ... RENAME with a task queued -------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE ren1');
$node->safe_psql('ren1', 'CREATE EXTENSION lantern_fdw; CREATE TABLE runs (tag text)');
{
	my $blocker = start_blocker(4);
	my $q = submit($node, 'ren1', "INSERT INTO runs VALUES ('renamed')");
	$node->safe_psql('postgres', 'ALTER DATABASE ren1 RENAME TO ren2');
	$locker->query_safe('SELECT pg_advisory_unlock(4)');
	is(wait_ended($node, 'ren2', $q), 'succeeded', 'rename: the queued task ran in the renamed database');
	is($node->safe_psql('ren2', 'SELECT count(*) FROM runs'), '1', 'rename: once');
}

# ---- DROP ROLE of a role with tasks ------------------------------------------
$node->safe_psql('postgres', 'CREATE ROLE bob LOGIN; GRANT INSERT ON runs TO bob');
{
	my $blocker = start_blocker(5);
	my $q = submit($node, 'postgres', "INSERT INTO runs VALUES ('bob')", role => 'bob');
	($ret, $out, $err) = $node->psql('postgres', 'REVOKE ALL ON runs FROM bob; DROP ROLE bob');
	if ($ret != 0)
	{
		like($err, qr/role "bob" cannot be dropped because it has active lantern_fdw tasks/,
			'drop role: refused with a clear error while its task is queued');
		$node->safe_psql('postgres', "SELECT lantern.cancel_task($q)");
		is(wait_ended($node, 'postgres', $q), 'canceled', 'drop role: its task canceled');
		($ret, $out, $err) = $node->psql('postgres', 'REVOKE ALL ON runs FROM bob; DROP ROLE bob');
		is($ret, 0, 'drop role: once no task is active it can be dropped') or diag($err);
	}
	else
	{
		pass('drop role: accepted while its task is queued');
		$locker->query_safe('SELECT pg_advisory_unlock(5)');
		is(wait_ended($node, 'postgres', $q), 'failed', 'drop role: its queued task failed instead of running');
	}
	$locker->query_safe('SELECT pg_advisory_unlock(5)');
	is(wait_ended($node, 'postgres', $blocker), 'succeeded', 'drop role: the blocker ended');
	is($node->safe_psql('postgres', "SELECT username FROM lantern.tasks WHERE jobid = $q"), 'bob',
		'drop role: the task of the dropped role can still be read');
	is($node->safe_psql('postgres', "SELECT count(*) FROM runs WHERE tag = 'bob'"), '0',
		'drop role: the task never ran');
	next_task_runs('after-drop-role');
}

$locker->quit;
is($node->safe_psql('postgres', 'SELECT count(*) FROM lantern.tasks WHERE duration IS NULL'), '0',
	'nothing is left active in postgres');
$node->stop;
check_server_log($node);
done_testing();
