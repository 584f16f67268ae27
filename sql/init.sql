--
-- init: install the extension, pin its SQL surface, and create the helpers
-- that the other tests use to wait for tasks.
--
CREATE EXTENSION lantern_fdw;

-- What \dx shows (not \dx itself: psql 18 adds a column to it).
SELECT extname, extversion, extnamespace::regnamespace AS schema,
       obj_description(oid, 'pg_extension') AS description
  FROM pg_extension WHERE extname = 'lantern_fdw';

-- Exactly the columns, types, nullability and defaults of DESIGN.md.
\d lantern.tasks

\df lantern.*

-- The settings of DESIGN.md, with their defaults and contexts.
SELECT name, boot_val, context
  FROM pg_settings
 WHERE name IN ('lantern_fdw.max_tasks', 'lantern_fdw.max_parallel_tasks',
                'lantern_fdw.host', 'lantern_fdw.connection_options',
                'lantern_fdw.idle_connection_timeout')
 ORDER BY name;
-- test/regress.conf runs four tasks at once.
SHOW lantern_fdw.max_parallel_tasks;

-- The executor is a background worker of its own.
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'lantern_fdw executor';

-- The table is empty and its sequence starts at 1.
SELECT count(*) FROM lantern.tasks;

--
-- wait_for(jobid): polls lantern.tasks until the task has ended
-- (duration IS NOT NULL), and raises if that takes longer than the timeout.
-- A procedure that COMMITs between polls, so that it holds no snapshot while
-- it waits: CREATE INDEX CONCURRENTLY waits for every older snapshot, and a
-- function polling in one statement would make it wait forever.
--
CREATE PROCEDURE wait_for(p_jobid bigint, p_timeout interval DEFAULT '60s')
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + p_timeout;
BEGIN
    LOOP
        IF NOT EXISTS (SELECT FROM lantern.tasks WHERE jobid = p_jobid) THEN
            RAISE EXCEPTION 'wait_for: task % does not exist', p_jobid;
        END IF;
        EXIT WHEN EXISTS (SELECT FROM lantern.tasks
                           WHERE jobid = p_jobid AND duration IS NOT NULL);
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'wait_for: task % did not end within %', p_jobid, p_timeout;
        END IF;
        COMMIT;
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;

--
-- wait_for_status(jobid, status): polls until the task shows that status.
-- Used to wait until a task is running (e.g. a pg_sleep to cancel).
--
CREATE PROCEDURE wait_for_status(p_jobid bigint, p_status text, p_timeout interval DEFAULT '60s')
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + p_timeout;
    cur text;
BEGIN
    LOOP
        SELECT status INTO cur FROM lantern.tasks WHERE jobid = p_jobid;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'wait_for_status: task % does not exist', p_jobid;
        END IF;
        EXIT WHEN cur = p_status;
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'wait_for_status: task % still has status % after %',
                p_jobid, cur, p_timeout;
        END IF;
        COMMIT;
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;

--
-- wait_for_statement(jobid, pattern[, lock_wait]): polls pg_stat_activity
-- until the backend of a task runs a statement that matches a LIKE pattern
-- (and, if asked, waits for a lock). The executor names a task's connection
-- 'lantern_fdw task <jobid>'. A function, so that it may run inside a
-- transaction block; it holds a snapshot while it polls.
--
CREATE FUNCTION wait_for_statement(p_jobid bigint, p_pattern text, p_lock_wait boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + '60s';
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN EXISTS (SELECT FROM pg_stat_activity
                           WHERE application_name = 'lantern_fdw task ' || p_jobid
                             AND state = 'active' AND query LIKE p_pattern
                             AND (NOT p_lock_wait OR wait_event_type = 'Lock'));
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'wait_for_statement: task % does not run %', p_jobid, p_pattern;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;

GRANT EXECUTE ON PROCEDURE wait_for(bigint, interval), wait_for_status(bigint, text, interval) TO PUBLIC;
GRANT EXECUTE ON FUNCTION wait_for_statement(bigint, text, boolean) TO PUBLIC;

-- The helpers work: a first task runs and succeeds.
SELECT lantern.async_task('SELECT 1') AS jobid \gset
CALL wait_for(:jobid);
SELECT jobid, query, pg_cron_job_name, job_name, username = current_user AS by_me,
       started_at <= now() AS started_before_now, duration IS NOT NULL AS ended,
       duration >= '0'::interval AS duration_ok, status, error_message
  FROM lantern.tasks;
CALL wait_for(12345);
