# Ready connections (docs/design.md, "Connections"): the executor opens a
# task's connection while the submitting transaction is still open, and the
# task runs on that very backend once the transaction commits; an aborted
# submission's connection only waits, idle, and the task never runs; idle
# connections are bounded by lantern_fdw.max_idle_connections (also after
# a burst, and 0 keeps none); a pair whose tasks keep arriving gets a
# replacement connection; DROP DATABASE is not blocked by them.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LanternFdwTest;

my $node = lantern_node('ready',
	conf => "lantern_fdw.max_parallel_tasks = 4\nlantern_fdw.idle_connection_timeout = '600s'\n"
	  . "lantern_fdw.max_idle_connections = 2\n");
$node->safe_psql('postgres', 'CREATE DATABASE pre');
$node->safe_psql('pre', 'CREATE EXTENSION lantern_fdw; CREATE TABLE runs (tag text, pid int)');

# The executor's connections to database $db that run no task.
my $spare_sql = sub {
	my ($db) = @_;
	return "SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '') AS pids FROM pg_stat_activity "
	  . "WHERE datname = '$db' AND application_name = 'lantern_fdw' AND backend_type = 'client backend'";
};
my $spare_count = sub {
	my ($db) = @_;
	return "SELECT count(*) FROM pg_stat_activity "
	  . "WHERE datname = '$db' AND application_name = 'lantern_fdw' AND backend_type = 'client backend'";
};
is($node->safe_psql('postgres', $spare_sql->('pre')), '', 'no connection to pre before any task');

# ---- an aborted submission: its connection is opened, the task never runs -------
my $s = $node->background_psql('pre');
bg_query($s, 'BEGIN');
my $aborted = bg_query($s, "SELECT lantern.async_task('INSERT INTO runs VALUES (''aborted'', pg_backend_pid())')");
ok(poll_for($node, 'postgres', $spare_count->('pre'), '1', 60),
	'aborted: a connection to pre is opened while the submitting transaction is open');
my $pre_pid = $node->safe_psql('postgres', $spare_sql->('pre'));
bg_query($s, 'ROLLBACK');
is($node->safe_psql('pre', "SELECT count(*) FROM lantern.tasks WHERE jobid = $aborted"),
	'0', 'aborted: the task does not exist');

# The next task of the pair runs on that connection (the aborted one never ran).
my $next = submit($node, 'pre', "INSERT INTO runs VALUES ('next', pg_backend_pid())");
is(wait_ended($node, 'pre', $next), 'succeeded', 'aborted: the next task succeeded');
is($node->safe_psql('pre', "SELECT string_agg(tag || ':' || (pid = $pre_pid), ',') FROM runs"),
	'next:true', 'aborted: the task never ran; the next task ran on the connection opened for it');

# ---- a committed submission runs on the connection opened before its commit ------
# A second role, so that the idle connection of the superuser does not serve it.
$node->safe_psql('postgres', 'CREATE ROLE bob LOGIN');
$node->safe_psql('pre', 'GRANT INSERT ON runs TO bob');
my $bob_spares = "SELECT coalesce(string_agg(pid::text, ','), '') AS pids FROM pg_stat_activity "
  . "WHERE datname = 'pre' AND usename = 'bob' AND application_name = 'lantern_fdw'";
my $b = $node->background_psql('pre', extra_params => [ '-U', 'bob' ]);
bg_query($b, 'BEGIN');
my $committed = bg_query($b, "SELECT lantern.async_task('INSERT INTO runs VALUES (''committed'', pg_backend_pid())')");
ok(poll_for($node, 'postgres', "SELECT count(*) FROM ($bob_spares) s WHERE pids <> ''", '1', 60),
	'committed: a connection as bob is opened before the commit');
my $bob_pid = $node->safe_psql('postgres', $bob_spares);
like($bob_pid, qr/^\d+$/, 'committed: one connection as bob');
bg_query($b, 'COMMIT');
$b->quit;
is(wait_ended($node, 'pre', $committed), 'succeeded', 'committed: the task succeeded');
is($node->safe_psql('pre', "SELECT pid FROM runs WHERE tag = 'committed'"),
	$bob_pid, 'committed: it ran on the connection opened before the commit');
is($node->safe_psql('pre', "SELECT count(*) FROM runs WHERE tag = 'committed'"), '1', 'committed: once');

# ---- a burst: at most max_idle_connections stay ------------------------------------
# Four tasks at once, held by an advisory lock (of database postgres, where
# they run) so that four connections are in use.
my $l = $node->background_psql('postgres');
$l->query_safe('SELECT pg_advisory_lock(7)');
my @burst = map { submit($node, 'postgres', 'SELECT pg_advisory_lock_shared(7)') } 1 .. 4;
wait_sql($node, 'postgres',
	"SELECT count(*) = 4 FROM pg_stat_activity WHERE application_name LIKE 'lantern_fdw task%' AND wait_event_type = 'Lock'",
	't', 'burst: four tasks run at once');
$l->query_safe('SELECT pg_advisory_unlock(7)');
$l->quit;
is(wait_ended($node, 'postgres', $_), 'succeeded', "burst: task $_ succeeded") for @burst;
# Two idle connections were already kept (pre, as the superuser and as bob):
# the four coming back replace the oldest, and no more than two stay.
ok(poll_for($node, 'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lantern_fdw' AND backend_type = 'client backend'",
		'2', 60),
	'burst: two idle connections stay (max_idle_connections = 2)');
is($node->safe_psql('postgres', $spare_count->('postgres')), '2',
	'burst: the two kept are those of the burst (the most recent)');
# A task of the pair starts on one of them.
my $after = submit($node, 'postgres', 'SELECT 1');
is(wait_ended($node, 'postgres', $after), 'succeeded', 'burst: the next task succeeded');

# ---- DROP DATABASE is not blocked by the idle connections to it -----------------
$s->quit;
my $pre_idle = $node->safe_psql('pre', "SELECT lantern.async_task('SELECT 1')");
is(wait_ended($node, 'pre', $pre_idle), 'succeeded', 'drop database: a task ran in pre');
ok(poll_for($node, 'postgres', "SELECT pids <> '' FROM (" . $spare_sql->('pre') . ") s", 't', 60),
	'drop database: an idle connection to pre is kept');
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE pre');
is($ret, 0, 'drop database: DROP DATABASE pre is not blocked by the idle connection') or diag($err);

# ---- a pair whose tasks keep arriving gets a replacement ---------------------------
# The second task of a pair takes the connection the first one left; as the
# pair's tasks keep arriving, the executor opens another in the background.
$node->safe_psql('postgres', 'CREATE DATABASE rep');
$node->safe_psql('rep', 'CREATE EXTENSION lantern_fdw; CREATE TABLE runs (tag text, pid int)');
my $r1 = $node->safe_psql('rep', "SELECT lantern.async_task('INSERT INTO runs VALUES (''r1'', pg_backend_pid())')");
is(wait_ended($node, 'rep', $r1), 'succeeded', 'replacement: the first task ran');
ok(poll_for($node, 'postgres', $spare_count->('rep'), '1', 60), 'replacement: its connection stays idle');
my $r2 = $node->safe_psql('rep', "SELECT lantern.async_task('INSERT INTO runs VALUES (''r2'', pg_backend_pid())')");
is(wait_ended($node, 'rep', $r2), 'succeeded', 'replacement: the second task ran');
is($node->safe_psql('rep', "SELECT count(DISTINCT pid) FROM runs"), '1',
	'replacement: the second task ran on the first one\'s connection');
ok(poll_for($node, 'postgres', $spare_count->('rep'), '2', 60),
	'replacement: a second connection was opened for the pair, and both stay (max_idle_connections = 2)');

# ---- max_idle_connections = 0: nothing is kept ----------------------------------
$node->safe_psql('postgres', "ALTER SYSTEM SET lantern_fdw.max_idle_connections = 0; SELECT pg_reload_conf()");
ok(poll_for($node, 'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lantern_fdw' AND backend_type = 'client backend'",
		'0', 60),
	'max_idle_connections = 0: the reload closed the idle connections');
my $none = submit($node, 'postgres', "SELECT 1");
is(wait_ended($node, 'postgres', $none), 'succeeded', 'max_idle_connections = 0: a task still runs');
ok(poll_for($node, 'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'lantern_fdw%' AND backend_type = 'client backend'",
		'0', 60),
	'max_idle_connections = 0: its connection is closed when it ends');
is($node->safe_psql('postgres', "SELECT status FROM lantern.tasks WHERE status <> 'succeeded'"), '',
	'every task succeeded');

check_server_log($node);
$node->stop;
done_testing();
