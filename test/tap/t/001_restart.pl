# Server restarts (pg_ctl stop -m immediate / -m fast, then start) with tasks
# queued and running, in two databases: every queued task runs exactly once
# afterwards without anyone touching lantern.tasks; every running task ends
# 'failed' with the restart message and a duration.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LanternFdwTest;

my $node = lantern_node('restart', conf => "lantern_fdw.max_parallel_tasks = 2\n");
$node->safe_psql('postgres', 'CREATE DATABASE db2');
$node->safe_psql('postgres', 'CREATE DATABASE noext'); # has no extension
$node->safe_psql('db2', 'CREATE EXTENSION lantern_fdw');
for my $db ('postgres', 'db2')
{
	$node->safe_psql($db, 'CREATE TABLE runs (tag text NOT NULL)');
}

for my $mode ('immediate', 'fast')
{
	my (%sleeper, %queued);
	# One long task running in each database fills max_parallel_tasks = 2.
	for my $db ('postgres', 'db2')
	{
		$sleeper{$db} = submit($node, $db, 'SELECT pg_sleep(600)');
	}
	wait_sql($node, 'postgres',
		"SELECT count(*) = 2 FROM pg_stat_activity WHERE application_name LIKE 'lantern_fdw task%' AND query LIKE '%pg_sleep(600)%' AND state = 'active'",
		't', "$mode: both sleepers are running");
	for my $db ('postgres', 'db2')
	{
		for my $i (1 .. 3)
		{
			push @{ $queued{$db} },
			  submit($node, $db, "INSERT INTO runs VALUES ('$mode-$i')");
		}
		my $ids = join(',', @{ $queued{$db} });
		is( $node->safe_psql($db,
				"SELECT string_agg(status, ',') FROM lantern.tasks WHERE jobid IN ($ids)"),
			'queued,queued,queued',
			"$mode/$db: the three insert tasks wait in the queue");
		is( $node->safe_psql($db, "SELECT status FROM lantern.tasks WHERE jobid = $sleeper{$db}"),
			'running', "$mode/$db: the sleeper is running");
	}

	$node->stop($mode);
	$node->start;

	for my $db ('postgres', 'db2')
	{
		my $ids = join(',', @{ $queued{$db} });
		wait_sql($node, $db,
			"SELECT count(*) = 3 FROM lantern.tasks WHERE jobid IN ($ids) AND duration IS NOT NULL",
			't', "$mode/$db: the queued tasks ended after the restart");
		is( $node->safe_psql($db,
				"SELECT string_agg(status, ',') FROM lantern.tasks WHERE jobid IN ($ids)"),
			'succeeded,succeeded,succeeded',
			"$mode/$db: the queued tasks succeeded");

		wait_sql($node, $db,
			"SELECT duration IS NOT NULL FROM lantern.tasks WHERE jobid = $sleeper{$db}",
			't', "$mode/$db: the running task has ended");
		is( task_row($node, $db, $sleeper{$db}),
			"failed|t|$EXPECTED_RESTART_MESSAGE",
			"$mode/$db: the running task failed with the restart message and a duration");
	}

	# One more task in each database, run after any duplicate would have been.
	for my $db ('postgres', 'db2')
	{
		my $marker = submit($node, $db, "INSERT INTO runs VALUES ('$mode-marker')");
		is(wait_ended($node, $db, $marker), 'succeeded', "$mode/$db: a new task runs");
		is( $node->safe_psql($db,
				"SELECT string_agg(tag || ':' || n, ',' ORDER BY tag) FROM (SELECT tag, count(*) AS n FROM runs WHERE tag LIKE '$mode-%' GROUP BY tag) s"
			),
			"$mode-1:1,$mode-2:1,$mode-3:1,$mode-marker:1",
			"$mode/$db: each queued task ran exactly once");
	}
	is( task_backends($node), '0', "$mode: no task backend is left over");
}

# A task queued in a database that does not accept connections when the
# server restarts: recovery still reaches it, and it ends (refused, with the
# server's text) instead of staying queued forever.
$node->safe_psql('postgres', 'CREATE DATABASE closed');
$node->safe_psql('closed', 'CREATE EXTENSION lantern_fdw; CREATE TABLE runs (tag text)');
{
	my @sleepers = map { submit($node, $_, 'SELECT pg_sleep(600)') } ('postgres', 'db2');
	wait_sql($node, 'postgres',
		"SELECT count(*) = 2 FROM pg_stat_activity WHERE application_name LIKE 'lantern_fdw task%' AND query LIKE '%pg_sleep(600)%' AND state = 'active'",
		't', 'closed: both sleepers are running');
	my $q = submit($node, 'closed', "INSERT INTO runs VALUES ('closed')");
	$node->safe_psql('postgres', 'ALTER DATABASE closed ALLOW_CONNECTIONS false');
	$node->stop('immediate');
	my $offset = -s $node->logfile;
	$node->start;
	$node->wait_for_log(qr/database "closed" is not currently accepting connections/, $offset);
	pass('closed: after the restart the executor tried to run the task');
	$node->safe_psql('postgres', 'ALTER DATABASE closed ALLOW_CONNECTIONS true');
	ok(poll_for($node, 'closed', "SELECT duration IS NOT NULL FROM lantern.tasks WHERE jobid = $q", 't', 15),
		'closed: the task has ended');
	my ($status, $msg) = split /\|/, $node->safe_psql('closed', "SELECT status, error_message FROM lantern.tasks WHERE jobid = $q");
	is($status, 'failed', 'closed: it failed');
	like($msg, qr/FATAL:  database "closed" is not currently accepting connections/, "closed: with the server's text");
	is($node->safe_psql('closed', 'SELECT count(*) FROM runs'), '0', 'closed: it did not run');
	for my $db ('postgres', 'db2')
	{
		wait_sql($node, $db, 'SELECT count(*) = 0 FROM lantern.tasks WHERE duration IS NULL', 't',
			"closed: the sleeper in $db has ended");
	}
}

# Nothing is left active anywhere.
for my $db ('postgres', 'db2')
{
	is( $node->safe_psql($db, 'SELECT count(*) FROM lantern.tasks WHERE duration IS NULL'),
		'0', "$db: no task is left queued or running");
}

$node->stop;
check_server_log($node);
done_testing();
