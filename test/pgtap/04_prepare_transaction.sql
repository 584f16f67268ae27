-- PREPARE TRANSACTION of a transaction that submitted a task, or canceled a
-- queued one, is refused (0A000) and rolls the transaction back.
--
-- PREPARE TRANSACTION cannot run inside throws_ok (a function), so it runs
-- at top level with ON_ERROR_STOP off, and the error is read back from
-- psql's LAST_ERROR_SQLSTATE / LAST_ERROR_MESSAGE. psql prints that expected
-- error on stderr. No wrapping transaction: the tasks here must run. The
-- transactions to be prepared touch no temporary object (pgTAP's result
-- tables are temporary), so that PostgreSQL's own 0A000 for temporary
-- objects cannot stand in for lantern_fdw's.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS lantern_fdw;

SELECT plan(18);

\ir include/await_status.psql

-- ------------------------------------------- control: PREPARE works here
BEGIN;
SELECT 1 AS control \gset
PREPARE TRANSACTION 'regress_lantern_control';
SELECT is((SELECT count(*)::int FROM pg_prepared_xacts WHERE gid = 'regress_lantern_control'), 1,
          'control: a transaction without tasks can be prepared (max_prepared_transactions > 0)');
ROLLBACK PREPARED 'regress_lantern_control';

-- ------------------------------------------------ a transaction that submits
BEGIN;
SELECT lantern.async_task('SELECT 1', 'pgtap prepare: submitted') AS submitted \gset
\set ON_ERROR_STOP 0
PREPARE TRANSACTION 'regress_lantern_submit';
\set ON_ERROR_STOP 1
SELECT is(:'LAST_ERROR_SQLSTATE'::text, '0A000', 'PREPARE TRANSACTION after async_task fails with 0A000');
SELECT is(:'LAST_ERROR_MESSAGE'::text, 'cannot PREPARE a transaction that has submitted or canceled lantern_fdw tasks',
          'and says why');
SELECT is_empty($$SELECT 1 FROM pg_prepared_xacts WHERE gid = 'regress_lantern_submit'$$,
                'nothing was prepared');
SELECT is_empty($$SELECT 1 FROM lantern.tasks WHERE jobid = $$ || :submitted,
                'the transaction was rolled back: the task does not exist');
SELECT throws_ok($$SELECT lantern.wait_task($$ || :submitted || $$, '1 s')$$, '42704', NULL,
                 'wait_task does not know the task');

BEGIN;
INSERT INTO lantern.tasks (query, job_name) VALUES ('SELECT 1', 'pgtap prepare: inserted');
\set ON_ERROR_STOP 0
PREPARE TRANSACTION 'regress_lantern_insert';
\set ON_ERROR_STOP 1
SELECT is(:'LAST_ERROR_SQLSTATE'::text, '0A000', 'PREPARE TRANSACTION after INSERT INTO lantern.tasks fails with 0A000');
SELECT is_empty($$SELECT 1 FROM lantern.tasks WHERE job_name = 'pgtap prepare: inserted'$$,
                'the inserted task does not exist');

-- ------------------------------------- a transaction that cancels a queued task
-- Fill the executor (lantern_fdw.max_parallel_tasks = 4) with tasks blocked
-- on an advisory lock this session holds; the next task stays queued.
SELECT pg_advisory_lock(5150401) AS locked \gset
SELECT array_agg(lantern.async_task('SELECT pg_advisory_xact_lock(5150401)', 'pgtap prepare: blocker'))::text AS blockers
  FROM generate_series(1, 4) \gset
SELECT ok(pg_temp.await_status(:'blockers'::bigint[], 'running'), 'four blocked tasks are running');
SELECT lantern.async_task('SELECT 1', 'pgtap prepare: queued') AS queued \gset
SELECT is(lantern.wait_task(:queued, '200 ms'), 'queued', 'a fifth task waits in the queue');

BEGIN;
SELECT lantern.cancel_task(:queued) AS canceled \gset
\set ON_ERROR_STOP 0
PREPARE TRANSACTION 'regress_lantern_cancel';
\set ON_ERROR_STOP 1
SELECT is(:'canceled'::text, 't', 'cancel_task of the queued task returned true inside the transaction');
SELECT is(:'LAST_ERROR_SQLSTATE'::text, '0A000', 'PREPARE TRANSACTION after canceling a queued task fails with 0A000');
SELECT is_empty($$SELECT 1 FROM pg_prepared_xacts WHERE gid = 'regress_lantern_cancel'$$, 'nothing was prepared');
SELECT is((SELECT status FROM lantern.tasks WHERE jobid = :queued), 'queued',
          'the cancel was rolled back: the task is still queued');

SELECT ok(pg_advisory_unlock(5150401), 'release the blockers');
SELECT is(lantern.wait_task(:queued, '30 s'), 'succeeded', 'the task whose cancel was rolled back runs');
SELECT ok(pg_temp.await_status(:'blockers'::bigint[], 'succeeded'), 'the blockers end');

-- Ended tasks may be deleted.
WITH d AS (DELETE FROM lantern.tasks WHERE jobid = ANY (:'blockers'::bigint[] || :queued::bigint) RETURNING 1)
SELECT is(count(*)::int, 5, 'delete the five tasks of this file') FROM d;

SELECT * FROM finish();
