# Shared by test/bench/run.sh and test/bench/profile.sh: a throwaway
# PostgreSQL 15 cluster with lantern_fdw preloaded, run by the OS user
# postgres (PostgreSQL refuses root), in a temporary directory that is removed
# on exit. Clients (psql, pgbench) run as the caller and reach the server on
# its Unix socket with trust authentication; nothing listens on TCP.
# shellcheck shell=bash

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PG_BINDIR=${PG_BINDIR:-$("$PG_CONFIG" --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}
BENCH_PORT=${BENCH_PORT:-5460}
BENCH_DB=bench

die() {
	echo "bench: $*" >&2
	exit 1
}
note() { echo "bench: $*" >&2; }

# Runs a server command as postgres when we are root, else as ourselves.
as_pg() {
	if [[ $(id -u) -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# Installs pgbench/psql (postgresql-15) and dblink (contrib) from Debian when
# missing, as root; otherwise says what is missing.
bench_require() {
	local missing=()
	[[ -x $PG_BINDIR/postgres && -x $PG_BINDIR/pgbench && -x $PG_BINDIR/psql ]] || missing+=(postgresql-15)
	local sharedir
	sharedir=$("$PG_CONFIG" --sharedir 2>/dev/null || echo /usr/share/postgresql/15)
	[[ -f $sharedir/extension/dblink.control ]] || missing+=(postgresql-contrib-15)
	if ((${#missing[@]})); then
		[[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}: install them (as root: apt-get install ${missing[*]})"
		note "installing ${missing[*]} from Debian"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
			{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; } ||
			die "could not install ${missing[*]}"
	fi
	[[ -f $("$PG_CONFIG" --pkglibdir)/lantern_fdw.so ]] ||
		die "lantern_fdw is not installed; build and install it first: bash scripts/build.sh"
	if [[ $(id -u) -eq 0 ]] && ! id -u postgres >/dev/null 2>&1; then
		useradd --system --create-home --home-dir /var/lib/postgresql --shell /bin/bash postgres
	fi
}

# bench_cluster_start "extra postgresql.conf lines"
# Sets BENCH_DIR (temporary, removed by bench_cluster_stop), BENCH_SOCK, PGDATA_B.
bench_cluster_start() {
	local extra=$1
	BENCH_DIR=$(mktemp -d /tmp/lantern_bench.XXXXXX)
	chmod 755 "$BENCH_DIR"
	BENCH_SOCK=$BENCH_DIR/sock
	PGDATA_B=$BENCH_DIR/data
	BENCH_WORK=$BENCH_DIR/work # the caller's files (pgbench scripts and logs)
	mkdir -p "$BENCH_WORK"
	BENCH_LOG=$BENCH_DIR/log/server.log
	install -d -m 700 "$BENCH_SOCK" "$PGDATA_B" "$BENCH_DIR/log"
	[[ $(id -u) -ne 0 ]] || chown postgres: "$BENCH_SOCK" "$PGDATA_B" "$BENCH_DIR/log"
	chmod 755 "$BENCH_SOCK" # the caller's clients connect through it
	# The port cannot clash with another cluster: nothing listens on TCP and
	# the socket (and its lock file) live in our own directory.
	as_pg "$PG_BINDIR/initdb" -D "$PGDATA_B" -U postgres --auth-local=trust --auth-host=reject -E UTF8 \
		--no-sync >"$BENCH_DIR/initdb.log" 2>&1 || {
		cat "$BENCH_DIR/initdb.log" >&2
		die "initdb failed"
	}
	cat >>"$PGDATA_B/postgresql.conf" <<EOF

# ---- lantern_fdw benchmark (test/bench) ----
port = $BENCH_PORT
listen_addresses = ''
unix_socket_directories = '$BENCH_SOCK'
shared_preload_libraries = 'lantern_fdw'
max_connections = 100
shared_buffers = 128MB
# durability as shipped: every commit waits for its WAL flush
fsync = on
synchronous_commit = on
# server-side commit times, for the commit -> start latency
track_commit_timestamp = on
autovacuum = on
log_min_messages = warning
$extra
EOF
	if ! as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA_B" -l "$BENCH_LOG" -w -t 60 start >/dev/null; then
		tail -n 30 "$BENCH_LOG" >&2 || true
		die "the benchmark cluster did not start (port $BENCH_PORT)"
	fi
	"$PG_BINDIR/createdb" -h "$BENCH_SOCK" -p "$BENCH_PORT" -U postgres "$BENCH_DB"
}

bench_cluster_stop() {
	if [[ -n ${PGDATA_B:-} && -f $PGDATA_B/postmaster.pid ]]; then
		as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA_B" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
	fi
	if [[ -n ${BENCH_DIR:-} && -d $BENCH_DIR && ${BENCH_KEEP:-0} != 1 ]]; then
		rm -rf "$BENCH_DIR"
	elif [[ -n ${BENCH_DIR:-} ]]; then
		note "kept $BENCH_DIR"
	fi
}

# q SQL...: one psql call (each -c its own transaction), unaligned, tuples only.
q() {
	local args=()
	for s in "$@"; do args+=(-c "$s"); done
	"$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$BENCH_SOCK" -p "$BENCH_PORT" -U postgres -d "$BENCH_DB" "${args[@]}"
}

# Sets a lantern_fdw setting (sighup) and waits until the executor has
# certainly seen the reload.
set_guc() {
	q "ALTER SYSTEM SET $1 = '$2'" "SELECT pg_reload_conf()" >/dev/null
	sleep 0.5
}
reset_guc() {
	q "ALTER SYSTEM RESET $1" "SELECT pg_reload_conf()" >/dev/null
	sleep 0.5
}

executor_pid() {
	q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'lantern_fdw executor'"
}

# Waits until every task has ended (deadline in seconds, default 600).
wait_all_tasks() {
	local deadline=$((SECONDS + ${1:-600})) max left
	max=$(q "SELECT coalesce(max(jobid), 0) FROM _lantern_fdw.task_log")
	((max > 0)) && q "SELECT lantern.wait_task($max, '${1:-600} s')" >/dev/null
	while :; do
		left=$(q "SELECT count(*) FROM _lantern_fdw.task_log WHERE duration IS NULL")
		((left == 0)) && return 0
		((SECONDS < deadline)) || die "$left tasks still not ended after ${1:-600} s"
		max=$(q "SELECT max(jobid) FROM _lantern_fdw.task_log WHERE duration IS NULL")
		q "SELECT lantern.wait_task($max, '5 s')" >/dev/null
	done
}
