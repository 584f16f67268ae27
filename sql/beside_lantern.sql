--
-- beside_lantern: lantern_fdw in databases that have Lantern's extension
-- (test/lantern_standin: the objects Lantern's script creates), in both
-- orders, with and without pg_cron's schema; the migration from Lantern's
-- pg_cron-based tasks exactly as docs/migrating-from-lantern.md gives it;
-- lantern.import_lantern_tasks().
--
SELECT current_database() AS main_db \gset
-- The members of extension lantern (:lantern_members) and the schemas of
-- both (:schemas).
\set lantern_members 'SELECT pg_describe_object(d.classid, d.objid, 0) AS lantern_member FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid WHERE d.refclassid = $$pg_extension$$::regclass AND d.deptype = $$e$$ AND e.extname = $$lantern$$ ORDER BY 1'
\set schemas 'SELECT nspname FROM pg_namespace WHERE nspname IN ($$lantern$$, $$_lantern_internal$$, $$_lantern_fdw$$, $$lantern_pg_cron$$) ORDER BY 1'

-- ------------------------------------------------------------------------
-- 1. Lantern without pg_cron, then lantern_fdw: both work side by side.
-- ------------------------------------------------------------------------
CREATE DATABASE regress_beside_nocron;
\c regress_beside_nocron
CREATE EXTENSION lantern;
CREATE EXTENSION lantern_fdw;
:lantern_members;
-- lantern_fdw's objects are in Lantern's schema; the schema is not its own.
SELECT e.extname AS schema_lantern_belongs_to FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
 WHERE d.classid = 'pg_namespace'::regclass AND d.objid = 'lantern'::regnamespace AND d.deptype = 'e';
SELECT count(*) AS fdw_objects_in_lantern FROM pg_class WHERE relnamespace = 'lantern'::regnamespace;
SELECT lantern.async_task('SELECT 1', 'beside lantern') AS jobid \gset
SELECT lantern.wait_task(:jobid, '60s');
SELECT jobid, job_name, status, error_message FROM lantern.tasks;
-- Lantern's schema holds lantern_fdw's objects: Lantern cannot be dropped
-- alone.
DROP EXTENSION lantern;
-- Dropping lantern_fdw leaves Lantern's schemas and objects as they were.
DROP EXTENSION lantern_fdw;
:schemas;
:lantern_members;
SELECT has_schema_privilege('public', 'lantern', 'USAGE') AS public_usage;
-- Again, and this time Lantern goes after lantern_fdw.
CREATE EXTENSION lantern_fdw;
DROP EXTENSION lantern_fdw;
DROP EXTENSION lantern;
:schemas;

-- ------------------------------------------------------------------------
-- 2. lantern_fdw first: Lantern's script fails on its CREATE SCHEMA lantern.
--    The way out (docs/setup.md): keep the history, drop lantern_fdw,
--    install Lantern, then lantern_fdw, and import the history back.
-- ------------------------------------------------------------------------
CREATE EXTENSION lantern_fdw;
SELECT lantern.async_task('SELECT 2', 'before lantern') AS jobid \gset
SELECT lantern.wait_task(:jobid, '60s');
CREATE EXTENSION lantern;
CREATE TABLE lantern_fdw_history AS SELECT * FROM lantern.tasks;
DROP EXTENSION lantern_fdw;
CREATE EXTENSION lantern;
CREATE EXTENSION lantern_fdw;
SELECT lantern.import_lantern_tasks('lantern_fdw_history');
DROP TABLE lantern_fdw_history;
SELECT jobid, query, job_name, status, duration IS NOT NULL AS ended FROM lantern.tasks;
SELECT lantern.async_task('SELECT 3', 'after import') AS next_jobid;
:lantern_members;

-- ------------------------------------------------------------------------
-- 3. A schema lantern made by a person: used if only superusers own it and
--    may create objects in it; left with its other objects on DROP.
-- ------------------------------------------------------------------------
\c :main_db
CREATE DATABASE regress_beside_person;
\c regress_beside_person
CREATE ROLE regress_beside_owner;
CREATE SCHEMA lantern AUTHORIZATION regress_beside_owner;
CREATE TABLE lantern.notes (note text);
CREATE EXTENSION lantern_fdw;
ALTER SCHEMA lantern OWNER TO CURRENT_USER;
GRANT CREATE ON SCHEMA lantern TO PUBLIC;
CREATE EXTENSION lantern_fdw;
REVOKE CREATE ON SCHEMA lantern FROM PUBLIC;
GRANT CREATE ON SCHEMA lantern TO regress_beside_owner;
CREATE EXTENSION lantern_fdw;
REVOKE CREATE ON SCHEMA lantern FROM regress_beside_owner;
-- Nothing was created by the refused attempts.
SELECT count(*) FROM pg_extension WHERE extname = 'lantern_fdw';
:schemas;
CREATE EXTENSION lantern_fdw;
SELECT count(*) AS tasks FROM lantern.tasks;
DROP EXTENSION lantern_fdw;
:schemas;
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'lantern';
\c :main_db
DROP DATABASE regress_beside_person;
DROP ROLE regress_beside_owner;

-- ------------------------------------------------------------------------
-- 4. Lantern with pg_cron: its async tasks are in the way until they are
--    set aside; then their history is imported.
-- ------------------------------------------------------------------------
CREATE DATABASE regress_beside_cron;
\c regress_beside_cron
-- The part of pg_cron's schema that Lantern's script uses.
CREATE SCHEMA cron;
CREATE TABLE cron.job_run_details (jobid bigint, runid bigint, status text, return_message text,
                                   start_time timestamptz, end_time timestamptz);
CREATE EXTENSION lantern;
:lantern_members;
\d lantern.tasks
CREATE ROLE regress_beside_alice LOGIN;
CREATE ROLE regress_beside_bob LOGIN;
-- The history Lantern's table would hold: ended tasks, an unfinished one,
-- and one of a role dropped since.
INSERT INTO lantern.tasks (jobid, pg_cron_jobid, query, pg_cron_job_name, job_name, username, started_at, duration, status, error_message) VALUES
    (1, 11, 'CREATE INDEX a_idx ON a USING hnsw (v)', 'async_task_1', 'index a', 'regress_beside_alice', '2026-01-01 10:00+00', '00:05:00', 'succeeded', NULL),
    (2, 12, 'CREATE INDEX b_idx ON b (x)', 'async_task_2', '', 'regress_beside_bob', '2026-01-01 11:00+00', '00:00:01', 'failed', 'ERROR:  relation "b" does not exist'),
    (3, 13, 'SELECT pg_sleep(600)', 'async_task_3', 'sleep', 'regress_beside_alice', '2026-01-01 12:00+00', '00:00:30', 'canceled', 'Canceled by user'),
    (5, 15, 'VACUUM a', 'async_task_5', 'vacuum', 'regress_beside_bob', '2026-01-02 09:00+00', NULL, NULL, NULL),
    (7, 17, 'SELECT 7', 'async_task_7', 'gone', 'regress_beside_gone', '2026-01-02 10:00+00', '00:00:02', 'succeeded', NULL);
SELECT setval('lantern.tasks_jobid_seq', 7);

-- Refused, naming the objects in the way; nothing is created.
CREATE EXTENSION lantern_fdw;
:schemas;
SELECT count(*) FROM pg_extension WHERE extname = 'lantern_fdw';

-- docs/migrating-from-lantern.md, step 2: detach and set aside.
BEGIN;
ALTER EXTENSION lantern DROP TABLE lantern.tasks;
ALTER EXTENSION lantern DROP SEQUENCE lantern.tasks_jobid_seq;
ALTER EXTENSION lantern DROP FUNCTION lantern.async_task(text, text);
ALTER EXTENSION lantern DROP FUNCTION lantern.async_task(text);
ALTER EXTENSION lantern DROP FUNCTION lantern.cancel_all_async_tasks();
ALTER EXTENSION lantern DROP FUNCTION _lantern_internal.async_task_finalizer_trigger();
DROP TRIGGER status_change_trigger ON cron.job_run_details;
CREATE SCHEMA lantern_pg_cron;
ALTER TABLE lantern.tasks SET SCHEMA lantern_pg_cron;
ALTER FUNCTION lantern.async_task(text, text) SET SCHEMA lantern_pg_cron;
ALTER FUNCTION lantern.async_task(text) SET SCHEMA lantern_pg_cron;
ALTER FUNCTION lantern.cancel_all_async_tasks() SET SCHEMA lantern_pg_cron;
ALTER FUNCTION _lantern_internal.async_task_finalizer_trigger() SET SCHEMA lantern_pg_cron;
COMMIT;
-- Step 3: create lantern_fdw and import.
CREATE EXTENSION lantern_fdw;
SELECT lantern.import_lantern_tasks('lantern_pg_cron.tasks');

SELECT jobid, query, pg_cron_job_name, job_name, username, started_at, duration, status, error_message
  FROM lantern.tasks WHERE jobid <> 5 ORDER BY jobid;
-- The unfinished task is failed, ended at the import, and never runs.
SELECT status, duration > interval '0' AS ended, error_message FROM lantern.tasks WHERE jobid = 5;
SELECT lantern.cancel_task(5) AS canceled, lantern.wait_task(5, '0') AS waited;
SELECT count(*) AS on_the_board FROM lantern.task_progress;
-- Imported rows run as the role username names (0 if it no longer exists).
SELECT l.jobid, l.username, l.run_as = coalesce(r.oid, 0) AS run_as_ok, l.login_role = l.run_as AS login_ok,
       l.board_id
  FROM _lantern_fdw.task_log l LEFT JOIN pg_roles r ON r.rolname = l.username ORDER BY l.jobid;
-- New tasks take jobids above the imported ones.
SELECT last_value FROM lantern.tasks_jobid_seq;
SELECT lantern.async_task('SELECT 8', 'first of lantern_fdw') AS jobid \gset
SELECT :jobid AS new_jobid, lantern.wait_task(:jobid, '60s');

-- Imported rows follow the same visibility rules as any task.
SET ROLE regress_beside_alice;
SELECT jobid, username, status FROM lantern.tasks ORDER BY jobid;
DELETE FROM lantern.tasks WHERE jobid = 3 RETURNING jobid;
RESET ROLE;
SET ROLE regress_beside_bob;
SELECT jobid, username, status FROM lantern.tasks ORDER BY jobid;
DELETE FROM lantern.tasks WHERE jobid = 1;
-- Only a superuser may import.
SELECT lantern.import_lantern_tasks('lantern.tasks');
RESET ROLE;

-- Importing again: every jobid is taken; nothing is imported.
SELECT count(*) FROM lantern.tasks;
SELECT lantern.import_lantern_tasks('lantern_pg_cron.tasks');
-- One taken jobid among new ones is enough to import nothing.
CREATE TABLE more_history AS SELECT * FROM lantern_pg_cron.tasks WHERE jobid = 7;
INSERT INTO more_history (jobid, query, username, started_at, duration, status)
    VALUES (20, 'SELECT 20', 'regress_beside_bob', '2026-01-03 10:00+00', '00:00:01', 'succeeded');
SELECT lantern.import_lantern_tasks('more_history');
SELECT count(*) FROM lantern.tasks;
DELETE FROM more_history WHERE jobid = 7;
SELECT lantern.import_lantern_tasks('more_history');
SELECT last_value FROM lantern.tasks_jobid_seq;
-- A table without the columns of Lantern's tasks is refused.
CREATE TABLE not_tasks (jobid bigint, query text);
SELECT lantern.import_lantern_tasks('not_tasks');

-- Step 4, later: remove the old objects. Lantern's own stay.
DROP SCHEMA lantern_pg_cron CASCADE;
:lantern_members;
-- DROP EXTENSION lantern_fdw leaves Lantern's schemas and objects.
DROP EXTENSION lantern_fdw;
:schemas;
DROP EXTENSION lantern;

\c :main_db
DROP DATABASE regress_beside_nocron;
DROP DATABASE regress_beside_cron;
DROP ROLE regress_beside_alice;
DROP ROLE regress_beside_bob;
