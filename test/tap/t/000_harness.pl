use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('smoke');
$node->init;
$node->start;
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server answers');
$node->stop;
done_testing();
