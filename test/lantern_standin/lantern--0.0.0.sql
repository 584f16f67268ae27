-- lantern_fdw test stand-in for Lantern's extension: exactly the objects that
-- Lantern's install script (lanterndata/lantern, lantern_hnsw/sql/lantern.sql)
-- creates in schemas lantern and _lantern_internal that matter to
-- lantern_fdw: the two schemas and, when schema cron exists at install time,
-- the pg_cron-based async tasks. Lantern's index access method, operators and
-- vector functions are left out. Function bodies are written here; they only
-- need to exist (tests write the history rows the table would hold).
\echo Use "CREATE EXTENSION lantern" to load this file. \quit

CREATE SCHEMA _lantern_internal;
CREATE SCHEMA lantern;
GRANT USAGE ON SCHEMA lantern TO PUBLIC;

DO $setup$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = 'cron') THEN
        RAISE NOTICE 'schema cron not found: no async tasks';
        RETURN;
    END IF;
    GRANT USAGE ON SCHEMA cron TO PUBLIC;

    CREATE TABLE lantern.tasks (
        jobid bigserial PRIMARY KEY,
        pg_cron_jobid bigint DEFAULT NULL,
        query text NOT NULL,
        pg_cron_job_name text DEFAULT NULL,
        job_name text DEFAULT NULL,
        username text NOT NULL DEFAULT current_user,
        started_at timestamp with time zone NOT NULL DEFAULT now(),
        duration interval,
        status text,
        error_message text
    );
    GRANT SELECT, INSERT, UPDATE, DELETE ON lantern.tasks TO PUBLIC;
    GRANT USAGE, SELECT ON SEQUENCE lantern.tasks_jobid_seq TO PUBLIC;
    ALTER TABLE lantern.tasks ENABLE ROW LEVEL SECURITY;
    CREATE POLICY lantern_tasks_policy ON lantern.tasks USING (username OPERATOR(pg_catalog.=) current_user);

    -- Records the outcome of a pg_cron run in lantern.tasks.
    CREATE FUNCTION _lantern_internal.async_task_finalizer_trigger() RETURNS trigger LANGUAGE plpgsql AS $f$
    BEGIN
        IF NEW.status IN ('succeeded', 'failed') THEN
            UPDATE lantern.tasks t
               SET duration = NEW.end_time - t.started_at, status = NEW.status,
                   error_message = CASE WHEN NEW.status = 'failed' THEN NEW.return_message END
             WHERE t.pg_cron_jobid = NEW.jobid;
        END IF;
        RETURN NEW;
    END
    $f$;
    CREATE TRIGGER status_change_trigger AFTER UPDATE OF status ON cron.job_run_details
        FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
        EXECUTE FUNCTION _lantern_internal.async_task_finalizer_trigger();

    CREATE FUNCTION lantern.async_task(query text, job_name text) RETURNS integer LANGUAGE plpgsql AS $f$
    DECLARE
        id integer;
    BEGIN
        INSERT INTO lantern.tasks (query, job_name, started_at)
            VALUES (query, coalesce(job_name, ''), clock_timestamp()) RETURNING jobid INTO id;
        UPDATE lantern.tasks
           SET pg_cron_job_name = 'async_task_' || id,
               pg_cron_jobid = cron.schedule('async_task_' || id, '1 seconds', query)
         WHERE jobid = id;
        RETURN id;
    END
    $f$;
    CREATE FUNCTION lantern.async_task(query text) RETURNS integer LANGUAGE plpgsql AS $f$
    BEGIN
        RETURN lantern.async_task(query, NULL);
    END
    $f$;
    CREATE FUNCTION lantern.cancel_all_async_tasks() RETURNS void LANGUAGE plpgsql AS $f$
    BEGIN
        PERFORM cron.unschedule(pg_cron_jobid) FROM lantern.tasks WHERE duration IS NULL;
        UPDATE lantern.tasks
           SET duration = clock_timestamp() - started_at, status = 'canceled',
               error_message = coalesce(error_message, '') || 'Canceled by user'
         WHERE duration IS NULL;
    END
    $f$;
END
$setup$;
