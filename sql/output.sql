--
-- output: what each statement of a task said (lantern.task_output), the rows
-- kept with keep_result (lantern.task_result), the lantern_fdw.max_output_size
-- cap, who sees output, and its removal with the task.
--

SELECT current_user AS su \gset

-- Command tags and row counts of a task of several statements.
SELECT lantern.async_task($$CREATE TABLE out_t (a int, b text);
INSERT INTO out_t SELECT g, g::text FROM generate_series(1, 5) g;
UPDATE out_t SET b = b || '!' WHERE a <= 2;
SELECT * FROM out_t;
DELETE FROM out_t WHERE a = 1;
COPY (SELECT * FROM out_t) TO STDOUT$$, 'tags') AS tags_job \gset
SELECT lantern.wait_task(:tags_job, '60s');
SELECT o.statement, o.query, o.command, o.rows, o.messages, o.result, o.truncated,
       o.started_at >= t.started_at AS after_submit, o.duration >= '0' AS has_duration
  FROM lantern.task_output o JOIN lantern.tasks t USING (jobid)
 WHERE jobid = :tags_job ORDER BY o.statement;
-- Without keep_result no rows are kept.
SELECT lantern.task_result(:tags_job);

-- VACUUM (VERBOSE): its INFO lines, in order.
SELECT lantern.async_task('VACUUM (VERBOSE) out_t') AS vacuum_job \gset
SELECT lantern.wait_task(:vacuum_job, '60s');
SELECT command, rows, messages LIKE E'INFO:  vacuuming "%.public.out_t"\n%' AS starts_with_vacuuming,
       messages LIKE E'%\n' AS ends_with_newline
  FROM lantern.task_output WHERE jobid = :vacuum_job;

-- RAISE NOTICE and WARNING from a DO block, as psql prints them.
SELECT lantern.async_task($q$DO $do$BEGIN RAISE NOTICE 'one'; RAISE WARNING 'two' USING DETAIL = 'some detail'; END$do$$q$)
    AS notice_job \gset
SELECT lantern.wait_task(:notice_job, '60s');
SELECT command, rows, messages FROM lantern.task_output WHERE jobid = :notice_job;

-- A failing statement keeps the notices it raised before its error; the
-- error itself is the task's error_message.
SELECT lantern.async_task($$DO $do$BEGIN RAISE NOTICE 'before'; END$do$;
DO $do$BEGIN RAISE NOTICE 'inside'; PERFORM 1 / 0; END$do$;
SELECT 'never run'$$) AS failing_job \gset
SELECT lantern.wait_task(:failing_job, '60s');
SELECT statement, command, rows, messages FROM lantern.task_output WHERE jobid = :failing_job ORDER BY statement;
SELECT error_message FROM lantern.tasks WHERE jobid = :failing_job;

-- keep_result: the rows of the last statement, numbers as numbers, NULL as
-- null, the rest as text; a repeated column name gets a suffix.
SELECT lantern.async_task($$SELECT 'not kept';
SELECT g AS i, 1.50 + g AS n, 2.5::float8 * g AS f, 'NaN'::float8 AS nan, E'it''s "q"\nline\t\\' AS t, NULL::int AS nul,
       ARRAY[g, g + 1] AS arr, '{"k": [1, null]}'::json AS j, true AS b, -g AS i, 'x' AS i_2
  FROM generate_series(1, 2) g ORDER BY g$$, keep_result => true) AS result_job \gset
SELECT lantern.wait_task(:result_job, '60s');
SELECT statement, command, rows, result IS NULL AS no_result, truncated FROM lantern.task_output
 WHERE jobid = :result_job ORDER BY statement;
SELECT jsonb_pretty(lantern.task_result(:result_job));
SELECT r->>'t' AS t FROM jsonb_array_elements(lantern.task_result(:result_job)) r LIMIT 1;
-- No rows: an empty array. A last statement that returns no rows: no result.
SELECT lantern.async_task('SELECT 1 AS a WHERE false', keep_result => true) AS empty_job \gset
SELECT lantern.async_task('CREATE TABLE out_u (a int)', keep_result => true) AS ddl_job \gset
SELECT lantern.wait_task(:empty_job, '60s'), lantern.wait_task(:ddl_job, '60s');
SELECT lantern.task_result(:empty_job) AS empty_result, lantern.task_result(:ddl_job) AS ddl_result;
-- The other arguments of the signature are NULL by default.
SELECT lantern.async_task('SELECT 1', NULL, NULL, NULL, NULL) > 0 AS null_keep_result;

-- The cap: past lantern_fdw.max_output_size the task runs to its end, and
-- what was kept is whole messages and rows, marked truncated.
ALTER SYSTEM SET lantern_fdw.max_output_size = '300B';
SELECT pg_reload_conf();
-- The executor reads the new setting on its next pass: poll with probes
-- until one of them is cut.
DO $body$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '60s';
    j bigint;
BEGIN
    LOOP
        j := lantern.async_task($q$DO $do$BEGIN RAISE NOTICE '%', repeat('p', 400); END$do$$q$);
        COMMIT;
        PERFORM lantern.wait_task(j, '60s');
        EXIT WHEN (SELECT truncated FROM lantern.task_output WHERE jobid = j);
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'the executor did not apply lantern_fdw.max_output_size within 60s';
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$body$;
SELECT lantern.async_task($$DO $do$BEGIN FOR i IN 1..5 LOOP RAISE NOTICE '%', repeat('n', 40); END LOOP; END$do$;
CREATE TABLE out_cut AS SELECT 1 AS a;
SELECT g AS a FROM generate_series(1, 1000) g$$, keep_result => true) AS cut_job \gset
SELECT lantern.wait_task(:cut_job, '60s');
SELECT statement, command, rows, length(messages) AS messages_length, jsonb_array_length(result) AS kept_rows, truncated
  FROM lantern.task_output WHERE jobid = :cut_job ORDER BY statement;
-- The kept rows are the first ones, whole.
SELECT result->0 AS first_row, result->-1 AS last_kept_row FROM lantern.task_output WHERE jobid = :cut_job AND statement = 3;
ALTER SYSTEM RESET lantern_fdw.max_output_size;
SELECT pg_reload_conf();

-- Visibility: exactly as lantern.tasks. Two roles that are not superusers.
CREATE ROLE regress_out_ann LOGIN;
CREATE ROLE regress_out_ben LOGIN;
CREATE TABLE ann_secret (s text);
INSERT INTO ann_secret VALUES ('ann''s secret');
ALTER TABLE ann_secret OWNER TO regress_out_ann;
\c - regress_out_ann
SELECT lantern.async_task($$DO $do$BEGIN RAISE NOTICE 'ann says %', (SELECT s FROM ann_secret); END$do$;
SELECT s FROM ann_secret$$, keep_result => true) AS ann_job \gset
SELECT lantern.wait_task(:ann_job, '60s');
SELECT statement, command, messages, result FROM lantern.task_output WHERE jobid = :ann_job ORDER BY statement;
SELECT lantern.task_result(:ann_job);
\c - regress_out_ben
SELECT count(*) FROM lantern.task_output WHERE jobid = :ann_job;
SELECT lantern.task_result(:ann_job);
-- Not through the table itself, nor by forging output.
SELECT count(*) FROM _lantern_fdw.task_output;
SELECT set_config('regress.forge_jobid', :'ann_job', false) IS NOT NULL AS set;
DO $$
BEGIN
    PERFORM _lantern_fdw.record_output(current_setting('regress.forge_jobid')::bigint, 9, 'forged', 'SELECT 1', 1, 0, 0, NULL, NULL, false);
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE '%', regexp_replace(SQLERRM, '[0-9]+', 'N');
END
$$;
-- Nor for a task of one's own once it has ended.
SELECT lantern.async_task('SELECT 1') AS ben_job \gset
SELECT lantern.wait_task(:ben_job, '60s');
SELECT set_config('regress.forge_jobid', :'ben_job', false) IS NOT NULL AS set;
DO $$
BEGIN
    PERFORM _lantern_fdw.record_output(current_setting('regress.forge_jobid')::bigint, 2, 'forged', 'SELECT 1', 1, 0, 0, NULL, NULL, false);
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE '%', regexp_replace(SQLERRM, '[0-9]+', 'N');
END
$$;
SELECT statement, command FROM lantern.task_output WHERE jobid = :ben_job;
\c - :su
SELECT count(*) FROM lantern.task_output WHERE jobid = :ann_job;

-- DELETE of a task removes its output.
SELECT count(*) FROM _lantern_fdw.task_output WHERE jobid = :tags_job;
DELETE FROM lantern.tasks WHERE jobid = :tags_job;
SELECT count(*) FROM _lantern_fdw.task_output WHERE jobid = :tags_job;

DROP TABLE out_t, out_u, out_cut, ann_secret;
DROP ROLE regress_out_ann, regress_out_ben;
