-- lantern_fdw 0.1.0 -> 0.2.0.
\echo Use "ALTER EXTENSION lantern_fdw UPDATE TO '0.2.0'" to load this file. \quit

-- Everything that 0.2.0 adds or changes; lantern_fdw--0.2.0.sql holds the
-- same definitions. sql/versions.sql checks that an updated database ends up
-- with the objects of a fresh one.

-- One row per progress-reporting command, with the percent done of its
-- current phase, by one rule for every access method (btree, pgvector's hnsw
-- and ivfflat, ...): in a table scan (a phase named "scanning table", or one
-- that counts blocks and no tuples, such as hnsw's "loading tuples") the
-- blocks read; else the tuples done, where a total is reported. NULL where
-- the phase reports no counters (sorting, k-means). While a table scan reads
-- its first block, PostgreSQL reports all blocks done: NULL then too, rather
-- than 100 followed by a low figure.
CREATE OR REPLACE VIEW _lantern_fdw.command_progress AS
SELECT pid, command, phase,
       round(100.0 * CASE
           WHEN phase LIKE 'waiting for%' AND lockers_total > 0 THEN lockers_done::numeric / lockers_total
           WHEN phase LIKE '%sorting%' THEN NULL
           WHEN phase LIKE '%scanning table%' OR (blocks_total > 0 AND tuples_total = 0) THEN
               CASE WHEN blocks_done < blocks_total THEN blocks_done::numeric / blocks_total END
           WHEN tuples_total > 0 THEN tuples_done::numeric / tuples_total
           WHEN blocks_total > 0 THEN
               CASE WHEN blocks_done < blocks_total THEN blocks_done::numeric / blocks_total END
           WHEN partitions_total > 0 THEN partitions_done::numeric / partitions_total
       END, 1) AS percent_done
  FROM pg_catalog.pg_stat_progress_create_index
UNION ALL
SELECT pid, 'VACUUM', phase,
       round(100.0 * CASE
           WHEN heap_blks_total = 0 THEN NULL
           WHEN phase = 'vacuuming heap' THEN heap_blks_vacuumed::numeric / heap_blks_total
           ELSE heap_blks_scanned::numeric / heap_blks_total
       END, 1)
  FROM pg_catalog.pg_stat_progress_vacuum
UNION ALL
SELECT pid, command, phase,
       round(100.0 * CASE WHEN heap_blks_total > 0 THEN heap_blks_scanned::numeric / heap_blks_total END, 1)
  FROM pg_catalog.pg_stat_progress_cluster
UNION ALL
SELECT pid, 'ANALYZE', phase,
       round(100.0 * CASE WHEN sample_blks_total > 0 THEN sample_blks_scanned::numeric / sample_blks_total END, 1)
  FROM pg_catalog.pg_stat_progress_analyze
UNION ALL
SELECT pid, command, type,
       round(100.0 * CASE WHEN bytes_total > 0 THEN bytes_processed::numeric / bytes_total END, 1)
  FROM pg_catalog.pg_stat_progress_copy;

-- Lantern's pg_cron-based history (its lantern.tasks table, set aside under
-- another name) into lantern_fdw's store. Ended rows keep their outcome;
-- unfinished ones are recorded failed and never run. Imported rows run as,
-- and are seen by, the role named by username (no one but superusers and
-- pg_read_all_stats if that role no longer exists); they belong to no server
-- life (board_id 0), and have ended, so recovery never touches them.
CREATE FUNCTION lantern.import_lantern_tasks(source regclass) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
    AS $import$
DECLARE
    missing text;
    taken bigint[];
    imported bigint;
    max_jobid bigint;
    seq_next bigint;
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'permission denied to import Lantern tasks'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Only a superuser may call lantern.import_lantern_tasks().';
    END IF;

    SELECT string_agg(c, ', ' ORDER BY k) INTO missing
      FROM unnest(ARRAY['jobid', 'query', 'pg_cron_job_name', 'job_name', 'username',
                        'started_at', 'duration', 'status', 'error_message']) WITH ORDINALITY AS u(c, k)
     WHERE NOT EXISTS (SELECT FROM pg_attribute a
                        WHERE a.attrelid = source AND a.attname = u.c AND a.attnum > 0 AND NOT a.attisdropped);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'relation % is not a table of Lantern tasks', source
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Missing columns: %s.', missing);
    END IF;

    -- No submission may take a jobid while the import checks and writes.
    LOCK TABLE _lantern_fdw.task_log IN SHARE ROW EXCLUSIVE MODE;

    EXECUTE format('SELECT array_agg(s.jobid ORDER BY s.jobid), (SELECT max(jobid) FROM %1$s)
                      FROM %1$s s JOIN _lantern_fdw.task_log l ON l.jobid = s.jobid', source)
        INTO taken, max_jobid;
    IF taken IS NOT NULL THEN
        RAISE EXCEPTION 'jobid % already exists in lantern.tasks', taken[1]
            USING ERRCODE = 'unique_violation',
                  DETAIL = format('Jobids of %s that lantern.tasks has already: %s. Nothing was imported.',
                                  source, array_to_string(taken, ', '));
    END IF;

    EXECUTE format($insert$
        INSERT INTO _lantern_fdw.task_log (jobid, query, pg_cron_job_name, job_name, username, started_at,
                                           duration, status, error_message, run_as, login_role, board_id)
        SELECT s.jobid, s.query, s.pg_cron_job_name, s.job_name, s.username, s.started_at,
               CASE WHEN s.duration IS NULL THEN greatest(now() - s.started_at, interval '0') ELSE s.duration END,
               CASE WHEN s.duration IS NOT NULL AND s.status IN ('succeeded', 'failed', 'canceled') THEN s.status
                    ELSE 'failed' END,
               CASE WHEN s.duration IS NULL
                        THEN concat_ws(E'\n', s.error_message,
                                       'unfinished when imported from Lantern''s pg_cron-based tasks; lantern_fdw never ran it')
                    WHEN s.status IN ('succeeded', 'failed', 'canceled') THEN s.error_message
                    ELSE concat_ws(E'\n', s.error_message,
                                   format('imported from Lantern''s pg_cron-based tasks with status %%s', coalesce(s.status, 'NULL')))
               END,
               coalesce(r.oid, 0), coalesce(r.oid, 0), 0
          FROM %s s LEFT JOIN pg_roles r ON r.rolname = s.username
    $insert$, source);
    GET DIAGNOSTICS imported = ROW_COUNT;

    -- New tasks get jobids above every imported one.
    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END INTO seq_next FROM lantern.tasks_jobid_seq;
    IF max_jobid >= seq_next THEN
        PERFORM setval('lantern.tasks_jobid_seq', max_jobid);
    END IF;
    RETURN imported;
END
$import$;
COMMENT ON FUNCTION lantern.import_lantern_tasks(regclass) IS 'Copy the history of Lantern''s pg_cron-based tasks table into lantern.tasks; returns the number of rows imported';

-- issue 11 (the queue): start later, a time limit, lantern.task_details;
-- issue 12 (task output): keep_result.
ALTER TABLE _lantern_fdw.task_log
    ADD COLUMN run_at timestamp with time zone,
    ADD COLUMN max_runtime interval,
    ADD COLUMN run_started_at timestamp with time zone,
    -- issue 12 (task output): keep the rows of the last statement
    ADD COLUMN keep_result boolean NOT NULL DEFAULT false;
-- The tasks that wait in the store (issue 11), for the loader: queued ones in
-- jobid order, scheduled ones in run_at order. Partial, so a loader reads
-- only the rows still waiting, however large the history.
CREATE INDEX task_log_waiting_queued ON _lantern_fdw.task_log (jobid)
    WHERE status = 'queued' AND board_id = 0;
CREATE INDEX task_log_waiting_scheduled ON _lantern_fdw.task_log (run_at)
    WHERE status = 'scheduled';
DROP FUNCTION lantern.async_task(text, text);
CREATE FUNCTION lantern.async_task(query text, job_name text DEFAULT NULL,
                                   run_at timestamp with time zone DEFAULT NULL,
                                   max_runtime interval DEFAULT NULL,
                                   keep_result boolean DEFAULT false) RETURNS bigint
    AS 'MODULE_PATHNAME', 'lantern_async_task' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION lantern.async_task(text, text, timestamp with time zone, interval, boolean) IS 'Submit a query to run in the background; returns its jobid';
CREATE VIEW lantern.task_details AS
SELECT t.jobid, t.query, t.pg_cron_job_name, t.job_name, t.username, t.started_at, t.duration, t.status,
       t.error_message, l.run_at, l.max_runtime, l.run_started_at, t.started_at + t.duration AS ended_at,
       pg_catalog.current_database() AS database
  FROM lantern.tasks t
  LEFT JOIN _lantern_fdw.task_log l ON l.jobid = t.jobid;
GRANT SELECT ON lantern.task_details TO PUBLIC;
COMMENT ON VIEW lantern.task_details IS 'Tasks with their run_at, max_runtime, run_started_at, ended_at and database';

-- ---- output (issue 12) ----
-- What each statement of a task said, written by the executor through the
-- task's connection in the transaction that records the outcome; removed
-- with the task's row.
CREATE TABLE _lantern_fdw.task_output (
    jobid bigint NOT NULL,
    statement integer NOT NULL,     -- 1-based
    query text NOT NULL,
    command text,                   -- the command tag; NULL: the statement failed
    rows bigint,                    -- rows affected or returned, where the tag says
    started_at timestamp with time zone NOT NULL,
    duration interval NOT NULL,
    messages text,                  -- notices and warnings, as psql prints them
    result jsonb,                   -- keep_result: the rows of the last statement
    truncated boolean NOT NULL,     -- lantern_fdw.max_output_size cut what was kept
    CONSTRAINT task_output_pkey PRIMARY KEY (jobid, statement)
);
REVOKE ALL ON _lantern_fdw.task_output FROM PUBLIC;

CREATE FUNCTION _lantern_fdw.record_output(jobid bigint, statement integer, query text, command text, rows bigint,
                                           started_at bigint, duration bigint, messages text, result jsonb,
                                           truncated boolean) RETURNS void
    AS 'MODULE_PATHNAME', 'lantern_record_output' LANGUAGE C VOLATILE;

-- Visible exactly as the tasks are: the rows of the tasks lantern.tasks
-- shows the current user. A security barrier, so that no function in a
-- query's conditions sees the output of other tasks first.
CREATE VIEW lantern.task_output WITH (security_barrier) AS
SELECT o.jobid, o.statement, o.query, o.command, o.rows, o.started_at, o.duration, o.messages, o.result, o.truncated
  FROM _lantern_fdw.task_output o
 WHERE o.jobid IN (SELECT t.jobid FROM lantern.tasks t);
GRANT SELECT ON lantern.task_output TO PUBLIC;
COMMENT ON VIEW lantern.task_output IS 'One row per statement a task ran: command tag, rows, time, messages, and the result kept with keep_result';

CREATE FUNCTION lantern.task_result(jobid bigint) RETURNS jsonb
    LANGUAGE sql STABLE
    AS $result$
SELECT o.result FROM lantern.task_output o
 WHERE o.jobid = $1 AND o.result IS NOT NULL
 ORDER BY o.statement DESC LIMIT 1
$result$;
COMMENT ON FUNCTION lantern.task_result(bigint) IS 'The rows kept of a task run with keep_result, as a jsonb array of objects';
-- ---- end output ----
