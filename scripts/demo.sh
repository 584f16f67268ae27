#!/usr/bin/env bash
# Demo, as root, after scripts/install-deps.sh and scripts/build.sh: start a
# fresh PostgreSQL cluster with lantern_fdw, submit a CREATE INDEX as a
# background task and watch its status in lantern.tasks until it ends.
# The cluster is left running afterwards so that you can look around.
#   DEMO_ROWS=N        rows in the demo table (default 2000000)
#   DEMO_TIMEOUT=SECS  how long to wait for the task (default 600)
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PG_BINDIR=${PG_BINDIR:-$("$PG_CONFIG" --bindir)}
DATA=/var/lib/postgresql/lantern_fdw_demo
PORT=5499
SOCKDIR=/tmp
DB=lantern_demo
ROWS=${DEMO_ROWS:-2000000}
TIMEOUT=${DEMO_TIMEOUT:-600}

die() {
  echo "demo: $*" >&2
  exit 1
}

[[ $(id -u) -eq 0 ]] || die "run as root (the cluster is created for the OS user postgres)"
[[ -f $("$PG_CONFIG" --pkglibdir)/lantern_fdw.so ]] ||
  die "lantern_fdw is not installed; run: bash scripts/build.sh"
[[ $ROWS =~ ^[0-9]+$ ]] || die "DEMO_ROWS must be a number"

# PostgreSQL refuses to run as root: the server runs as postgres.
if ! id -u postgres >/dev/null 2>&1; then
  useradd --system --create-home --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi
cd / # the caller's directory may be unreadable for postgres
as_postgres() { runuser -u postgres -- "$@"; }
psql_demo() { "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKDIR" -p "$PORT" -U postgres "$@"; }
show_log() {
  echo "---- last lines of $DATA/server.log ----" >&2
  tail -n 40 "$DATA/server.log" >&2 || true
}

# A previous demo cluster: stop it, then start from scratch.
if [[ -f $DATA/postmaster.pid ]]; then
  echo "demo: stopping the previous demo cluster"
  as_postgres "$PG_BINDIR/pg_ctl" -D "$DATA" -m fast -w -t 60 stop || true
fi
rm -rf "$DATA"
install -d -o postgres -g postgres -m 700 "$DATA"

echo "demo: creating a cluster in $DATA (port $PORT, socket in $SOCKDIR)"
# trust on the Unix socket: `psql -U postgres` works from any OS user, and
# the task executor's loopback connection is accepted. Nothing listens on TCP.
as_postgres "$PG_BINDIR/initdb" -D "$DATA" -U postgres --auth-local=trust \
  --auth-host=scram-sha-256 -E UTF8 --no-sync >/dev/null
cat >>"$DATA/postgresql.conf" <<EOF

# lantern_fdw demo (scripts/demo.sh)
port = $PORT
listen_addresses = ''
unix_socket_directories = '$SOCKDIR'
shared_preload_libraries = 'lantern_fdw'
EOF
if ! as_postgres "$PG_BINDIR/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 120 start >/dev/null; then
  show_log
  die "the demo cluster did not start"
fi

"$PG_BINDIR/createdb" -h "$SOCKDIR" -p "$PORT" -U postgres "$DB"
echo "demo: creating table items with $ROWS rows"
psql_demo -d "$DB" <<EOF
CREATE EXTENSION lantern_fdw;
CREATE TABLE items (id bigint, v float8);
INSERT INTO items SELECT g, random() FROM generate_series(1, $ROWS) AS g;
ANALYZE items;
EOF

# Submit: the call returns the job id at once; the index is built by the
# executor in the background. (hnsw is not installed here: a btree stands in.)
jobid=$(psql_demo -d "$DB" -At -c \
  "SELECT lantern.async_task('CREATE INDEX items_v_idx ON items (v)', 'index items')")
[[ $jobid =~ ^[0-9]+$ ]] || die "lantern.async_task returned '$jobid', not a job id"
echo "demo: submitted task, jobid = $jobid"

# Each poll is a new connection, as a serverless client would make.
has_progress=$(psql_demo -d "$DB" -At -c "SELECT to_regclass('lantern.task_progress') IS NOT NULL")
if [[ $has_progress == t ]]; then
  # Show whichever phase/percent columns the view has.
  progress_sql="(SELECT string_agg(e.key || '=' || e.value, ' ')
                   FROM lantern.task_progress p, jsonb_each_text(to_jsonb(p)) e
                  WHERE (to_jsonb(p)->>'jobid')::bigint = t.jobid
                    AND e.key ~ '^(phase|percent)')"
else
  progress_sql="NULL::text"
fi
poll_sql="SELECT format('jobid=%s job_name=%s status=%s duration=%s', t.jobid,
                        t.job_name, t.status, coalesce(t.duration::text, '-'))
                 || coalesce(' ' || $progress_sql, ''),
                 t.duration IS NOT NULL
            FROM lantern.tasks t WHERE t.jobid = $jobid"

echo "demo: polling lantern.tasks every 0.5 s (timeout ${TIMEOUT} s)"
deadline=$((SECONDS + TIMEOUT))
while :; do
  row=$(psql_demo -d "$DB" -At -F $'\t' -c "$poll_sql")
  [[ -n $row ]] || die "task $jobid is not in lantern.tasks"
  line=${row%$'\t'*}
  done=${row##*$'\t'}
  echo "  $line"
  [[ $done == t ]] && break
  if ((SECONDS >= deadline)); then
    show_log
    die "task $jobid did not end within ${TIMEOUT} s (the cluster is still running)"
  fi
  sleep 0.5
done

echo
echo "demo: final state of task $jobid"
psql_demo -d "$DB" -x -c \
  "SELECT jobid, job_name, status, started_at, duration, error_message FROM lantern.tasks WHERE jobid = $jobid"
psql_demo -d "$DB" -c '\d items'
status=$(psql_demo -d "$DB" -At -c "SELECT status FROM lantern.tasks WHERE jobid = $jobid")

cat <<EOF

The demo cluster is still running.
  connect:  psql -h $SOCKDIR -p $PORT -U postgres $DB
  stop:     runuser -u postgres -- $PG_BINDIR/pg_ctl -D $DATA stop
EOF
[[ $status == succeeded ]] || die "task $jobid ended with status '$status'"
