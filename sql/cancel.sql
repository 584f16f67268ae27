--
-- cancel: lantern.cancel_task and lantern.cancel_all_async_tasks, on queued,
-- running and ended tasks.
--
SELECT setval('lantern.tasks_jobid_seq', 400, false);
CREATE TABLE cancel_log (v text);
CREATE FUNCTION task(p_jobid bigint)
RETURNS TABLE (job_name text, status text, ended boolean, error_message text)
LANGUAGE sql AS $$
    SELECT job_name, status, duration IS NOT NULL, error_message FROM lantern.tasks WHERE jobid = p_jobid
$$;
-- Waits until the backend of a task runs a statement that matches a pattern
-- (and, if asked, waits for a lock). A function: it may run inside a
-- transaction block; it holds a snapshot while it polls.
CREATE FUNCTION wait_for_statement(p_jobid bigint, p_pattern text, p_lock_wait boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + '60s';
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN EXISTS (SELECT FROM pg_stat_activity
                           WHERE application_name = 'lantern_fdw task ' || p_jobid
                             AND state = 'active' AND query LIKE p_pattern
                             AND (NOT p_lock_wait OR wait_event_type = 'Lock'));
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'task % does not run %', p_jobid, p_pattern;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;

-- Polls until a task has ended; returns false if it has not within the
-- timeout. Also a function, for use inside a transaction block.
CREATE FUNCTION ended_within(p_jobid bigint, p_timeout interval)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + p_timeout;
BEGIN
    LOOP
        IF EXISTS (SELECT FROM lantern.tasks WHERE jobid = p_jobid AND duration IS NOT NULL) THEN
            RETURN true;
        END IF;
        IF clock_timestamp() > deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;

-- Fill the four parallel slots (test/regress.conf) with sleeping tasks.
SELECT lantern.async_task('SELECT pg_sleep(60)', 'sleep 1') AS s1 \gset
SELECT lantern.async_task('SELECT pg_sleep(60)', 'sleep 2') AS s2 \gset
SELECT lantern.async_task('SELECT pg_sleep(60)', 'sleep 3') AS s3 \gset
SELECT lantern.async_task('SELECT pg_sleep(60)', 'sleep 4') AS s4 \gset
SELECT wait_for_statement(:s1, 'SELECT pg_sleep(60)');
SELECT wait_for_statement(:s2, 'SELECT pg_sleep(60)');
SELECT wait_for_statement(:s3, 'SELECT pg_sleep(60)');
SELECT wait_for_statement(:s4, 'SELECT pg_sleep(60)');
SELECT job_name, status, duration IS NOT NULL AS ended FROM lantern.tasks
 WHERE jobid BETWEEN :s1 AND :s4 ORDER BY jobid;

-- A fifth task waits in the queue.
SELECT lantern.async_task($$INSERT INTO cancel_log VALUES ('queued 1')$$, 'queued 1') AS q1 \gset
SELECT lantern.async_task($$INSERT INTO cancel_log VALUES ('queued 2')$$, 'queued 2') AS q2 \gset
SELECT * FROM task(:q1);
-- wait_task returns the current status when the timeout passes.
SELECT lantern.wait_task(:q1, '50ms');
SELECT lantern.wait_task(:q1, '0');
SELECT lantern.wait_task(:s1, '50ms');
-- A cancel rolled back changes nothing.
BEGIN;
SELECT lantern.cancel_task(:q1);
SELECT * FROM task(:q1);
ROLLBACK;
SELECT * FROM task(:q1);
-- Canceling a queued task: it ends at once, canceled, and never runs.
SELECT lantern.cancel_task(:q1);
SELECT * FROM task(:q1);
SELECT lantern.wait_task(:q1, '60s');
-- Canceling it again, or any ended task, returns false.
SELECT lantern.cancel_task(:q1);
-- Canceling a running task.
SELECT lantern.cancel_task(:s1);
CALL wait_for(:s1);
SELECT * FROM task(:s1);
SELECT lantern.cancel_task(:s1);
-- Its slot went to the next queued task, which runs.
CALL wait_for(:q2);
SELECT * FROM task(:q2);
SELECT lantern.cancel_task(:q2);
SELECT v FROM cancel_log ORDER BY v;
-- Tasks that do not exist.
SELECT lantern.cancel_task(999999);
SELECT lantern.cancel_task(-1);
SELECT lantern.cancel_task(NULL);

-- cancel_all_async_tasks cancels every active task: queued and running.
SELECT lantern.async_task('SELECT pg_sleep(60)', 'sleep 5') AS s5 \gset
SELECT wait_for_statement(:s5, 'SELECT pg_sleep(60)');
SELECT lantern.async_task($$INSERT INTO cancel_log VALUES ('queued 3')$$, 'queued 3') AS q3 \gset
SELECT job_name, status FROM lantern.tasks WHERE duration IS NULL ORDER BY jobid;
SELECT lantern.cancel_all_async_tasks();
CALL wait_for(:s2);
CALL wait_for(:s3);
CALL wait_for(:s4);
CALL wait_for(:s5);
CALL wait_for(:q3);
SELECT job_name, status, duration IS NOT NULL AS ended, error_message FROM lantern.tasks
 WHERE jobid >= 400 ORDER BY jobid;
-- With nothing active, it does nothing.
SELECT lantern.cancel_all_async_tasks();

-- Canceling a script between statements: what committed before stays, the
-- statement canceled and what follows do not.
SELECT lantern.async_task(
  $$INSERT INTO cancel_log VALUES ('script 1'); SELECT pg_sleep(60); INSERT INTO cancel_log VALUES ('script 2')$$,
  'script') AS j \gset
SELECT wait_for_statement(:j, 'SELECT pg_sleep(60)');
SELECT lantern.cancel_task(:j);
CALL wait_for(:j);
SELECT * FROM task(:j);
-- ... and inside a transaction block, the block is rolled back.
SELECT lantern.async_task(
  $$BEGIN; INSERT INTO cancel_log VALUES ('block 1'); SELECT pg_sleep(60); INSERT INTO cancel_log VALUES ('block 2'); COMMIT$$,
  'block') AS j \gset
SELECT wait_for_statement(:j, 'SELECT pg_sleep(60)');
SELECT lantern.cancel_task(:j);
CALL wait_for(:j);
SELECT * FROM task(:j);
-- A CREATE INDEX CONCURRENTLY canceled after its first phase leaves an
-- invalid index behind, as in psql. An open transaction that wrote to the
-- table holds the build in its second phase.
CREATE TABLE big AS SELECT g AS id FROM generate_series(1, 1000) g;
SELECT lantern.async_task('CREATE INDEX CONCURRENTLY big_id_idx ON big (id)', 'cic') AS j \gset
BEGIN;
INSERT INTO big VALUES (0);
SELECT wait_for_statement(:j, 'CREATE INDEX CONCURRENTLY%', true);
-- A running task is signalled at once, not at the end of this transaction.
SELECT lantern.cancel_task(:j);
SELECT ended_within(:j, '60s');
COMMIT;
SELECT * FROM task(:j);
SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_id_idx'::regclass;
SELECT v FROM cancel_log ORDER BY v;

-- The connection of a canceled task is clean for the next task.
SELECT lantern.async_task($$INSERT INTO cancel_log VALUES ('after cancel')$$) AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT v FROM cancel_log ORDER BY v;

-- No task of this file is left active.
SELECT count(*) AS active FROM lantern.tasks WHERE duration IS NULL;
DROP TABLE cancel_log, big;
DROP FUNCTION task(bigint);
DROP FUNCTION wait_for_statement(bigint, text, boolean), ended_within(bigint, interval);
