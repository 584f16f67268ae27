# Without shared_preload_libraries there is no board and no executor: every
# entry point fails with a clear error and a hint on how to load the library.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('not_preloaded');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION lantern_fdw');

my @entry_points = (
	q{SELECT lantern.async_task('SELECT 1')},
	q{INSERT INTO lantern.tasks (query) VALUES ('SELECT 1')},
	q{SELECT * FROM lantern.tasks},
	q{SELECT lantern.cancel_task(1)},
	q{SELECT lantern.cancel_all_async_tasks()},
	q{SELECT lantern.wait_task(1)},
	q{SELECT * FROM lantern.task_progress},
	q{SELECT * FROM _lantern_fdw.record_start(1)},
	q{SELECT _lantern_fdw.record_end(1, 'succeeded', NULL)},
);
for my $sql (@entry_points)
{
	my ($rc, $out, $err) = $node->psql('postgres', $sql, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	isnt($rc, 0, "refused: $sql");
	like($err, qr/ERROR:  55000: lantern_fdw must be loaded via shared_preload_libraries/, "error and SQLSTATE: $sql");
	like($err, qr/HINT:  Add lantern_fdw to shared_preload_libraries in postgresql.conf and restart the server\./,
		"hint: $sql");
}
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'lantern_fdw executor'"),
	'0', 'no executor runs');
$node->stop;
done_testing();
