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
-- invalid index behind, as in psql. Another task, whose open transaction
-- wrote to the table, holds the build in its second phase.
CREATE TABLE big AS SELECT g AS id FROM generate_series(1, 1000) g;
SELECT lantern.async_task('BEGIN; INSERT INTO big VALUES (0); SELECT pg_sleep(60); COMMIT', 'writer') AS w \gset
SELECT wait_for_statement(:w, 'SELECT pg_sleep(60)');
SELECT lantern.async_task('CREATE INDEX CONCURRENTLY big_id_idx ON big (id)', 'cic') AS j \gset
SELECT wait_for_statement(:j, 'CREATE INDEX CONCURRENTLY%', true);
SELECT lantern.cancel_task(:j);
CALL wait_for(:j);
SELECT * FROM task(:j);
SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_id_idx'::regclass;
SELECT lantern.cancel_task(:w);
CALL wait_for(:w);
SELECT * FROM task(:w);
SELECT count(*) FROM big WHERE id = 0;
SELECT v FROM cancel_log ORDER BY v;

-- The connection of a canceled task is clean for the next task.
SELECT lantern.async_task($$INSERT INTO cancel_log VALUES ('after cancel')$$) AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT v FROM cancel_log ORDER BY v;

-- cancel_all_async_tasks() cancels the tasks that were queued when it was
-- called: none of them runs, even as the running ones it cancels free their
-- places. (A race: repeated a few times.)
CREATE PROCEDURE cancel_all_with_queue(p_rounds int)
LANGUAGE plpgsql AS $$
DECLARE
    sleeps bigint[];
    q bigint;
BEGIN
    FOR i IN 1..p_rounds LOOP
        sleeps := ARRAY(SELECT lantern.async_task('SELECT pg_sleep(60)', 'cancel_all sleep')
                          FROM generate_series(1, 4));
        q := lantern.async_task($q$INSERT INTO cancel_log VALUES ('queued, ran after cancel_all')$q$,
                                'cancel_all queued');
        COMMIT;
        FOR k IN 1..4 LOOP
            PERFORM wait_for_statement(sleeps[k], 'SELECT pg_sleep(60)');
        END LOOP;
        PERFORM lantern.cancel_all_async_tasks();
        COMMIT;
        PERFORM lantern.wait_task(q, '60s');
        PERFORM lantern.wait_task(sleeps[k], '60s') FROM generate_series(1, 4) k;
    END LOOP;
END
$$;
CALL cancel_all_with_queue(10);
SELECT job_name, status, error_message, count(*) FROM lantern.tasks
 WHERE job_name LIKE 'cancel_all %' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT count(*) FROM cancel_log WHERE v LIKE 'queued, ran%';
DROP PROCEDURE cancel_all_with_queue(int);

-- A cancel that comes as a task starts its statement is not lost: the task
-- ends canceled; a lost cancel would let pg_sleep(30) end and the task
-- succeed. (A race: repeated.)
CREATE PROCEDURE cancel_at_start(p_rounds int)
LANGUAGE plpgsql AS $$
DECLARE
    jobs bigint[];
BEGIN
    FOR i IN 1..p_rounds LOOP
        jobs := ARRAY(SELECT lantern.async_task('SELECT pg_sleep(30)', 'cancel at start')
                        FROM generate_series(1, 4));
        COMMIT;
        PERFORM pg_sleep(random() * 0.005);
        PERFORM lantern.cancel_task(jobs[k]) FROM generate_series(1, 4) k;
        COMMIT;
        PERFORM lantern.wait_task(jobs[k], '60s') FROM generate_series(1, 4) k;
    END LOOP;
END
$$;
CALL cancel_at_start(25);
SELECT status, error_message, count(*) FROM lantern.tasks
 WHERE job_name = 'cancel at start' GROUP BY 1, 2;
DROP PROCEDURE cancel_at_start(int);

-- No task of this file is left active.
SELECT count(*) AS active FROM lantern.tasks WHERE duration IS NULL;
DROP TABLE cancel_log, big;
DROP FUNCTION task(bigint);
