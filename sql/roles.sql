--
-- roles: a task runs with exactly the privileges of its role; who sees and
-- who may cancel which tasks.
--
SELECT setval('lantern.tasks_jobid_seq', 300, false);
-- The superuser this test runs as, to come back to after \c.
SELECT current_user AS su \gset

CREATE ROLE regress_alice LOGIN;
CREATE ROLE regress_bob LOGIN;
CREATE ROLE regress_group NOLOGIN;            -- reached by SET ROLE only
GRANT regress_group TO regress_alice;
CREATE ROLE regress_watcher LOGIN IN ROLE pg_read_all_stats;
CREATE ROLE regress_canceler LOGIN IN ROLE pg_read_all_stats, pg_signal_backend;

CREATE TABLE secret (a int);
INSERT INTO secret VALUES (42);
CREATE TABLE alice_data (a int);
ALTER TABLE alice_data OWNER TO regress_alice;
CREATE TABLE group_data (a int);
ALTER TABLE group_data OWNER TO regress_group;
-- Who a task ran as.
CREATE TABLE who (label text, cur name, ses name);
GRANT INSERT, SELECT ON who TO PUBLIC;
-- A superuser task, for the visibility tests below.
SELECT lantern.async_task('SELECT 1', 'superuser task') AS su_job \gset
SELECT lantern.wait_task(:su_job, '60s');

--
-- Tasks of a non-superuser run with its privileges.
--
\c - regress_alice
SELECT current_user, session_user;
SELECT lantern.async_task('INSERT INTO alice_data VALUES (1)', 'alice ok') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT lantern.async_task('INSERT INTO alice_data SELECT a FROM secret', 'alice denied') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT lantern.async_task($$INSERT INTO who VALUES ('alice', current_user, session_user)$$) AS j \gset
SELECT lantern.wait_task(:j, '60s');
-- A task can reach no role its submitter could not.
SELECT lantern.async_task('SET ROLE regress_bob', 'alice set role') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT lantern.async_task('CREATE ROLE regress_alice_evil SUPERUSER', 'alice create role') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT job_name, username, status, error_message FROM lantern.tasks ORDER BY jobid;
SELECT * FROM alice_data;

--
-- A NOLOGIN group role reached with SET ROLE: its tasks run as that role
-- (the executor logs in as the submitter's session user and sets the role).
--
SET ROLE regress_group;
SELECT current_user, session_user;
SELECT lantern.async_task($$INSERT INTO who VALUES ('group', current_user, session_user)$$) AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT lantern.async_task('INSERT INTO group_data VALUES (2)', 'group ok') AS j \gset
SELECT lantern.wait_task(:j, '60s');
-- The group does not have the privileges of alice.
SELECT lantern.async_task('INSERT INTO alice_data VALUES (3)', 'group denied') AS j \gset
SELECT lantern.wait_task(:j, '60s');
-- The group sees the tasks of the group only.
SELECT job_name, username, status, error_message FROM lantern.tasks ORDER BY jobid;
RESET ROLE;
-- Alice, who has the privileges of the group, sees both.
SELECT job_name, username, status FROM lantern.tasks ORDER BY jobid;
-- She may submit as the group without SET ROLE.
INSERT INTO lantern.tasks (query, job_name, username)
  VALUES ($$INSERT INTO who VALUES ('group by username', current_user, session_user)$$,
          'group by username', 'regress_group')
  RETURNING job_name, username, status;
SELECT jobid AS j FROM lantern.tasks WHERE job_name = 'group by username' \gset
SELECT lantern.wait_task(:j, '60s');
SELECT label, cur, ses FROM who ORDER BY label;
SELECT * FROM group_data;

-- The store behind lantern.tasks is not open to users, and only the
-- executor may record a task's outcome.
SELECT * FROM _lantern_fdw.task_log;
SELECT _lantern_fdw.record_end(:j, 'succeeded', NULL);
SELECT * FROM _lantern_fdw.record_start(:j);
-- ... a task cannot forge its own status either (application_name names it).
SELECT lantern.async_task($$SELECT _lantern_fdw.record_end(
  substring(current_setting('application_name') from '[0-9]+$')::bigint, 'succeeded', 'forged')$$,
  'forger') AS j \gset
SELECT lantern.wait_task(:j, '60s');
SELECT job_name, status, error_message FROM lantern.tasks WHERE jobid = :j;

--
-- Visibility.
--
\c - regress_bob
SELECT lantern.async_task('SELECT 1', 'bob task') AS bob_job \gset
SELECT lantern.wait_task(:bob_job, '60s');
-- Bob sees his task only.
SELECT job_name, username, status FROM lantern.tasks ORDER BY jobid;
SELECT count(*) FROM lantern.tasks WHERE jobid = :su_job;
-- ... and the tasks of others do not exist for him.
SELECT lantern.wait_task(:su_job, '1s');
SELECT lantern.cancel_task(:su_job);
-- pg_read_all_stats members see every task.
\c - regress_watcher
SELECT job_name, CASE WHEN username = :'su' THEN '(superuser)' ELSE username END AS username, status
  FROM lantern.tasks WHERE jobid >= 300 ORDER BY jobid;
SELECT count(*) > 0 AS sees_earlier_tasks FROM lantern.tasks WHERE jobid < 300;
SELECT lantern.wait_task(:bob_job, '60s');
\c - :su
-- So do superusers.
SELECT count(*) FROM lantern.tasks WHERE jobid >= 300;
SELECT count(*) > 0 AS sees_earlier_tasks FROM lantern.tasks WHERE jobid < 300;

--
-- Cancel rights: those of pg_cancel_backend.
--
\c - regress_alice
SELECT lantern.async_task('SELECT pg_sleep(60)', 'alice sleep') AS alice_sleep \gset
SELECT wait_for_statement(:alice_sleep, 'SELECT pg_sleep(60)');
-- Bob cannot see it: for him it does not exist.
\c - regress_bob
SELECT lantern.cancel_task(:alice_sleep);
DELETE FROM lantern.tasks WHERE jobid = :alice_sleep;
-- Bob's cancel_all_async_tasks() cancels his tasks only.
SELECT lantern.async_task('SELECT pg_sleep(60)', 'bob sleep') AS bob_sleep \gset
SELECT wait_for_statement(:bob_sleep, 'SELECT pg_sleep(60)');
-- A role that has active tasks cannot be dropped.
\c - :su
DROP ROLE regress_bob;
\c - regress_bob
SELECT lantern.cancel_all_async_tasks();
CALL wait_for(:bob_sleep);
SELECT job_name, status, error_message FROM lantern.tasks WHERE jobid = :bob_sleep;
-- A pg_read_all_stats member sees the task but may not cancel it.
\c - regress_watcher
SELECT job_name, status FROM lantern.tasks WHERE jobid = :alice_sleep;
SELECT lantern.cancel_task(:alice_sleep);
-- A pg_signal_backend member may.
\c - regress_canceler
SELECT lantern.cancel_task(:alice_sleep);
CALL wait_for(:alice_sleep);
SELECT job_name, status, error_message FROM lantern.tasks WHERE jobid = :alice_sleep;
-- ... but not the task of a superuser.
\c - :su
SELECT lantern.async_task('SELECT pg_sleep(60)', 'superuser sleep') AS su_sleep \gset
SELECT wait_for_statement(:su_sleep, 'SELECT pg_sleep(60)');
\c - regress_canceler
SELECT lantern.cancel_task(:su_sleep);
SELECT lantern.cancel_all_async_tasks();
\c - :su
SELECT job_name, status FROM lantern.tasks WHERE jobid = :su_sleep;
SELECT lantern.cancel_task(:su_sleep);
CALL wait_for(:su_sleep);
SELECT job_name, status, error_message FROM lantern.tasks WHERE jobid = :su_sleep;
-- Alice may cancel her tasks and those of her group.
\c - regress_alice
SELECT lantern.async_task('SELECT pg_sleep(60)', 'alice sleep 2') AS a1 \gset
SET ROLE regress_group;
SELECT lantern.async_task('SELECT pg_sleep(60)', 'group sleep') AS g1 \gset
RESET ROLE;
SELECT wait_for_statement(:a1, 'SELECT pg_sleep(60)');
SELECT wait_for_statement(:g1, 'SELECT pg_sleep(60)');
-- The group may not cancel alice's task (it cannot see it) ...
SET ROLE regress_group;
SELECT lantern.cancel_task(:a1);
-- ... and its cancel_all_async_tasks() leaves it alone.
SELECT lantern.cancel_all_async_tasks();
RESET ROLE;
CALL wait_for(:g1);
SELECT job_name, status FROM lantern.tasks WHERE jobid IN (:a1, :g1) ORDER BY jobid;
SELECT lantern.cancel_task(:a1);
CALL wait_for(:a1);
SELECT job_name, status, error_message FROM lantern.tasks WHERE jobid IN (:a1, :g1) ORDER BY jobid;

\c - :su
-- No task of this file is left active.
SELECT count(*) AS active FROM lantern.tasks WHERE duration IS NULL;
-- ... and all have left the board, so their roles may be dropped.
SELECT DISTINCT lantern.wait_task(jobid, '60s') IS NOT NULL AS ended FROM lantern.tasks WHERE jobid >= 300;
DROP TABLE secret, alice_data, group_data, who;
DROP ROLE regress_alice, regress_bob, regress_group, regress_watcher, regress_canceler;
