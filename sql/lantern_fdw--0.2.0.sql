-- lantern_fdw 0.2.0: run SQL in the background.
\echo Use "CREATE EXTENSION lantern_fdw" to load this file. \quit

-- Schema lantern may exist already: Lantern's own extension creates it (and
-- so may a person). lantern_fdw then puts its objects there and leaves the
-- schema alone when it is dropped. It checks first, before creating anything:
-- - the schema's owner, and any role with CREATE on it, could alter, drop or
--   shadow lantern_fdw's objects: only superusers may have those rights;
-- - Lantern's pg_cron-based async tasks (lantern.tasks, lantern.async_task,
--   lantern.cancel_all_async_tasks) are in the way: they must be set aside
--   first (docs/migrating-from-lantern.md).
DO $check$
DECLARE
    nsp oid := pg_catalog.to_regnamespace('lantern');
    owner_name name;
    creators text;
    in_the_way text;
BEGIN
    IF nsp IS NULL THEN
        -- Created while the extension script runs: a member of lantern_fdw,
        -- dropped with it.
        CREATE SCHEMA lantern;
        RETURN;
    END IF;

    SELECT r.rolname INTO owner_name
      FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
     WHERE n.oid = nsp AND NOT r.rolsuper;
    IF owner_name IS NOT NULL THEN
        RAISE EXCEPTION 'schema "lantern" is owned by role "%", which is not a superuser', owner_name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'lantern_fdw puts its objects in schema lantern, and the owner of a schema may drop or alter the objects in it.',
                  HINT = 'Make a superuser the owner of schema lantern (ALTER SCHEMA lantern OWNER TO postgres), then try again.';
    END IF;

    SELECT pg_catalog.string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END, ', ')
      INTO creators
      FROM pg_catalog.pg_namespace n,
           LATERAL pg_catalog.aclexplode(n.nspacl) a
           LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
     WHERE n.oid = nsp AND a.privilege_type = 'CREATE' AND NOT coalesce(r.rolsuper, false);
    IF creators IS NOT NULL THEN
        RAISE EXCEPTION 'roles that are not superusers may create objects in schema "lantern": %', creators
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Objects they create there could shadow or take the names of lantern_fdw''s objects.',
                  HINT = 'REVOKE CREATE ON SCHEMA lantern from them, then try again.';
    END IF;

    SELECT pg_catalog.string_agg(pg_catalog.pg_describe_object(c, o, 0), ', ' ORDER BY n)
      INTO in_the_way
      FROM (VALUES (1, 'pg_catalog.pg_class'::regclass, pg_catalog.to_regclass('lantern.tasks')::oid),
                   (2, 'pg_catalog.pg_class'::regclass, pg_catalog.to_regclass('lantern.tasks_jobid_seq')::oid),
                   (3, 'pg_catalog.pg_proc'::regclass, pg_catalog.to_regprocedure('lantern.async_task(text,text)')::oid),
                   (4, 'pg_catalog.pg_proc'::regclass, pg_catalog.to_regprocedure('lantern.async_task(text)')::oid),
                   (5, 'pg_catalog.pg_proc'::regclass, pg_catalog.to_regprocedure('lantern.cancel_all_async_tasks()')::oid)
           ) AS v(n, c, o)
     WHERE o IS NOT NULL;
    IF in_the_way IS NOT NULL THEN
        RAISE EXCEPTION 'extension "lantern_fdw" cannot be created while these objects exist: %', in_the_way
            USING ERRCODE = 'duplicate_object',
                  DETAIL = 'They are Lantern''s pg_cron-based async tasks.',
                  HINT = 'Detach them from extension lantern and set them aside as docs/migrating-from-lantern.md says, then import their history with lantern.import_lantern_tasks().';
    END IF;
END
$check$;
GRANT USAGE ON SCHEMA lantern TO PUBLIC;

-- The internal store: the durable record of every task. Only its owner has
-- privileges on it; lantern_fdw reads and writes it on behalf of users.
CREATE SCHEMA _lantern_fdw;

CREATE SEQUENCE lantern.tasks_jobid_seq;
GRANT USAGE, SELECT ON SEQUENCE lantern.tasks_jobid_seq TO PUBLIC;

CREATE TABLE _lantern_fdw.task_log (
    jobid bigint NOT NULL,
    query text NOT NULL,
    pg_cron_job_name text,
    job_name text,
    username text NOT NULL,
    started_at timestamp with time zone NOT NULL,
    duration interval,
    status text NOT NULL,
    error_message text,
    run_as oid NOT NULL,        -- role the task runs as (username)
    login_role oid NOT NULL,    -- session_user of the submitter
    board_id bigint NOT NULL,   -- the server life that queued it (recovery); 0: waits in the store
    -- issue 11 (the queue): start later, a time limit
    run_at timestamp with time zone,      -- not before (async_task's run_at)
    max_runtime interval,                 -- async_task's max_runtime
    run_started_at timestamp with time zone, -- the first statement began
    -- issue 12 (task output)
    keep_result boolean NOT NULL DEFAULT false, -- keep the rows of the last statement
    CONSTRAINT task_log_pkey PRIMARY KEY (jobid)
);
REVOKE ALL ON _lantern_fdw.task_log FROM PUBLIC;
-- The tasks that wait in the store (issue 11), for the loader: queued ones in
-- jobid order, scheduled ones in run_at order. Partial, so a loader reads
-- only the rows still waiting, however large the history.
CREATE INDEX task_log_waiting_queued ON _lantern_fdw.task_log (jobid)
    WHERE status = 'queued' AND board_id = 0;
CREATE INDEX task_log_waiting_scheduled ON _lantern_fdw.task_log (run_at)
    WHERE status = 'scheduled';

CREATE FUNCTION _lantern_fdw.handler() RETURNS fdw_handler
    AS 'MODULE_PATHNAME', 'lantern_fdw_handler' LANGUAGE C STRICT;
CREATE FUNCTION _lantern_fdw.validator(text[], oid) RETURNS void
    AS 'MODULE_PATHNAME', 'lantern_fdw_validator' LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER lantern_fdw
    HANDLER _lantern_fdw.handler VALIDATOR _lantern_fdw.validator;
CREATE SERVER lantern_fdw_server FOREIGN DATA WRAPPER lantern_fdw;

CREATE FOREIGN TABLE lantern.tasks (
    jobid bigint NOT NULL DEFAULT nextval('lantern.tasks_jobid_seq'::regclass),
    query text NOT NULL,
    pg_cron_job_name text,
    job_name text,
    username text NOT NULL DEFAULT CURRENT_USER,
    started_at timestamp with time zone NOT NULL DEFAULT now(),
    duration interval,
    status text,
    error_message text
) SERVER lantern_fdw_server;
ALTER SEQUENCE lantern.tasks_jobid_seq OWNED BY lantern.tasks.jobid;
GRANT SELECT, INSERT, DELETE ON lantern.tasks TO PUBLIC;

COMMENT ON FOREIGN TABLE lantern.tasks IS 'Background tasks: INSERT to submit one, SELECT to read live status';

CREATE FUNCTION lantern.async_task(query text, job_name text DEFAULT NULL,
                                   run_at timestamp with time zone DEFAULT NULL,
                                   max_runtime interval DEFAULT NULL,
                                   keep_result boolean DEFAULT false) RETURNS bigint
    AS 'MODULE_PATHNAME', 'lantern_async_task' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION lantern.async_task(text, text, timestamp with time zone, interval, boolean) IS 'Submit a query to run in the background; returns its jobid';

CREATE FUNCTION lantern.cancel_task(jobid bigint) RETURNS boolean
    AS 'MODULE_PATHNAME', 'lantern_cancel_task' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION lantern.cancel_task(bigint) IS 'Cancel a queued or running task; false if it had already ended';

CREATE FUNCTION lantern.cancel_all_async_tasks() RETURNS void
    AS 'MODULE_PATHNAME', 'lantern_cancel_all_async_tasks' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION lantern.cancel_all_async_tasks() IS 'Cancel every active task the caller may cancel';

CREATE FUNCTION lantern.wait_task(jobid bigint, timeout interval DEFAULT NULL) RETURNS text
    AS 'MODULE_PATHNAME', 'lantern_wait_task' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION lantern.wait_task(bigint, interval) IS 'Wait until a task ends (or the timeout passes); returns its status';

-- Recording functions, called by the executor through each task's own
-- connection. They check against the board that the caller is that
-- connection at that step, so anyone may call them and only it succeeds.
CREATE FUNCTION _lantern_fdw.record_start(jobid bigint) RETURNS SETOF text
    AS 'MODULE_PATHNAME', 'lantern_record_start' LANGUAGE C STRICT VOLATILE ROWS 1;
CREATE FUNCTION _lantern_fdw.record_end(jobid bigint, status text, error_message text) RETURNS void
    AS 'MODULE_PATHNAME', 'lantern_record_end' LANGUAGE C VOLATILE;
GRANT USAGE ON SCHEMA _lantern_fdw TO PUBLIC;
REVOKE ALL ON FUNCTION _lantern_fdw.handler(), _lantern_fdw.validator(text[], oid) FROM PUBLIC;

-- Live progress of active tasks.
CREATE FUNCTION _lantern_fdw.active_tasks(
    OUT jobid bigint, OUT status text, OUT pid integer, OUT statement integer,
    OUT statements integer, OUT run_started_at timestamp with time zone)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'lantern_active_tasks' LANGUAGE C STRICT VOLATILE;

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

CREATE VIEW lantern.task_progress AS
SELECT b.jobid, t.job_name, t.username, pg_catalog.current_database() AS database, b.status, b.pid,
       pg_catalog.clock_timestamp() - b.run_started_at AS elapsed,
       b.statement, b.statements, a.query AS current_statement,
       a.wait_event_type, a.wait_event, p.command, p.phase, p.percent_done
  FROM _lantern_fdw.active_tasks() b
  LEFT JOIN lantern.tasks t ON t.jobid = b.jobid
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = b.pid
  LEFT JOIN _lantern_fdw.command_progress p ON p.pid = b.pid;
GRANT SELECT ON lantern.task_progress TO PUBLIC;
COMMENT ON VIEW lantern.task_progress IS 'Active tasks: statement k of n, wait event, phase and percent done';

-- issue 11 (the queue): every column of lantern.tasks, and when the task may
-- start, its time limit, when its first statement began and when it ended.
-- Rows come through lantern.tasks: the same visibility rules.
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
