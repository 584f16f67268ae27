--
-- run_at: a task with run_at in the future is scheduled (no board slot)
-- until then, starts no earlier, can be canceled and waited for; a run_at in
-- the past means now. max_runtime: a time limit of the task's own.
-- lantern.task_details shows them.
--
SELECT lantern.async_task('SELECT 1', 'later', now() + interval '5 s') AS later \gset
SELECT status, duration IS NULL AS not_ended FROM lantern.tasks WHERE jobid = :later;
SELECT lantern.wait_task(:later, '0');
SELECT jobid FROM lantern.task_progress WHERE jobid = :later;
SELECT lantern.wait_task(:later, '60 s');
SELECT status, run_at IS NOT NULL AS has_run_at, run_started_at >= run_at AS not_early,
       ended_at >= run_started_at AS ended_after, database = current_database() AS this_database
  FROM lantern.task_details WHERE jobid = :later;

-- In the past: now.
SELECT lantern.async_task('SELECT 1', 'past', now() - interval '1 hour') AS past \gset
SELECT lantern.wait_task(:past, '60 s');

-- Canceled while scheduled: it never runs.
SELECT lantern.async_task('CREATE TABLE run_at_never (i int)', 'far', now() + interval '1 hour') AS far \gset
SELECT status FROM lantern.tasks WHERE jobid = :far;
SELECT lantern.cancel_task(:far);
SELECT status, error_message, duration IS NOT NULL AS ended FROM lantern.tasks WHERE jobid = :far;
SELECT lantern.wait_task(:far, '1 s');
SELECT to_regclass('run_at_never') IS NULL AS never_ran;

-- Canceled while its loader waits for it: the executor starts a loader a
-- little before run_at, and the loader waits for run_at; the cancel wins.
-- (Its first statement waits, so that a cancel that comes late, on a busy
-- machine, still finds it before its CREATE TABLE.)
SELECT lantern.async_task('SELECT pg_sleep(30); CREATE TABLE run_at_never (i int)', 'soon',
                          clock_timestamp() + interval '1 s') AS soon \gset
SELECT pg_sleep(0.7);
SELECT lantern.cancel_task(:soon);
SELECT lantern.wait_task(:soon, '60 s');
SELECT pg_sleep(0.6);
SELECT to_regclass('run_at_never') IS NULL AS never_ran;

-- The store's partial indexes of the rows waiting in it hold the scheduled
-- rows, and only them (read through the index alone).
SELECT lantern.async_task('SELECT 1', 'indexed', now() + interval '1 hour') AS indexed \gset
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT jobid FROM _lantern_fdw.task_log WHERE status = 'scheduled';
SELECT array_agg(jobid) = ARRAY[:indexed]::bigint[] AS only_it FROM _lantern_fdw.task_log WHERE status = 'scheduled';
SELECT lantern.cancel_task(:indexed);
SELECT count(*) FROM _lantern_fdw.task_log WHERE status = 'scheduled';
EXPLAIN (COSTS OFF) SELECT jobid FROM _lantern_fdw.task_log WHERE status = 'queued' AND board_id = 0;
SELECT count(*) FROM _lantern_fdw.task_log WHERE status = 'queued' AND board_id = 0;
RESET enable_seqscan;
RESET enable_bitmapscan;

-- A scheduled task submitted in a rolled-back transaction leaves nothing.
BEGIN;
SELECT lantern.async_task('CREATE TABLE run_at_never (i int)', 'rolled back', now() + interval '1 s') IS NOT NULL AS submitted;
ROLLBACK;
SELECT count(*) FROM lantern.tasks WHERE job_name = 'rolled back';

-- max_runtime ends a long task as failed, with the limit and the server's text.
SELECT lantern.async_task('SELECT pg_sleep(60)', 'limited', max_runtime => '1 s') AS limited \gset
SELECT lantern.wait_task(:limited, '60 s');
SELECT error_message, max_runtime, run_at FROM lantern.task_details WHERE jobid = :limited;

-- All five arguments together (issue 12's keep_result after the queue's
-- two): a scheduled task is brought onto the board by a loader from its
-- durable row, and keeps its result all the same.
SELECT lantern.async_task('SELECT 41 + 1 AS answer', 'kept later', now() + interval '3 s', '1 min', true) AS kept_later \gset
SELECT status FROM lantern.tasks WHERE jobid = :kept_later;
SELECT lantern.wait_task(:kept_later, '60 s');
SELECT lantern.task_result(:kept_later), run_started_at >= run_at AS not_early, max_runtime
  FROM lantern.task_details WHERE jobid = :kept_later;

-- Bad input changes nothing.
SELECT lantern.async_task('SELECT 1', 'zero', max_runtime => '0');
SELECT lantern.async_task('SELECT 1', 'negative', max_runtime => '-1 s');
SELECT count(*) FROM lantern.tasks WHERE job_name IN ('zero', 'negative');

-- lantern.tasks keeps its nine columns; lantern.task_details adds six.
SELECT count(*) FROM information_schema.columns WHERE table_schema = 'lantern' AND table_name = 'tasks';
SELECT string_agg(column_name, ', ' ORDER BY ordinal_position)
  FROM information_schema.columns WHERE table_schema = 'lantern' AND table_name = 'task_details';

DELETE FROM lantern.tasks WHERE jobid IN (:later, :past, :far, :soon, :indexed, :limited, :kept_later);
