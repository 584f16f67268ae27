# Many tasks whose connections are refused: every outcome is written by the
# maintenance workers, none is given up while the database exists.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LanternFdwTest;

my $node = lantern_node('many_refused', conf => "lantern_fdw.max_parallel_tasks = 8\n");
$node->safe_psql('postgres', 'CREATE ROLE rejected LOGIN');
my $hba = $node->data_dir . '/pg_hba.conf';
my $old_hba = slurp_file($hba);
open my $fh, '>', $hba or die "cannot write $hba: $!";
print $fh "local all rejected reject\n$old_hba";
close $fh;
$node->reload;
wait_sql($node, 'postgres',
	"SELECT count(*) = 1 FROM pg_hba_file_rules WHERE user_name = '{rejected}' AND error IS NULL",
	't', 'the reject rule is loaded');

$node->safe_psql('postgres', q{
SET ROLE rejected;
SELECT count(lantern.async_task('SELECT 1')) FROM generate_series(1, 500);
});
wait_sql($node, 'postgres', 'SELECT count(*) = 500 FROM lantern.tasks WHERE duration IS NOT NULL',
	't', 'all 500 refused tasks ended');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM lantern.tasks WHERE status = 'failed' AND error_message LIKE '%pg_hba.conf rejects connection%'"),
	'500', 'each failed with the server\'s own error');
unlike(slurp_file($node->logfile), qr/could not record the outcome/, 'no outcome was given up');
is(submit_and_wait($node), 'succeeded', 'the executor still serves other tasks');

sub submit_and_wait
{
	my ($n) = @_;
	my $id = submit($n, 'postgres', 'SELECT 1');
	return wait_ended($n, 'postgres', $id);
}

check_server_log($node);
$node->stop;
done_testing();
