--
-- submit: lantern.async_task and INSERT INTO lantern.tasks, and every input
-- they refuse, with its error text.
--
-- jobids of this file start at 100, whatever the earlier files submitted.
SELECT setval('lantern.tasks_jobid_seq', 100, false);

-- Unnamed and named tasks: jobids come from the sequence, one after another.
SELECT lantern.async_task('SELECT 1');
SELECT lantern.async_task('SELECT 2', 'second task');
SELECT lantern.async_task(query => 'SELECT 3', job_name => NULL);
SELECT lantern.async_task(job_name => 'fourth', query => 'SELECT 4');
CALL wait_for(100);
CALL wait_for(101);
CALL wait_for(102);
CALL wait_for(103);
SELECT jobid, query, pg_cron_job_name, job_name, username = current_user AS by_me,
       duration IS NOT NULL AS ended, status, error_message
  FROM lantern.tasks WHERE jobid BETWEEN 100 AND 103 ORDER BY jobid;

-- INSERT ... RETURNING is the same thing; RETURNING shows the row as stored.
INSERT INTO lantern.tasks (query, job_name) VALUES ('SELECT 5', 'inserted')
  RETURNING jobid, query, pg_cron_job_name, job_name, username = current_user AS by_me,
            started_at = now() AS started_now, duration, status, error_message;
INSERT INTO lantern.tasks (query) VALUES ('SELECT 6') RETURNING jobid, job_name, status;
-- Several rows at once, and username given explicitly.
INSERT INTO lantern.tasks (query, job_name, username)
  SELECT 'SELECT ' || i, 'batch', current_user FROM generate_series(7, 9) i
  RETURNING jobid, query, job_name, status;
-- The submitted values are what is stored.
SELECT jobid FROM lantern.tasks WHERE job_name = 'batch' ORDER BY jobid;
CALL wait_for(104);
CALL wait_for(105);
CALL wait_for(106);
CALL wait_for(107);
CALL wait_for(108);
SELECT jobid, query, job_name, duration IS NOT NULL AS ended, status, error_message
  FROM lantern.tasks WHERE jobid BETWEEN 104 AND 108 ORDER BY jobid;
-- An empty job name is kept as given, not turned into NULL.
SELECT lantern.async_task('SELECT 10', '') AS jobid \gset
SELECT job_name = '' AS empty_name FROM lantern.tasks WHERE jobid = :jobid;
CALL wait_for(:jobid);

--
-- Refused inputs. Each changes nothing: no row, no task.
--
SELECT count(*) AS tasks_before FROM lantern.tasks \gset
-- NULL, empty and blank queries.
SELECT lantern.async_task(NULL);
SELECT lantern.async_task(NULL, 'named');
SELECT lantern.async_task('');
SELECT lantern.async_task(E'  \n\t ');
INSERT INTO lantern.tasks (query) VALUES (NULL);
INSERT INTO lantern.tasks (job_name) VALUES ('no query');
INSERT INTO lantern.tasks (query) VALUES ('   ');
-- No statement at all.
SELECT lantern.async_task(';');
SELECT lantern.async_task(' ; ;; ');
SELECT lantern.async_task('-- only a comment');
INSERT INTO lantern.tasks (query) VALUES ('/* only a comment */ ;');
-- Syntax errors, with the position inside the task's query.
SELECT lantern.async_task('SELEC 1');
SELECT lantern.async_task('SELECT 1;
SELECT (2');
SELECT lantern.async_task('CREATE INDEX ON items USING hnsw (v', 'broken index');
INSERT INTO lantern.tasks (query) VALUES ('VACUUM ANALYZE FULL x y');
-- Columns maintained by lantern_fdw.
INSERT INTO lantern.tasks (query, status) VALUES ('SELECT 1', 'succeeded');
INSERT INTO lantern.tasks (query, duration) VALUES ('SELECT 1', '1 second');
INSERT INTO lantern.tasks (query, error_message) VALUES ('SELECT 1', 'none');
INSERT INTO lantern.tasks (query, pg_cron_job_name) VALUES ('SELECT 1', 'cron');
-- A role that does not exist, and a NULL username.
INSERT INTO lantern.tasks (query, username) VALUES ('SELECT 1', 'regress_no_such_role');
INSERT INTO lantern.tasks (query, username) VALUES ('SELECT 1', NULL);
-- A read-only transaction.
BEGIN READ ONLY;
SELECT lantern.async_task('SELECT 1');
ROLLBACK;
BEGIN READ ONLY;
INSERT INTO lantern.tasks (query) VALUES ('SELECT 1');
ROLLBACK;

-- A non-superuser may only submit tasks as a role it could SET ROLE to.
CREATE ROLE regress_submitter LOGIN;
CREATE ROLE regress_submit_other LOGIN;
CREATE ROLE regress_submit_group NOLOGIN;
CREATE ROLE regress_submit_super SUPERUSER NOLOGIN;
GRANT regress_submit_group TO regress_submitter;
SET ROLE regress_submitter;
INSERT INTO lantern.tasks (query, username) VALUES ('SELECT 1', 'regress_submit_other');
INSERT INTO lantern.tasks (query, username) VALUES ('SELECT 1', 'regress_submit_super');
INSERT INTO lantern.tasks (query, username) VALUES ('SELECT 1', 'regress_no_such_role');
RESET ROLE;
-- Nothing was added by the refused inputs.
SELECT count(*) - :tasks_before AS added FROM lantern.tasks;

-- ... a NULL in the columns maintained by lantern_fdw is what they hold anyway.
INSERT INTO lantern.tasks (query, status, duration, error_message, pg_cron_job_name)
  VALUES ('SELECT 11', NULL, NULL, NULL, NULL) RETURNING query, status;
-- ... a non-superuser may submit as itself and as its group.
SET ROLE regress_submitter;
INSERT INTO lantern.tasks (query, username) VALUES ('SELECT 12', 'regress_submitter')
  RETURNING query, username, status;
INSERT INTO lantern.tasks (query, username) VALUES ('SELECT 13', 'regress_submit_group')
  RETURNING query, username, status;
RESET ROLE;
SELECT jobid AS j1 FROM lantern.tasks WHERE query = 'SELECT 12' \gset
SELECT jobid AS j2 FROM lantern.tasks WHERE query = 'SELECT 13' \gset
SELECT jobid AS j3 FROM lantern.tasks WHERE query = 'SELECT 11' \gset
SELECT lantern.wait_task(:j1, '60s'), lantern.wait_task(:j2, '60s'), lantern.wait_task(:j3, '60s');
SELECT query, CASE WHEN username = current_user THEN '(me)' ELSE username END AS username, status, error_message
  FROM lantern.tasks WHERE jobid IN (:j1, :j2, :j3) ORDER BY jobid;

-- A superuser may submit as any role.
INSERT INTO lantern.tasks (query, username) VALUES ('SELECT 14', 'regress_submit_other')
  RETURNING query, username, status;
SELECT jobid AS j4 FROM lantern.tasks WHERE query = 'SELECT 14' \gset
SELECT lantern.wait_task(:j4, '60s');
SELECT query, username, status, error_message FROM lantern.tasks WHERE jobid = :j4;

-- No task of this file is left active (wait_task returns once a task has left
-- the board; then its roles may be dropped).
SELECT count(*) AS active FROM lantern.tasks WHERE duration IS NULL;
DROP ROLE regress_submitter, regress_submit_other, regress_submit_group, regress_submit_super;
