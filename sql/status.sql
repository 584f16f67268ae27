--
-- status: what tasks do and how their outcome shows in lantern.tasks.
--
SELECT setval('lantern.tasks_jobid_seq', 200, false);

CREATE TABLE log (id serial, v text);
-- One row per task, to show: status, whether it ended, its error text.
CREATE FUNCTION task(p_jobid bigint)
RETURNS TABLE (status text, ended boolean, error_message text)
LANGUAGE sql AS $$
    SELECT status, duration IS NOT NULL, error_message FROM lantern.tasks WHERE jobid = p_jobid
$$;

-- A task that succeeds.
SELECT lantern.async_task('INSERT INTO log (v) VALUES (''one'')') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);
SELECT v FROM log ORDER BY id;

-- A task that fails: error_message is the server's full error text, as libpq
-- reports it, with the LINE and caret lines.
SELECT lantern.async_task('SELECT haha FROM log') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);
SELECT lantern.async_task(E'SELECT id,\n       haha\n  FROM log') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);
SELECT lantern.async_task('SELECT * FROM no_such_table') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);
-- ... with its DETAIL, HINT and CONTEXT lines.
SELECT lantern.async_task($q$DO $$ BEGIN RAISE EXCEPTION 'oops %', 42 USING DETAIL = 'it broke', HINT = 'fix it'; END $$$q$) AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);
SELECT lantern.async_task('SELECT 1/0') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);

-- Several statements: each one commits on its own (like psql), all succeed.
SELECT lantern.async_task(
  'INSERT INTO log (v) VALUES (''two''); INSERT INTO log (v) VALUES (''three''); SELECT 1') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);
SELECT v FROM log ORDER BY id;
-- The first error stops the task: what ran before stays, what follows never runs.
SELECT lantern.async_task(
  'INSERT INTO log (v) VALUES (''four''); SELECT 1/0; INSERT INTO log (v) VALUES (''never'')') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);
SELECT v FROM log ORDER BY id;
-- The error of a statement on a later line of the task: LINE counts the lines
-- of the statement as psql would send it (from its first token).
SELECT lantern.async_task(E'INSERT INTO log (v) VALUES (''five'');\nSELECT 2;\nSELECT haha\n  FROM log;\nSELECT 3') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);
SELECT v FROM log ORDER BY id;

-- Transactions inside a task.
-- A BEGIN ... COMMIT block commits as one; ROLLBACK undoes its block only.
SELECT lantern.async_task(
  'BEGIN; INSERT INTO log (v) VALUES (''six''); INSERT INTO log (v) VALUES (''seven''); COMMIT;
   BEGIN; INSERT INTO log (v) VALUES (''rolled back''); ROLLBACK;
   INSERT INTO log (v) VALUES (''eight'')') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);
SELECT v FROM log ORDER BY id;
-- An error inside a block: the block is rolled back, the task fails with the
-- first error, and what follows does not run.
SELECT lantern.async_task(
  'BEGIN; INSERT INTO log (v) VALUES (''in failed block''); SELECT 1/0; COMMIT;
   INSERT INTO log (v) VALUES (''never'')') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);
-- A script that leaves its transaction open fails, and its work is rolled back.
SELECT lantern.async_task('BEGIN; INSERT INTO log (v) VALUES (''left open'')') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);
SELECT lantern.async_task(
  'INSERT INTO log (v) VALUES (''nine''); BEGIN; INSERT INTO log (v) VALUES (''left open too'')') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);
SELECT v FROM log ORDER BY id;
-- COMMIT without a transaction only warns, like in psql.
SELECT lantern.async_task('COMMIT') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);

-- Settings made by a task last for its statements, and not into later tasks
-- (the executor resets a connection before it reuses it).
SELECT lantern.async_task(
  'SET work_mem = ''7MB''; INSERT INTO log (v) SELECT ''work_mem '' || current_setting(''work_mem'')') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT lantern.async_task(
  'INSERT INTO log (v) SELECT ''work_mem '' || current_setting(''work_mem'')') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT lantern.async_task(
  'CREATE TEMP TABLE tmp (a int); PREPARE p AS SELECT 1') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT lantern.async_task(
  'INSERT INTO log (v) SELECT ''temp tables '' || count(*) FROM pg_class WHERE relpersistence = ''t'';
   INSERT INTO log (v) SELECT ''prepared '' || count(*) FROM pg_prepared_statements') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT v FROM log WHERE v LIKE 'work_mem%' OR v LIKE 'temp%' OR v LIKE 'prepared%' ORDER BY id;

-- Results are read and dropped: many rows, and COPY TO STDOUT, succeed.
SELECT lantern.async_task('SELECT g, repeat(''x'', 100) FROM generate_series(1, 200000) g') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);
SELECT lantern.async_task('COPY (SELECT generate_series(1, 10000)) TO STDOUT') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);
-- Nobody can feed COPY FROM STDIN.
SELECT lantern.async_task('COPY log (v) FROM STDIN') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT * FROM task(:j);

--
-- Maintenance: what lantern_fdw is for.
--
CREATE TABLE items AS
  SELECT i AS id, (i * 7919::bigint % 300000)::int AS v, md5(i::text) AS t
    FROM generate_series(1, 300000) i;
-- VACUUM cannot run inside a transaction block: as a task, it runs.
SELECT lantern.async_task('VACUUM items', 'vacuum') AS j \gset
CALL wait_for(:j);
SELECT * FROM task(:j);
SELECT lantern.async_task('VACUUM (ANALYZE) items; ANALYZE items') AS j \gset
CALL wait_for(:j);
SELECT * FROM task(:j);
SELECT reltuples FROM pg_class WHERE relname = 'items';
-- ... but not in a block the task opens itself.
SELECT lantern.async_task('BEGIN; VACUUM items; COMMIT') AS j \gset
CALL wait_for(:j);
SELECT * FROM task(:j);

-- CREATE INDEX.
SELECT lantern.async_task('CREATE INDEX items_v_idx ON items (v)', 'index items') AS j \gset
CALL wait_for(:j);
SELECT * FROM task(:j);
-- CREATE INDEX CONCURRENTLY, with a setting in the same task. wait_for
-- commits between its polls, so it does not hold up the build.
SELECT lantern.async_task(
  'SET maintenance_work_mem=''64MB''; CREATE INDEX CONCURRENTLY items_t_idx ON items (t)',
  'concurrent index') AS j \gset
CALL wait_for(:j);
SELECT * FROM task(:j);
SELECT lantern.async_task('CREATE UNIQUE INDEX CONCURRENTLY items_id_idx ON items (id)') AS j \gset
CALL wait_for(:j);
SELECT * FROM task(:j);
SELECT c.relname, i.indisvalid, i.indisready, i.indisunique
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = 'items'::regclass ORDER BY c.relname;
-- A concurrent build that fails leaves an invalid index, like in psql.
SELECT lantern.async_task('CREATE UNIQUE INDEX CONCURRENTLY items_dup_idx ON items ((id % 299999))') AS j \gset
CALL wait_for(:j);
SELECT * FROM task(:j);
SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_dup_idx'::regclass;
DROP INDEX items_dup_idx;
-- A CREATE INDEX CONCURRENTLY task waits for the snapshot of a statement that
-- waits for it: wait_task sees that, says so, and returns the current status.
SELECT lantern.async_task('CREATE INDEX CONCURRENTLY items_v2_idx ON items (v, id)') AS j \gset
SELECT lantern.wait_task(:j, '60s');
CALL wait_for(:j);
SELECT * FROM task(:j);
SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_v2_idx'::regclass;

-- Quoted mixed-case names.
CREATE TABLE "MixedCase" ("Id" int, "Value" text);
INSERT INTO "MixedCase" SELECT i, 'v' || i FROM generate_series(1, 1000) i;
SELECT lantern.async_task('CREATE INDEX "MixedCase_Value_idx" ON "MixedCase" ("Value")') AS j \gset
CALL wait_for(:j);
SELECT * FROM task(:j);
SELECT lantern.async_task('CREATE INDEX CONCURRENTLY ON "MixedCase" ("Id"); VACUUM "MixedCase"') AS j \gset
CALL wait_for(:j);
SELECT * FROM task(:j);
SELECT lantern.async_task('CREATE INDEX ON mixedcase ("Id")') AS j \gset
CALL wait_for(:j);
SELECT * FROM task(:j);
\d "MixedCase"

-- No task of this file is left active.
SELECT count(*) AS active FROM lantern.tasks WHERE duration IS NULL;
DROP TABLE items, "MixedCase", log;
DROP FUNCTION task(bigint);
