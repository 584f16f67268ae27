-- lantern_fdw 0.1.0: run SQL in the background.
\echo Use "CREATE EXTENSION lantern_fdw" to load this file. \quit

CREATE SCHEMA lantern;
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
    board_id bigint NOT NULL,   -- the server life that queued it (recovery)
    CONSTRAINT task_log_pkey PRIMARY KEY (jobid)
);
REVOKE ALL ON _lantern_fdw.task_log FROM PUBLIC;

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

CREATE FUNCTION lantern.async_task(query text, job_name text DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'lantern_async_task' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION lantern.async_task(text, text) IS 'Submit a query to run in the background; returns its jobid';

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
-- current phase: NULL for phases that report no counters (sorting). While a
-- table scan reads its first block, PostgreSQL reports all blocks done: NULL
-- then too, rather than 100 followed by a low figure.
CREATE VIEW _lantern_fdw.command_progress AS
SELECT pid, command, phase,
       round(100.0 * CASE
           WHEN phase LIKE '%scanning table%' THEN
               CASE WHEN blocks_done < blocks_total THEN blocks_done::numeric / blocks_total END
           WHEN phase LIKE 'waiting for%' AND lockers_total > 0 THEN lockers_done::numeric / lockers_total
           WHEN phase LIKE '%sorting%' THEN NULL
           WHEN tuples_total > 0 THEN tuples_done::numeric / tuples_total
           WHEN phase LIKE '%scanning%' AND blocks_total > 0 THEN blocks_done::numeric / blocks_total
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
