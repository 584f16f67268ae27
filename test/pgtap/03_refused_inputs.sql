-- Refused inputs: each gets its documented SQLSTATE and message (texts from
-- src/submit.cpp, src/fdw.cpp, src/functions.cpp) and changes nothing.
-- One rolled-back transaction: the few tasks submitted here never run.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS lantern_fdw;

BEGIN;
SELECT plan(48);

-- The value of a one-value query, '<NULL>' for NULL, or its error.
CREATE FUNCTION pg_temp.outcome(query text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    result text;
BEGIN
    EXECUTE query INTO result;
    RETURN coalesce(result, '<NULL>');
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- A jobid that no task has.
CREATE TEMP TABLE nonexistent AS SELECT 9223372036854775000::bigint AS jobid;

-- ----------------------------------------------------------- the query
SELECT throws_ok($$SELECT lantern.async_task(NULL)$$,
                 '23502', 'query of a lantern_fdw task must not be null', 'async_task(NULL) is refused');
SELECT throws_ok($$SELECT lantern.async_task(NULL, 'pgtap refused')$$,
                 '23502', 'query of a lantern_fdw task must not be null', 'async_task(NULL, name) is refused');
SELECT throws_ok($$INSERT INTO lantern.tasks (query, job_name) VALUES (NULL, 'pgtap refused')$$,
                 '23502', 'query of a lantern_fdw task must not be null', 'INSERT of a NULL query is refused');
SELECT throws_ok($$INSERT INTO lantern.tasks (job_name) VALUES ('pgtap refused')$$,
                 '23502', 'query of a lantern_fdw task must not be null', 'INSERT without a query is refused');

SELECT throws_ok($$SELECT lantern.async_task('')$$,
                 '22023', 'query of a lantern_fdw task must not be empty', 'an empty query is refused');
SELECT throws_ok($$SELECT lantern.async_task(E'  \n\t  ', 'pgtap refused')$$,
                 '22023', 'query of a lantern_fdw task must not be empty', 'a blank query is refused');
SELECT throws_ok($$INSERT INTO lantern.tasks (query, job_name) VALUES (' ', 'pgtap refused')$$,
                 '22023', 'query of a lantern_fdw task must not be empty', 'INSERT of a blank query is refused');
SELECT throws_ok($$SELECT lantern.async_task('-- only a comment')$$,
                 '22023', 'query of a lantern_fdw task contains no statement', 'a query of only a comment is refused');
SELECT throws_ok($$SELECT lantern.async_task(' ; ;')$$,
                 '22023', 'query of a lantern_fdw task contains no statement', 'a query of only semicolons is refused');

SELECT throws_ok($$SELECT lantern.async_task('SELEC 1', 'pgtap refused')$$,
                 '42601', 'syntax error at or near "SELEC"', 'a query with a syntax error is refused');
SELECT throws_ok($$SELECT lantern.async_task('SELECT 1; SELEC 2')$$,
                 '42601', 'syntax error at or near "SELEC"', 'a syntax error in a later statement is refused');
SELECT throws_ok($$INSERT INTO lantern.tasks (query, job_name) VALUES ('CREATE INDEX ON', 'pgtap refused')$$,
                 '42601', 'syntax error at end of input', 'INSERT of a query with a syntax error is refused');

-- ------------------------------------------- columns lantern_fdw maintains
SELECT throws_ok($$INSERT INTO lantern.tasks (query, status) VALUES ('SELECT 1', 'succeeded')$$,
                 '428C9', 'cannot insert a non-null value into column "status" of lantern.tasks',
                 'INSERT may not supply status');
SELECT throws_ok($$INSERT INTO lantern.tasks (query, status) VALUES ('SELECT 1', 'queued')$$,
                 '428C9', 'cannot insert a non-null value into column "status" of lantern.tasks',
                 'INSERT may not supply status, not even queued');
SELECT throws_ok($$INSERT INTO lantern.tasks (query, duration) VALUES ('SELECT 1', '1 s')$$,
                 '428C9', 'cannot insert a non-null value into column "duration" of lantern.tasks',
                 'INSERT may not supply duration');
SELECT throws_ok($$INSERT INTO lantern.tasks (query, error_message) VALUES ('SELECT 1', 'boom')$$,
                 '428C9', 'cannot insert a non-null value into column "error_message" of lantern.tasks',
                 'INSERT may not supply error_message');
SELECT throws_ok($$INSERT INTO lantern.tasks (query, pg_cron_job_name) VALUES ('SELECT 1', 'cron')$$,
                 '428C9', 'cannot insert a non-null value into column "pg_cron_job_name" of lantern.tasks',
                 'INSERT may not supply pg_cron_job_name');

SELECT throws_ok($$INSERT INTO lantern.tasks (jobid, query) VALUES (NULL, 'SELECT 1')$$,
                 '23502', 'null value in column "jobid" of relation "tasks" violates not-null constraint',
                 'INSERT of a NULL jobid is refused');
SELECT throws_ok($$INSERT INTO lantern.tasks (query, username) VALUES ('SELECT 1', NULL)$$,
                 '23502', 'null value in column "username" of relation "tasks" violates not-null constraint',
                 'INSERT of a NULL username is refused');
SELECT throws_ok($$INSERT INTO lantern.tasks (query, started_at) VALUES ('SELECT 1', NULL)$$,
                 '23502', 'null value in column "started_at" of relation "tasks" violates not-null constraint',
                 'INSERT of a NULL started_at is refused');
-- A jobid that is not positive is refused: 22023 "jobid must be positive"
-- (submit), or 428C9 where the INSERT accepts only jobids the sequence has
-- handed out (either is a clear refusal; the check order is the code's).
SELECT matches(pg_temp.outcome($$INSERT INTO lantern.tasks (jobid, query) VALUES (0, 'SELECT 1')$$),
               '^(22023: jobid must be positive|428C9: cannot insert a non-default value into column "jobid" of lantern.tasks)$',
               'INSERT of jobid 0 is refused');
SELECT matches(pg_temp.outcome($$INSERT INTO lantern.tasks (jobid, query) VALUES (-5, 'SELECT 1')$$),
               '^(22023: jobid must be positive|428C9: cannot insert a non-default value into column "jobid" of lantern.tasks)$',
               'INSERT of a negative jobid is refused');
SELECT throws_ok($$INSERT INTO lantern.tasks (jobid, query)
                   SELECT j, 'SELECT 1' FROM (VALUES (lantern.async_task('SELECT 1', 'pgtap refused dup'))) v(j)$$,
                 '23505', NULL, 'INSERT of a jobid that is taken is refused');

SELECT throws_ok($$INSERT INTO lantern.tasks (query, username) VALUES ('SELECT 1', 'regress_lantern_no_such_role')$$,
                 '42704', 'role "regress_lantern_no_such_role" does not exist', 'a task as an unknown role is refused');

-- ---------------------------------------------------------------- UPDATE
SELECT throws_ok($$UPDATE lantern.tasks SET job_name = 'x'$$,
                 '0A000', 'cannot update lantern.tasks', 'UPDATE of lantern.tasks is refused');
SELECT throws_ok($$UPDATE lantern.tasks SET status = 'canceled' WHERE false$$,
                 '0A000', 'cannot update lantern.tasks', 'UPDATE is refused even when it would change no row');
SELECT throws_ok($$UPDATE lantern.tasks SET status = 'succeeded' WHERE jobid = 1 RETURNING jobid$$,
                 '0A000', 'cannot update lantern.tasks', 'UPDATE ... RETURNING is refused');

-- ------------------------------------------- cancel_task and wait_task
SELECT throws_ok($$SELECT lantern.cancel_task((SELECT jobid FROM nonexistent))$$,
                 '42704', 'task 9223372036854775000 does not exist', 'cancel_task of a nonexistent task');
SELECT throws_ok($$SELECT lantern.cancel_task(0)$$, '42704', 'task 0 does not exist', 'cancel_task(0)');
SELECT throws_ok($$SELECT lantern.cancel_task(-1)$$, '42704', 'task -1 does not exist', 'cancel_task(-1)');
SELECT is(lantern.cancel_task(NULL), NULL, 'cancel_task(NULL) is NULL (strict)');

SELECT throws_ok($$SELECT lantern.wait_task((SELECT jobid FROM nonexistent), '1 s')$$,
                 '42704', 'task 9223372036854775000 does not exist', 'wait_task of a nonexistent task');
SELECT throws_ok($$SELECT lantern.wait_task((SELECT jobid FROM nonexistent))$$,
                 '42704', 'task 9223372036854775000 does not exist', 'wait_task of a nonexistent task, no timeout');
SELECT throws_ok($$SELECT lantern.wait_task(lantern.async_task('SELECT 1', 'pgtap refused'), '-1 s')$$,
                 '22023', 'timeout must not be negative', 'wait_task with a negative timeout');
SELECT throws_ok($$SELECT lantern.wait_task(lantern.async_task('SELECT 1', 'pgtap refused'), '1 s')$$,
                 '55000', 'cannot wait for task ' || (SELECT last_value FROM lantern.tasks_jobid_seq) + 1
                          || ' in the transaction that submitted it',
                 'wait_task of a task the same transaction submitted is refused (it cannot run yet)');
-- wait_task is not strict (a NULL timeout waits without limit), so it must
-- handle a NULL jobid itself: there is no task to wait for. (Bug found by
-- this test: it read the NULL as jobid 0 and said "task 0 does not exist".)
SELECT is(pg_temp.outcome($$SELECT lantern.wait_task(NULL, '0 s')$$), '<NULL>', 'wait_task(NULL, timeout) is NULL');
SELECT is(pg_temp.outcome($$SELECT lantern.wait_task(NULL)$$), '<NULL>', 'wait_task(NULL) is NULL');

-- ------------------------------------------------- read-only transactions
SAVEPOINT read_only;
SET LOCAL transaction_read_only = on;
SELECT throws_ok($$SELECT lantern.async_task('SELECT 1', 'pgtap refused')$$,
                 '25006', 'cannot execute lantern.async_task() in a read-only transaction',
                 'async_task in a read-only transaction is refused');
SELECT throws_ok($$SELECT lantern.cancel_task(1)$$,
                 '25006', 'cannot execute lantern.cancel_task() in a read-only transaction',
                 'cancel_task in a read-only transaction is refused');
ROLLBACK TO SAVEPOINT read_only;

-- --------------------------------------- the FDW serves lantern.tasks only
SELECT throws_ok($$CREATE SERVER regress_lantern_other FOREIGN DATA WRAPPER lantern_fdw OPTIONS (host 'x')$$,
                 'HV00D', 'invalid option "host"', 'the validator accepts no options');
SELECT throws_ok($$ALTER FOREIGN TABLE lantern.tasks OPTIONS (ADD x 'y')$$,
                 'HV00D', 'invalid option "x"', 'lantern.tasks takes no options');
-- Same columns as lantern.tasks: with fewer, a missing check reads past the
-- end of the row (see the INSERT below).
CREATE FOREIGN TABLE public.regress_lantern_other (
    jobid bigint DEFAULT nextval('lantern.tasks_jobid_seq'::regclass), query text, pg_cron_job_name text,
    job_name text, username text DEFAULT CURRENT_USER, started_at timestamptz DEFAULT now(), duration interval,
    status text, error_message text
) SERVER lantern_fdw_server;
SELECT throws_ok($$SELECT * FROM public.regress_lantern_other$$,
                 'HV00R', 'foreign data wrapper "lantern_fdw" serves only the foreign table lantern.tasks',
                 'a scan of another foreign table of the server is refused');
-- (Bug found by this test: the modify path never checked the table, so
-- the INSERT submitted a task, and with fewer columns read past the row.)
SELECT throws_ok($$INSERT INTO public.regress_lantern_other (query, job_name) VALUES ('SELECT 1', 'pgtap other table')$$,
                 'HV00R', 'foreign data wrapper "lantern_fdw" serves only the foreign table lantern.tasks',
                 'an INSERT into another foreign table of the server is refused');

-- ------------------------------------------------------- nothing changed
SELECT is((SELECT count(*)::int FROM lantern.tasks WHERE job_name = 'pgtap refused'), 0,
          'no refused input left a task behind');

-- Every refused submit above ran in a subtransaction that rolled back; so
-- does each of these 1100 (more than lantern_fdw.max_tasks = 1024) good
-- ones: their board slots must be freed, or the next submit finds no slot.
SELECT lives_ok($q$
DO $$
BEGIN
    FOR i IN 1..1100 LOOP
        BEGIN
            PERFORM lantern.async_task('SELECT 1', 'pgtap refused');
            RAISE EXCEPTION 'undo';
        EXCEPTION WHEN raise_exception THEN
            NULL;
        END;
    END LOOP;
END
$$$q$, '1100 tasks submitted and rolled back one by one in subtransactions');
SELECT lives_ok($$SELECT lantern.async_task('SELECT 1', 'pgtap refused')$$,
                'a rolled-back subtransaction frees the board slot of its task');

-- Board capacity: more tasks than lantern_fdw.max_tasks (1024) in one
-- transaction are accepted (those beyond the board wait in the store; this
-- file's transaction rolls back, so none of them runs).
SELECT lives_ok($q$
DO $$
BEGIN
    FOR i IN 1..1025 LOOP
        PERFORM lantern.async_task('SELECT 1', 'pgtap beyond the board');
    END LOOP;
END
$$$q$, 'more tasks than board slots are accepted');
SELECT is((SELECT count(*) FROM lantern.tasks WHERE job_name = 'pgtap beyond the board'), 1025::bigint,
          'every one of them has its row');

SELECT * FROM finish();
ROLLBACK;
