-- Committed tasks run: final statuses (succeeded, failed, canceled), the
-- columns of an ended task, live status while running, cancel_task,
-- cancel_all_async_tasks and DELETE of ended tasks. No wrapping
-- transaction: a task runs only once its transaction commits. Each task
-- here is short or is canceled; the file cleans up after itself.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS lantern_fdw;

SELECT plan(55);

\ir include/await_status.psql

CREATE FUNCTION pg_temp.explain(query text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    line text;
    plan text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN ' || query LOOP
        plan := plan || line || E'\n';
    END LOOP;
    RETURN plan;
END
$$;

DROP TABLE IF EXISTS public.regress_lantern_side, public.regress_lantern_never, public.regress_lantern_open;
CREATE TEMP TABLE ids (name text PRIMARY KEY, jobid bigint NOT NULL, submitted_at timestamptz DEFAULT now());
GRANT SELECT ON ids TO PUBLIC;

-- ------------------------------------------------------------ succeeded
INSERT INTO ids VALUES ('ok', lantern.async_task('SELECT 1', 'pgtap lifecycle: ok'));
SELECT results_eq(
    $$SELECT lantern.wait_task((SELECT jobid FROM ids WHERE name = 'ok'), '30s')$$,
    $$VALUES ('succeeded'::text)$$,
    'a committed task runs: wait_task returns succeeded');
SELECT results_eq(
    $$SELECT query, pg_cron_job_name, job_name, username, status, error_message
        FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'ok')$$,
    $$VALUES ('SELECT 1'::text, NULL::text, 'pgtap lifecycle: ok'::text, current_user::text COLLATE "default", 'succeeded'::text, NULL::text)$$,
    'the ended task''s row: query, no pg_cron_job_name, job_name, username, succeeded, no error');
SELECT ok((SELECT duration IS NOT NULL AND duration >= '0 s' FROM lantern.tasks
            WHERE jobid = (SELECT jobid FROM ids WHERE name = 'ok')),
          'an ended task has a duration');
SELECT is((SELECT started_at FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'ok')),
          (SELECT submitted_at FROM ids WHERE name = 'ok'), 'started_at is the submission time (the submitting transaction''s now())');
SELECT is(lantern.wait_task((SELECT jobid FROM ids WHERE name = 'ok')), 'succeeded',
          'wait_task of an ended task returns its status at once, without a timeout too');
SELECT is(lantern.cancel_task((SELECT jobid FROM ids WHERE name = 'ok')), false,
          'cancel_task of an ended task returns false');
SELECT is((SELECT status FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'ok')), 'succeeded',
          'and changes nothing');

-- INSERT is the same as async_task; RETURNING shows the row as stored.
SELECT results_eq(
    $$WITH i AS (INSERT INTO lantern.tasks (query) VALUES ('SELECT 2') RETURNING *)
      INSERT INTO ids (name, jobid) SELECT 'insert', jobid FROM i RETURNING (SELECT row(query, job_name, username, status, duration IS NULL)::text FROM i)$$,
    $$VALUES (row('SELECT 2', NULL::text, current_user::text COLLATE "default", 'queued', true)::text)$$,
    'INSERT ... RETURNING: status queued, job_name NULL when not given, no duration yet');
SELECT is(lantern.wait_task((SELECT jobid FROM ids WHERE name = 'insert'), '30s'), 'succeeded',
          'a task submitted by INSERT runs');
SELECT is((SELECT job_name FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'insert')), NULL,
          'job_name stays NULL');

INSERT INTO ids VALUES ('unnamed', lantern.async_task('SELECT 3'));
SELECT is(lantern.wait_task((SELECT jobid FROM ids WHERE name = 'unnamed'), '30s'), 'succeeded',
          'async_task without a job name');
SELECT is((SELECT job_name FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'unnamed')), NULL,
          'async_task without a job name: job_name is NULL');

-- The task's work is done, and committed.
INSERT INTO ids VALUES ('side', lantern.async_task(
    'CREATE TABLE public.regress_lantern_side (x int); INSERT INTO public.regress_lantern_side VALUES (42)',
    'pgtap lifecycle: side effect'));
SELECT is(lantern.wait_task((SELECT jobid FROM ids WHERE name = 'side'), '30s'), 'succeeded',
          'a multi-statement task succeeds');
SELECT results_eq('SELECT x FROM public.regress_lantern_side', 'VALUES (42)',
                  'every statement of the task ran and committed');

-- ----------------------------------------------------------------- failed
INSERT INTO ids VALUES ('fail', lantern.async_task('SELECT * FROM regress_lantern_haha', 'pgtap lifecycle: fail'));
SELECT is(lantern.wait_task((SELECT jobid FROM ids WHERE name = 'fail'), '30s'), 'failed',
          'a task whose query fails ends failed');
SELECT is((SELECT error_message FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'fail')),
          E'ERROR:  relation "regress_lantern_haha" does not exist\n'
          'LINE 1: SELECT * FROM regress_lantern_haha\n'
          '                      ^',
          'error_message is the server''s full error text, with its LINE 1 and caret lines');
SELECT ok((SELECT duration IS NOT NULL FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'fail')),
          'a failed task has a duration');

INSERT INTO ids VALUES ('fail2', lantern.async_task(
    'SELECT 1; SELECT 1/0; CREATE TABLE public.regress_lantern_never (x int)', 'pgtap lifecycle: fail2'));
SELECT is(lantern.wait_task((SELECT jobid FROM ids WHERE name = 'fail2'), '30s'), 'failed',
          'a task fails if any of its statements fails');
SELECT is((SELECT error_message FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'fail2')),
          'ERROR:  division by zero', 'with the error of the failed statement');
SELECT hasnt_table('public', 'regress_lantern_never', 'statements after the failed one do not run');

INSERT INTO ids VALUES ('open', lantern.async_task(
    'BEGIN; CREATE TABLE public.regress_lantern_open (x int)', 'pgtap lifecycle: open'));
SELECT is(lantern.wait_task((SELECT jobid FROM ids WHERE name = 'open'), '30s'), 'failed',
          'a task that leaves its transaction open fails');
SELECT is((SELECT error_message FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'open')),
          'ERROR:  the task ended inside a transaction block; its transaction was rolled back',
          'and says so');
SELECT hasnt_table('public', 'regress_lantern_open', 'its transaction was rolled back');

-- A task's query cannot forge its own outcome through the recording calls.
INSERT INTO ids VALUES ('forge', lantern.async_task(
    'SELECT _lantern_fdw.record_end(jobid, ''succeeded'', NULL) FROM lantern.tasks WHERE job_name = ''pgtap lifecycle: forge''',
    'pgtap lifecycle: forge'));
SELECT is(lantern.wait_task((SELECT jobid FROM ids WHERE name = 'forge'), '30s'), 'failed',
          'a task that calls record_end itself fails');
SELECT matches((SELECT error_message FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'forge')),
               '^ERROR:  only the lantern_fdw executor may record the end of task \d+',
               'with the recording function''s refusal');

-- ---------------------------------------------------- running, canceled
INSERT INTO ids VALUES ('sleep', lantern.async_task('SELECT pg_sleep(60)', 'pgtap lifecycle: sleep'));
SELECT ok(pg_temp.await_status(ARRAY[(SELECT jobid FROM ids WHERE name = 'sleep')], 'running'),
          'a long task shows status running');
SELECT is(lantern.wait_task((SELECT jobid FROM ids WHERE name = 'sleep'), '10 ms'), 'running',
          'wait_task returns the live status when the timeout passes');
SELECT ok((SELECT duration IS NULL AND error_message IS NULL FROM lantern.tasks
            WHERE jobid = (SELECT jobid FROM ids WHERE name = 'sleep')),
          'a running task has no duration and no error yet');
SELECT throws_ok($$DELETE FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'sleep')$$,
                 '55006', 'cannot delete task ' || (SELECT jobid FROM ids WHERE name = 'sleep') || ' because it has not ended',
                 'a running task cannot be deleted');
SELECT is(lantern.cancel_task((SELECT jobid FROM ids WHERE name = 'sleep')), true,
          'cancel_task of a running task returns true');
SELECT is(lantern.wait_task((SELECT jobid FROM ids WHERE name = 'sleep'), '30s'), 'canceled',
          'the canceled task ends canceled');
SELECT results_eq(
    $$SELECT status, error_message, duration IS NOT NULL, duration < '30 s'
        FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'sleep')$$,
    $$VALUES ('canceled'::text, 'Canceled by user'::text, true, true)$$,
    'a canceled task: status canceled, error Canceled by user, a duration (it did not sleep 60 s)');
SELECT is(lantern.cancel_task((SELECT jobid FROM ids WHERE name = 'sleep')), false,
          'canceling it again returns false');

-- cancel_all_async_tasks: every active task of the caller.
INSERT INTO ids VALUES ('all1', lantern.async_task('SELECT pg_sleep(60)', 'pgtap lifecycle: all'));
INSERT INTO ids VALUES ('all2', lantern.async_task('SELECT pg_sleep(60)', 'pgtap lifecycle: all'));
SELECT ok(pg_temp.await_status(ARRAY(SELECT jobid FROM ids WHERE name IN ('all1', 'all2')), 'running'),
          'two long tasks are running');
SELECT lives_ok('SELECT lantern.cancel_all_async_tasks()', 'cancel_all_async_tasks');
SELECT is(lantern.wait_task((SELECT jobid FROM ids WHERE name = 'all1'), '30s'), 'canceled', 'it canceled the first');
SELECT is(lantern.wait_task((SELECT jobid FROM ids WHERE name = 'all2'), '30s'), 'canceled', 'and the second');
SELECT is((SELECT status FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'ok')), 'succeeded',
          'and left ended tasks alone');
SELECT lives_ok('SELECT lantern.cancel_all_async_tasks()', 'cancel_all_async_tasks with no active task');

-- ------------------------------------------------------------ lookups
SELECT is((SELECT count(*)::int FROM lantern.tasks t JOIN ids USING (jobid)), (SELECT count(*)::int FROM ids),
          'every task of this file is in lantern.tasks');
SELECT is((SELECT count(*)::int FROM lantern.tasks
            WHERE jobid = (SELECT jobid FROM ids WHERE name = 'ok')::int), 1,
          'a lookup by an int4 jobid finds the task');
SELECT is_empty($$SELECT 1 FROM lantern.tasks WHERE jobid = NULL::bigint$$, 'jobid = NULL finds nothing');
SELECT matches(pg_temp.explain('SELECT * FROM lantern.tasks WHERE jobid = 1'),
               'Lantern Access: index lookup on jobid', 'jobid = constant is pushed down to an index lookup');
SELECT matches(pg_temp.explain('SELECT * FROM lantern.tasks WHERE job_name = ''x'''),
               'Lantern Access: full scan', 'other conditions scan everything');

-- Another ordinary role sees none of these (superuser) tasks.
DROP ROLE IF EXISTS regress_lantern_other;
CREATE ROLE regress_lantern_other LOGIN;
SET ROLE regress_lantern_other;
SELECT is((SELECT count(*)::int FROM lantern.tasks), 0, 'another role sees none of a superuser''s tasks');
SELECT is_empty($$SELECT 1 FROM lantern.tasks WHERE jobid = $$ || (SELECT jobid FROM ids WHERE name = 'ok'),
                'not even by jobid');
SELECT throws_ok($$SELECT lantern.wait_task($$ || (SELECT jobid FROM ids WHERE name = 'ok') || $$, '1 s')$$,
                 '42704', NULL, 'wait_task of a task the role may not see: it does not exist');
SELECT throws_ok($$SELECT lantern.cancel_task($$ || (SELECT jobid FROM ids WHERE name = 'ok') || $$)$$,
                 '42704', NULL, 'cancel_task of a task the role may not see: it does not exist');
SELECT lives_ok($$DELETE FROM lantern.tasks WHERE jobid = $$ || (SELECT jobid FROM ids WHERE name = 'ok'),
                'DELETE of a task the role may not see');
RESET ROLE;
DROP ROLE regress_lantern_other;
SELECT is((SELECT status FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'ok')), 'succeeded',
          'deletes nothing');

-- ------------------------------------------------------------ DELETE
SELECT results_eq(
    $$DELETE FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'ok') RETURNING jobid, status$$,
    $$SELECT jobid, 'succeeded'::text FROM ids WHERE name = 'ok'$$,
    'an ended task can be deleted; RETURNING shows it');
SELECT throws_ok($$SELECT lantern.wait_task((SELECT jobid FROM ids WHERE name = 'ok'), '1 s')$$, '42704', NULL,
                 'a deleted task no longer exists');
SELECT throws_ok($$SELECT lantern.cancel_task((SELECT jobid FROM ids WHERE name = 'ok'))$$, '42704', NULL,
                 'cancel_task of a deleted task: it does not exist');

-- Clients test duration IS NOT NULL for "done" (docs/sql-reference.md); a done task
-- can then be deleted at once. Each round submits a task, commits, polls
-- until its duration is set and deletes it.
CREATE PROCEDURE pg_temp.delete_when_done(rounds int, INOUT refused int DEFAULT 0) LANGUAGE plpgsql AS $$
DECLARE
    id bigint;
    done boolean;
    deadline timestamptz;
BEGIN
    FOR i IN 1..rounds LOOP
        id := lantern.async_task('SELECT 1', 'pgtap lifecycle: delete when done');
        COMMIT;
        deadline := clock_timestamp() + interval '30 s';
        LOOP
            SELECT duration IS NOT NULL INTO done FROM lantern.tasks WHERE jobid = id;
            EXIT WHEN done OR clock_timestamp() > deadline;
        END LOOP;
        BEGIN
            DELETE FROM lantern.tasks WHERE jobid = id;
        EXCEPTION WHEN object_in_use THEN
            refused := refused + 1;
        END;
        COMMIT;
    END LOOP;
END
$$;
CALL pg_temp.delete_when_done(200) \gset
SELECT is(:refused, 0, 'a task whose duration is set can be deleted at once (200 rounds)');
DELETE FROM lantern.tasks WHERE job_name = 'pgtap lifecycle: delete when done' AND duration IS NOT NULL;

WITH d AS (DELETE FROM lantern.tasks WHERE jobid IN (SELECT jobid FROM ids) RETURNING 1)
SELECT is(count(*)::int, (SELECT count(*)::int - 1 FROM ids), 'delete the remaining tasks of this file') FROM d;
DROP TABLE public.regress_lantern_side;

SELECT * FROM finish();
