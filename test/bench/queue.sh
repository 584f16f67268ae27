#!/usr/bin/env bash
# lantern_fdw benchmark of the queue beyond the board (issue 11), in one run
# on one throwaway cluster with the default lantern_fdw.max_tasks = 1024:
#   - submitting N tasks in one statement, against inserting the same N rows
#     (same columns) into a plain table;
#   - draining N queued trivial tasks (most of them waiting in the store),
#     against draining a batch that fits on the board, in tasks per second;
#   - the board's shared memory and the executor's memory with N tasks waiting
#     (queued or scheduled), and a jobid = k lookup against a plain table's;
#   - a run_at task: the delay between run_at and the start of its first
#     statement (run_started_at), p50 of K tasks, one at a time.
# Not part of the test suite: it asserts nothing, it measures.
#
#   bash test/bench/queue.sh [N] [K]    defaults: N = 100000, K = 20
#
# Run as root (the server runs as the OS user postgres) with lantern_fdw built
# and installed (bash scripts/build.sh). See docs/performance.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/bench/lib.sh
source "$HERE/lib.sh"

N=${1:-100000}
K=${2:-20}
bench_require
trap bench_cluster_stop EXIT
bench_cluster_start "lantern_fdw.max_parallel_tasks = 4"
k=$((N / 2))
q "CREATE EXTENSION lantern_fdw" \
	"CREATE TABLE plain (LIKE _lantern_fdw.task_log INCLUDING ALL)" >/dev/null

# Milliseconds of one statement, timed by the server.
ms() {
	q "DO \$\$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN EXECUTE \$q\$$1\$q\$; RAISE NOTICE 'ms %', round(extract(epoch FROM clock_timestamp() - t0) * 1000, 1); END \$\$" 2>&1 |
		sed -n 's/.*ms //p'
}

# ---- submitting N tasks in one statement ------------------------------------
# (They run only once the statement commits; the drain is timed from then.)
plain_ms=$(ms "INSERT INTO plain (jobid, query, job_name, username, started_at, status, run_as, login_role, board_id) SELECT g, 'SELECT 1', NULL, current_user, now(), 'queued', 10, 10, 0 FROM generate_series(1, $N) g")
submit_ms=$(ms "SELECT count(lantern.async_task('SELECT 1')) FROM generate_series(1, $N)")
t_drain=$(date +%s.%N)
note "submit $N: ${submit_ms} ms; plain insert: ${plain_ms} ms"

# Milliseconds of 1000 lookups jobid = k (each a statement of its own, with
# the value as a constant) in table $1.
lookups() {
	q "DO \$\$ DECLARE t0 timestamptz := clock_timestamp(); r record; BEGIN FOR i IN 1..1000 LOOP EXECUTE format('SELECT * FROM $1 WHERE jobid = %s', $k + i) INTO r; END LOOP; RAISE NOTICE 'ms %', round(extract(epoch FROM clock_timestamp() - t0) * 1000, 1); END \$\$" 2>&1 |
		sed -n 's/.*ms //p'
}

# ---- memory and lookups with N tasks waiting --------------------------------
epid=$(executor_pid)
shm_board=$(q "SELECT coalesce(sum(allocated_size), 0) FROM pg_shmem_allocations WHERE name LIKE 'lantern_fdw%'")
exec_rss_before=$(awk '/^RssAnon/ {print $2}' "/proc/$epid/status")
lookup_ms=$(lookups lantern.tasks)
plain_lookup_ms=$(lookups plain)
note "1000 lookups jobid = k: lantern.tasks ${lookup_ms} ms; plain ${plain_lookup_ms} ms"

# ---- draining them (timed from the submission's commit) ---------------------
t0=$t_drain
wait_all_tasks 1800
t1=$(date +%s.%N)
exec_rss_after=$(awk '/^RssAnon/ {print $2}' "/proc/$epid/status")
drain_rate=$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
note "drained $N tasks: $drain_rate tasks/s"

# A batch that fits on the board (900 of 1024 slots), for the baseline.
fit=900
t0=$(date +%s.%N)
q "SELECT count(lantern.async_task('SELECT 1')) FROM generate_series(1, $fit)" >/dev/null
wait_all_tasks 600
t1=$(date +%s.%N)
fit_rate=$(awk -v n="$fit" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
note "drained $fit tasks that fit on the board: $fit_rate tasks/s"

# ---- run_at delay -----------------------------------------------------------
for _ in $(seq "$K"); do
	j=$(q "SELECT lantern.async_task('SELECT 1', 'bench run_at', clock_timestamp() + interval '300 ms')")
	q "SELECT lantern.wait_task($j, '60 s')" >/dev/null
done
run_at_p50=$(q "SELECT round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM run_started_at - run_at)) * 1000)::numeric, 1) FROM lantern.task_details WHERE job_name = 'bench run_at'")
note "run_at: p50 delay ${run_at_p50} ms"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
cat <<EOF
== queue (lantern_fdw.max_tasks = 1024, max_parallel_tasks = 4), N = $N ==
submit N in one statement          ${submit_ms} ms   plain insert ${plain_ms} ms   ratio $(ratio "$submit_ms" "$plain_ms")   (target <= 2x)
drain N queued trivial tasks       ${drain_rate}/s   fits on the board ${fit_rate}/s   ratio $(ratio "$drain_rate" "$fit_rate")   (target >= 0.8x)
board shared memory                $((shm_board / 1024)) kB (depends on max_tasks only)
executor anonymous memory          ${exec_rss_before} kB with N waiting, ${exec_rss_after} kB after the drain
1000 lookups jobid = k             ${lookup_ms} ms   plain ${plain_lookup_ms} ms   ratio $(ratio "$lookup_ms" "$plain_lookup_ms")   (target < 2x)
run_at -> first statement, p50     ${run_at_p50} ms over $K tasks (target <= 100 ms)
EOF
