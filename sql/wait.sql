--
-- wait: lantern.wait_task sleeps until a task ends and returns its status;
-- on timeout it returns the current status; it is interruptible.
--
SELECT lantern.async_task('SELECT 1') AS ok_job \gset
SELECT lantern.wait_task(:ok_job, '60s');
SELECT lantern.async_task('SELECT 1/0') AS bad_job \gset
SELECT lantern.wait_task(:bad_job, '60s');

-- A task runs only once its transaction commits: waiting for it inside that
-- transaction is refused.
BEGIN;
SELECT lantern.async_task('SELECT 1') AS uncommitted_job \gset
DO $$
BEGIN
    PERFORM lantern.wait_task(currval('lantern.tasks_jobid_seq'), '1s');
EXCEPTION WHEN object_not_in_prerequisite_state THEN
    RAISE NOTICE '%', regexp_replace(SQLERRM, '[0-9]+', 'N');
END
$$;
ROLLBACK;

-- Timeout: the current status comes back.
SELECT lantern.async_task('SELECT pg_sleep(60)', 'long wait') AS long_job \gset
CALL wait_for_status(:long_job, 'running');
SELECT lantern.wait_task(:long_job, '50 ms');
SELECT lantern.wait_task(:long_job, '0');

-- statement_timeout and cancellation interrupt it.
SET statement_timeout = '200ms';
SELECT lantern.wait_task(:long_job);
RESET statement_timeout;

-- Another session cancels the task: the waiter wakes up with the outcome.
SELECT lantern.cancel_task(:long_job);
SELECT lantern.wait_task(:long_job, '60s');

-- An ended task answers at once, also with a NULL timeout.
SELECT lantern.wait_task(:long_job);

-- Refused input.
SELECT lantern.wait_task(999999);
SELECT lantern.wait_task(:long_job, '-1s');

-- CREATE INDEX CONCURRENTLY waits for every transaction holding an older
-- snapshot, the waiting statement included: wait_task notices that the task
-- waits for this session and returns instead of waiting forever.
CREATE TABLE wait_cic AS SELECT g AS id FROM generate_series(1, 10000) g;
-- The task starts its build only once this session's statement below holds
-- its snapshot: the advisory lock orders the two.
SELECT pg_advisory_lock(4711);
SELECT lantern.async_task('SELECT pg_advisory_lock(4711); SELECT pg_advisory_unlock(4711); '
                          'CREATE INDEX CONCURRENTLY wait_cic_idx ON wait_cic (id)') AS cic_job \gset
-- Without the check this would wait until statement_timeout. The NOTICE
-- (which names the jobid) is hidden; the early 'running' is what counts.
SET statement_timeout = '60s';
SET client_min_messages = warning;
SELECT lantern.wait_task(:cic_job) FROM (SELECT pg_advisory_unlock(4711) OFFSET 0) unlocked;
RESET client_min_messages;
RESET statement_timeout;
CALL wait_for(:cic_job);
SELECT status FROM lantern.tasks WHERE jobid = :cic_job;
SELECT indexrelid::regclass, indisvalid FROM pg_index WHERE indrelid = 'wait_cic'::regclass;
DROP TABLE wait_cic;
