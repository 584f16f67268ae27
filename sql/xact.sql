--
-- xact: a task becomes visible to the executor only when the submitting
-- transaction commits; rolled-back transactions and savepoints leave nothing.
--
SELECT setval('lantern.tasks_jobid_seq', 1000, false);
CREATE TABLE xact_log (v text);
CREATE FUNCTION task(p_jobid bigint)
RETURNS TABLE (job_name text, status text, ended boolean, error_message text)
LANGUAGE sql AS $$
    SELECT job_name, status, duration IS NOT NULL, error_message FROM lantern.tasks WHERE jobid = p_jobid
$$;

-- Inside its transaction, a task shows as queued, and does not start.
BEGIN;
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('rolled back')$$, 'rolled back') AS j1 \gset
INSERT INTO lantern.tasks (query, job_name)
  VALUES ($$INSERT INTO xact_log VALUES ('rolled back too')$$, 'rolled back too')
  RETURNING jobid AS j2, status \gset
SELECT :j2 = :j1 + 1 AS next_jobid, :'status' AS returned_status;
SELECT * FROM task(:j1);
SELECT pg_sleep(0.2);
SELECT job_name, status FROM lantern.tasks WHERE jobid IN (:j1, :j2) ORDER BY jobid;
ROLLBACK;
-- ROLLBACK: the tasks never run and leave no row.
SELECT count(*) FROM lantern.tasks WHERE jobid IN (:j1, :j2);
SELECT lantern.wait_task(:j1, '1s');
SELECT lantern.cancel_task(:j1);
-- A transaction that fails is rolled back too.
BEGIN;
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('failed xact')$$, 'failed xact') AS j3 \gset
SELECT 1/0;
COMMIT;
SELECT count(*) FROM lantern.tasks WHERE jobid = :j3;

-- COMMIT: the tasks of the transaction run, in the order of submission.
BEGIN;
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('committed 1')$$, 'committed 1') AS j4 \gset
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('committed 2')$$, 'committed 2') AS j5 \gset
COMMIT;
CALL wait_for(:j4);
CALL wait_for(:j5);
SELECT * FROM task(:j4) UNION ALL SELECT * FROM task(:j5);

-- Savepoints.
BEGIN;
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('before savepoint')$$, 'before savepoint') AS j6 \gset
SAVEPOINT a;
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('in savepoint a')$$, 'in savepoint a') AS j7 \gset
SAVEPOINT b;
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('in savepoint b')$$, 'in savepoint b') AS j8 \gset
RELEASE SAVEPOINT b;
-- Rolling back to a undoes b too, released or not.
ROLLBACK TO SAVEPOINT a;
SELECT count(*) FROM lantern.tasks WHERE jobid IN (:j7, :j8);
-- A task submitted after the rolled-back savepoint runs.
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('after rollback to a')$$, 'after rollback to a') AS j9 \gset
SAVEPOINT c;
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('in savepoint c')$$, 'in savepoint c') AS j10 \gset
RELEASE SAVEPOINT c;
SAVEPOINT d;
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('in savepoint d')$$, 'in savepoint d') AS j11 \gset
ROLLBACK TO SAVEPOINT d;
-- ... and after an error rolled back to its savepoint.
SAVEPOINT e;
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('in savepoint e')$$, 'in savepoint e') AS j12 \gset
SELECT 1/0;
ROLLBACK TO SAVEPOINT e;
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('after error')$$, 'after error') AS j13 \gset
COMMIT;
CALL wait_for(:j6);
CALL wait_for(:j9);
CALL wait_for(:j10);
CALL wait_for(:j13);
SELECT job_name, status FROM lantern.tasks WHERE jobid BETWEEN :j6 AND :j13 ORDER BY jobid;
-- An exception block of PL/pgSQL is a savepoint too.
DO $$
BEGIN
    PERFORM lantern.async_task($q$INSERT INTO xact_log VALUES ('in exception block')$q$, 'in exception block');
    RAISE EXCEPTION 'undo it';
EXCEPTION WHEN raise_exception THEN
    RAISE NOTICE 'caught: %', SQLERRM;
END
$$;
SELECT count(*) FROM lantern.tasks WHERE job_name = 'in exception block';
SELECT v FROM xact_log ORDER BY v;

-- A task canceled in its own transaction ends canceled at commit, and never runs.
BEGIN;
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('canceled by its submitter')$$, 'self canceled') AS j \gset
SELECT lantern.cancel_task(:j);
SELECT * FROM task(:j);
COMMIT;
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);

-- A cancel rolled back to a savepoint leaves the task queued.
SELECT count(lantern.async_task('SELECT pg_sleep(60)', 'sleep')) FROM generate_series(1, 4);
SELECT count(wait_for_statement(jobid, 'SELECT pg_sleep(60)')) FROM lantern.tasks
 WHERE job_name = 'sleep' AND duration IS NULL;
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('queued')$$, 'queued') AS q \gset
BEGIN;
SAVEPOINT s;
SELECT lantern.cancel_task(:q);
SELECT * FROM task(:q);
ROLLBACK TO SAVEPOINT s;
SELECT * FROM task(:q);
COMMIT;
SELECT * FROM task(:q);
SELECT lantern.cancel_all_async_tasks();
CALL wait_for(:q);
SELECT * FROM task(:q);
SELECT job_name, lantern.wait_task(jobid, '60s') FROM lantern.tasks WHERE job_name = 'sleep' ORDER BY jobid;

-- PREPARE TRANSACTION is refused for a transaction that submitted or
-- canceled tasks; the transaction is rolled back.
BEGIN;
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('prepared')$$, 'prepared') AS j \gset
PREPARE TRANSACTION 'regress_lantern_submit';
SELECT count(*) FROM lantern.tasks WHERE jobid = :j;
SELECT count(*) FROM pg_prepared_xacts;
BEGIN;
SAVEPOINT s;
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('prepared in savepoint')$$) AS j \gset
RELEASE SAVEPOINT s;
PREPARE TRANSACTION 'regress_lantern_submit';
SELECT count(*) FROM lantern.tasks WHERE jobid = :j;
SELECT count(lantern.async_task('SELECT pg_sleep(60)', 'sleep again')) FROM generate_series(1, 4);
SELECT count(wait_for_statement(jobid, 'SELECT pg_sleep(60)')) FROM lantern.tasks
 WHERE job_name = 'sleep again' AND duration IS NULL;
SELECT lantern.async_task($$INSERT INTO xact_log VALUES ('queued for cancel')$$, 'queued for cancel') AS q \gset
BEGIN;
SELECT lantern.cancel_task(:q);
PREPARE TRANSACTION 'regress_lantern_cancel';
SELECT * FROM task(:q);
SELECT count(*) FROM pg_prepared_xacts;
SELECT lantern.cancel_all_async_tasks();
CALL wait_for(:q);
SELECT * FROM task(:q);
SELECT job_name, lantern.wait_task(jobid, '60s') FROM lantern.tasks
 WHERE job_name = 'sleep again' ORDER BY jobid;
-- ... not for one whose submission was rolled back to a savepoint.
BEGIN;
SAVEPOINT s;
SELECT lantern.async_task('SELECT 1') AS j \gset
ROLLBACK TO SAVEPOINT s;
INSERT INTO xact_log VALUES ('prepared without tasks');
PREPARE TRANSACTION 'regress_lantern_none';
COMMIT PREPARED 'regress_lantern_none';
SELECT v FROM xact_log WHERE v LIKE 'prepared%' OR v LIKE 'queued%' ORDER BY v;

-- No task of this file is left active.
SELECT count(*) AS active FROM lantern.tasks WHERE duration IS NULL;
DROP TABLE xact_log;
DROP FUNCTION task(bigint);
