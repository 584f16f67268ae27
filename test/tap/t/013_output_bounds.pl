# Task output under load (issue 12): a task flooding 200,000 notices, and a
# task returning 10 million rows with keep_result under the default
# lantern_fdw.max_output_size (1MB). Both succeed with their output marked
# truncated, what is kept stays within the cap, and the executor's peak
# memory stays bounded by it.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LanternFdwTest;

my $node = lantern_node('output');
my $cap = 1024 * 1024;

# The executor's peak resident set size (VmHWM), in kB.
sub executor_peak_kb
{
	my $pid = executor_pid($node);
	my $status = slurp_file("/proc/$pid/status");
	$status =~ /^VmHWM:\s+(\d+) kB/m or die "no VmHWM in /proc/$pid/status";
	return $1;
}

my $pid = executor_pid($node);
ok($pid > 0, 'the executor runs');
# A first task, so that the executor has opened a connection (libpq's and
# the connection's own memory are part of the baseline).
is(wait_ended($node, 'postgres', submit($node, 'postgres', 'SELECT 1')), 'succeeded', 'a first task');
my $before_kb = executor_peak_kb();

# 200,000 notices.
my $flood = submit($node, 'postgres',
	q{DO $$BEGIN FOR i IN 1..200000 LOOP RAISE NOTICE 'notice %', i; END LOOP; END$$});
is(wait_ended($node, 'postgres', $flood), 'succeeded', 'the notice flood succeeds');
is( $node->safe_psql(
		'postgres', qq{
SELECT truncated, octet_length(messages) <= $cap, octet_length(messages) > $cap - 100,
       messages LIKE E'NOTICE:  notice 1\\n%', right(messages, 1) = E'\\n',
       (SELECT count(*) FROM regexp_split_to_table(rtrim(messages, E'\\n'), E'\\n') l
         WHERE l !~ '^NOTICE:  notice [0-9]+\$') AS malformed
  FROM lantern.task_output WHERE jobid = $flood}),
	't|t|t|t|t|0',
	'the notices kept are the first ones, whole, up to the cap, marked truncated');

# 10 million rows with keep_result.
my $rows = $node->safe_psql('postgres',
	q{SELECT lantern.async_task('SELECT g AS n, repeat(''x'', 20) AS s FROM generate_series(1, 10000000) g', keep_result => true)});
is(wait_ended($node, 'postgres', $rows), 'succeeded', 'the 10-million-row task succeeds');
is( $node->safe_psql(
		'postgres', qq{
SELECT command, rows, truncated, octet_length(result::text) <= $cap + 100000,
       jsonb_array_length(result) > 10000, result->0 = '{"n": 1, "s": "xxxxxxxxxxxxxxxxxxxx"}'
  FROM lantern.task_output WHERE jobid = $rows}),
	'SELECT 10000000|10000000|t|t|t|t',
	'its first rows are kept, up to the cap, marked truncated');
is($node->safe_psql('postgres', "SELECT jsonb_typeof(lantern.task_result($rows))"),
	'array', 'task_result returns them');

# Kept output, its JSON and the recording call are a few times the cap; ten
# million rows kept in memory would be gigabytes.
my $after_kb = executor_peak_kb();
cmp_ok($after_kb - $before_kb, '<', 64 * 1024,
	"the executor's peak memory grew by less than 64 MB (by " . ($after_kb - $before_kb) . ' kB)');
is(executor_pid($node), $pid, 'the same executor ran them all');

check_server_log($node);
$node->stop;
done_testing();
