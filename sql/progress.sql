--
-- progress: lantern.task_progress shows each active task's statement, phase
-- and a percent done that rises while a real CREATE INDEX runs.
--
\d lantern.task_progress

-- An index build slowed down on purpose (a pause every 2,000 rows), so that
-- its "scanning table" phase lasts long enough to be sampled many times.
CREATE FUNCTION slow_key(v int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
    IF v % 2000 = 0 THEN
        PERFORM pg_sleep(0.01);
    END IF;
    RETURN v;
END
$$;
CREATE TABLE progress_items AS SELECT g AS id FROM generate_series(1, 200000) g;
CREATE TABLE progress_samples (at timestamptz, statement int, statements int,
                               command text, phase text, percent_done numeric,
                               current_statement text);

SELECT lantern.async_task('SET maintenance_work_mem = ''16MB''; SET max_parallel_maintenance_workers = 0; CREATE INDEX progress_idx ON progress_items (slow_key(id))',
                          'progress') AS jobid \gset

-- Sample the view until the task ends, committing between samples.
DO $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '60 s';
BEGIN
    LOOP
        INSERT INTO progress_samples
            SELECT clock_timestamp(), statement, statements, command, phase, percent_done, current_statement
              FROM lantern.task_progress WHERE job_name = 'progress';
        EXIT WHEN EXISTS (SELECT FROM lantern.tasks WHERE job_name = 'progress' AND duration IS NOT NULL);
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'progress task did not end';
        END IF;
        COMMIT;
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;

SELECT status FROM lantern.tasks WHERE jobid = :jobid;

-- While the index was built: statement 3 of 3, the CREATE INDEX command and
-- its phase, and a percent that rose over time.
SELECT statement, statements, command, phase, current_statement
  FROM progress_samples
 WHERE phase = 'building index: scanning table'
 GROUP BY 1, 2, 3, 4, 5;
SELECT count(DISTINCT percent_done) >= 3 AS several_values,
       min(percent_done) < max(percent_done) AS rose,
       bool_and(percent_done BETWEEN 0 AND 100) AS in_range
  FROM progress_samples
 WHERE phase = 'building index: scanning table';
-- Percent never went down within the phase.
SELECT bool_and(ok) AS monotonic FROM (
    SELECT percent_done >= lag(percent_done) OVER (ORDER BY at) IS NOT FALSE AS ok
      FROM progress_samples WHERE phase = 'building index: scanning table') s;

-- Ended tasks leave the view (wait_task returns once the executor is done
-- with the task; its row may say it ended a moment before).
SELECT lantern.wait_task(:jobid, '60s');
SELECT count(*) FROM lantern.task_progress WHERE jobid = :jobid;

-- A non-superuser sees only its own tasks' progress.
CREATE ROLE regress_progress_a LOGIN;
CREATE ROLE regress_progress_b LOGIN;
SET ROLE regress_progress_a;
SELECT lantern.async_task('SELECT pg_sleep(30)', 'a sleeps') AS a_job \gset
RESET ROLE;
-- Wait until its statement is sleeping.
DO $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '60 s';
BEGIN
    WHILE NOT EXISTS (SELECT FROM lantern.task_progress
                       WHERE job_name = 'a sleeps' AND wait_event = 'PgSleep') LOOP
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'task did not start sleeping';
        END IF;
        COMMIT;
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;
SET ROLE regress_progress_a;
SELECT job_name, username, status, statement, statements, current_statement, wait_event
  FROM lantern.task_progress;
SET ROLE regress_progress_b;
SELECT count(*) FROM lantern.task_progress;
RESET ROLE;
SELECT lantern.cancel_task(:a_job);
CALL wait_for(:a_job);
DELETE FROM lantern.tasks WHERE username = 'regress_progress_a';
DROP ROLE regress_progress_a;
DROP ROLE regress_progress_b;
DROP TABLE progress_items, progress_samples;
DROP FUNCTION slow_key(int);
