# pg_ctl stop -m smart while a task runs and others are queued: a smart
# shutdown lets running sessions finish but refuses new connections. Queued
# tasks must not be lost or failed because of it: they run (once) after the
# next start. The executor knows "refused for now" (SQLSTATE 57P03) by the
# server's message texts, which libpq reports without a SQLSTATE: the run is
# repeated with lc_messages in German (scripts/install-deps.sh generates the
# de_DE.UTF-8 locale).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LanternFdwTest;

sub smart_shutdown
{
	my ($name, $conf) = @_;
	my $node = lantern_node($name,
		conf => "lantern_fdw.max_parallel_tasks = 1\nlantern_fdw.idle_connection_timeout = '1s'\n$conf");
	$node->safe_psql('postgres', 'CREATE TABLE runs (tag text); CREATE ROLE alice LOGIN; GRANT INSERT ON runs TO alice');
	$node->safe_psql('postgres', 'CREATE DATABASE db2');
	$node->safe_psql('db2', 'CREATE EXTENSION lantern_fdw; CREATE TABLE runs (tag text)');

	my $running = submit($node, 'postgres', 'SELECT pg_sleep(3)');
	# (A condition that stays true: on a slow machine the sleep may be over
	# before the test looks; the test then proves less, but still holds.)
	wait_sql($node, 'postgres', "SELECT status <> 'queued' FROM lantern.tasks WHERE jobid = $running",
		't', "$name: a task runs");
	# One task can reuse the running task's connection; the others need a new
	# connection (another role, another database), which a smart shutdown refuses.
	my @queued = (
		submit($node, 'postgres', "INSERT INTO runs VALUES ('smart-1')"),
		submit($node, 'postgres', "INSERT INTO runs VALUES ('smart-2')", role => 'alice'));
	my $q_db2 = submit($node, 'db2', "INSERT INTO runs VALUES ('smart-3')");
	my $ids = join(',', @queued);

	# Smart shutdown: waits for the running task's session (and the executor's
	# idle connections) to end.
	ok($node->stop('smart', fail_ok => 1), "$name: smart shutdown completed");
	$node->start;

	wait_sql($node, 'postgres',
		"SELECT count(*) = 2 FROM lantern.tasks WHERE jobid IN ($ids) AND duration IS NOT NULL",
		't', "$name: the queued tasks of postgres ended after the restart");
	wait_sql($node, 'db2', "SELECT duration IS NOT NULL FROM lantern.tasks WHERE jobid = $q_db2",
		't', "$name: the queued task of db2 ended after the restart");
	is( $node->safe_psql('postgres',
			"SELECT string_agg(jobid || ':' || status || coalesce(':' || error_message, ''), E'\\n' ORDER BY jobid) FROM lantern.tasks WHERE jobid IN ($ids)"),
		join("\n", map { "$_:succeeded" } @queued),
		"$name: postgres: the queued tasks succeeded: the smart shutdown did not fail them");
	is( $node->safe_psql('db2',
			"SELECT status || coalesce(':' || error_message, '') FROM lantern.tasks WHERE jobid = $q_db2"),
		'succeeded', "$name: db2: the queued task succeeded: the smart shutdown did not fail it");
	is( $node->safe_psql('postgres',
			"SELECT string_agg(tag || ':' || n, ',' ORDER BY tag) FROM (SELECT tag, count(*) n FROM runs GROUP BY tag) s"),
		'smart-1:1,smart-2:1', "$name: postgres: each ran exactly once");
	is($node->safe_psql('db2', "SELECT count(*) FROM runs WHERE tag = 'smart-3'"), '1', "$name: db2: it ran exactly once");
	my $status = wait_ended($node, 'postgres', $running);
	note "$name: the task running at the smart shutdown: $status";
	ok($status eq 'succeeded' || $status eq 'failed', "$name: the running task ended ($status)");

	$node->stop;
	check_server_log($node);
}

smart_shutdown('smart', '');
SKIP:
{
	my $have_de = grep { /^de_DE\.utf-?8$/i } split /\n/, `locale -a`;
	# Not a silent skip: the test command installs the locale.
	ok($have_de, 'the de_DE.UTF-8 locale exists (scripts/install-deps.sh makes it)');
	skip 'no de_DE.UTF-8 locale', 1 unless $have_de;
	smart_shutdown('smart_de', "lc_messages = 'de_DE.UTF-8'\n");
}
done_testing();
