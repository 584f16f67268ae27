# Failover: the durable store is replicated. On a streaming standby,
# submitting (and canceling) is refused with a read-only error and no executor
# runs. After the primary dies (-m immediate) with a task running and tasks
# queued (and one scheduled for later), the promoted standby runs the queued
# tasks once (the scheduled one when due) and records the
# running one as failed with the restart message.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LanternFdwTest;

my $primary = lantern_node('primary', allows_streaming => 1,
	conf => "lantern_fdw.max_parallel_tasks = 1\n");
$primary->safe_psql('postgres', 'CREATE TABLE runs (tag text)');
my $done = submit($primary, 'postgres', "INSERT INTO runs VALUES ('before-backup')");
is(wait_ended($primary, 'postgres', $done), 'succeeded', 'a task runs on the primary');

$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

# ---- on the standby ------------------------------------------------------------
my ($ret, $out, $err) = $standby->psql('postgres', q{SELECT lantern.async_task('SELECT 1')});
isnt($ret, 0, 'standby: async_task is refused');
like($err, qr/ERROR:  cannot submit a lantern_fdw task during recovery|read-only/,
	'standby: with a read-only / recovery error');
($ret, $out, $err) = $standby->psql('postgres', q{INSERT INTO lantern.tasks (query) VALUES ('SELECT 1')});
isnt($ret, 0, 'standby: INSERT INTO lantern.tasks is refused');
like($err, qr/recovery|read-only/, 'standby: INSERT gets a read-only / recovery error');
($ret, $out, $err) = $standby->psql('postgres', "SELECT lantern.cancel_task($done)");
isnt($ret, 0, 'standby: cancel_task is refused');
like($err, qr/recovery|read-only/, 'standby: cancel_task gets a read-only / recovery error');
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'lantern_fdw%'"),
	'0', 'standby: no executor (or maintenance worker) runs before promotion');

# ---- tasks running and queued on the primary ---------------------------------
my $locker = $primary->background_psql('postgres');
$locker->query_safe('SELECT pg_advisory_lock(1)');
my $running = submit($primary, 'postgres', 'SELECT pg_advisory_lock_shared(1)');
wait_sql($primary, 'postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'lantern_fdw task $running' AND wait_event_type = 'Lock'",
	't', 'primary: a task runs (waiting for a lock)');
my @queued = map { submit($primary, 'postgres', "INSERT INTO runs VALUES ('queued-$_')") } 1 .. 3;
my $ids = join(',', @queued);
# A scheduled task, due after the failover.
my $sched = $primary->safe_psql('postgres',
	"SELECT lantern.async_task('INSERT INTO runs VALUES (''scheduled'')', 'scheduled', now() + interval '10 s')");
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', "SELECT status FROM lantern.tasks WHERE jobid = $sched"), 'scheduled',
	'standby: the replicated store shows the scheduled task');
($ret, $out, $err) = $standby->psql('postgres', q{SELECT lantern.async_task('SELECT 1', 'later', now() + interval '1 hour')});
like($err, qr/recovery|read-only/, 'standby: async_task with run_at is refused like any submission');
is( $standby->safe_psql('postgres',
		"SELECT string_agg(jobid || ':' || status, ',' ORDER BY jobid) FROM lantern.tasks WHERE jobid IN ($running, $ids)"),
	join(',', "$running:running", map { "$_:queued" } @queued),
	'standby: the replicated store shows the running and the queued tasks');
is($standby->safe_psql('postgres', "SELECT count(*) FROM runs WHERE tag LIKE 'queued-%'"), '0',
	'standby: nothing has run the queued tasks');

# ---- the primary dies; the standby is promoted ------------------------------
$primary->stop('immediate');
$locker->quit;
$standby->promote;
wait_sql($standby, 'postgres', "SELECT NOT pg_is_in_recovery()", 't', 'the standby is promoted');
wait_sql($standby, 'postgres',
	"SELECT count(*) = 3 FROM lantern.tasks WHERE jobid IN ($ids) AND duration IS NOT NULL",
	't', 'promoted: the queued tasks ended');
is( $standby->safe_psql('postgres',
		"SELECT string_agg(status, ',') FROM lantern.tasks WHERE jobid IN ($ids)"),
	'succeeded,succeeded,succeeded', 'promoted: the queued tasks succeeded');
wait_sql($standby, 'postgres',
	"SELECT duration IS NOT NULL FROM lantern.tasks WHERE jobid = $running",
	't', 'promoted: the task that was running has ended');
is(task_row($standby, 'postgres', $running), "failed|t|$EXPECTED_RESTART_MESSAGE",
	'promoted: the task that was running failed with the restart message and a duration');
my $new = submit($standby, 'postgres', "INSERT INTO runs VALUES ('after-promotion')");
is(wait_ended($standby, 'postgres', $new), 'succeeded', 'promoted: a new task runs');
is(wait_ended($standby, 'postgres', $sched), 'succeeded', 'promoted: the scheduled task ran');
is($standby->safe_psql('postgres', "SELECT run_started_at >= run_at FROM lantern.task_details WHERE jobid = $sched"), 't',
	'promoted: the scheduled task did not start before its run_at');
ok($new > $queued[-1], "promoted: the new task has a new jobid ($new)");
is( $standby->safe_psql('postgres',
		"SELECT string_agg(tag || ':' || n, ',' ORDER BY tag) FROM (SELECT tag, count(*) n FROM runs GROUP BY tag) s"),
	'after-promotion:1,before-backup:1,queued-1:1,queued-2:1,queued-3:1,scheduled:1',
	'promoted: every task ran exactly once');

$standby->stop;
check_server_log($primary);
check_server_log($standby);
done_testing();
