#!/usr/bin/env bash
# Demo, as root, after scripts/install-deps.sh and scripts/build.sh: start a
# fresh PostgreSQL cluster with lantern_fdw and pgvector, submit an HNSW index
# build on generated vectors as a background task, and watch its status, phase
# and percent done until it ends (35 s on 2 cores, with parallel workers).
# The cluster is left running afterwards so that you can look around.
#   PG_MAJOR=N         the server (scripts/pg-major.sh; default 15, port 5499)
#   DEMO_ROWS=N        vectors in the demo table (default 60000)
#   DEMO_DIM=N         their dimension (default 32)
#   DEMO_TIMEOUT=SECS  how long to wait for the task (default 900)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/pg-major.sh
source scripts/pg-major.sh

PG_BINDIR=${PG_BINDIR:-$("$PG_CONFIG" --bindir)}
# One demo cluster per server version: port 5499 for 15, 5500 for 16, ...
DATA=/var/lib/postgresql/lantern_fdw_demo
[[ $PG_MAJOR == 15 ]] || DATA=${DATA}_pg$PG_MAJOR
PORT=$((5484 + PG_MAJOR))
SOCKDIR=/tmp
DB=lantern_demo
ROWS=${DEMO_ROWS:-60000}
DIM=${DEMO_DIM:-32}
TIMEOUT=${DEMO_TIMEOUT:-900}

die() {
  echo "demo: $*" >&2
  exit 1
}

[[ $(id -u) -eq 0 ]] || die "run as root (the cluster is created for the OS user postgres)"
[[ -f $("$PG_CONFIG" --pkglibdir)/lantern_fdw.so ]] ||
  die "lantern_fdw is not installed; run: bash scripts/build.sh"
[[ -f $("$PG_CONFIG" --sharedir)/extension/vector.control ]] ||
  die "pgvector is not installed for PostgreSQL $PG_MAJOR; run: bash scripts/install-deps.sh"
[[ $ROWS =~ ^[0-9]+$ ]] || die "DEMO_ROWS must be a number"
[[ $DIM =~ ^[1-9][0-9]*$ ]] || die "DEMO_DIM must be a positive number"

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
echo "demo: creating table items with $ROWS random vectors of dimension $DIM"
psql_demo -d "$DB" <<EOF
CREATE EXTENSION lantern_fdw;
CREATE EXTENSION vector;
CREATE TABLE items (id bigint PRIMARY KEY, embedding vector($DIM));
INSERT INTO items
SELECT g, ARRAY(SELECT random() FROM generate_series(1, $DIM) WHERE g > 0)::vector
  FROM generate_series(1, $ROWS) AS g;
ANALYZE items;
EOF

# Submit: the call returns the job id at once; the executor builds the index
# in the background. The task is a script: its SET applies to its own session
# (the graph must fit in maintenance_work_mem for a fast build).
build="SET maintenance_work_mem = '512MB'; CREATE INDEX items_embedding_idx ON items USING hnsw (embedding vector_l2_ops)"
jobid=$(psql_demo -d "$DB" -At -v build="$build" <<<"SELECT lantern.async_task(:'build', 'hnsw index on items')")
[[ $jobid =~ ^[0-9]+$ ]] || die "lantern.async_task returned '$jobid', not a job id"
echo "demo: submitted task, jobid = $jobid"

# Each poll is a new connection, as a serverless client would make.
poll_sql="SELECT format('%s  jobid=%s status=%s', to_char(clock_timestamp(), 'HH24:MI:SS'), t.jobid, t.status)
                 || CASE WHEN p.phase IS NOT NULL
                         THEN format(' phase=\"%s\" percent_done=%s', p.phase, coalesce(p.percent_done::text, '-'))
                         ELSE '' END
                 || coalesce(' duration=' || t.duration, ''),
                 t.duration IS NOT NULL
            FROM lantern.tasks t LEFT JOIN lantern.task_progress p ON p.jobid = t.jobid
           WHERE t.jobid = $jobid"

echo "demo: polling lantern.tasks and lantern.task_progress every second (timeout ${TIMEOUT} s)"
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
  sleep 1
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
