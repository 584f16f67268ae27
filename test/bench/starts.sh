#!/usr/bin/env bash
# lantern_fdw benchmark: how fast a committed task starts (issue 11, part 3).
# On one throwaway cluster, in interleaved rounds so that a change in the
# machine's load hits every kind alike:
#   - pgbench -C: the average time to open a new connection (the baseline);
#   - commit -> start with a fresh connection per task
#     (idle_connection_timeout = 0), with the connection opened ahead of the
#     task as shipped, and with that switched off (max_idle_connections = 0);
#   - commit -> start with an idle connection reused;
#   - a burst after an idle period: 2 s idle, then 50 tasks of one database
#     and role, one transaction each, back to back; with ready connections
#     (the defaults) and without (max_idle_connections = 0).
# Not part of the test suite: it asserts nothing, it measures.
#
#   bash test/bench/starts.sh [--rounds N] [--out FILE] [--keep] [--profile]
#   --profile: the server also logs connections and every statement's
#   duration (log_line_prefix %m); with --keep the log stays for reading the
#   phases of each start (docs/performance.md quotes them).
# Install the build first (bash scripts/build.sh).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=test/bench/lib.sh
source "$HERE/lib.sh"

ROUNDS=4     # rounds of each kind
PER_ROUND=50 # tasks (or pgbench -C connections) per kind and round
BURST=50     # tasks per burst
BURSTS=3     # bursts per kind
OUT=
PROFILE=0
while (($#)); do
	case $1 in
	--rounds)
		ROUNDS=$2
		shift
		;;
	--out)
		OUT=$(realpath -m "$2")
		shift
		;;
	--keep) BENCH_KEEP=1 ;;
	--profile) PROFILE=1 ;;
	-h | --help)
		sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown option $1 (try --help)" ;;
	esac
	shift
done
T_START=$SECONDS
bench_require
cd /
trap 'trap "" INT TERM; bench_cluster_stop' EXIT
trap 'exit 130' INT TERM
note() { echo "bench: [$((SECONDS - T_START)) s] $*" >&2; }

so=$("$PG_CONFIG" --pkglibdir)/lantern_fdw.so
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
conf=""
if ((PROFILE)); then
	conf="log_line_prefix = '%m [%p] %a '
log_connections = on
log_min_duration_statement = 0"
fi
bench_cluster_start "$conf"
W=$BENCH_WORK
q "CREATE EXTENSION lantern_fdw" \
	"CREATE TABLE bench_lat (tag text NOT NULL, lat_us bigint NOT NULL)" \
	"CREATE TABLE lat_sub (k bigint PRIMARY KEY, mode text NOT NULL, jobid bigint)" \
	"CREATE TABLE lat_start (k bigint PRIMARY KEY, t timestamptz NOT NULL, st timestamptz NOT NULL)" \
	"CREATE SEQUENCE lat_k" >/dev/null

# pgb NAME CLIENTS TOTAL SCRIPT [pgbench options]
pgb() {
	local name=$1 clients=$2 total=$3 script=$4
	shift 4
	(cd "$W" && "$PG_BINDIR/pgbench" -n -h "$BENCH_SOCK" -p "$BENCH_PORT" -U postgres \
		-c "$clients" -j 1 -t $((total / clients)) -f "$script" "$@" "$BENCH_DB" >"$W/pgbench_$name.out" 2>&1) ||
		{
			cat "$W/pgbench_$name.out" >&2
			die "pgbench $name failed"
		}
}

# The submitting transaction of one task; MODE tags it; SLEEP after it.
lat_script() { # mode sleep
	cat <<EOF
BEGIN;
INSERT INTO lat_sub (k, mode, jobid)
  SELECT k, '$1', lantern.async_task(format('INSERT INTO lat_start VALUES (%s, clock_timestamp(), statement_timestamp())', k))
  FROM (SELECT nextval('lat_k') AS k) s;
COMMIT;
${2:+\\sleep $2}
EOF
}
echo "SELECT 1;" >"$W/select1.sql"

run_mode() { # mode: submits PER_ROUND spaced tasks
	lat_script "$1" "20 ms" >"$W/lat_$1.sql"
	pgb "$1" 1 "$PER_ROUND" "$W/lat_$1.sql"
	wait_all_tasks 120
}

note "warm-up"
run_mode warmup
conn_ms=()
for round in $(seq "$ROUNDS"); do
	note "round $round of $ROUNDS: pgbench -C, fresh (opened ahead, and not), reused"
	pgb "connect_$round" 1 "$PER_ROUND" "$W/select1.sql" -C
	conn_ms+=("$(awk '/average connection time/ {print $5}' "$W/pgbench_connect_$round.out")")
	set_guc lantern_fdw.idle_connection_timeout 0
	run_mode fresh
	set_guc lantern_fdw.max_idle_connections 0
	run_mode fresh_unopened
	reset_guc lantern_fdw.max_idle_connections
	reset_guc lantern_fdw.idle_connection_timeout
	run_mode warmup # leaves an idle connection
	run_mode reused
done

burst() { # mode
	local b
	lat_script "$1" "" >"$W/burst_$1.sql"
	run_mode warmup
	for b in $(seq "$BURSTS"); do
		sleep 2
		pgb "burst_$1_$b" 1 "$BURST" "$W/burst_$1.sql"
		wait_all_tasks 120
	done
}
note "burst after 2 s idle: ready connections (defaults)"
burst burst_ready
note "burst after 2 s idle: no ready connections (max_idle_connections = 0)"
set_guc lantern_fdw.max_idle_connections 0
burst burst_none
reset_guc lantern_fdw.max_idle_connections

q "INSERT INTO bench_lat (tag, lat_us)
   SELECT s.mode, (extract(epoch FROM st.t - pg_xact_commit_timestamp(s.xmin)) * 1e6)::bigint
     FROM lat_sub s JOIN lat_start st USING (k) WHERE s.mode <> 'warmup'" >/dev/null
no_start=$(q "SELECT count(*) FROM lat_sub s LEFT JOIN lat_start st USING (k) WHERE st.k IS NULL")
failed=$(q "SELECT count(*) FROM _lantern_fdw.task_log WHERE status <> 'succeeded'")
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
conn_avg=$(printf '%s\n' "${conn_ms[@]}" | awk '{s += $1} END {printf "%.3f", s / NR}')

report() {
	echo "lantern_fdw starts benchmark: commit $commit, $(md5sum "$so" | cut -c1-12), $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "load average at start ${load_start}, at end ${load_end}; $ROUNDS rounds of $PER_ROUND; missing starts $no_start, failed tasks $failed"
	echo "pgbench -C average connection time per round: ${conn_ms[*]} ms; mean $conn_avg ms"
	echo
	printf '%-44s | %9s | %9s | %8s | %8s\n' "commit -> start of the first statement" "p50 ms" "p99 ms" "p50/conn" "p99/conn"
	q "SELECT tag, round((percentile_cont(0.5) WITHIN GROUP (ORDER BY lat_us) / 1000.0)::numeric, 3),
              round((percentile_cont(0.99) WITHIN GROUP (ORDER BY lat_us) / 1000.0)::numeric, 3), count(*)
         FROM bench_lat GROUP BY tag
        ORDER BY array_position(ARRAY['fresh', 'fresh_unopened', 'reused', 'burst_ready', 'burst_none'], tag)" |
		while IFS='|' read -r tag p50 p99 n; do
			case $tag in
			fresh) label="fresh connection, opened ahead (shipped)" ;;
			fresh_unopened) label="fresh connection, max_idle_connections = 0" ;;
			reused) label="idle connection reused" ;;
			burst_ready) label="burst of $BURST after 2 s idle, ready" ;;
			burst_none) label="burst of $BURST after 2 s idle, none ready" ;;
			*) label=$tag ;;
			esac
			printf '%-44s | %9s | %9s | %7.2fx | %7.2fx\n' "$label ($n)" "$p50" "$p99" \
				"$(awk -v a="$p50" -v b="$conn_avg" 'BEGIN {print a / b}')" \
				"$(awk -v a="$p99" -v b="$conn_avg" 'BEGIN {print a / b}')"
		done
	echo "target: fresh p50 <= 1.3x the pgbench -C average connection time"
}
if [[ -n $OUT ]]; then report | tee "$OUT"; else report; fi

if ((PROFILE)); then
	# Per task: the submitter's COMMIT, the task backend's start (connection
	# received), authorized, and the end of its record_start and of the
	# task's statement, each with its duration.
	cp "$BENCH_LOG" "$W/server.log"
	note "profile: the server log is $W/server.log (kept with --keep)"
fi
