# Concurrency: about 1,100 tasks submitted by 4 concurrent clients (pgbench),
# mixed with savepoint rollbacks and whole-transaction rollbacks. Every
# committed task runs exactly once; no rolled-back task runs.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LanternFdwTest;

my $node = lantern_node('concurrency',
	conf => "lantern_fdw.max_tasks = 4096\nlantern_fdw.max_parallel_tasks = 4\nmax_connections = 40\n"
	  . "log_statement = none\n");
$node->safe_psql('postgres', q{
	CREATE TABLE runs (jobid bigint PRIMARY KEY);      -- a second run of a task would fail here
	CREATE TABLE submitted (jobid bigint PRIMARY KEY); -- written in the submitting transaction
});

# Each task inserts its own jobid (record_start names its session after it).
my $task = "INSERT INTO runs SELECT $JOBID_OF_TASK";
(my $lit = $task) =~ s/'/''/g;

# kind 1: two tasks, savepoint released, commit
# kind 2: the savepoint's task rolled back, the other commits
# kind 3: the whole transaction rolled back
# kind 4: savepoint rolled back, a third task after it, commit
my $script = <<"EOS";
\\set kind random(1, 4)
BEGIN;
INSERT INTO submitted SELECT lantern.async_task('$lit');
SAVEPOINT s;
WITH t AS (INSERT INTO lantern.tasks (query) VALUES ('$lit') RETURNING jobid) INSERT INTO submitted SELECT jobid FROM t;
\\if :kind = 1
RELEASE SAVEPOINT s;
\\elif :kind = 2
ROLLBACK TO SAVEPOINT s;
\\elif :kind = 4
ROLLBACK TO SAVEPOINT s;
INSERT INTO submitted SELECT lantern.async_task('$lit');
\\endif
\\if :kind = 3
ROLLBACK;
\\else
COMMIT;
\\endif
EOS

$node->pgbench(
	'--no-vacuum --client=4 --jobs=2 --transactions=125',
	0,
	[qr{processed: 500/500}],
	[qr{\A(?!.*(?:ERROR|error))}s],
	'4 clients submit tasks in 500 transactions',
	{ '006_submit' => $script });

my $submitted = $node->safe_psql('postgres', 'SELECT count(*) FROM submitted');
my $attempted = $node->safe_psql('postgres', 'SELECT last_value FROM lantern.tasks_jobid_seq');
note "tasks attempted: $attempted, committed: $submitted";
ok($attempted >= 1000, "about a thousand tasks were submitted ($attempted)");
ok($submitted > 0 && $submitted < $attempted - 100, "some were rolled back ($submitted of $attempted committed)");

wait_sql($node, 'postgres', 'SELECT count(*) = 0 FROM lantern.tasks WHERE duration IS NULL',
	't', 'every committed task has ended');
is($node->safe_psql('postgres', 'SELECT count(*) FROM lantern.tasks'), $submitted,
	'lantern.tasks holds exactly the committed tasks');
is( $node->safe_psql('postgres',
		'SELECT count(*) FROM lantern.tasks t FULL JOIN submitted s USING (jobid) WHERE t.jobid IS NULL OR s.jobid IS NULL'),
	'0', 'lantern.tasks and the submitted set are the same jobids');
is( $node->safe_psql('postgres', "SELECT count(*) FROM lantern.tasks WHERE status <> 'succeeded'"),
	'0', 'every committed task succeeded (a second run would have failed on the unique key)');
is( $node->safe_psql('postgres',
		'SELECT count(*) FROM runs r FULL JOIN submitted s USING (jobid) WHERE r.jobid IS NULL OR s.jobid IS NULL'),
	'0', 'the tasks that ran are exactly the committed ones: each once, no rolled-back one');

# A last task, after any stray run would have happened.
my $last = submit($node, 'postgres', $task);
is(wait_ended($node, 'postgres', $last), 'succeeded', 'a task submitted afterwards runs');
is($node->safe_psql('postgres', 'SELECT count(*) FROM runs'), $submitted + 1, 'no stray run appeared');

$node->stop;
check_server_log($node);
done_testing();
