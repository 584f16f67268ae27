-- Privileges: what PUBLIC and ordinary roles may do with lantern.tasks, the
-- internal store and the functions, and the rules of docs/sql-reference.md
-- for non-superusers (submit as, see, cancel). Everything here runs
-- in one rolled-back transaction, so its tasks never run.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS lantern_fdw;

BEGIN;
SELECT plan(44);

CREATE ROLE regress_lantern_a LOGIN;        -- an ordinary user
CREATE ROLE regress_lantern_b LOGIN;        -- another one
CREATE ROLE regress_lantern_group NOLOGIN;  -- a group role a is a member of
GRANT regress_lantern_group TO regress_lantern_a;
CREATE ROLE regress_lantern_stats LOGIN IN ROLE pg_read_all_stats;  -- sees all, cancels none

-- ------------------------------------------------------ grants, as installed
SELECT table_privs_are('lantern', 'tasks', 'public', ARRAY['SELECT', 'INSERT', 'DELETE'],
                       'PUBLIC has exactly SELECT, INSERT and DELETE on lantern.tasks');
SELECT ok(NOT has_table_privilege('public', 'lantern.tasks', 'UPDATE'), 'PUBLIC has no UPDATE on lantern.tasks');
SELECT table_privs_are('lantern', 'tasks', 'regress_lantern_a', ARRAY['SELECT', 'INSERT', 'DELETE'],
                       'an ordinary role has exactly SELECT, INSERT and DELETE on lantern.tasks');
SELECT schema_privs_are('lantern', 'public', ARRAY['USAGE'], 'PUBLIC has USAGE on schema lantern');
SELECT table_privs_are('lantern', 'task_progress', 'public', ARRAY['SELECT'],
                       'PUBLIC may read lantern.task_progress, nothing more');
SELECT table_privs_are('lantern', 'task_details', 'public', ARRAY['SELECT'],
                       'PUBLIC may read lantern.task_details, nothing more');
SELECT table_privs_are('lantern', 'task_output', 'public', ARRAY['SELECT'],
                       'PUBLIC may read lantern.task_output, nothing more');
SELECT function_privs_are('lantern', 'task_result', ARRAY['bigint'], 'public', ARRAY['EXECUTE'],
                          'PUBLIC may execute lantern.task_result');
SELECT sequence_privs_are('lantern', 'tasks_jobid_seq', 'public', ARRAY['SELECT', 'USAGE'],
                          'PUBLIC may use lantern.tasks_jobid_seq (the jobid default) but not setval it');

SELECT table_privs_are('_lantern_fdw', 'task_log', 'public', ARRAY[]::name[],
                       'PUBLIC has no privilege on _lantern_fdw.task_log');
SELECT table_privs_are('_lantern_fdw', 'task_output', 'public', ARRAY[]::name[],
                       'PUBLIC has no privilege on _lantern_fdw.task_output');
SELECT ok(NOT has_table_privilege('regress_lantern_a', '_lantern_fdw.task_log', 'SELECT'), 'an ordinary role cannot SELECT the store');
SELECT ok(NOT has_table_privilege('regress_lantern_a', '_lantern_fdw.task_log', 'INSERT'), 'an ordinary role cannot INSERT into the store');
SELECT ok(NOT has_table_privilege('regress_lantern_a', '_lantern_fdw.task_log', 'UPDATE'), 'an ordinary role cannot UPDATE the store');
SELECT ok(NOT has_table_privilege('regress_lantern_a', '_lantern_fdw.task_log', 'DELETE'), 'an ordinary role cannot DELETE from the store');
SELECT ok(NOT has_table_privilege('regress_lantern_a', '_lantern_fdw.task_log', 'TRUNCATE'), 'an ordinary role cannot TRUNCATE the store');
SELECT is((SELECT count(*)::int FROM pg_roles r
            WHERE r.rolname <> (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = '_lantern_fdw.task_log'::regclass)
              AND NOT r.rolsuper
              -- predefined roles that read or write all data, by design
              AND NOT pg_has_role(r.oid, 'pg_read_all_data', 'MEMBER')
              AND NOT pg_has_role(r.oid, 'pg_write_all_data', 'MEMBER')
              AND (has_table_privilege(r.oid, '_lantern_fdw.task_log', 'SELECT')
                   OR has_table_privilege(r.oid, '_lantern_fdw.task_log', 'INSERT')
                   OR has_table_privilege(r.oid, '_lantern_fdw.task_log', 'UPDATE')
                   OR has_table_privilege(r.oid, '_lantern_fdw.task_log', 'DELETE'))),
          0, 'no role but the owner (superusers and pg_read/write_all_data aside) has any privilege on the store');

SELECT function_privs_are('lantern', 'async_task', ARRAY['text', 'text', 'timestamp with time zone', 'interval', 'boolean'], 'public', ARRAY['EXECUTE'],
                          'PUBLIC may execute lantern.async_task');
SELECT function_privs_are('lantern', 'cancel_task', ARRAY['bigint'], 'public', ARRAY['EXECUTE'],
                          'PUBLIC may execute lantern.cancel_task');
SELECT function_privs_are('lantern', 'cancel_all_async_tasks', ARRAY[]::name[], 'public', ARRAY['EXECUTE'],
                          'PUBLIC may execute lantern.cancel_all_async_tasks');
SELECT function_privs_are('lantern', 'wait_task', ARRAY['bigint', 'interval'], 'public', ARRAY['EXECUTE'],
                          'PUBLIC may execute lantern.wait_task');
SELECT function_privs_are('_lantern_fdw', 'handler', ARRAY[]::name[], 'public', ARRAY[]::name[],
                          'PUBLIC may not execute the FDW handler');
SELECT function_privs_are('_lantern_fdw', 'validator', ARRAY['text[]', 'oid'], 'public', ARRAY[]::name[],
                          'PUBLIC may not execute the FDW validator');

-- A superuser's task, submitted in this transaction (it never runs).
CREATE TEMP TABLE ids (name text PRIMARY KEY, jobid bigint);
GRANT SELECT, INSERT ON ids TO PUBLIC;
INSERT INTO ids VALUES ('super', lantern.async_task('SELECT 1', 'pgtap privileges: superuser task'));

-- (wait_task and lantern.tasks visibility of committed tasks of other roles:
-- 05_task_lifecycle.sql. Here the superuser's task belongs to this very
-- transaction, which wait_task refuses for its own reason.)

-- ---------------------------------------------------- as an ordinary role
SET ROLE regress_lantern_a;

SELECT throws_ok('SELECT * FROM _lantern_fdw.task_log', '42501', NULL,
                 'an ordinary role cannot read the store directly');
SELECT throws_ok('SELECT * FROM _lantern_fdw.task_output', '42501', NULL,
                 'an ordinary role cannot read the stored output directly');
SELECT throws_ok($$INSERT INTO _lantern_fdw.task_output VALUES (1, 1, 'SELECT 1', 'SELECT 1', 1, now(), '0', NULL, NULL, false)$$,
                 '42501', NULL, 'an ordinary role cannot write output directly');
SELECT throws_ok($$INSERT INTO _lantern_fdw.task_log (jobid, query, username, started_at, status, run_as, login_role, board_id)
                   VALUES (999999, 'SELECT 1', 'postgres', now(), 'queued', 10, 10, 0)$$, '42501', NULL,
                 'an ordinary role cannot write the store directly');

SELECT lives_ok($$INSERT INTO ids SELECT 'a', lantern.async_task('SELECT 1', 'pgtap privileges: a')$$,
                'an ordinary role may submit a task');
SELECT is((SELECT username FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'a')),
          'regress_lantern_a', 'its task runs as the submitting role');

SELECT lives_ok($$INSERT INTO lantern.tasks (query, job_name, username)
                   VALUES ('SELECT 1', 'pgtap privileges: group', 'regress_lantern_group')$$,
                'a role may submit a task as a role it could SET ROLE to');
SELECT throws_ok($$INSERT INTO lantern.tasks (query, username) VALUES ('SELECT 1', 'regress_lantern_b')$$,
                 '42501', 'permission denied to submit a task as role "regress_lantern_b"',
                 'a role may not submit a task as a role it could not SET ROLE to');
SELECT throws_ok($$INSERT INTO lantern.tasks (query, username) VALUES ('SELECT 1', 'postgres')$$,
                 '42501', 'permission denied to submit a task as role "postgres"',
                 'a role may not submit a task as a superuser');

SELECT results_eq(
    $$SELECT job_name, username FROM lantern.tasks WHERE job_name LIKE 'pgtap privileges:%' ORDER BY job_name$$,
    $$VALUES ('pgtap privileges: a', 'regress_lantern_a'), ('pgtap privileges: group', 'regress_lantern_group')$$,
    'a role sees its own tasks and those of roles it has the privileges of, not a superuser''s');
SELECT is_empty($$SELECT 1 FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'super')$$,
                'a jobid lookup does not reveal another role''s task');
SELECT throws_ok($$SELECT lantern.cancel_task((SELECT jobid FROM ids WHERE name = 'super'))$$,
                 '42704', NULL, 'cancel_task of a task the role cannot see: it does not exist');
SELECT throws_ok($$DELETE FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'a')$$,
                 '55006', NULL, 'a task that has not ended cannot be deleted');

-- The recording functions are callable by anyone, and refuse everyone but
-- the executor's connection for that task.
SELECT throws_ok($$SELECT _lantern_fdw.record_start((SELECT jobid FROM ids WHERE name = 'a'))$$,
                 '42501', 'only the lantern_fdw executor may record the start of task '
                          || (SELECT jobid FROM ids WHERE name = 'a'),
                 'a client cannot mark its task running');
SELECT throws_ok($$SELECT _lantern_fdw.record_end((SELECT jobid FROM ids WHERE name = 'a'), 'succeeded', NULL)$$,
                 '42501', 'only the lantern_fdw executor may record the end of task '
                          || (SELECT jobid FROM ids WHERE name = 'a'),
                 'a client cannot forge its task''s outcome');
SELECT throws_ok($$SELECT _lantern_fdw.record_output((SELECT jobid FROM ids WHERE name = 'a'), 1, 'SELECT 1', 'SELECT 1',
                                                     1, 0, 0, NULL, NULL, false)$$,
                 '42501', 'only the lantern_fdw executor may record the output of task '
                          || (SELECT jobid FROM ids WHERE name = 'a'),
                 'a client cannot forge its task''s output');

SELECT is(lantern.cancel_task((SELECT jobid FROM ids WHERE name = 'a')), true,
          'a role may cancel its own task');
RESET ROLE;

-- ---------------------------------------------- pg_read_all_stats members
SET ROLE regress_lantern_stats;
SELECT is((SELECT count(*)::int FROM lantern.tasks WHERE jobid = (SELECT jobid FROM ids WHERE name = 'super')), 1,
          'a member of pg_read_all_stats sees a superuser''s task');
SELECT throws_ok($$SELECT lantern.cancel_task((SELECT jobid FROM ids WHERE name = 'super'))$$,
                 '42501', 'permission denied to cancel task ' || (SELECT jobid FROM ids WHERE name = 'super'),
                 'but may not cancel it');
RESET ROLE;

-- --------------------------------------- without INSERT on lantern.tasks
REVOKE INSERT ON lantern.tasks FROM PUBLIC;
SET ROLE regress_lantern_a;
SELECT throws_ok($$SELECT lantern.async_task('SELECT 1')$$, '42501', 'permission denied for foreign table tasks',
                 'async_task needs INSERT on lantern.tasks, like the INSERT it stands for');
SELECT throws_ok($$INSERT INTO lantern.tasks (query) VALUES ('SELECT 1')$$, '42501', NULL,
                 'INSERT without the privilege is refused');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
