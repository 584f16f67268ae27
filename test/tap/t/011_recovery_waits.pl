# Recovery that cannot go on waits on the board's condition variable (at
# most a second at a time, docs/design.md): it does not spin. Two cases: the
# board is full of recovered tasks, and a canceling transaction holds the
# lock of the rows of the earlier server life. The maintenance worker's CPU
# time over a few seconds of each is compared with the wall time that passed
# (a ratio, not a timing threshold): a worker that spins uses about all of it.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();
use Time::HiRes ();
use LanternFdwTest;

# utime + stime of a process, in seconds (/proc/<pid>/stat, fields 14 and 15).
sub cpu_seconds
{
	my ($pid) = @_;
	my $stat = slurp_file("/proc/$pid/stat");
	$stat =~ s/^.*\)\s+//s; # after "pid (comm) ": fields from 3 on
	my @f = split /\s+/, $stat;
	return ($f[11] + $f[12]) / POSIX::sysconf(POSIX::_SC_CLK_TCK);
}

# The share of the wall time that passes during $seconds in which $pid used a CPU.
sub cpu_share
{
	my ($pid, $seconds) = @_;
	my ($c0, $t0) = (cpu_seconds($pid), Time::HiRes::time());
	Time::HiRes::sleep($seconds);
	my ($c1, $t1) = (cpu_seconds($pid), Time::HiRes::time());
	return ($c1 - $c0) / ($t1 - $t0);
}

sub maintenance_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE backend_type = 'lantern_fdw maintenance'");
}

my $node = lantern_node('recovery_waits', conf => "lantern_fdw.max_parallel_tasks = 1\n");
# A gate that survives the crash: the tasks wait until it opens.
$node->safe_psql('postgres', 'CREATE TABLE gate (open bool); INSERT INTO gate VALUES (false)');
my $held = 'DO $$ BEGIN WHILE NOT (SELECT open FROM gate) LOOP PERFORM pg_sleep(0.02); END LOOP; END $$';
(my $held_lit = $held) =~ s/'/''/g;
my $first = $node->safe_psql('postgres',
	"BEGIN; SELECT min(lantern.async_task('$held_lit')) FROM generate_series(1, 10); COMMIT;");
wait_sql($node, 'postgres', "SELECT status = 'running' FROM lantern.tasks WHERE jobid = $first", 't',
	'the first task waits at the gate');

# Crash, and come back with a board of three slots: recovery puts three of
# the nine queued tasks back, one of them runs and waits at the gate, and
# nothing frees a slot.
$node->stop('immediate');
$node->append_conf('postgresql.conf', "lantern_fdw.max_tasks = 3\n");
$node->start;
wait_sql($node, 'postgres', 'SELECT count(*) = 3 FROM lantern.task_progress', 't',
	'the board is full of recovered tasks');
my $pid = maintenance_pid($node);
ok($pid > 0, 'the recovery worker waits for a slot');
my $share = cpu_share($pid, 3);
is(maintenance_pid($node), $pid, 'the same recovery worker still waits');
is($node->safe_psql('postgres', 'SELECT count(*) FROM lantern.task_progress'), '3', 'the board is still full');
note sprintf('CPU share of the recovery worker while the board is full: %.3f', $share);
ok($share < 0.2, 'recovery waiting for a slot sleeps instead of spinning');

# A canceling transaction holds the rows recovery has not reached: recovery
# waits for it to end, also once the board has room again.
my ($t) = split /\n/, $node->safe_psql('postgres',
	"SELECT jobid FROM lantern.tasks WHERE status = 'queued' AND jobid NOT IN (SELECT jobid FROM lantern.task_progress) ORDER BY jobid DESC LIMIT 1"
);
ok(defined $t, 'a task recovery has not reached yet');
my $canceler = $node->background_psql('postgres');
$canceler->query_safe('BEGIN');
is(bg_query($canceler, "SELECT lantern.cancel_task($t)"), 't', 'that task is canceled in an open transaction');
$node->safe_psql('postgres', 'UPDATE gate SET open = true');
wait_sql($node, 'postgres', 'SELECT count(*) = 0 FROM lantern.task_progress', 't',
	'the recovered tasks ran and left the board');
is(maintenance_pid($node), $pid, 'the recovery worker waits for the canceling transaction');
$share = cpu_share($pid, 3);
is(maintenance_pid($node), $pid, 'the same recovery worker still waits');
ok( $node->safe_psql('postgres', "SELECT count(*) FROM lantern.tasks WHERE jobid <> $t AND status = 'queued'") > 0,
	'tasks recovery has not reached are still queued');
note sprintf('CPU share of the recovery worker while a cancel holds the rows: %.3f', $share);
ok($share < 0.2, 'recovery waiting for a canceling transaction sleeps instead of spinning');

$canceler->query_safe('COMMIT');
$canceler->quit;
wait_sql($node, 'postgres', 'SELECT count(*) = 0 FROM lantern.tasks WHERE duration IS NULL', 't',
	'every task ended');
is(task_row($node, 'postgres', $t), 'canceled|t|Canceled by user', 'the canceled task is canceled');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM lantern.tasks WHERE jobid > $first AND jobid <> $t AND status <> 'succeeded'"),
	'0', 'every other recovered task succeeded');
is(task_row($node, 'postgres', $first), "failed|t|$EXPECTED_RESTART_MESSAGE",
	'the task at the gate at the crash failed with the restart message');

$node->stop;
check_server_log($node);
done_testing();
