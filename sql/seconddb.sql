--
-- seconddb: lantern_fdw in a second database. Each database has its own
-- tasks and its own jobids; one executor serves them all.
--
SELECT setval('lantern.tasks_jobid_seq', 4000, false);
SELECT current_database() AS first_db \gset
-- A task in the first database, still running while the second one works.
SELECT lantern.async_task('SELECT pg_sleep(60)', 'first db sleep') AS first_sleep \gset
SELECT wait_for_statement(:first_sleep, 'SELECT pg_sleep(60)');

CREATE DATABASE regress_lantern_db2;
\c regress_lantern_db2
-- Without the extension, there is no lantern.tasks here.
SELECT count(*) FROM pg_extension WHERE extname = 'lantern_fdw';
SELECT lantern.async_task('SELECT 1');
CREATE EXTENSION lantern_fdw;
SELECT count(*) FROM lantern.tasks;

CREATE TABLE db2_log (db name);
-- jobids are per database: the sequence of this one starts at 1.
SELECT lantern.async_task('INSERT INTO db2_log SELECT current_database()', 'db2 task');
SELECT lantern.wait_task(1, '60s');
SELECT jobid, query, job_name, status, duration IS NOT NULL AS ended, error_message FROM lantern.tasks;
SELECT * FROM db2_log;
-- Tasks of the first database are not seen here, even with the same jobid.
SELECT count(*) FROM lantern.tasks WHERE jobid = :first_sleep;
SELECT lantern.cancel_task(:first_sleep);
SELECT lantern.wait_task(:first_sleep, '0');
-- cancel_all_async_tasks() is per database too.
SELECT lantern.cancel_all_async_tasks();
SELECT lantern.async_task('SELECT haha', 'db2 failing task') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT jobid, job_name, status, error_message FROM lantern.tasks ORDER BY jobid;

\c :first_db
-- The first database's task was left alone, and its jobid 1 is its own task.
SELECT job_name, status FROM lantern.tasks WHERE jobid = :first_sleep;
SELECT query FROM lantern.tasks WHERE jobid = 1;
SELECT count(*) FROM lantern.tasks WHERE job_name LIKE 'db2%';
SELECT lantern.cancel_task(:first_sleep);
SELECT lantern.wait_task(:first_sleep, '60s');

-- The database can be dropped: the executor closes its idle connections to it.
DROP DATABASE regress_lantern_db2;
-- And the executor still works.
SELECT lantern.async_task('SELECT 1', 'after drop database') AS j \gset
SELECT lantern.wait_task(:j, '60s');

-- No task of this file is left active.
SELECT count(*) AS active FROM lantern.tasks WHERE duration IS NULL;
