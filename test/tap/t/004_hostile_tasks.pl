# Hostile or odd tasks: each ends with a sensible status, the executor survives
# (same pid) and the next task runs.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use LanternFdwTest;

my $node = lantern_node('hostile');
$node->safe_psql('postgres', q{
	CREATE ROLE alice LOGIN;
	CREATE ROLE grp NOLOGIN;
	GRANT grp TO alice;
	CREATE ROLE stranger NOLOGIN;
	CREATE TABLE t (v text);
	GRANT INSERT, SELECT ON t TO alice, grp;
});

my $executor = executor_pid($node);
ok($executor > 0, "the executor runs (pid $executor)");
my $marker = 0;

# Submits $query (as the superuser, or SET ROLE $role), waits for its end,
# returns (jobid, status, error_message).
sub run_task
{
	my ($query, $role) = @_;
	my $id = submit($node, 'postgres', $query, $role ? (role => $role) : ());
	my $status = wait_ended($node, 'postgres', $id);
	my $err = $node->safe_psql('postgres', "SELECT coalesce(error_message, '') FROM lantern.tasks WHERE jobid = $id");
	return ($id, $status, $err);
}

# The executor is the same process and runs the next task.
sub executor_serves
{
	my ($what) = @_;
	$marker++;
	my ($id, $status) = run_task("INSERT INTO t VALUES ('marker-$marker')");
	is($status, 'succeeded', "$what: the next task runs");
	is(executor_pid($node), $executor, "$what: the executor survived");
}

# ---- a task that terminates its own backend ---------------------------------
my ($id, $status, $err) = run_task('SELECT pg_terminate_backend(pg_backend_pid())');
is($status, 'failed', 'self-terminate: failed');
like($err, qr/terminating connection due to administrator command/, 'self-terminate: the server says why');
executor_serves('self-terminate');

# ---- a task that cancels its own statement ---------------------------------
($id, $status, $err) = run_task('SELECT pg_cancel_backend(pg_backend_pid()); SELECT pg_sleep(30)');
is($status, 'failed', 'self-cancel: failed (nobody canceled it through lantern_fdw)');
like($err, qr/canceling statement due to user request/, 'self-cancel: the server says why');
executor_serves('self-cancel');

# ---- a task that leaves a transaction open ----------------------------------
($id, $status, $err) = run_task("BEGIN; INSERT INTO t VALUES ('open-xact')");
is($status, 'failed', 'open transaction: failed');
like($err, qr/the task ended inside a transaction block; its transaction was rolled back/,
	'open transaction: the error says so');
is($node->safe_psql('postgres', "SELECT count(*) FROM t WHERE v = 'open-xact'"), '0',
	'open transaction: its insert was rolled back');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'lantern_fdw%' AND state LIKE 'idle in transaction%'"),
	'0', 'open transaction: no task connection is left idle in a transaction');
($id, $status, $err) = run_task("BEGIN; SELECT 1/0");
is($status, 'failed', 'aborted transaction block: failed');
like($err, qr/division by zero/, 'aborted transaction block: the first error is reported');
executor_serves('open transaction');

# ---- COPY FROM STDIN / COPY TO STDOUT ---------------------------------------
($id, $status, $err) = run_task('COPY t FROM STDIN');
is($status, 'failed', 'COPY FROM STDIN: failed');
like($err, qr/COPY FROM STDIN is not supported in lantern_fdw tasks/, 'COPY FROM STDIN: the error says why');
executor_serves('COPY FROM STDIN');
($id, $status, $err) =
  run_task("COPY (SELECT g, repeat('x', 50) FROM generate_series(1, 200000) g) TO STDOUT; INSERT INTO t VALUES ('after-copy')");
is($status, 'succeeded', 'COPY TO STDOUT: succeeded (its data discarded)');
is($node->safe_psql('postgres', "SELECT count(*) FROM t WHERE v = 'after-copy'"), '1',
	'COPY TO STDOUT: the statement after it ran');
executor_serves('COPY TO STDOUT');

# ---- LISTEN ------------------------------------------------------------------
($id, $status, $err) = run_task('LISTEN hostile_channel');
is($status, 'succeeded', 'LISTEN: succeeded');
$node->safe_psql('postgres', "NOTIFY hostile_channel, 'are you there'");
executor_serves('LISTEN then NOTIFY');

# ---- SET ROLE / RESET ROLE / SET SESSION AUTHORIZATION ----------------------
($id, $status, $err) = run_task("SET ROLE stranger; INSERT INTO t VALUES ('as-stranger')", 'alice');
is($status, 'failed', 'SET ROLE to a role the submitter is not a member of: failed');
like($err, qr/permission denied to set role "stranger"/, 'SET ROLE: the server refuses');
($id, $status, $err) = run_task("SET ROLE postgres; INSERT INTO t VALUES ('as-postgres')", 'alice');
is($status, 'failed', 'SET ROLE to the superuser: failed');
like($err, qr/permission denied to set role "postgres"/, 'SET ROLE postgres: the server refuses');
($id, $status, $err) = run_task("SET SESSION AUTHORIZATION postgres; INSERT INTO t VALUES ('as-postgres-2')", 'alice');
is($status, 'failed', 'SET SESSION AUTHORIZATION: failed');
like($err, qr/permission denied to set session authorization/, 'SET SESSION AUTHORIZATION: the server refuses');
# A task of the group role grp (submitted by alice after SET ROLE grp): RESET
# ROLE reaches alice, whom the submitter is; nothing else.
my $gid = $node->safe_psql('postgres',
	q{SET ROLE grp; SELECT lantern.async_task('INSERT INTO t VALUES (''grp:'' || current_user); RESET ROLE; INSERT INTO t VALUES (''reset:'' || current_user)')},
	extra_params => [ '-U', 'alice' ]);
is(wait_ended($node, 'postgres', $gid), 'succeeded', 'RESET ROLE in a group-role task: succeeded');
is( $node->safe_psql('postgres', "SELECT string_agg(v, ',' ORDER BY v) FROM t WHERE v LIKE 'grp:%' OR v LIKE 'reset:%'"),
	'grp:grp,reset:alice', 'RESET ROLE: the task ran as grp, then as its submitter alice');
is($node->safe_psql('postgres', "SELECT count(*) FROM t WHERE v LIKE 'as-%'"), '0',
	'no statement ran as a role out of reach');
executor_serves('SET ROLE');

# ---- forging the recording functions ----------------------------------------
($id, $status, $err) = run_task("SELECT _lantern_fdw.record_end($JOBID_OF_TASK, 'succeeded', null)", 'alice');
is($status, 'failed', 'forged record_end from the task itself: the task failed');
like($err, qr/only the lantern_fdw executor may record the end of task $id/, 'forged record_end: refused');
($id, $status, $err) = run_task("SELECT * FROM _lantern_fdw.record_start($JOBID_OF_TASK)", 'alice');
is($status, 'failed', 'forged record_start from the task itself: the task failed');
like($err, qr/only the lantern_fdw executor may record the start of task $id/, 'forged record_start: refused');
# The superuser's task too: the check is against the board, not privileges.
($id, $status, $err) = run_task("SELECT _lantern_fdw.record_end($JOBID_OF_TASK, 'canceled', 'forged')");
is($status, 'failed', 'forged record_end by a superuser task: failed');
like($err, qr/only the lantern_fdw executor may record the end of task $id/, 'superuser forging: refused');
# A plain session forging the end of a running task.
my $locker = $node->background_psql('postgres');
$locker->query_safe('SELECT pg_advisory_lock(77)');
my $victim = submit($node, 'postgres', 'SELECT pg_advisory_lock(77)');
wait_sql($node, 'postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'lantern_fdw task $victim' AND wait_event_type = 'Lock'",
	't', 'forging: a task is running');
my ($ret, $out, $stderr) = $node->psql('postgres', "SELECT _lantern_fdw.record_end($victim, 'succeeded', null)");
like($stderr, qr/only the lantern_fdw executor may record the end of task $victim/,
	'a session forging the end of a running task is refused');
($ret, $out, $stderr) = $node->psql('postgres', "SELECT * FROM _lantern_fdw.record_start($victim)",
	extra_params => [ '-U', 'alice' ]);
like($stderr, qr/only the lantern_fdw executor may record the start of task $victim/,
	'a session forging the start of a running task is refused');
is($node->safe_psql('postgres', "SELECT status FROM lantern.tasks WHERE jobid = $victim"), 'running',
	'forging: the task still shows running');
$locker->query_safe('SELECT pg_advisory_unlock(77)');
$locker->quit;
is(wait_ended($node, 'postgres', $victim), 'succeeded', 'forging: the task ends with its real outcome');
executor_serves('forging');

# ---- a task that deletes its own row ------------------------------------------
($id, $status, $err) = run_task("DELETE FROM lantern.tasks WHERE jobid = $JOBID_OF_TASK", 'alice');
is($status, 'failed', 'self-delete: a running task cannot delete its own row');
like($err, qr/cannot delete task $id because it has not ended/, 'self-delete: refused with a clear error');
executor_serves('self-delete');

# ---- a task that submits a task ----------------------------------------------
($id, $status, $err) = run_task(
	"SELECT lantern.async_task('INSERT INTO t VALUES (''child of '' || current_user)')", 'alice');
is($status, 'succeeded', 'nested: a task may submit a task');
is(wait_ended($node, 'postgres', $id + 1), 'succeeded', 'nested: the child task ended');
is($node->safe_psql('postgres', "SELECT count(*) FROM t WHERE v = 'child of alice'"), '1',
	'nested: the child task ran, as the same role');
is($node->safe_psql('postgres', "SELECT username || ':' || status FROM lantern.tasks WHERE jobid = $id + 1"),
	'alice:succeeded', 'nested: the child is recorded as alice\'s');
executor_serves('nested');

# ---- a task that cancels itself ----------------------------------------------
($id, $status, $err) = run_task("SELECT lantern.cancel_task($JOBID_OF_TASK); SELECT pg_sleep(30); INSERT INTO t VALUES ('after-self-cancel')");
is($status, 'canceled', 'self-cancel through lantern: canceled');
is($err, 'Canceled by user', 'self-cancel through lantern: the usual message');
is($node->safe_psql('postgres', "SELECT count(*) FROM t WHERE v = 'after-self-cancel'"), '0',
	'self-cancel through lantern: its later statements did not run');
executor_serves('self-cancel through lantern');

# ---- a task that floods the executor with notices -------------------------------
my $exec_status = slurp_file("/proc/$executor/status");
my ($anon_before) = $exec_status =~ /^RssAnon:\s+(\d+) kB/m;
($id, $status, $err) = run_task(
	"DO \$\$ BEGIN FOR i IN 1..200000 LOOP RAISE NOTICE 'notice number %', i; END LOOP; END \$\$");
is($status, 'succeeded', '200,000 notices: succeeded');
$exec_status = slurp_file("/proc/$executor/status");
my ($anon_after) = $exec_status =~ /^RssAnon:\s+(\d+) kB/m;
ok($anon_after - $anon_before < 4 * 1024,
	sprintf('200,000 notices: executor RssAnon grew by %d kB (< 4 MB)', $anon_after - $anon_before));
executor_serves('notices');

# ---- a task returning millions of rows: the executor's memory stays flat ------
sub rss_kb
{
	my ($pid) = @_;
	my $status = slurp_file("/proc/$pid/status");
	my ($rss) = $status =~ /^VmRSS:\s+(\d+) kB/m;
	my ($anon) = $status =~ /^RssAnon:\s+(\d+) kB/m;
	return ($rss, $anon);
}
my ($rss0, $anon0) = rss_kb($executor);
my $big = submit($node, 'postgres',
	"SELECT g, 'row number ' || g FROM generate_series(1, 5000000) g");
my ($max_rss, $max_anon, $samples) = (0, 0, 0);
for (1 .. 6000)    # sampling every 50 ms, at most 5 minutes
{
	my ($rss, $anon) = rss_kb($executor);
	$max_rss = $rss if $rss > $max_rss;
	$max_anon = $anon if $anon > $max_anon;
	$samples++;
	last
	  if $node->safe_psql('postgres', "SELECT duration IS NOT NULL FROM lantern.tasks WHERE jobid = $big") eq 't';
	usleep(50_000);
}
is($node->safe_psql('postgres', "SELECT status FROM lantern.tasks WHERE jobid = $big"),
	'succeeded', '5 million rows: succeeded');
note "executor memory: VmRSS $rss0 kB -> max $max_rss kB, RssAnon $anon0 kB -> max $max_anon kB ($samples samples)";
ok($max_rss - $rss0 < 8 * 1024,
	sprintf('5 million rows: executor VmRSS grew by %d kB (< 8 MB)', $max_rss - $rss0));
ok($max_anon - $anon0 < 4 * 1024,
	sprintf('5 million rows: executor RssAnon grew by %d kB (< 4 MB)', $max_anon - $anon0));
executor_serves('5 million rows');

is($node->safe_psql('postgres', "SELECT count(*) FROM t WHERE v LIKE 'marker-%'"), $marker,
	'every marker task ran once');
$node->stop;
check_server_log($node);
done_testing();
