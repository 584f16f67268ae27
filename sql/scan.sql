--
-- scan: reading lantern.tasks. `jobid = <constant or parameter>` is looked
-- up in the store's index; anything else scans it all. Both show the live
-- status of active tasks.
--
SELECT setval('lantern.tasks_jobid_seq', 3000, false);
SELECT lantern.async_task('SELECT 1', 'scan ok') AS ok \gset
SELECT lantern.async_task('SELECT 1/0', 'scan failed') AS failed \gset
SELECT lantern.wait_task(:ok, '60s'), lantern.wait_task(:failed, '60s');

-- Plans.
EXPLAIN (COSTS OFF) SELECT * FROM lantern.tasks WHERE jobid = 42;
EXPLAIN (COSTS OFF) SELECT * FROM lantern.tasks;
EXPLAIN (COSTS OFF) SELECT * FROM lantern.tasks WHERE 42 = jobid;
EXPLAIN (COSTS OFF) SELECT * FROM lantern.tasks WHERE jobid = 42::integer;
EXPLAIN (COSTS OFF) SELECT * FROM lantern.tasks WHERE jobid = 40 + 2;
EXPLAIN (COSTS OFF) SELECT * FROM lantern.tasks WHERE jobid = 42 AND status = 'failed';
EXPLAIN (VERBOSE, COSTS OFF) SELECT jobid, status FROM lantern.tasks WHERE jobid = 42;
-- Not a key: other operators, other types, volatile expressions, ORs.
EXPLAIN (COSTS OFF) SELECT * FROM lantern.tasks WHERE jobid > 42;
EXPLAIN (COSTS OFF) SELECT * FROM lantern.tasks WHERE jobid = 42.0;
EXPLAIN (COSTS OFF) SELECT * FROM lantern.tasks WHERE jobid = (random() * 0)::bigint;
EXPLAIN (COSTS OFF) SELECT * FROM lantern.tasks WHERE jobid = 42 OR jobid = 43;
EXPLAIN (COSTS OFF) SELECT * FROM lantern.tasks WHERE status = 'failed';
-- DELETE uses the lookup too.
EXPLAIN (COSTS OFF) DELETE FROM lantern.tasks WHERE jobid = 42;

-- Results: the lookup finds what the full scan finds.
SELECT jobid = :ok AS is_ok, job_name, status FROM lantern.tasks WHERE jobid = :ok;
SELECT job_name, status FROM lantern.tasks WHERE jobid = :ok::integer;
SELECT job_name, status FROM lantern.tasks WHERE :failed = jobid;
SELECT job_name, status FROM lantern.tasks WHERE jobid = :ok AND status = 'failed';
SELECT job_name, status FROM lantern.tasks WHERE jobid = :ok + 0.0;
SELECT job_name, status FROM lantern.tasks WHERE jobid >= 3000 ORDER BY jobid;
SELECT count(*) FROM lantern.tasks WHERE jobid = 999999;
SELECT count(*) FROM lantern.tasks WHERE jobid = NULL::bigint;

-- A prepared statement with jobid = $1: the lookup, with custom and generic plans.
PREPARE task_by_id(bigint) AS SELECT job_name, status FROM lantern.tasks WHERE jobid = $1;
EXPLAIN (COSTS OFF) EXECUTE task_by_id(42);
EXECUTE task_by_id(:ok);
EXECUTE task_by_id(:failed);
EXECUTE task_by_id(999999);
EXECUTE task_by_id(NULL);
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE task_by_id(42);
EXECUTE task_by_id(:ok);
EXECUTE task_by_id(:failed);
EXECUTE task_by_id(NULL);
RESET plan_cache_mode;
DEALLOCATE task_by_id;
PREPARE task_by_int(int) AS SELECT job_name FROM lantern.tasks WHERE jobid = $1;
EXECUTE task_by_int(:ok);
DEALLOCATE task_by_int;
-- Left to itself, the plan cache settles on the generic plan (jobid = $1)
-- after five custom ones; it looks the row up by its key all the same.
PREPARE task_auto(bigint) AS SELECT job_name FROM lantern.tasks WHERE jobid = $1;
EXECUTE task_auto(:ok);
EXECUTE task_auto(:failed);
EXECUTE task_auto(:ok);
EXECUTE task_auto(:failed);
EXECUTE task_auto(:ok);
EXECUTE task_auto(:failed);
EXECUTE task_auto(999999);
SELECT generic_plans > 0 AS generic, custom_plans FROM pg_prepared_statements WHERE name = 'task_auto';
EXPLAIN (COSTS OFF) EXECUTE task_auto(42);
DEALLOCATE task_auto;
-- ... and in PL/pgSQL, whose statements are prepared.
DO $$
DECLARE
    id bigint;
    st text;
BEGIN
    FOR id IN SELECT jobid FROM lantern.tasks WHERE jobid >= 3000 ORDER BY jobid LOOP
        SELECT status INTO st FROM lantern.tasks WHERE jobid = id;
        RAISE NOTICE 'task %: %', id - 3000, st;
    END LOOP;
END
$$;

-- A lookup run again with new keys (a correlated subquery).
EXPLAIN (COSTS OFF)
SELECT g, (SELECT job_name FROM lantern.tasks WHERE jobid = g) FROM generate_series(3000, 3002) g;
SELECT g - 3000 AS n, (SELECT job_name FROM lantern.tasks WHERE jobid = g)
  FROM generate_series(3000, 3002) g;
-- Joins.
SELECT v.n, t.job_name FROM (VALUES (0), (1), (2)) v(n)
  JOIN lantern.tasks t ON t.jobid = 3000 + v.n ORDER BY v.n;
SELECT count(*) FROM lantern.tasks a JOIN lantern.tasks b USING (jobid) WHERE a.jobid >= 3000;
-- A cursor, read back and forth.
BEGIN;
DECLARE c SCROLL CURSOR FOR SELECT job_name FROM lantern.tasks WHERE jobid >= 3000 ORDER BY jobid;
FETCH 2 FROM c;
FETCH PRIOR FROM c;
FETCH LAST FROM c;
CLOSE c;
DECLARE d NO SCROLL CURSOR FOR SELECT job_name FROM lantern.tasks WHERE jobid = :failed;
FETCH ALL FROM d;
COMMIT;

-- The live status of active tasks, by lookup and by full scan.
SELECT lantern.async_task('SELECT pg_sleep(60)', 'scan sleep') AS s \gset
SELECT wait_for_statement(:s, 'SELECT pg_sleep(60)');
SELECT count(lantern.async_task('SELECT pg_sleep(60)', 'scan more sleep')) FROM generate_series(1, 3);
SELECT count(wait_for_statement(jobid, 'SELECT pg_sleep(60)')) FROM lantern.tasks
 WHERE job_name = 'scan more sleep' AND duration IS NULL;
SELECT lantern.async_task('SELECT 2', 'scan queued') AS q \gset
SELECT job_name, status, duration IS NULL AS active FROM lantern.tasks WHERE jobid = :s;
SELECT job_name, status, duration IS NULL AS active FROM lantern.tasks WHERE jobid = :q;
SELECT job_name, status, duration IS NULL AS active FROM lantern.tasks
 WHERE jobid >= 3000 AND job_name <> 'scan more sleep' ORDER BY jobid;
SELECT lantern.cancel_task(:q);
SELECT lantern.cancel_all_async_tasks();
SELECT job_name, lantern.wait_task(jobid, '60s') FROM lantern.tasks WHERE jobid >= 3000 ORDER BY jobid;

-- No task of this file is left active.
SELECT count(*) AS active FROM lantern.tasks WHERE duration IS NULL;
