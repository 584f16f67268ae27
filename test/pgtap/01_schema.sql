-- The SQL surface of lantern_fdw as docs/sql-reference.md describes it: schema, the
-- lantern.tasks foreign table (columns, types, nullability, defaults), its
-- sequence, the public functions, the foreign data wrapper and its server,
-- the output view lantern.task_output and lantern.task_result, and the
-- documented settings.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS lantern_fdw;

BEGIN;
SELECT plan(95);

-- ---------------------------------------------------------------- schema
SELECT has_schema('lantern');
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'lantern_fdw'), '0.2.0',
          'the installed version is 0.2.0');
SELECT has_schema('_lantern_fdw', 'the internal store lives in schema _lantern_fdw');

-- ---------------------------------------------------------- lantern.tasks
SELECT has_foreign_table('lantern', 'tasks', 'lantern.tasks is a foreign table');
SELECT foreign_tables_are('lantern', ARRAY['tasks'], 'lantern.tasks is the only foreign table in schema lantern');

SELECT columns_are('lantern', 'tasks', ARRAY[
    'jobid', 'query', 'pg_cron_job_name', 'job_name', 'username',
    'started_at', 'duration', 'status', 'error_message'
], 'lantern.tasks has exactly the documented columns');

-- columns_are ignores the order; docs/sql-reference.md pins it too.
SELECT is(
    ARRAY(SELECT attname::text FROM pg_attribute
           WHERE attrelid = 'lantern.tasks'::regclass AND attnum > 0 AND NOT attisdropped
           ORDER BY attnum),
    ARRAY['jobid', 'query', 'pg_cron_job_name', 'job_name', 'username',
          'started_at', 'duration', 'status', 'error_message'],
    'the columns of lantern.tasks are in the documented order');

SELECT col_type_is('lantern', 'tasks', 'jobid',            'bigint', 'jobid is bigint');
SELECT col_type_is('lantern', 'tasks', 'query',            'text', 'query is text');
SELECT col_type_is('lantern', 'tasks', 'pg_cron_job_name', 'text', 'pg_cron_job_name is text');
SELECT col_type_is('lantern', 'tasks', 'job_name',         'text', 'job_name is text');
SELECT col_type_is('lantern', 'tasks', 'username',         'text', 'username is text');
SELECT col_type_is('lantern', 'tasks', 'started_at',       'timestamp with time zone', 'started_at is timestamp with time zone');
SELECT col_type_is('lantern', 'tasks', 'duration',         'interval', 'duration is interval');
SELECT col_type_is('lantern', 'tasks', 'status',           'text', 'status is text');
SELECT col_type_is('lantern', 'tasks', 'error_message',    'text', 'error_message is text');

SELECT col_not_null('lantern', 'tasks', 'jobid',            'jobid is NOT NULL');
SELECT col_not_null('lantern', 'tasks', 'query',            'query is NOT NULL');
SELECT col_is_null ('lantern', 'tasks', 'pg_cron_job_name', 'pg_cron_job_name is nullable');
SELECT col_is_null ('lantern', 'tasks', 'job_name',         'job_name is nullable');
SELECT col_not_null('lantern', 'tasks', 'username',         'username is NOT NULL');
SELECT col_not_null('lantern', 'tasks', 'started_at',       'started_at is NOT NULL');
SELECT col_is_null ('lantern', 'tasks', 'duration',         'duration is nullable');
SELECT col_is_null ('lantern', 'tasks', 'status',           'status is nullable');
SELECT col_is_null ('lantern', 'tasks', 'error_message',    'error_message is nullable');

SELECT col_default_is('lantern', 'tasks', 'jobid', $$nextval('lantern.tasks_jobid_seq'::regclass)$$,
                      'jobid defaults to nextval of lantern.tasks_jobid_seq');
SELECT col_default_is('lantern', 'tasks', 'username', 'CURRENT_USER', 'username defaults to CURRENT_USER');
SELECT col_default_is('lantern', 'tasks', 'started_at', 'now()', 'started_at defaults to now()');
SELECT col_hasnt_default('lantern', 'tasks', 'query', 'query has no default');
SELECT col_hasnt_default('lantern', 'tasks', 'pg_cron_job_name', 'pg_cron_job_name has no default');
SELECT col_hasnt_default('lantern', 'tasks', 'job_name', 'job_name has no default');
SELECT col_hasnt_default('lantern', 'tasks', 'duration', 'duration has no default');
SELECT col_hasnt_default('lantern', 'tasks', 'status', 'status has no default');
SELECT col_hasnt_default('lantern', 'tasks', 'error_message', 'error_message has no default');

SELECT has_view('lantern', 'task_progress', 'lantern.task_progress exists');
SELECT ok((SELECT relkind = 'v' FROM pg_class WHERE oid = 'lantern.task_progress'::regclass),
          'lantern.task_progress is a view');
SELECT has_view('lantern', 'task_details', 'lantern.task_details exists');

-- ------------------------------------------------------- task output
SELECT has_view('lantern', 'task_output', 'lantern.task_output is a view');
SELECT is(
    ARRAY(SELECT attname::text FROM pg_attribute
           WHERE attrelid = 'lantern.task_output'::regclass AND attnum > 0 AND NOT attisdropped
           ORDER BY attnum),
    ARRAY['jobid', 'statement', 'query', 'command', 'rows', 'started_at', 'duration', 'messages', 'result',
          'truncated'],
    'lantern.task_output has exactly the documented columns, in order');
SELECT col_type_is('lantern', 'task_output', 'jobid',      'bigint', 'task_output.jobid is bigint');
SELECT col_type_is('lantern', 'task_output', 'statement',  'integer', 'task_output.statement is integer');
SELECT col_type_is('lantern', 'task_output', 'query',      'text', 'task_output.query is text');
SELECT col_type_is('lantern', 'task_output', 'command',    'text', 'task_output.command is text');
SELECT col_type_is('lantern', 'task_output', 'rows',       'bigint', 'task_output.rows is bigint');
SELECT col_type_is('lantern', 'task_output', 'started_at', 'timestamp with time zone',
                   'task_output.started_at is timestamp with time zone');
SELECT col_type_is('lantern', 'task_output', 'duration',   'interval', 'task_output.duration is interval');
SELECT col_type_is('lantern', 'task_output', 'messages',   'text', 'task_output.messages is text');
SELECT col_type_is('lantern', 'task_output', 'result',     'jsonb', 'task_output.result is jsonb');
SELECT col_type_is('lantern', 'task_output', 'truncated',  'boolean', 'task_output.truncated is boolean');
-- Without the barrier, a cheap function in a caller's WHERE clause could
-- see other tasks' rows before the visibility condition filters them.
SELECT ok((SELECT coalesce('security_barrier=true' = ANY (reloptions), false) FROM pg_class
            WHERE oid = 'lantern.task_output'::regclass),
          'lantern.task_output is a security-barrier view');
SELECT has_table('_lantern_fdw', 'task_output', 'the output is stored in _lantern_fdw.task_output');
SELECT col_is_pk('_lantern_fdw', 'task_output', ARRAY['jobid', 'statement'],
                 '_lantern_fdw.task_output has primary key (jobid, statement)');

SELECT has_function('lantern', 'task_result', ARRAY['bigint']);
SELECT function_returns('lantern', 'task_result', ARRAY['bigint'], 'jsonb');
SELECT function_lang_is('lantern', 'task_result', ARRAY['bigint'], 'sql');
SELECT volatility_is('lantern', 'task_result', ARRAY['bigint'], 'stable');
SELECT isnt_definer('lantern', 'task_result', ARRAY['bigint'],
                    'task_result is not SECURITY DEFINER: it reads lantern.task_output as its caller');

-- ------------------------------------------------------------- sequence
SELECT has_sequence('lantern', 'tasks_jobid_seq', 'lantern.tasks_jobid_seq exists');
SELECT is(pg_get_serial_sequence('lantern.tasks', 'jobid'), 'lantern.tasks_jobid_seq',
          'lantern.tasks_jobid_seq is owned by lantern.tasks.jobid');

-- ------------------------------------------------------------ functions
SELECT has_function('lantern', 'async_task', ARRAY['text', 'text', 'timestamp with time zone', 'interval', 'boolean']);
SELECT function_returns('lantern', 'async_task', ARRAY['text', 'text', 'timestamp with time zone', 'interval', 'boolean'], 'bigint');
SELECT function_lang_is('lantern', 'async_task', ARRAY['text', 'text', 'timestamp with time zone', 'interval', 'boolean'], 'c');
SELECT volatility_is('lantern', 'async_task', ARRAY['text', 'text', 'timestamp with time zone', 'interval', 'boolean'], 'volatile');
SELECT isnt_strict('lantern', 'async_task', ARRAY['text', 'text', 'timestamp with time zone', 'interval', 'boolean'],
                   'async_task is not strict (a NULL query gets its own error)');

SELECT has_function('lantern', 'cancel_task', ARRAY['bigint']);
SELECT function_returns('lantern', 'cancel_task', ARRAY['bigint'], 'boolean');
SELECT function_lang_is('lantern', 'cancel_task', ARRAY['bigint'], 'c');
SELECT volatility_is('lantern', 'cancel_task', ARRAY['bigint'], 'volatile');

SELECT has_function('lantern', 'cancel_all_async_tasks', ARRAY[]::name[]);
SELECT function_returns('lantern', 'cancel_all_async_tasks', ARRAY[]::name[], 'void');
SELECT function_lang_is('lantern', 'cancel_all_async_tasks', ARRAY[]::name[], 'c');
SELECT volatility_is('lantern', 'cancel_all_async_tasks', ARRAY[]::name[], 'volatile');

SELECT has_function('lantern', 'wait_task', ARRAY['bigint', 'interval']);
SELECT function_returns('lantern', 'wait_task', ARRAY['bigint', 'interval'], 'text');
SELECT function_lang_is('lantern', 'wait_task', ARRAY['bigint', 'interval'], 'c');
SELECT volatility_is('lantern', 'wait_task', ARRAY['bigint', 'interval'], 'volatile');

SELECT has_function('lantern', 'import_lantern_tasks', ARRAY['regclass']);
SELECT function_returns('lantern', 'import_lantern_tasks', ARRAY['regclass'], 'bigint');
SELECT function_lang_is('lantern', 'import_lantern_tasks', ARRAY['regclass'], 'plpgsql');
SELECT volatility_is('lantern', 'import_lantern_tasks', ARRAY['regclass'], 'volatile');

SELECT functions_are('lantern', ARRAY['async_task', 'cancel_task', 'cancel_all_async_tasks', 'wait_task',
                                      'import_lantern_tasks', 'task_result'],
                     'schema lantern has exactly the six public functions');

-- Argument names and defaults as documented: async_task(query, job_name
-- DEFAULT NULL, run_at DEFAULT NULL, max_runtime DEFAULT NULL, keep_result
-- DEFAULT false), wait_task(jobid, timeout DEFAULT NULL).
SELECT results_eq(
    $$SELECT p.oid::regprocedure::text, pg_get_function_arguments(p.oid)
        FROM pg_proc p WHERE p.pronamespace = 'lantern'::regnamespace ORDER BY 1$$,
    $$VALUES ('lantern.async_task(text,text,timestamp with time zone,interval,boolean)',
              'query text, job_name text DEFAULT NULL::text, run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, max_runtime interval DEFAULT NULL::interval, keep_result boolean DEFAULT false'),
             ('lantern.cancel_all_async_tasks()', ''),
             ('lantern.cancel_task(bigint)', 'jobid bigint'),
             ('lantern.import_lantern_tasks(regclass)', 'source regclass'),
             ('lantern.task_result(bigint)', 'jobid bigint'),
             ('lantern.wait_task(bigint,interval)', 'jobid bigint, timeout interval DEFAULT NULL::interval')$$,
    'the public functions have the documented arguments and defaults');

-- ---------------------------------------- foreign data wrapper and server
SELECT ok(EXISTS (SELECT 1 FROM pg_foreign_data_wrapper
                   WHERE fdwname = 'lantern_fdw'
                     AND fdwhandler = '_lantern_fdw.handler()'::regprocedure
                     AND fdwvalidator = '_lantern_fdw.validator(text[], oid)'::regprocedure),
          'foreign data wrapper lantern_fdw exists with its handler and validator');
SELECT ok(EXISTS (SELECT 1 FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
                   WHERE s.srvname = 'lantern_fdw_server' AND w.fdwname = 'lantern_fdw'),
          'server lantern_fdw_server exists and uses lantern_fdw');
SELECT is((SELECT s.srvname::text FROM pg_foreign_table t JOIN pg_foreign_server s ON s.oid = t.ftserver
            WHERE t.ftrelid = 'lantern.tasks'::regclass),
          'lantern_fdw_server', 'lantern.tasks lives on server lantern_fdw_server');
SELECT is((SELECT ftoptions FROM pg_foreign_table WHERE ftrelid = 'lantern.tasks'::regclass), NULL,
          'lantern.tasks has no FDW options');

-- ----------------------------------------------------------- the store
SELECT has_table('_lantern_fdw', 'task_log', 'the durable store _lantern_fdw.task_log exists');
SELECT col_is_pk('_lantern_fdw', 'task_log', 'jobid', 'task_log has primary key jobid');

-- Everything the install script creates belongs to the extension.
SELECT results_eq(
    $$SELECT count(*)::int FROM pg_depend d
       WHERE d.refclassid = 'pg_extension'::regclass
         AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'lantern_fdw')
         AND d.deptype = 'e'
         AND (d.classid, d.objid) IN (
               ('pg_namespace'::regclass, 'lantern'::regnamespace::oid),
               ('pg_class'::regclass, 'lantern.tasks'::regclass::oid),
               ('pg_class'::regclass, 'lantern.tasks_jobid_seq'::regclass::oid),
               ('pg_class'::regclass, '_lantern_fdw.task_log'::regclass::oid),
               ('pg_proc'::regclass, 'lantern.async_task(text,text,timestamptz,interval,boolean)'::regprocedure::oid),
               ('pg_proc'::regclass, 'lantern.cancel_task(bigint)'::regprocedure::oid),
               ('pg_proc'::regclass, 'lantern.cancel_all_async_tasks()'::regprocedure::oid),
               ('pg_proc'::regclass, 'lantern.wait_task(bigint,interval)'::regprocedure::oid))$$,
    $$VALUES (8)$$,
    'schema, table, sequence, store and functions are members of the extension');

-- ------------------------------------------------------------- settings
-- docs/settings.md's settings table: name, default and context.
SELECT results_eq(
    $$SELECT name::text COLLATE "default", boot_val, context::text FROM pg_settings
       WHERE name IN ('lantern_fdw.max_tasks', 'lantern_fdw.max_parallel_tasks', 'lantern_fdw.host',
                      'lantern_fdw.connection_options', 'lantern_fdw.idle_connection_timeout')
       ORDER BY name$$,
    $$VALUES ('lantern_fdw.connection_options', '', 'sighup'),
             ('lantern_fdw.host', '', 'sighup'),
             ('lantern_fdw.idle_connection_timeout', '10000', 'sighup'),
             ('lantern_fdw.max_parallel_tasks', '4', 'sighup'),
             ('lantern_fdw.max_tasks', '1024', 'postmaster')$$,
    'the documented settings exist with their defaults and contexts');
SELECT results_eq(
    $$SELECT boot_val, context::text, unit, min_val, max_val FROM pg_settings
       WHERE name = 'lantern_fdw.max_output_size'$$,
    $$VALUES ('1048576', 'sighup', 'B', '0', '104857600')$$,
    'max_output_size: default 1MB, sighup, in bytes, from 0 to 100MB');
SELECT is((SELECT unit FROM pg_settings WHERE name = 'lantern_fdw.idle_connection_timeout'), 'ms',
          'idle_connection_timeout is a time setting (10s = 10000 ms)');
SELECT is(current_setting('lantern_fdw.idle_connection_timeout'), '10s',
          'idle_connection_timeout shows as 10s');
SELECT is(current_setting('lantern_fdw.max_parallel_tasks'), '4',
          'the test cluster runs 4 tasks at once (test/regress.conf)');
SELECT ok((SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries') ~ 'lantern_fdw',
          'the test cluster preloads lantern_fdw');

SELECT * FROM finish();
ROLLBACK;
