--
-- modify: UPDATE is refused; DELETE removes ended tasks from the history and
-- refuses active ones.
--
SELECT setval('lantern.tasks_jobid_seq', 2000, false);
SELECT lantern.async_task('SELECT 1', 'ok 1') AS ok1 \gset
SELECT lantern.async_task('SELECT 1/0', 'failed 1') AS failed1 \gset
SELECT lantern.async_task('SELECT 2', 'ok 2') AS ok2 \gset
SELECT lantern.async_task('SELECT 2/0', 'failed 2') AS failed2 \gset
SELECT lantern.wait_task(jobid, '60s') FROM lantern.tasks WHERE jobid >= 2000 ORDER BY jobid;

-- UPDATE is refused, whatever it would change.
UPDATE lantern.tasks SET status = 'canceled' WHERE jobid = :ok1;
UPDATE lantern.tasks SET job_name = 'renamed';
UPDATE lantern.tasks SET duration = NULL WHERE false;
WITH u AS (UPDATE lantern.tasks SET error_message = 'x' RETURNING jobid) SELECT count(*) FROM u;
SELECT job_name, status FROM lantern.tasks WHERE jobid >= 2000 ORDER BY jobid;

-- DELETE removes ended tasks.
DELETE FROM lantern.tasks WHERE jobid = :ok1 RETURNING jobid = :ok1 AS deleted, job_name, status, error_message;
DELETE FROM lantern.tasks WHERE jobid = :ok1;
SELECT count(*) FROM lantern.tasks WHERE jobid = :ok1;
WITH d AS (DELETE FROM lantern.tasks WHERE jobid >= 2000 AND status = 'failed'
           RETURNING jobid, job_name, status, error_message)
SELECT job_name, status, error_message FROM d ORDER BY jobid;
-- ... in the transaction that deletes them.
BEGIN;
DELETE FROM lantern.tasks WHERE jobid = :ok2;
SELECT count(*) FROM lantern.tasks WHERE jobid = :ok2;
ROLLBACK;
SELECT job_name, status FROM lantern.tasks WHERE jobid >= 2000 ORDER BY jobid;

-- A task that has not ended cannot be deleted: not when running ...
SELECT lantern.async_task('SELECT pg_sleep(60)', 'sleep') AS s \gset
SELECT wait_for_statement(:s, 'SELECT pg_sleep(60)');
DELETE FROM lantern.tasks WHERE jobid = :s;
-- ... not when queued ...
SELECT count(lantern.async_task('SELECT pg_sleep(60)', 'more sleep')) FROM generate_series(1, 3);
SELECT count(wait_for_statement(jobid, 'SELECT pg_sleep(60)')) FROM lantern.tasks
 WHERE job_name = 'more sleep' AND duration IS NULL;
SELECT lantern.async_task('SELECT 3', 'queued') AS q \gset
SELECT status FROM lantern.tasks WHERE jobid = :q;
DELETE FROM lantern.tasks WHERE jobid = :q;
-- ... not in its own transaction ...
BEGIN;
SELECT lantern.async_task('SELECT 4', 'uncommitted') AS u \gset
DELETE FROM lantern.tasks WHERE jobid = :u;
ROLLBACK;
-- ... and a DELETE that meets one deletes nothing (one only: which of several
-- it meets first depends on the rows' places in the store).
DELETE FROM lantern.tasks WHERE jobid IN (:ok2, :q);
SELECT job_name, status FROM lantern.tasks WHERE jobid >= 2000 ORDER BY jobid;
-- Once canceled, they can.
SELECT lantern.cancel_all_async_tasks();
SELECT job_name, lantern.wait_task(jobid, '60s') FROM lantern.tasks WHERE jobid >= 2000 ORDER BY jobid;
WITH d AS (DELETE FROM lantern.tasks WHERE jobid >= 2000 RETURNING jobid, job_name, status, error_message)
SELECT job_name, status, error_message FROM d ORDER BY jobid;
SELECT count(*) FROM lantern.tasks WHERE jobid >= 2000;

-- A client that polls until duration IS NOT NULL may delete the task at once.
CREATE PROCEDURE delete_when_ended(p_tasks int)
LANGUAGE plpgsql AS $$
DECLARE
    j bigint;
    deadline timestamptz;
    refused int := 0;
BEGIN
    FOR i IN 1..p_tasks LOOP
        j := lantern.async_task('SELECT 1', 'quick');
        COMMIT;
        deadline := clock_timestamp() + '60s';
        LOOP
            EXIT WHEN EXISTS (SELECT FROM lantern.tasks WHERE jobid = j AND duration IS NOT NULL);
            IF clock_timestamp() > deadline THEN
                RAISE EXCEPTION 'task % did not end', j;
            END IF;
            COMMIT;
        END LOOP;
        BEGIN
            DELETE FROM lantern.tasks WHERE jobid = j;
        EXCEPTION WHEN object_in_use THEN
            refused := refused + 1;
        END;
        COMMIT;
    END LOOP;
    RAISE NOTICE 'deletes refused: %', refused;
END
$$;
CALL delete_when_ended(100);
SELECT count(*) FROM lantern.tasks WHERE job_name = 'quick';
DROP PROCEDURE delete_when_ended(int);

-- A role deletes only the tasks it sees.
CREATE ROLE regress_modify_user LOGIN;
SELECT lantern.async_task('SELECT 5', 'superuser task') AS su_task \gset
SELECT lantern.wait_task(:su_task, '60s');
SET ROLE regress_modify_user;
SELECT lantern.async_task('SELECT 6', 'user task') AS user_task \gset
SELECT lantern.wait_task(:user_task, '60s');
UPDATE lantern.tasks SET job_name = 'mine';
DELETE FROM lantern.tasks RETURNING job_name, username;
DELETE FROM lantern.tasks WHERE jobid = :su_task;
RESET ROLE;
SELECT job_name FROM lantern.tasks WHERE jobid >= 2000 ORDER BY jobid;
DELETE FROM lantern.tasks WHERE jobid = :su_task;

-- Other ways to write lantern.tasks.
TRUNCATE lantern.tasks;
INSERT INTO lantern.tasks (query) VALUES ('SELECT 7') ON CONFLICT DO NOTHING RETURNING jobid AS j \gset
SELECT lantern.wait_task(:j, '60s');
MERGE INTO lantern.tasks t USING (SELECT 1 AS jobid) s ON t.jobid = s.jobid
  WHEN MATCHED THEN DELETE;

-- No task of this file is left active.
SELECT count(*) AS active FROM lantern.tasks WHERE duration IS NULL;
DROP ROLE regress_modify_user;
