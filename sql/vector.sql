--
-- vector: pgvector index builds, the workload lantern_fdw exists for, run
-- through lantern.async_task: HNSW, HNSW CONCURRENTLY, as a non-superuser,
-- with refused options, IVFFlat, canceled while they run, and a percent done
-- that rises during an HNSW build. pgvector is a test dependency (never a
-- dependency of lantern_fdw): scripts/install-deps.sh and
-- scripts/build-server.sh build it for every server the suites run on.
--
SET client_min_messages = warning;
CREATE EXTENSION vector;
RESET client_min_messages;

-- A small table for the builds that only have to succeed or fail.
SELECT setseed(0.5);
CREATE TABLE vec_items (id int PRIMARY KEY, v vector(8));
INSERT INTO vec_items SELECT g, ARRAY(SELECT random() FROM generate_series(1, 8) WHERE g > 0)::vector
  FROM generate_series(1, 2000) g;

-- HNSW, plain and concurrent.
SELECT lantern.async_task('CREATE INDEX vec_hnsw ON vec_items USING hnsw (v vector_l2_ops) WITH (m = 8, ef_construction = 32)', 'hnsw') AS jobid \gset
SELECT lantern.wait_task(:jobid, '120s');
SELECT lantern.async_task('CREATE INDEX CONCURRENTLY vec_hnsw_cc ON vec_items USING hnsw (v vector_cosine_ops)', 'hnsw concurrently') AS jobid \gset
-- (Not wait_task: a concurrent build waits for the snapshot of the statement
-- that waits for it. wait_for commits between polls.)
CALL wait_for(:jobid, '120s');
-- IVFFlat.
SELECT lantern.async_task('CREATE INDEX vec_ivf ON vec_items USING ivfflat (v vector_l2_ops) WITH (lists = 20)', 'ivfflat') AS jobid \gset
SELECT lantern.wait_task(:jobid, '120s');
-- Options pgvector refuses: the task fails with pgvector's message.
SELECT lantern.async_task('CREATE INDEX vec_bad ON vec_items USING hnsw (v vector_l2_ops) WITH (m = 16, ef_construction = 10)', 'refused') AS jobid \gset
SELECT lantern.wait_task(:jobid, '120s');
SELECT job_name, status, error_message FROM lantern.tasks WHERE job_name IN ('hnsw', 'hnsw concurrently', 'ivfflat', 'refused') ORDER BY jobid;
SELECT c.relname, am.amname, i.indisvalid
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
 WHERE i.indrelid = 'vec_items'::regclass AND am.amname <> 'btree' ORDER BY 1;
-- The indexes answer nearest-neighbour queries.
SET enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM vec_items ORDER BY v <-> '[0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5]' LIMIT 5) s;
RESET enable_seqscan;

-- A build as a non-superuser, on its own table.
CREATE ROLE regress_vector_user LOGIN;
GRANT CREATE ON SCHEMA public TO regress_vector_user;
GRANT SELECT ON vec_items TO regress_vector_user;
SET ROLE regress_vector_user;
CREATE TABLE vec_user_items AS SELECT * FROM vec_items;
SELECT lantern.async_task('CREATE INDEX vec_user_hnsw ON vec_user_items USING hnsw (v vector_l2_ops)', 'user hnsw') AS jobid \gset
SELECT lantern.wait_task(:jobid, '120s');
SELECT username, status, error_message FROM lantern.tasks WHERE jobid = :jobid;
SELECT relname, pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relname = 'vec_user_hnsw';
DROP TABLE vec_user_items;
RESET ROLE;
REVOKE CREATE ON SCHEMA public FROM regress_vector_user;
REVOKE SELECT ON vec_items FROM regress_vector_user;
DROP ROLE regress_vector_user;

-- A table whose HNSW build lasts long enough to be watched and canceled.
CREATE TABLE vec_big (id int, v vector(32));
INSERT INTO vec_big SELECT g, ARRAY(SELECT random() FROM generate_series(1, 32) WHERE g > 0)::vector
  FROM generate_series(1, 20000) g;
ANALYZE vec_big;
CREATE TABLE vec_samples (at timestamptz, phase text, percent_done numeric);

-- Sample lantern.task_progress of task p_jobid until its build has shown
-- three different percent values in phase p_phase (or it ended).
CREATE PROCEDURE sample_progress(p_jobid bigint, p_phase text) LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '120 s';
BEGIN
    LOOP
        INSERT INTO vec_samples SELECT clock_timestamp(), phase, percent_done
          FROM lantern.task_progress WHERE jobid = p_jobid AND phase IS NOT NULL;
        COMMIT;
        EXIT WHEN (SELECT count(DISTINCT percent_done) FROM vec_samples WHERE phase = p_phase) >= 3;
        EXIT WHEN EXISTS (SELECT FROM lantern.tasks WHERE jobid = p_jobid AND duration IS NOT NULL);
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'task % showed no progress in phase %', p_jobid, p_phase;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;

-- The percent rises while pgvector's HNSW build loads the table; then the
-- build is canceled: a plain build leaves no index.
SELECT lantern.async_task('SET max_parallel_maintenance_workers = 0; CREATE INDEX vec_big_hnsw ON vec_big USING hnsw (v vector_l2_ops)', 'big hnsw') AS jobid \gset
CALL sample_progress(:jobid, 'building index: loading tuples');
SELECT lantern.cancel_task(:jobid);
SELECT lantern.wait_task(:jobid, '120s');
SELECT status, error_message FROM lantern.tasks WHERE jobid = :jobid;
SELECT DISTINCT phase FROM vec_samples ORDER BY 1;
SELECT count(DISTINCT percent_done) >= 3 AS several_values,
       min(percent_done) < max(percent_done) AS rose,
       bool_and(percent_done BETWEEN 0 AND 100) AS in_range
  FROM vec_samples WHERE phase = 'building index: loading tuples';
SELECT bool_and(ok) AS monotonic FROM (
    SELECT percent_done >= lag(percent_done) OVER (ORDER BY at) IS NOT FALSE AS ok
      FROM vec_samples WHERE phase = 'building index: loading tuples') s;
SELECT count(*) AS indexes FROM pg_index WHERE indrelid = 'vec_big'::regclass;

-- A concurrent build canceled while it runs leaves an invalid index, as in psql.
TRUNCATE vec_samples;
SELECT lantern.async_task('SET max_parallel_maintenance_workers = 0; CREATE INDEX CONCURRENTLY vec_big_hnsw_cc ON vec_big USING hnsw (v vector_l2_ops)', 'big hnsw concurrently') AS jobid \gset
CALL sample_progress(:jobid, 'building index: loading tuples');
SELECT lantern.cancel_task(:jobid);
SELECT lantern.wait_task(:jobid, '120s');
SELECT status, error_message FROM lantern.tasks WHERE jobid = :jobid;
SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = 'vec_big'::regclass;

DROP TABLE vec_items, vec_big, vec_samples;
DROP PROCEDURE sample_progress;
DROP EXTENSION vector;
