# The executor's loopback connection is refused: pg_hba.conf 'reject', password
# authentication without a password, max_connections reached, a database that
# does not accept connections, and a server that never answers. Each task fails
# with the server's (or libpq's) own error text and a hint pointing at
# docs/setup.md; the executor keeps serving other tasks.
use strict;
use warnings;

use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use LanternFdwTest;

my $HINT =
  'HINT:  The lantern_fdw executor connects to the server like any client: allow it in pg_hba.conf (see docs/setup.md).';

my $node = lantern_node('refused',
	conf => "lantern_fdw.max_parallel_tasks = 2\n"
	  . "max_connections = 8\nsuperuser_reserved_connections = 3\n"
	  . "password_encryption = 'scram-sha-256'\n");
$node->safe_psql('postgres', q{
	CREATE ROLE alice LOGIN;
	CREATE ROLE rejected LOGIN;
	CREATE ROLE pwuser LOGIN PASSWORD 'secret';
	CREATE TABLE runs (tag text NOT NULL);
	GRANT INSERT ON runs TO alice, rejected, pwuser;
});

# Rules for the two roles first; everything else stays as initdb left it.
my $hba = $node->data_dir . '/pg_hba.conf';
my $old_hba = slurp_file($hba);
open my $fh, '>', $hba or die "cannot write $hba: $!";
print $fh "local all rejected reject\nlocal all pwuser scram-sha-256\n$old_hba";
close $fh;
$node->reload;
wait_sql($node, 'postgres',
	"SELECT count(*) = 2 FROM pg_hba_file_rules WHERE user_name IN ('{rejected}', '{pwuser}') AND error IS NULL",
	't', 'the new pg_hba.conf rules are loaded');

# ---- pg_hba.conf reject, while another task runs ---------------------------
my $sleeper = submit($node, 'postgres', 'SELECT pg_sleep(600)', role => 'alice');
wait_sql($node, 'postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'lantern_fdw task $sleeper' AND state = 'active'",
	't', 'reject: a task of alice is running');
my $rej = submit($node, 'postgres', "INSERT INTO runs VALUES ('rejected')", role => 'rejected');
is(wait_ended($node, 'postgres', $rej), 'failed', 'reject: the task of the rejected role failed');
my $msg = $node->safe_psql('postgres', "SELECT error_message FROM lantern.tasks WHERE jobid = $rej");
like($msg, qr/FATAL:  pg_hba\.conf rejects connection for host "\[local\]", user "rejected", database "postgres"/,
	"reject: the error is the server's own text");
like($msg, qr/\Q$HINT\E$/, 'reject: the error ends with the hint pointing at docs/setup.md');
is($node->safe_psql('postgres', "SELECT status FROM lantern.tasks WHERE jobid = $sleeper"),
	'running', 'reject: the other task is still running');
my $next = submit($node, 'postgres', "INSERT INTO runs VALUES ('alice-1')", role => 'alice');
is(wait_ended($node, 'postgres', $next), 'succeeded', 'reject: a task of another role runs');
is($node->safe_psql('postgres', "SELECT lantern.cancel_task($sleeper)"), 't', 'the sleeper is canceled');
is(wait_ended($node, 'postgres', $sleeper), 'canceled', 'the sleeper ended canceled');

# ---- password authentication without a password ----------------------------
my $pw = submit($node, 'postgres', "INSERT INTO runs VALUES ('pwuser')", role => 'pwuser');
is(wait_ended($node, 'postgres', $pw), 'failed', 'password: the task failed');
$msg = $node->safe_psql('postgres', "SELECT error_message FROM lantern.tasks WHERE jobid = $pw");
like($msg, qr/no password supplied/, "password: libpq's own error text");
like($msg, qr/\Q$HINT\E$/, 'password: the error ends with the hint');

# ---- max_connections reached ------------------------------------------------
# 8 connections, 3 reserved for superusers: five sessions of alice plus one of
# the superuser leave fewer free slots than reserved, so alice cannot connect.
# First the executor closes its idle connections (ALTER DATABASE asks it to).
$node->safe_psql('postgres', 'ALTER DATABASE postgres CONNECTION LIMIT -1');
wait_sql($node, 'postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name LIKE 'lantern_fdw%' AND backend_type = 'client backend'",
	't', 'max_connections: the executor closed its idle connections');
my @hold = map { $node->background_psql('postgres', extra_params => [ '-U', 'alice' ]) } 1 .. 5;
my $su = $node->background_psql('postgres');
my $full = bg_query($su,
	q{SET ROLE alice; SELECT lantern.async_task('INSERT INTO runs VALUES (''full'')'); RESET ROLE;});
ok($full =~ /^\d+$/, "max_connections: task $full submitted");
# Polling from the held superuser session: a new connection could take a slot.
my $status;
for (1 .. 1800)
{
	$status = bg_query($su, "SELECT status FROM lantern.tasks WHERE jobid = $full AND duration IS NOT NULL");
	last if $status ne '';
	$su->query_safe('SELECT pg_sleep(0.1)');
}
is($status, 'failed', 'max_connections: the task failed');
$msg = bg_query($su, "SELECT error_message FROM lantern.tasks WHERE jobid = $full");
like($msg, qr/FATAL:  (remaining connection slots are reserved|sorry, too many clients)/,
	"max_connections: the server's own error text");
like($msg, qr/\Q$HINT\E$/, 'max_connections: the error ends with the hint');
$_->quit for @hold;
$su->quit;
# quit waits for psql, not for its server process.
wait_sql($node, 'postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE usename = 'alice'",
	't', 'max_connections: the sessions holding the slots are gone');
$next = submit($node, 'postgres', "INSERT INTO runs VALUES ('alice-2')", role => 'alice');
is(wait_ended($node, 'postgres', $next), 'succeeded', 'max_connections: with slots free again, a task runs');

# ---- a database that does not accept connections ---------------------------
# max_parallel_tasks = 1 and a running blocker keep the task queued while the
# database is closed to connections.
$node->safe_psql('postgres', 'CREATE DATABASE closed');
$node->safe_psql('closed', 'CREATE EXTENSION lantern_fdw; CREATE TABLE runs (tag text)');
$node->safe_psql('postgres',
	'ALTER SYSTEM SET lantern_fdw.max_parallel_tasks = 1; SELECT pg_reload_conf()');
wait_sql($node, 'postgres', "SELECT current_setting('lantern_fdw.max_parallel_tasks') = '1'",
	't', 'closed: max_parallel_tasks is 1');
my $locker = $node->background_psql('postgres');
$locker->query_safe('SELECT pg_advisory_lock(4242)');
my $blocker = submit($node, 'postgres', 'SELECT pg_advisory_lock(4242)');
wait_sql($node, 'postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'lantern_fdw task $blocker' AND wait_event_type = 'Lock'",
	't', 'closed: the blocker runs, waiting for the lock');
my $closed_task = submit($node, 'closed', "INSERT INTO runs VALUES ('closed')");
is($node->safe_psql('closed', "SELECT status FROM lantern.tasks WHERE jobid = $closed_task"),
	'queued', 'closed: the task is queued');
$node->safe_psql('postgres', 'ALTER DATABASE closed ALLOW_CONNECTIONS false');
$locker->query_safe('SELECT pg_advisory_unlock(4242)');
is(wait_ended($node, 'postgres', $blocker), 'succeeded', 'closed: the blocker ended');
# The executor tried and was refused.
wait_sql($node, 'postgres',
	"SELECT pg_read_file('" . $node->logfile . "') LIKE '%database \"closed\" is not currently accepting connections%'",
	't', 'closed: the connection attempt was refused');
$next = submit($node, 'postgres', "INSERT INTO runs VALUES ('after-closed')");
is(wait_ended($node, 'postgres', $next), 'succeeded', 'closed: the executor keeps serving other databases');
$node->safe_psql('postgres', 'ALTER DATABASE closed ALLOW_CONNECTIONS true');
# The outcome could not be written while the database was closed; it must
# not be lost (a few seconds is plenty: the maintenance worker retries).
poll_for($node, 'closed', "SELECT duration IS NOT NULL FROM lantern.tasks WHERE jobid = $closed_task", 't', 15);
is($node->safe_psql('closed', "SELECT status FROM lantern.tasks WHERE jobid = $closed_task"), 'failed',
	'closed: once readable again, the task is recorded as failed');
$msg = $node->safe_psql('closed', "SELECT error_message FROM lantern.tasks WHERE jobid = $closed_task");
like($msg, qr/FATAL:  database "closed" is not currently accepting connections/,
	"closed: the server's own error text");
like($msg, qr/\Q$HINT\E$/, 'closed: the error ends with the hint');
is($node->safe_psql('closed', 'SELECT count(*) FROM runs'), '0', 'closed: the task did not run');
$locker->quit;

# ---- a server that accepts the TCP connection but never answers ------------
my $silent = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => 0,
	Proto => 'tcp',
	Listen => 5) or die "cannot listen: $!";
my $silent_port = $silent->sockport;
$node->safe_psql('postgres',
	"ALTER SYSTEM SET lantern_fdw.host = '127.0.0.1'; ALTER SYSTEM SET lantern_fdw.connection_options = 'port=$silent_port'; SELECT pg_reload_conf()"
);
wait_sql($node, 'postgres', "SELECT current_setting('lantern_fdw.connection_options') = 'port=$silent_port'",
	't', 'hang: the executor is pointed at a server that never answers');
my $t0 = time;
my $hang = submit($node, 'postgres', "INSERT INTO runs VALUES ('hang')");
is(wait_ended($node, 'postgres', $hang), 'failed', 'hang: the task failed');
note sprintf('hang: the task ended %.1f s after it was submitted', time - $t0);
$msg = $node->safe_psql('postgres', "SELECT error_message FROM lantern.tasks WHERE jobid = $hang");
like($msg, qr/^could not connect to the server within 10 seconds\n/, 'hang: the connection attempt was abandoned');
like($msg, qr/\Q$HINT\E$/, 'hang: the error ends with the hint');
note "hang: error_message: $msg";
$node->safe_psql('postgres',
	'ALTER SYSTEM RESET lantern_fdw.host; ALTER SYSTEM RESET lantern_fdw.connection_options; SELECT pg_reload_conf()');
close $silent;
wait_sql($node, 'postgres', "SELECT current_setting('lantern_fdw.connection_options') = ''", 't', 'hang: settings restored');
$next = submit($node, 'postgres', "INSERT INTO runs VALUES ('after-hang')");
is(wait_ended($node, 'postgres', $next), 'succeeded', 'hang: afterwards a task runs');

# ---- a connection that reaches another server -----------------------------
# The executor watches and signals a task's backend by its pid: a connection
# that leads elsewhere (another server, a pooler) is refused.
my $other = PostgreSQL::Test::Cluster->new('other');
$other->init;
$other->start;
my $elsewhere_opts = 'host=' . $other->host . ' port=' . $other->port;
$node->safe_psql('postgres',
	"ALTER SYSTEM SET lantern_fdw.connection_options = '$elsewhere_opts'; SELECT pg_reload_conf()");
wait_sql($node, 'postgres', "SELECT current_setting('lantern_fdw.connection_options') = '$elsewhere_opts'",
	't', 'elsewhere: the executor is pointed at another server');
my $elsewhere = submit($node, 'postgres', "INSERT INTO runs VALUES ('elsewhere')");
is(wait_ended($node, 'postgres', $elsewhere), 'failed', 'elsewhere: the task failed');
like(
	$node->safe_psql('postgres', "SELECT error_message FROM lantern.tasks WHERE jobid = $elsewhere"),
	qr/^the task connection did not reach a backend of this server in database "postgres"\nHINT:  lantern_fdw\.host/,
	'elsewhere: refused with a clear error');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET lantern_fdw.connection_options; SELECT pg_reload_conf()');
wait_sql($node, 'postgres', "SELECT current_setting('lantern_fdw.connection_options') = ''", 't',
	'elsewhere: settings restored');
$other->stop;
$next = submit($node, 'postgres', "INSERT INTO runs VALUES ('after-elsewhere')");
is(wait_ended($node, 'postgres', $next), 'succeeded', 'elsewhere: afterwards a task runs');

is($node->safe_psql('postgres', "SELECT string_agg(tag, ',' ORDER BY tag) FROM runs"),
	'after-closed,after-elsewhere,after-hang,alice-1,alice-2', 'only the tasks that could connect ran');
$node->stop;
check_server_log($node);
done_testing();
