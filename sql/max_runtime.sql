--
-- max_runtime: lantern_fdw.default_max_runtime ends a task that runs longer,
-- counted from the start of its first statement, as failed with the limit
-- and the server's text; 0 means no limit.
--
ALTER SYSTEM SET lantern_fdw.default_max_runtime = '1s';
SELECT pg_reload_conf();

-- The executor reloads its settings on its own: submit until a task is cut
-- off (each attempt is canceled if it was not), within a deadline.
CREATE TEMP TABLE cut (jobid bigint);
DO $$
DECLARE
    j bigint;
    t0 timestamptz := clock_timestamp();
BEGIN
    LOOP
        SELECT lantern.async_task('SELECT pg_sleep(60)', 'max runtime') INTO j;
        COMMIT;
        IF lantern.wait_task(j, '20 s') = 'failed' THEN
            INSERT INTO cut VALUES (j);
            RETURN;
        END IF;
        PERFORM lantern.cancel_task(j);
        COMMIT;
        IF clock_timestamp() > t0 + interval '60 s' THEN
            RAISE EXCEPTION 'no task was cut off at its maximum run time';
        END IF;
    END LOOP;
END
$$;
SELECT t.status, t.error_message, t.duration >= interval '1 s' AS ran_a_second
  FROM lantern.tasks t JOIN cut USING (jobid);

-- Time spent queued does not count, nor does a task that ends in time fail.
SELECT lantern.async_task('SELECT pg_sleep(0.1); SELECT 1') AS quick \gset
SELECT lantern.wait_task(:quick, '60 s');

-- Between statements: the next statement does not start.
SELECT lantern.async_task('SELECT pg_sleep(0.6); SELECT pg_sleep(0.6); CREATE TABLE max_runtime_never (i int)') AS split \gset
SELECT lantern.wait_task(:split, '60 s');
SELECT regexp_replace(error_message, E'\n.*', '') AS message FROM lantern.tasks WHERE jobid = :split;
SELECT to_regclass('max_runtime_never') IS NULL AS third_statement_never_ran;

ALTER SYSTEM RESET lantern_fdw.default_max_runtime;
SELECT pg_reload_conf();
DELETE FROM lantern.tasks WHERE job_name = 'max runtime' OR jobid IN (:quick, :split);
