#!/usr/bin/env bash
# lantern_fdw benchmark of the queue beyond the board (issue 11), in one run
# on one throwaway cluster with the default lantern_fdw.max_tasks = 1024:
#   - W tasks waiting, scheduled a day ahead (submitted in one statement):
#     the board's shared memory and the executor's memory before and after,
#     and 1,000 jobid = k lookups against a plain table with the same rows
#     and indexes (statements planned each time, and a PL/pgSQL loop, whose
#     generic plan looks up jobid = $1);
#   - submitting N tasks in one statement, against inserting the same N rows
#     (same columns) into the plain table;
#   - draining N queued trivial tasks (most of them waiting in the store),
#     against draining a batch that fits on the board, in tasks per second;
#     the lookups again while it drains (a full board);
#   - a run_at task: the delay between run_at and the start of its first
#     statement (run_started_at), p50 of K tasks, one at a time, with the W
#     scheduled tasks still waiting in the store.
# Not part of the test suite: it asserts nothing, it measures.
#
#   bash test/bench/queue.sh [N] [K] [W]   defaults: N = 100000, K = 20, W = 1000000
#
# Run as root (the server runs as the OS user postgres) with lantern_fdw built
# and installed (bash scripts/build.sh), under the quiet lock, exclusively.
# See docs/performance.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/bench/lib.sh
source "$HERE/lib.sh"

N=${1:-100000}
K=${2:-20}
W=${3:-1000000}
bench_require
trap bench_cluster_stop EXIT
bench_cluster_start "lantern_fdw.max_parallel_tasks = 4"
q "CREATE EXTENSION lantern_fdw" \
	"CREATE TABLE plain (LIKE _lantern_fdw.task_log INCLUDING ALL)" >/dev/null

# Milliseconds of one statement, timed by the server.
ms() {
	q "DO \$\$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN EXECUTE \$q\$$1\$q\$; RAISE NOTICE 'ms %', round(extract(epoch FROM clock_timestamp() - t0) * 1000, 1); END \$\$" 2>&1 |
		sed -n 's/.*ms //p'
}
shm_kb() { q "SELECT (coalesce(sum(allocated_size), 0) / 1024)::bigint FROM pg_shmem_allocations WHERE name LIKE 'lantern_fdw%'"; }
rss_kb() { awk '/^RssAnon/ {print $2}' "/proc/$(executor_pid)/status"; }

# Milliseconds of 1000 lookups jobid = k, k from $2 on, in table $1: each a
# statement of its own with k as a constant (parse, plan, execute: no client
# round trip), or ($3 = param) one PL/pgSQL statement run with k in a
# variable (its generic plan has jobid = $1).
lookups() {
	local body
	if [[ ${3:-} == param ]]; then
		body="FOR i IN 1..1000 LOOP SELECT * INTO r FROM $1 WHERE jobid = $2 + i; END LOOP;"
	else
		body="FOR i IN 1..1000 LOOP EXECUTE format('SELECT * FROM $1 WHERE jobid = %s', $2 + i) INTO r; END LOOP;"
	fi
	q "DO \$\$ DECLARE t0 timestamptz := clock_timestamp(); r record; BEGIN $body RAISE NOTICE 'ms %', round(extract(epoch FROM clock_timestamp() - t0) * 1000, 1); END \$\$" 2>&1 |
		sed -n 's/.*ms //p'
}

# Waits until every task but the scheduled ones has ended.
wait_drained() {
	local deadline=$((SECONDS + $1)) max
	while :; do
		max=$(q "SELECT max(jobid) FROM _lantern_fdw.task_log WHERE duration IS NULL AND status <> 'scheduled'")
		[[ -n $max ]] || return 0
		((SECONDS < deadline)) || die "tasks still not ended after $1 s"
		q "SELECT lantern.wait_task($max, '5 s')" >/dev/null
	done
}

# ---- W tasks waiting: memory and lookups -------------------------------------
shm_start=$(shm_kb)
rss_start=$(rss_kb)
wplain_ms=$(ms "INSERT INTO plain (jobid, query, job_name, username, started_at, status, run_as, login_role, board_id, run_at) SELECT g, 'SELECT 1', NULL, current_user, now(), 'scheduled', 10, 10, 0, now() + interval '1 day' FROM generate_series(1, $W) g")
wsubmit_ms=$(ms "SELECT count(lantern.async_task('SELECT 1', NULL, now() + interval '1 day')) FROM generate_series(1, $W)")
q "ANALYZE plain" "ANALYZE _lantern_fdw.task_log" >/dev/null
note "$W scheduled: submit ${wsubmit_ms} ms; plain insert ${wplain_ms} ms"
sleep 2 # the executor has seen the note (a loader is not due for a day)
shm_waiting=$(shm_kb)
rss_waiting=$(rss_kb)
k=$((W / 2))
lk_ms=$(lookups lantern.tasks $k)
lk_plain_ms=$(lookups plain $k)
lkp_ms=$(lookups lantern.tasks $k param)
lkp_plain_ms=$(lookups plain $k param)
note "1000 lookups with $W waiting: lantern.tasks ${lk_ms} ms (param ${lkp_ms}); plain ${lk_plain_ms} ms (param ${lkp_plain_ms})"

# ---- submitting N tasks in one statement ------------------------------------
# (They run only once the statement commits; the drain is timed from then.)
plain_ms=$(ms "INSERT INTO plain (jobid, query, job_name, username, started_at, status, run_as, login_role, board_id) SELECT $W + g, 'SELECT 1', NULL, current_user, now(), 'queued', 10, 10, 0 FROM generate_series(1, $N) g")
submit_ms=$(ms "SELECT count(lantern.async_task('SELECT 1')) FROM generate_series(1, $N)")
t_drain=$(date +%s.%N)
note "submit $N: ${submit_ms} ms; plain insert: ${plain_ms} ms"

# ---- lookups while they drain (the board full) ------------------------------
dk_ms=$(lookups lantern.tasks $k)
dk_plain_ms=$(lookups plain $k)
dkp_ms=$(lookups lantern.tasks $k param)
dkp_plain_ms=$(lookups plain $k param)
note "1000 lookups during the drain: lantern.tasks ${dk_ms} ms (param ${dkp_ms}); plain ${dk_plain_ms} ms (param ${dkp_plain_ms})"

# ---- draining them (timed from the submission's commit) ---------------------
wait_drained 1800
t1=$(date +%s.%N)
rss_drained=$(rss_kb)
drain_rate=$(awk -v n="$N" -v a="$t_drain" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
note "drained $N tasks: $drain_rate tasks/s"

# A batch that fits on the board (900 of 1024 slots), for the baseline.
fit=900
t0=$(date +%s.%N)
q "SELECT count(lantern.async_task('SELECT 1')) FROM generate_series(1, $fit)" >/dev/null
wait_drained 600
t1=$(date +%s.%N)
fit_rate=$(awk -v n="$fit" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
note "drained $fit tasks that fit on the board: $fit_rate tasks/s"

# ---- run_at delay, with the W scheduled tasks still waiting -----------------
for _ in $(seq "$K"); do
	j=$(q "SELECT lantern.async_task('SELECT 1', 'bench run_at', clock_timestamp() + interval '300 ms')")
	q "SELECT lantern.wait_task($j, '60 s')" >/dev/null
done
run_at_stats=$(q "SELECT round((percentile_cont(0.5) WITHIN GROUP (ORDER BY d))::numeric, 1) || ' ms (max ' || round(max(d)::numeric, 1) || ' ms)' FROM (SELECT extract(epoch FROM run_started_at - run_at) * 1000 AS d FROM lantern.task_details WHERE job_name = 'bench run_at') s")
shm_end=$(shm_kb)
rss_end=$(rss_kb)
note "run_at: p50 delay ${run_at_stats}"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
cat <<EOF
== queue (lantern_fdw.max_tasks = 1024, max_parallel_tasks = 4), N = $N, W = $W ==
submit W scheduled in one statement ${wsubmit_ms} ms   plain insert ${wplain_ms} ms   ratio $(ratio "$wsubmit_ms" "$wplain_ms")
board shared memory                ${shm_start} kB at start, ${shm_waiting} kB with W waiting, ${shm_end} kB at the end
executor anonymous memory          ${rss_start} kB at start, ${rss_waiting} kB with W waiting, ${rss_drained} kB after the drain, ${rss_end} kB at the end
1000 lookups jobid = k, W waiting  ${lk_ms} ms   plain ${lk_plain_ms} ms   ratio $(ratio "$lk_ms" "$lk_plain_ms")   (target < 2x)
  same, PL/pgSQL (jobid = \$1)      ${lkp_ms} ms   plain ${lkp_plain_ms} ms   ratio $(ratio "$lkp_ms" "$lkp_plain_ms")   (target < 2x)
  same, during the drain           ${dk_ms} ms   plain ${dk_plain_ms} ms   ratio $(ratio "$dk_ms" "$dk_plain_ms")   (target < 2x)
  same, PL/pgSQL, during the drain ${dkp_ms} ms   plain ${dkp_plain_ms} ms   ratio $(ratio "$dkp_ms" "$dkp_plain_ms")   (target < 2x)
submit N in one statement          ${submit_ms} ms   plain insert ${plain_ms} ms   ratio $(ratio "$submit_ms" "$plain_ms")   (target <= 2x)
drain N queued trivial tasks       ${drain_rate}/s   fits on the board ${fit_rate}/s   ratio $(ratio "$drain_rate" "$fit_rate")   (target >= 0.8x)
run_at -> first statement, p50     ${run_at_stats} over $K tasks, W waiting (target <= 100 ms)
EOF
