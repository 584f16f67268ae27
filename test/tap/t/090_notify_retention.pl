# Completion notifications on channel lantern_tasks (through the task's own
# connection and through the maintenance worker), and lantern_fdw.task_retention
# removing exactly the old ended tasks.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LanternFdwTest;

my $node = lantern_node('notify');
$node->safe_psql('postgres', 'CREATE ROLE limited LOGIN CONNECTION LIMIT 0');

# A LISTENing session learns of each end: the payload names jobid and status.
my $out = $node->safe_psql('postgres', q{
LISTEN lantern_tasks;
SELECT lantern.async_task('SELECT 1') AS ok_job \gset
SELECT lantern.wait_task(:ok_job, '60s');
SELECT lantern.async_task('SELECT 1/0') AS bad_job \gset
SELECT lantern.wait_task(:bad_job, '60s');
SELECT 'done';
});
like($out, qr/Asynchronous notification "lantern_tasks" with payload "\{"jobid": 1, "status": "succeeded"\}"/,
	'notification of a succeeded task');
like($out, qr/Asynchronous notification "lantern_tasks" with payload "\{"jobid": 2, "status": "failed"\}"/,
	'notification of a failed task');

# A task whose connection is refused ends through the maintenance worker,
# which notifies too.
$out = $node->safe_psql('postgres', q{
LISTEN lantern_tasks;
SET ROLE limited;
SELECT lantern.async_task('SELECT 1') AS refused_job \gset
RESET ROLE;
SELECT lantern.wait_task(:refused_job, '60s');
SELECT 'done';
});
like($out, qr/"\{"jobid": 3, "status": "failed"\}"/, 'notification of a task whose connection was refused');
like(
	$node->safe_psql('postgres', 'SELECT error_message FROM lantern.tasks WHERE jobid = 3'),
	qr/too many connections for role "limited"/,
	'its error is the server\'s own');

# Retention: C (active, older than everything) and B (recent) stay, A (ended
# longer ago than the retention period) goes. Retention is set only once A
# is old enough, so that the pass it triggers at once removes A and not B.
$node->safe_psql('postgres', 'DELETE FROM lantern.tasks');
my $c = submit($node, 'postgres', 'SELECT pg_sleep(120)');
wait_sql($node, 'postgres', "SELECT status = 'running' FROM lantern.tasks WHERE jobid = $c", 't', 'C runs');
my $a = submit($node, 'postgres', 'SELECT 1');
is(wait_ended($node, 'postgres', $a), 'succeeded', 'A ended');
wait_sql($node, 'postgres',
	"SELECT clock_timestamp() - (started_at + duration) > interval '9 s' FROM lantern.tasks WHERE jobid = $a",
	't', 'A ended more than 9 s ago');
my $b = submit($node, 'postgres', 'SELECT 2');
is(wait_ended($node, 'postgres', $b), 'succeeded', 'B ended');
$node->safe_psql('postgres', "ALTER SYSTEM SET lantern_fdw.task_retention = '8s'; SELECT pg_reload_conf();");
wait_sql($node, 'postgres', "SELECT count(*) = 0 FROM lantern.tasks WHERE jobid = $a", 't', 'A was removed');
is($node->safe_psql('postgres', "SELECT string_agg(jobid::text, ',' ORDER BY jobid) FROM lantern.tasks"),
	"$c,$b", 'the active task C and the recent task B remain');
is($node->safe_psql('postgres', "SELECT status FROM lantern.tasks WHERE jobid = $c"), 'running', 'C still runs');

$node->safe_psql('postgres', "ALTER SYSTEM RESET lantern_fdw.task_retention; SELECT pg_reload_conf();");
$node->safe_psql('postgres', "SELECT lantern.cancel_task($c)");
is(wait_ended($node, 'postgres', $c), 'canceled', 'C canceled');

check_server_log($node);
$node->stop;
done_testing();
