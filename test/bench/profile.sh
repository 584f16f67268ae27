#!/usr/bin/env bash
# Where the time goes: profiles of lantern_fdw on a throwaway cluster, to go
# with the figures of test/bench/run.sh (see docs/performance.md).
#
#   bash test/bench/profile.sh [--out FILE]
#
# 1. callgrind (exact instruction counts, immune to a busy machine): one
#    backend in single-user mode runs N calls of each kind of statement --
#    async_task, a plain INSERT ... RETURNING, a point lookup on lantern.tasks
#    and on a plain table -- with lantern_fdw.max_tasks 20000 and 1024;
#    instructions per call, and the functions that cost the most.
# 2. perf, sampling on the cpu-clock software event (this machine's virtual
#    CPUs count no hardware events: `perf stat -e instructions` says "not
#    supported"): the executor while it runs trivial tasks, by source line.
# 3. wait events of a backend submitting tasks in a loop, sampled from
#    pg_stat_activity: how much of a submit is spent waiting for the board's
#    LWLock.
# Needs valgrind and linux-perf (Debian packages of those names); a part whose
# tool is missing is skipped.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/bench/lib.sh
source "$HERE/lib.sh"

OUT=
while (($#)); do
	case $1 in
	--out)
		OUT=$(realpath -m "$2")
		shift
		;;
	--keep) BENCH_KEEP=1 ;;
	-h | --help)
		sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown option $1" ;;
	esac
	shift
done
CG_N=${CG_N:-500}     # calls per kind under callgrind
CG_WARM=${CG_WARM:-50} # calls of the baseline run
PERF_TASKS=${PERF_TASKS:-5000}

bench_require
cd /
trap 'trap "" INT TERM; bench_cluster_stop' EXIT
trap 'exit 130' INT TERM

main() {
	bench_cluster_start "lantern_fdw.max_tasks = 20000"
	W=$BENCH_WORK
	chmod 755 "$W"
	q "CREATE EXTENSION lantern_fdw" \
		"CREATE TABLE bench_plain (id bigserial PRIMARY KEY, query text NOT NULL, job_name text,
		   username text NOT NULL DEFAULT current_user, started_at timestamptz NOT NULL DEFAULT now(),
		   status text NOT NULL DEFAULT 'queued')" \
		"SELECT count(lantern.async_task('SELECT 1')) FROM generate_series(1, 2000)" >/dev/null
	wait_all_tasks 300
	q "CREATE TABLE tasks_copy AS SELECT * FROM lantern.tasks" "ALTER TABLE tasks_copy ADD PRIMARY KEY (jobid)" \
		"VACUUM ANALYZE tasks_copy" "VACUUM ANALYZE _lantern_fdw.task_log"

	echo "== 3. wait events of a backend submitting tasks (max_tasks 20000, executor held busy by one task)"
	set_guc lantern_fdw.max_parallel_tasks 1
	local blocker
	blocker=$(q "SELECT lantern.async_task('SELECT pg_sleep(3600)')")
	sleep 1
	echo "SELECT lantern.async_task('SELECT 1');" >"$W/async.sql"
	"$PG_BINDIR/pgbench" -n -h "$BENCH_SOCK" -p "$BENCH_PORT" -U postgres -T 4 -f "$W/async.sql" "$BENCH_DB" \
		>"$W/pgbench.out" 2>&1 &
	local pgb_pid=$!
	sleep 0.5
	for _ in $(seq 300); do
		echo "SELECT coalesce(wait_event_type || ':' || wait_event, 'on CPU') FROM pg_stat_activity WHERE application_name = 'pgbench';"
		echo "SELECT pg_sleep(0.005);"
	done | q_stdin | grep -v '^$' | sort | uniq -c | sort -rn | sed 's/^/   /'
	wait "$pgb_pid"
	grep -E "latency average" "$W/pgbench.out" | sed 's/^/   /'
	q "SELECT lantern.cancel_task($blocker)" >/dev/null
	reset_guc lantern_fdw.max_parallel_tasks
	wait_all_tasks 300

	if command -v perf >/dev/null && perf record -e cpu-clock -o "$W/probe.data" true >/dev/null 2>&1; then
		echo
		echo "== 2. perf (cpu-clock) on the executor running $PERF_TASKS trivial tasks, max_parallel_tasks 4, max_tasks 20000"
		local ex
		ex=$(executor_pid)
		q "SELECT count(lantern.async_task('SELECT 1')) FROM generate_series(1, $PERF_TASKS)" >/dev/null
		perf record -e cpu-clock -F 999 -g -p "$ex" -o "$W/perf.data" >/dev/null 2>&1 &
		local perf_pid=$!
		wait_all_tasks 600
		kill -INT "$perf_pid"
		wait "$perf_pid" || true
		echo "   share of the executor's samples, by source line (top 8):"
		perf report -i "$W/perf.data" --no-children --sort srcline 2>/dev/null | grep -v '^#' | grep '%' |
			grep -v -- '--' | head -8 | sed 's/^/   /' || true
		echo "   by function (top 8):"
		perf report -i "$W/perf.data" --no-children --sort sym 2>/dev/null | grep -v '^#' | grep '%' |
			grep -v -- '--' | head -8 | sed 's/^/   /' || true
	else
		echo "== 2. skipped: perf is missing or cannot sample here"
	fi

	as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA_B" -m fast -w -t 60 stop >/dev/null

	if command -v valgrind >/dev/null; then
		echo
		echo "== 1. callgrind, single-user backend, $CG_N calls each; instructions per call"
		local lo hi mt kind
		read -r lo hi < <(as_pg "$PG_BINDIR/postgres" --single -D "$PGDATA_B" "$BENCH_DB" <<<"SELECT min(jobid), max(jobid) FROM tasks_copy" 2>/dev/null |
			awk -F'"' '/min = / {lo = $2} /max = / {hi = $2} END {print lo, hi}')
		# Two runs per statement: CG_WARM and CG_WARM + CG_N calls; the difference
		# over CG_N is the cost of one call, start-up and cold caches excluded.
		local n
		for kind in async plain point_tasks point_copy; do
			for n in "$CG_WARM" $((CG_WARM + CG_N)); do
				for _ in $(seq "$n"); do
					case $kind in
					async) echo "SELECT lantern.async_task('SELECT 1')" ;;
					plain) echo "INSERT INTO bench_plain (query) VALUES ('SELECT 1') RETURNING id" ;;
					point_tasks) echo "SELECT * FROM lantern.tasks WHERE jobid = $((lo + RANDOM % (hi - lo)))" ;;
					point_copy) echo "SELECT * FROM tasks_copy WHERE jobid = $((lo + RANDOM % (hi - lo)))" ;;
					esac
				done >"$W/cg_${kind}_$n.sql"
			done
		done
		chmod 644 "$W"/cg_*.sql
		printf '   %-10s %-12s %s\n' "max_tasks" "statement" "instructions per call"
		for mt in 20000 1024; do
			for kind in async plain point_tasks point_copy; do
				local ir_small ir_big
				for n in "$CG_WARM" $((CG_WARM + CG_N)); do
					as_pg valgrind --tool=callgrind --toggle-collect=PostgresMain \
						--callgrind-out-file="$BENCH_DIR/log/cg_${kind}_${mt}_$n.out" \
						"$PG_BINDIR/postgres" --single -D "$PGDATA_B" -c "lantern_fdw.max_tasks=$mt" "$BENCH_DB" \
						<"$W/cg_${kind}_$n.sql" >"$W/cg_${kind}_${mt}_$n.log" 2>&1 || true
				done
				ir_small=$(awk '/^(summary|totals):/ {print $2; exit}' "$BENCH_DIR/log/cg_${kind}_${mt}_$CG_WARM.out")
				ir_big=$(awk '/^(summary|totals):/ {print $2; exit}' "$BENCH_DIR/log/cg_${kind}_${mt}_$((CG_WARM + CG_N)).out")
				printf '   %-10s %-12s %s\n' "$mt" "$kind" "$(((ir_big - ir_small) / CG_N))"
				cp "$BENCH_DIR/log/cg_${kind}_${mt}_$((CG_WARM + CG_N)).out" "$BENCH_DIR/log/cg_${kind}_$mt.out"
			done
		done
		for mt in 20000 1024; do
			for kind in async point_tasks; do
				echo "   -- $kind, max_tasks $mt: the lantern_fdw functions by inclusive instructions, and the costliest functions overall"
				callgrind_annotate --inclusive=yes "$BENCH_DIR/log/cg_${kind}_$mt.out" 2>/dev/null |
					grep -E '^ *[0-9,]+ \(' | grep -F '[' | grep -E 'lantern_fdw\.so|exec_simple_query|CommitTransaction\b|pg_plan_queries|PortalRun \[' |
					head -12 | sed -E 's/ \[[^]]*\]$//; s/^/     /' || true
				echo "     (exclusive, top 5)"
				callgrind_annotate "$BENCH_DIR/log/cg_${kind}_$mt.out" 2>/dev/null | grep -E '^ *[0-9,]+ \(' |
					sed -n '2,6p' | sed -E 's/ \[[^]]*\]$//; s/^/     /' || true
			done
		done
	else
		echo "== 1. skipped: valgrind is missing"
	fi
}

q_stdin() {
	"$PG_BINDIR/psql" -X -q -At -h "$BENCH_SOCK" -p "$BENCH_PORT" -U postgres -d "$BENCH_DB"
}

if [[ -n $OUT ]]; then
	exec > >(tee "$OUT") 2>&1
fi
main
