# Limits: a full board (lantern_fdw.max_tasks = 8) refuses nothing: the 9th
# and later tasks wait in the store and run as slots free up, rolled-back
# ones never;
# lantern_fdw.max_parallel_tasks is never exceeded (as seen in
# pg_stat_activity), and changing it with a reload takes effect at once.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LanternFdwTest;

my $node = lantern_node('limits',
	conf => "lantern_fdw.max_tasks = 8\nlantern_fdw.max_parallel_tasks = 3\n");
$node->safe_psql('postgres', q{
	CREATE TABLE side (v text);
	-- The most task backends seen at once (sampled in the server, every few
	-- ms) until the given tasks have all ended.
	CREATE FUNCTION max_parallel_seen(ids bigint[]) RETURNS text LANGUAGE plpgsql AS $$
	DECLARE
		active_max int := 0;
		any_max int := 0;
		a int;
		n int;
		t0 timestamptz := clock_timestamp();
	BEGIN
		LOOP
			PERFORM pg_stat_clear_snapshot();
			SELECT count(*) FILTER (WHERE state = 'active'), count(*) INTO a, n
			  FROM pg_stat_activity WHERE application_name LIKE 'lantern_fdw task%';
			active_max := greatest(active_max, a);
			any_max := greatest(any_max, n);
			EXIT WHEN NOT EXISTS (SELECT 1 FROM lantern.tasks WHERE jobid = ANY (ids) AND duration IS NULL);
			IF clock_timestamp() > t0 + interval '120 s' THEN
				RETURN 'timeout';
			END IF;
			PERFORM pg_sleep(0.003);
		END LOOP;
		-- Also wait for the executor to be done with them (their rows say
		-- ended a moment before their board slots are free).
		PERFORM lantern.wait_task(id, '30 s') FROM unnest(ids) id;
		RETURN active_max || '/' || any_max;
	END $$;
});

# ---- a full board ------------------------------------------------------------
my $locker = $node->background_psql('postgres');
$locker->query_safe('SELECT pg_advisory_lock(1)');
my @held = map { submit($node, 'postgres', 'SELECT pg_advisory_xact_lock_shared(1)') } 1 .. 8;
wait_sql($node, 'postgres',
	"SELECT count(*) = 3 FROM pg_stat_activity WHERE application_name LIKE 'lantern_fdw task%' AND wait_event_type = 'Lock'",
	't', 'full: three tasks run (waiting for a lock), five are queued');
my $ids = join(',', @held);

# The board holds eight; more tasks wait in the store, never refused.
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT lantern.async_task('SELECT 1', 'ninth')});
is($ret, 0, 'full: the 9th async_task is accepted') or diag($err);
my $ninth = $out;
($ret, $out, $err) = $node->psql('postgres', q{INSERT INTO lantern.tasks (query, job_name) VALUES ('SELECT 1', 'tenth')});
is($ret, 0, 'full: the 10th, an INSERT INTO lantern.tasks, is accepted') or diag($err);
($ret, $out, $err) = $node->psql('postgres',
	q{BEGIN; INSERT INTO side VALUES ('rolled back'); SELECT lantern.async_task('INSERT INTO side VALUES (''never'')', 'rolled back'); ROLLBACK;});
is($ret, 0, 'full: a submission beyond the board, rolled back') or diag($err);
($ret, $out, $err) = $node->psql('postgres',
	q{BEGIN; SELECT lantern.async_task('INSERT INTO side VALUES (''prepared'')', 'prepared'); PREPARE TRANSACTION 'p1';});
like($err, qr/cannot PREPARE a transaction that has submitted or canceled lantern_fdw tasks/,
	'full: PREPARE TRANSACTION of a submission beyond the board is refused');
($ret, $out, $err) = $node->psql('postgres',
	q{BEGIN; SELECT lantern.async_task('SELECT 1', 'own') AS j \gset
SELECT lantern.wait_task(:j); COMMIT;});
like($err, qr/cannot wait for task \d+ in the transaction that submitted it/,
	'full: waiting for a task beyond the board in its own transaction is refused');
is($node->safe_psql('postgres', "SELECT string_agg(status, ',' ORDER BY jobid) FROM lantern.tasks WHERE job_name IN ('ninth', 'tenth')"),
	'queued,queued', 'full: the tasks beyond the board show queued');
my $cancel_me = $node->safe_psql('postgres', q{SELECT lantern.async_task('INSERT INTO side VALUES (''canceled'')', 'cancel me')});
is($node->safe_psql('postgres', "SELECT lantern.cancel_task($cancel_me)"), 't', 'full: a task beyond the board is canceled');
is($node->safe_psql('postgres', "SELECT lantern.wait_task($ninth, '0.2 s')"), 'queued',
	'full: wait_task with a timeout says queued for a task beyond the board');

$locker->query_safe('SELECT pg_advisory_unlock(1)');
# wait_task returns once the executor has freed the task's slot.
is($node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE lantern.wait_task(jobid, '60 s') = 'succeeded') FROM lantern.tasks WHERE jobid IN ($ids)"),
	'8', 'full: the eight tasks succeeded once the lock was released');
is($node->safe_psql('postgres',
		"SELECT string_agg(lantern.wait_task(jobid, '60 s'), ',' ORDER BY jobid) FROM lantern.tasks WHERE job_name IN ('ninth', 'tenth', 'cancel me')"),
	'succeeded,succeeded,canceled', 'full: the tasks beyond the board ran once slots were free; the canceled one did not');
is($node->safe_psql('postgres', "SELECT count(*) FROM lantern.tasks WHERE job_name IN ('rolled back', 'prepared', 'own')"), '0',
	'full: nothing was kept of the rolled-back submissions');
is($node->safe_psql('postgres', 'SELECT count(*) FROM side'), '0', 'full: no rolled-back or canceled task ran');
$node->safe_psql('postgres', "DELETE FROM lantern.tasks WHERE job_name = 'cancel me'");

# Twenty in one transaction with room for eight: all run, each once.
($ret, my $twenty, $err) = $node->psql('postgres',
	q{BEGIN; SELECT string_agg(lantern.async_task(format('INSERT INTO side VALUES (%L)', 'twenty ' || i))::text, ',') FROM generate_series(1, 20) i; COMMIT;});
is($ret, 0, 'full: twenty tasks in one transaction with eight slots are accepted') or diag($err);
if ($ret == 0)
{
	is($node->safe_psql('postgres',
			"SELECT count(*) FILTER (WHERE lantern.wait_task(jobid, '60 s') = 'succeeded') FROM lantern.tasks WHERE jobid IN ($twenty)"),
		'20', 'full: those twenty ran');
	is($node->safe_psql('postgres', "SELECT count(*), count(DISTINCT v) FROM side WHERE v LIKE 'twenty %'"), '20|20',
		'full: each of them once');
	$node->safe_psql('postgres', 'TRUNCATE side');
}
$locker->quit;

# ---- max_parallel_tasks ------------------------------------------------------
sub sleepers
{
	my ($n) = @_;
	return $node->safe_psql('postgres',
		"BEGIN; SELECT string_agg(lantern.async_task('SELECT pg_sleep(0.5)')::text, ',') FROM generate_series(1, $n); COMMIT;"
	);
}

my $batch = sleepers(6); # at most 7: a leaked slot must not hide the rest
is($node->safe_psql('postgres', "SELECT max_parallel_seen('{$batch}')"), '3/3',
	'max_parallel_tasks = 3: three tasks ran at once, never more');

$node->safe_psql('postgres', 'ALTER SYSTEM SET lantern_fdw.max_parallel_tasks = 1');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
wait_sql($node, 'postgres', "SELECT current_setting('lantern_fdw.max_parallel_tasks') = '1'",
	't', 'the reload lowered max_parallel_tasks to 1');
$batch = sleepers(5);
is($node->safe_psql('postgres', "SELECT max_parallel_seen('{$batch}')"), '1/1',
	'after lowering it with a reload: one task at a time, without a restart');

$node->safe_psql('postgres', 'ALTER SYSTEM SET lantern_fdw.max_parallel_tasks = 2');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
wait_sql($node, 'postgres', "SELECT current_setting('lantern_fdw.max_parallel_tasks') = '2'",
	't', 'the reload raised max_parallel_tasks to 2');
$batch = sleepers(6);
is($node->safe_psql('postgres', "SELECT max_parallel_seen('{$batch}')"), '2/2',
	'after raising it with a reload: two at a time');

# Lowered while more tasks run than the new limit: the running ones finish,
# and from then on the new limit holds.
$node->safe_psql('postgres', 'ALTER SYSTEM SET lantern_fdw.max_parallel_tasks = 3');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
wait_sql($node, 'postgres', "SELECT current_setting('lantern_fdw.max_parallel_tasks') = '3'",
	't', 'back to 3');
$locker = $node->background_psql('postgres');
$locker->query_safe('SELECT pg_advisory_lock(2)');
my @three = map { submit($node, 'postgres', 'SELECT pg_advisory_xact_lock_shared(2)') } 1 .. 3;
wait_sql($node, 'postgres',
	"SELECT count(*) = 3 FROM pg_stat_activity WHERE application_name LIKE 'lantern_fdw task%' AND wait_event_type = 'Lock'",
	't', 'three tasks hold their places');
$batch = sleepers(4);
$node->safe_psql('postgres', 'ALTER SYSTEM SET lantern_fdw.max_parallel_tasks = 1');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
wait_sql($node, 'postgres', "SELECT current_setting('lantern_fdw.max_parallel_tasks') = '1'",
	't', 'lowered to 1 while three run');
$locker->query_safe('SELECT pg_advisory_unlock(2)');
my $three = join(',', @three);
wait_sql($node, 'postgres',
	"SELECT count(*) = 3 FROM lantern.tasks WHERE jobid IN ($three) AND duration IS NOT NULL",
	't', 'the three running tasks ended');
is($node->safe_psql('postgres', "SELECT max_parallel_seen('{$batch}')"), '1/1',
	'the queued ones then ran one at a time');
$locker->quit;

is($node->safe_psql('postgres', "SELECT count(*) FROM lantern.tasks WHERE status <> 'succeeded'"), '0',
	'every task succeeded');

# ---- canceling frees the slot --------------------------------------------------
# Last in this file: a leaked slot would shrink the board for what follows.
# The sessions that cancel here (fresh psql runs) never submitted a task.
$node->safe_psql('postgres', 'ALTER SYSTEM SET lantern_fdw.max_parallel_tasks = 3; SELECT pg_reload_conf()');
wait_sql($node, 'postgres', "SELECT current_setting('lantern_fdw.max_parallel_tasks') = '3'", 't', 'cancel: back to 3');
$locker = $node->background_psql('postgres');
$locker->query_safe('SELECT pg_advisory_lock(3)');
@held = map { submit($node, 'postgres', 'SELECT pg_advisory_xact_lock_shared(3)') } 1 .. 8;
wait_sql($node, 'postgres',
	"SELECT count(*) = 3 FROM pg_stat_activity WHERE application_name LIKE 'lantern_fdw task%' AND wait_event_type = 'Lock'",
	't', 'cancel: the board is full again: three running, five queued');
is($node->safe_psql('postgres', "SELECT lantern.cancel_task($held[7])"), 't', 'cancel: a queued task is canceled');
is($node->safe_psql('postgres', "SELECT status FROM lantern.tasks WHERE jobid = $held[7]"), 'canceled',
	'cancel: it shows canceled');
($ret, $out, $err) = $node->psql('postgres', q{SELECT lantern.async_task('SELECT pg_advisory_xact_lock_shared(3)')});
is($ret, 0, 'cancel: its slot is free for a new task') or diag($err);
my @run = (@held[ 0 .. 6 ], $ret == 0 ? ($out) : ());
is($node->safe_psql('postgres', "BEGIN; SELECT lantern.cancel_task($held[6]); ROLLBACK;"), 't',
	'cancel: a cancel of another queued task, rolled back');
$locker->query_safe('SELECT pg_advisory_unlock(3)');
$locker->quit;
$ids = join(',', @run);
my $n = scalar(@run);
ok(poll_for($node, 'postgres', "SELECT count(*) FROM lantern.tasks WHERE jobid IN ($ids) AND duration IS NOT NULL", $n, 15),
	'cancel: every task not canceled ran, including the one whose cancel was rolled back');
is($node->safe_psql('postgres', "SELECT status FROM lantern.tasks WHERE jobid = $held[6]"), 'succeeded',
	'cancel: the task whose cancel was rolled back succeeded');
$node->stop;
check_server_log($node);
done_testing();
