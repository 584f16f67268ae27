# Helpers shared by the TAP tests of lantern_fdw (test/tap/t/*.pl).
package LanternFdwTest;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(
  lantern_node submit task_row wait_ended wait_sql executor_pid
  task_backends check_server_log poll_for bg_query $EXPECTED_RESTART_MESSAGE
  $JOBID_OF_TASK
);

# The error message recovery writes for a task that was running when the
# server restarted (src/maintenance.cpp).
our $EXPECTED_RESTART_MESSAGE =
  'ERROR:  the server restarted while the task was running; its statements that had not committed were rolled back';

# SQL for "the jobid of the task running this statement": record_start sets
# application_name to 'lantern_fdw task <jobid>' in the task's session.
our $JOBID_OF_TASK =
  q{substring(current_setting('application_name') from '\d+$')::bigint};

# A started node with lantern_fdw preloaded, the extension created in the
# database postgres. %opts: conf => extra postgresql.conf lines,
# allows_streaming => passed to init, no_extension => 1 to skip CREATE EXTENSION.
sub lantern_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => $opts{allows_streaming} // 0);
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = 'lantern_fdw'\n"
		  . ($opts{conf} // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION lantern_fdw')
	  unless $opts{no_extension};
	return $node;
}

# Submits a task as the connecting user (or %opts user => role), returns its jobid.
sub submit
{
	my ($node, $db, $query, %opts) = @_;
	my $q = $query;
	$q =~ s/'/''/g;
	my $sql = "SELECT lantern.async_task('$q')";
	$sql = "SET ROLE $opts{role}; $sql" if $opts{role};
	my @extra = $opts{user} ? (extra_params => [ '-U', $opts{user} ]) : ();
	return $node->safe_psql($db, $sql, @extra);
}

# status|error_message|duration IS NOT NULL of one task (as superuser).
sub task_row
{
	my ($node, $db, $jobid) = @_;
	return $node->safe_psql($db,
		"SELECT status, duration IS NOT NULL, error_message FROM lantern.tasks WHERE jobid = $jobid"
	);
}

# Waits until the task has ended (duration set); returns its status.
sub wait_ended
{
	my ($node, $db, $jobid) = @_;
	$node->poll_query_until($db,
		"SELECT duration IS NOT NULL FROM lantern.tasks WHERE jobid = $jobid")
	  or diag("task $jobid in $db did not end: "
		  . $node->safe_psql($db, "SELECT * FROM lantern.tasks WHERE jobid = $jobid"));
	return $node->safe_psql($db,
		"SELECT status FROM lantern.tasks WHERE jobid = $jobid");
}

# poll_query_until with a diagnostic name; returns true on success.
sub wait_sql
{
	my ($node, $db, $sql, $expected, $what) = @_;
	my $ok = $node->poll_query_until($db, $sql, $expected // 't');
	ok($ok, "wait: $what") if defined $what;
	return $ok;
}

# Like poll_query_until, but gives up after $seconds (for waits that a bug
# could make endless: the test then fails in bounded time). True on success.
sub poll_for
{
	my ($node, $db, $sql, $expected, $seconds) = @_;
	my $deadline = Time::HiRes::time() + $seconds;
	my $out = '';
	while (Time::HiRes::time() < $deadline)
	{
		my ($stdout, $stderr);
		$node->psql($db, $sql, stdout => \$stdout, stderr => \$stderr);
		$out = $stdout // '';
		return 1 if $out eq $expected;
		usleep(100_000);
	}
	diag("gave up after $seconds s waiting for '$expected' from: $sql\nlast output: $out");
	return 0;
}

# The output of one statement in a session of $node->background_psql, without
# trailing newline; dies if the statement fails. BackgroundPsql of PostgreSQL
# 16.2 (fixed in later minor releases) returns its separator line instead of
# an empty result, can leave the separator's newline at the start of the next
# statement's output, and never clears stderr, so that query_safe dies on any
# later statement once one has written to stderr.
sub bg_query
{
	my ($session, $sql) = @_;
	$session->{stderr} = '';
	my $out = $session->query_safe($sql);
	$out =~ s/^background_psql: QUERY_SEPARATOR.*$//mg;
	$out =~ s/^\n+//;
	$out =~ s/\n+$//;
	return $out;
}

# The pid of the executor, '' if it is not running.
sub executor_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE backend_type = 'lantern_fdw executor'"
	);
}

# Number of task backends (application_name 'lantern_fdw task N').
sub task_backends
{
	my ($node, $extra) = @_;
	$extra //= 'true';
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'lantern_fdw task%' AND $extra"
	);
}

# The server log shows no crash: no PANIC, no assertion failure, no
# process terminated by SIGSEGV/SIGABRT/SIGBUS (in English, or in German for
# the node of 010_smart_shutdown.pl that runs with lc_messages = de_DE).
sub check_server_log
{
	my ($node) = @_;
	my $log = slurp_file($node->logfile);
	my $name = $node->name;
	my @bad = grep {
		/PANIC|PANIK|TRAP:|terminated by signal (?:6|7|11)\b|von Signal (?:6|7|11) beendet|server process .* was terminated by exception/
	} split /\n/, $log;
	is(scalar(@bad), 0, "server log of $name has no PANIC, assertion failure or crash")
	  or diag(join("\n", @bad[0 .. ($#bad < 20 ? $#bad : 19)]));
}

1;
