#!/usr/bin/env bash
# lantern_fdw benchmark: measures the extension against its baselines (a plain
# INSERT ... RETURNING into an ordinary table, a plain table with the same
# rows, and dblink with one fresh loopback connection per task) in one run on
# one throwaway cluster, and prints one table with the targets of issue 5.
# Not part of the test suite: it asserts nothing, it measures.
#
#   bash test/bench/run.sh            full run (about 4 minutes on 2 cores)
#   bash test/bench/run.sh --quick    smaller counts (under 2 minutes)
#   options: --out FILE (also write the report there), --keep (keep the
#   cluster directory and its server log), BENCH_PORT=N (default 5460)
#
# Run as root (the server runs as the OS user postgres through runuser) or as
# an unprivileged user. The extension must be built and installed first
# (bash scripts/build.sh). See docs/performance.md for what each figure means.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=test/bench/lib.sh
source "$HERE/lib.sh"

MODE=full
OUT=
while (($#)); do
	case $1 in
	--quick) MODE=quick ;;
	--full) MODE=full ;;
	--out)
		OUT=$(realpath -m "$2")
		shift
		;;
	--keep) BENCH_KEEP=1 ;;
	-h | --help)
		sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown option $1 (try --help)" ;;
	esac
	shift
done

if [[ $MODE == full ]]; then
	SUBMIT_N=4000     # calls per submit measurement (split over the clients)
	LAT_N=200         # spaced submissions per latency mode
	TP_N=10000        # tasks per throughput run
	DBLINK_TP_N=2000  # dblink tasks per throughput run
	MEM_TASKS=100000  # tasks the executor has run before the "after" RSS
	BIG_ROWS=10000000 # rows returned by the big task
	HISTORY=100000    # rows in lantern.tasks for the reads
	SCAN_RUNS=20      # full scans per table
	POINT_N=5000      # point lookups per table
else
	SUBMIT_N=1000
	LAT_N=100
	TP_N=2000
	DBLINK_TP_N=500
	MEM_TASKS=5000
	BIG_ROWS=2000000
	HISTORY=100000
	SCAN_RUNS=5
	POINT_N=1000
fi
SUBMIT_N_DEFAULT=400 # pass 2: the board holds 1024 tasks (2 x (400 + 80) queued)
SUBMIT_ROUNDS=4      # submit measurements are interleaved in this many rounds
SUBMIT_CLIENTS=(1 4)
PARALLEL=(1 4 16)
DBLINK_CLIENTS=(1 4)
MEM_FLAT_KB=5120 # "flat": within 5 MB
T_START=$SECONDS

bench_require
cd / # the caller's directory may be unreadable for postgres
trap 'trap "" INT TERM; bench_cluster_stop' EXIT
trap 'exit 130' INT TERM
note() { echo "bench: [$((SECONDS - T_START)) s] $*" >&2; }

# ---- the machine ----------------------------------------------------------------
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_total=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
so=$("$PG_CONFIG" --pkglibdir)/lantern_fdw.so
so_sum=$(md5sum "$so" | cut -c1-12)
so_time=$(date -u -r "$so" '+%Y-%m-%d %H:%M UTC')
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

note "mode $MODE; starting a cluster on port $BENCH_PORT"
bench_cluster_start "lantern_fdw.max_tasks = 20000"
W=$BENCH_WORK
SOCKDSN="host=$BENCH_SOCK port=$BENCH_PORT dbname=$BENCH_DB user=postgres application_name=bench_dblink"
pg_version=$(q "SHOW server_version")

q "CREATE EXTENSION lantern_fdw" "CREATE EXTENSION dblink" \
	"CREATE TABLE bench_lat (tag text NOT NULL, lat_us bigint NOT NULL)" \
	"CREATE TABLE bench_plain (id bigserial PRIMARY KEY, query text NOT NULL, job_name text,
	   username text NOT NULL DEFAULT current_user, started_at timestamptz NOT NULL DEFAULT now(),
	   status text NOT NULL DEFAULT 'queued')" \
	"CREATE TABLE lat_sub (k bigint PRIMARY KEY, mode text NOT NULL, jobid bigint, sent_at timestamptz)" \
	"CREATE TABLE lat_start (k bigint PRIMARY KEY, t timestamptz NOT NULL, st timestamptz NOT NULL)" \
	"CREATE SEQUENCE lat_k" \
	"CREATE TABLE tp_mark (par int PRIMARY KEY, lo bigint, hi bigint)" \
	"CREATE TABLE tp_dblink (clients int PRIMARY KEY, t0 timestamptz NOT NULL, t1 timestamptz)"

declare -A R # results, by key

# pgb TAG CLIENTS TOTAL SCRIPT [pgbench options]: runs pgbench (TOTAL
# transactions split over CLIENTS) with a per-transaction log, and loads the
# latencies into bench_lat under TAG.
pgb() {
	local tag=$1 clients=$2 total=$3 script=$4
	shift 4
	local threads=$((clients < 2 ? clients : 2))
	rm -f "$W"/log_"$tag".*
	if ! (cd "$W" && "$PG_BINDIR/pgbench" -n -h "$BENCH_SOCK" -p "$BENCH_PORT" -U postgres \
		-c "$clients" -j "$threads" -t $((total / clients)) -f "$script" \
		--log --log-prefix="log_$tag" "$@" "$BENCH_DB" >"$W/pgbench_$tag.out" 2>&1); then
		cat "$W/pgbench_$tag.out" >&2
		die "pgbench $tag failed"
	fi
	cat "$W"/log_"$tag".* | awk -v t="$tag" '{print t "\t" $3}' |
		"$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$BENCH_SOCK" -p "$BENCH_PORT" -U postgres -d "$BENCH_DB" \
			-c "\\copy bench_lat (tag, lat_us) FROM STDIN"
	rm -f "$W"/log_"$tag".*
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
anon_kb() { awk '/^RssAnon/ {print $2}' "/proc/$1/status"; }
shmem_kb() { awk '/^RssShmem/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# Submits n trivial tasks in one transaction, waits for them to end.
run_tasks() {
	q "SELECT count(lantern.async_task('SELECT 1')) FROM generate_series(1, $1)" >/dev/null
	wait_all_tasks 900
}

# Waits until task $1 is running.
wait_running() {
	local deadline=$((SECONDS + 30))
	until [[ $(q "SELECT status FROM lantern.tasks WHERE jobid = $1") == running ]]; do
		((SECONDS < deadline)) || die "task $1 did not start"
		sleep 0.05
	done
}

# ---- submit cost: measure_submit SUFFIX N ---------------------------------------------
# The executor is held busy by one long task with max_parallel_tasks = 1, so
# the submitted tasks queue instead of running and competing for the CPU:
# this measures the submitting call alone (running tasks is measured by the
# throughput runs). Then the long task is canceled and the queue drains, 16
# tasks at once: the queued tasks run rather than being canceled, so that
# they count towards the tasks the executor has run (memory figures).
echo "SELECT lantern.async_task('SELECT 1');" >"$W/async.sql"
echo "INSERT INTO lantern.tasks (query) VALUES ('SELECT 1') RETURNING jobid;" >"$W/fdwins.sql"
echo "INSERT INTO bench_plain (query) VALUES ('SELECT 1') RETURNING id;" >"$W/plain.sql"
measure_submit() {
	local sfx=$1 n=$2 c kind blocker round
	note "submit cost: async_task and INSERT INTO lantern.tasks vs plain INSERT ... RETURNING"
	for c in "${SUBMIT_CLIENTS[@]}"; do
		set_guc lantern_fdw.max_parallel_tasks 1
		blocker=$(q "SELECT lantern.async_task('SELECT pg_sleep(3600)')")
		wait_running "$blocker"
		for kind in plain async fdwins; do
			pgb "warm_${kind}_$c$sfx" "$c" $((n / 5)) "$W/$kind.sql"
		done
		# Interleaved rounds, so that a change in the machine's load during
		# the run hits the three kinds alike.
		for round in $(seq "$SUBMIT_ROUNDS"); do
			for kind in plain async fdwins; do
				pgb "submit_${kind}_$c$sfx" "$c" $((n / SUBMIT_ROUNDS)) "$W/$kind.sql"
			done
		done
		set_guc lantern_fdw.max_parallel_tasks 16
		q "SELECT lantern.cancel_task($blocker)" >/dev/null
		wait_all_tasks 600
	done
	reset_guc lantern_fdw.max_parallel_tasks
}

# ---- commit -> start latency: measure_latency SUFFIX -----------------------------------
# A task inserts clock_timestamp() when its first statement runs (and
# statement_timestamp(), when that statement reached its backend, before its
# parse and plan); the submitting transaction's commit time is
# pg_xact_commit_timestamp() of the row it wrote (the server's commit time,
# taken just before the commit record's WAL flush, which the task must wait
# for). Submissions are 20 ms apart, so each task has ended before the next
# commit. Mode reuse_async: the submitting transaction commits with
# synchronous_commit = off, so that its own WAL flush is not counted (the
# task still starts only once that commit is durable: its recording call
# flushes the WAL first). dblink: from clock_timestamp() just before
# dblink_send_query (after dblink_connect) to the remote statement.
lat_script() { # mode [statement before the submit]
	cat <<EOF
BEGIN;
${2:-}
INSERT INTO lat_sub (k, mode, jobid)
  SELECT k, '$1', lantern.async_task(format('INSERT INTO lat_start VALUES (%s, clock_timestamp(), statement_timestamp())', k))
  FROM (SELECT nextval('lat_k') AS k) s;
COMMIT;
\\sleep 20 ms
EOF
}
cat >"$W/lat_dblink.sql" <<EOF
SELECT dblink_connect('b', '$SOCKDSN');
WITH s AS (INSERT INTO lat_sub (k, mode, sent_at) VALUES (nextval('lat_k'), 'dblink', clock_timestamp()) RETURNING k)
  SELECT dblink_send_query('b', format('INSERT INTO lat_start VALUES (%s, clock_timestamp(), statement_timestamp())', k)) FROM s;
SELECT dblink_disconnect('b');
\\sleep 20 ms
EOF
measure_latency() {
	local sfx=$1 m n modes
	note "commit -> start latency: idle connection reused"
	lat_script "reuse$sfx" >"$W/lat_reuse.sql"
	run_tasks 1 # leaves an idle connection for the first measured task
	pgb "lat_reuse_run$sfx" 1 "$LAT_N" "$W/lat_reuse.sql"
	wait_all_tasks 120
	note "commit -> start latency: idle connection reused, submitting with synchronous_commit = off"
	lat_script "reuse_async$sfx" "SET LOCAL synchronous_commit = off;" >"$W/lat_reuse_async.sql"
	pgb "lat_reuse_async_run$sfx" 1 "$LAT_N" "$W/lat_reuse_async.sql"
	wait_all_tasks 120
	note "commit -> start latency: a fresh connection per task (idle_connection_timeout = 0)"
	set_guc lantern_fdw.idle_connection_timeout 0
	lat_script "fresh$sfx" >"$W/lat_fresh.sql"
	pgb "lat_fresh_run$sfx" 1 "$LAT_N" "$W/lat_fresh.sql"
	wait_all_tasks 120
	reset_guc lantern_fdw.idle_connection_timeout
	modes="'reuse$sfx', 'reuse_async$sfx', 'fresh$sfx'"
	if [[ -z $sfx ]]; then
		note "start latency: dblink_connect + dblink_send_query"
		pgb lat_dblink_run 1 "$LAT_N" "$W/lat_dblink.sql"
		sleep 0.5
		modes="$modes, 'dblink'"
	fi
	q "INSERT INTO bench_lat (tag, lat_us)
	   SELECT 'lat_' || s.mode,
	          (extract(epoch FROM st.t - CASE WHEN s.mode = 'dblink' THEN s.sent_at
	                                          ELSE pg_xact_commit_timestamp(s.xmin) END) * 1e6)::bigint
	     FROM lat_sub s JOIN lat_start st USING (k)
	    WHERE s.mode IN ($modes)
	   UNION ALL
	   SELECT 'latst_' || s.mode, (extract(epoch FROM st.st - pg_xact_commit_timestamp(s.xmin)) * 1e6)::bigint
	     FROM lat_sub s JOIN lat_start st USING (k)
	    WHERE s.mode IN ($modes) AND s.mode <> 'dblink'"
	for m in "reuse$sfx" "reuse_async$sfx" "fresh$sfx"; do
		n=$(q "SELECT count(*) FROM bench_lat WHERE tag = 'lat_$m'")
		((n == LAT_N)) || note "warning: $m latency: $n of $LAT_N tasks left a start time"
	done
}

# ---- reading status: measure_reads SUFFIX ----------------------------------------------
# lantern.tasks against tasks_copy, a plain table with the same rows and a
# primary key: the whole table, and point lookups of random jobids.
prepare_reads() {
	local have
	have=$(q "SELECT count(*) FROM _lantern_fdw.task_log")
	if ((have < HISTORY)); then
		# Ended tasks are plain rows of the store: copies of an ended task with
		# new jobids stand in for the rest of the history.
		note "reading status: adding $((HISTORY - have)) copies of an ended task to the history"
		q "INSERT INTO _lantern_fdw.task_log
		     SELECT (jsonb_populate_record(t, jsonb_build_object('jobid', nextval('lantern.tasks_jobid_seq')))).*
		       FROM _lantern_fdw.task_log t, generate_series(1, $((HISTORY - have)))
		      WHERE t.jobid = (SELECT min(jobid) FROM _lantern_fdw.task_log WHERE status = 'succeeded')" >/dev/null
	fi
	R[history]=$(q "SELECT count(*) FROM lantern.tasks")
	q "CREATE TABLE tasks_copy AS SELECT * FROM lantern.tasks" "ALTER TABLE tasks_copy ADD PRIMARY KEY (jobid)" \
		"VACUUM ANALYZE tasks_copy" "VACUUM ANALYZE _lantern_fdw.task_log"
	read -r LO HI < <(q "SELECT min(jobid) || ' ' || max(jobid) FROM tasks_copy")
}
measure_reads() {
	local sfx=$1 t tag plan
	note "reading status: lantern.tasks (${R[history]} rows) vs a plain copy with a primary key"
	plan=$(q "EXPLAIN SELECT * FROM lantern.tasks WHERE jobid = $((LO + (HI - LO) / 2))")
	if grep -q "Lantern Access: index lookup on jobid" <<<"$plan"; then R[point_index$sfx]=yes; else R[point_index$sfx]=no; fi
	plan=$(q "EXPLAIN SELECT * FROM tasks_copy WHERE jobid = $((LO + (HI - LO) / 2))")
	grep -q "Index Scan using tasks_copy_pkey" <<<"$plan" || note "warning: the plain copy's lookup uses no index"
	for t in lantern.tasks tasks_copy; do
		tag=${t#lantern.}$sfx
		echo "SELECT * FROM $t;" >"$W/scan_$tag.sql"
		printf '\\set k random(%s, %s)\nSELECT * FROM %s WHERE jobid = :k;\n' "$LO" "$HI" "$t" >"$W/point_$tag.sql"
		pgb "warm_scan_$tag" 1 2 "$W/scan_$tag.sql"
		pgb "scan_$tag" 1 "$SCAN_RUNS" "$W/scan_$tag.sql"
		pgb "warm_point_$tag" 1 $((POINT_N / 5)) "$W/point_$tag.sql"
		pgb "point_$tag" 1 "$POINT_N" "$W/point_$tag.sql"
		# Server-side execution alone (no transfer to the client).
		for _ in $(seq "$SCAN_RUNS"); do
			q "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) SELECT * FROM $t" |
				awk -F': ' '/"Execution Time"/ {gsub(/[ ,]/, "", $2); print "exec_" T "\t" int($2 * 1000)}' T="$tag"
		done | "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$BENCH_SOCK" -p "$BENCH_PORT" -U postgres \
			-d "$BENCH_DB" -c "\\copy bench_lat (tag, lat_us) FROM STDIN"
	done
}

# ==== pass 1: lantern_fdw.max_tasks = 20000 (room for 10,000 queued tasks) ================

# ---- memory: the executor before anything ran, and after a warm-up ----------------------
EXEC_PID=$(executor_pid)
[[ -n $EXEC_PID ]] || die "no lantern_fdw executor in pg_stat_activity"
R[rss_start]=$(rss_kb "$EXEC_PID")
note "warm-up: 100 tasks"
run_tasks 100
R[rss_warm]=$(rss_kb "$EXEC_PID")
R[anon_warm]=$(anon_kb "$EXEC_PID")
R[shmem_warm]=$(shmem_kb "$EXEC_PID")

measure_submit "" "$SUBMIT_N"
measure_latency ""

# ---- throughput ------------------------------------------------------------------------------
# TP_N trivial tasks submitted in one transaction; "end to end" runs from the
# start of that transaction (started_at) to the last task's end (started_at +
# duration), so it includes the submission; "after commit" runs from the
# submitting transaction's commit. Server timestamps throughout.
for par in "${PARALLEL[@]}"; do
	note "throughput: $TP_N tasks, max_parallel_tasks = $par"
	set_guc lantern_fdw.max_parallel_tasks "$par"
	q "INSERT INTO tp_mark (par, lo, hi)
	     SELECT $par, min(j), max(j)
	       FROM (SELECT lantern.async_task('SELECT 1') AS j FROM generate_series(1, $TP_N)) s" >/dev/null
	wait_all_tasks 900
	read -r e2e after failed < <(q "
	  SELECT round(($TP_N / extract(epoch FROM max(t.started_at + t.duration) - min(t.started_at)))::numeric) || ' ' ||
	         round(($TP_N / extract(epoch FROM max(t.started_at + t.duration) -
	                 (SELECT pg_xact_commit_timestamp(xmin) FROM tp_mark WHERE par = $par)))::numeric) || ' ' ||
	         count(*) FILTER (WHERE t.status <> 'succeeded')
	    FROM tp_mark m JOIN _lantern_fdw.task_log t ON t.jobid BETWEEN m.lo AND m.hi
	   WHERE m.par = $par")
	R[tp_$par]=$e2e
	R[tp_after_$par]=$after
	((failed == 0)) || note "warning: $failed of the throughput tasks did not succeed"
done
reset_guc lantern_fdw.max_parallel_tasks

# dblink: per task a fresh connection, the task sent, the connection closed;
# until the last remote backend has gone.
echo "SELECT dblink_connect('b', '$SOCKDSN');
SELECT dblink_send_query('b', 'SELECT 1');
SELECT dblink_disconnect('b');" >"$W/tp_dblink.sql"
for c in "${DBLINK_CLIENTS[@]}"; do
	note "throughput: $DBLINK_TP_N dblink tasks, $c client(s)"
	q "INSERT INTO tp_dblink (clients, t0) VALUES ($c, clock_timestamp())" >/dev/null
	pgb "dblink_submit_$c" "$c" "$DBLINK_TP_N" "$W/tp_dblink.sql"
	deadline=$((SECONDS + 60))
	while (($(q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bench_dblink'") > 0)); do
		((SECONDS < deadline)) || die "dblink tasks did not end"
		sleep 0.01
	done
	R[dblink_tp_$c]=$(q "UPDATE tp_dblink SET t1 = clock_timestamp() WHERE clients = $c
	                     RETURNING round(($DBLINK_TP_N / extract(epoch FROM t1 - t0))::numeric)")
done

# ---- memory: after many tasks, and during a task returning many rows --------------------
ran=$(q "SELECT count(*) FROM _lantern_fdw.task_log WHERE status IN ('succeeded', 'failed')")
if ((ran < MEM_TASKS)); then
	note "memory: running $((MEM_TASKS - ran)) more tasks so that the executor has run $MEM_TASKS"
	set_guc lantern_fdw.max_parallel_tasks 16
	while ((ran < MEM_TASKS)); do
		batch=$((MEM_TASKS - ran < 10000 ? MEM_TASKS - ran : 10000))
		run_tasks "$batch"
		ran=$((ran + batch))
	done
	reset_guc lantern_fdw.max_parallel_tasks
fi
R[mem_tasks]=$(q "SELECT count(*) FROM _lantern_fdw.task_log WHERE status IN ('succeeded', 'failed')")
[[ $(executor_pid) == "$EXEC_PID" ]] || die "the executor restarted during the run"
R[rss_after]=$(rss_kb "$EXEC_PID")
R[anon_after]=$(anon_kb "$EXEC_PID")
R[shmem_after]=$(shmem_kb "$EXEC_PID")

note "memory: a task returning $BIG_ROWS rows"
hwm_before=$(hwm_kb "$EXEC_PID")
big=$(q "SELECT lantern.async_task('SELECT g FROM generate_series(1, $BIG_ROWS) g')")
peak=0
while :; do
	r=$(rss_kb "$EXEC_PID")
	((r > peak)) && peak=$r
	[[ $(q "SELECT duration IS NOT NULL FROM _lantern_fdw.task_log WHERE jobid = $big") == t ]] && break
	sleep 0.1
done
hwm_after=$(hwm_kb "$EXEC_PID")
# The high-water mark catches a peak between two samples.
((hwm_after > hwm_before && hwm_after > peak)) && peak=$hwm_after
R[rss_big]=$peak
R[big_status]=$(q "SELECT status || ' in ' || round(extract(epoch FROM duration)::numeric, 1) || ' s'
                     FROM lantern.tasks WHERE jobid = $big")

prepare_reads
measure_reads ""

# ==== pass 2: the per-call figures again at the default lantern_fdw.max_tasks = 1024 =======
# The per-call figures should not depend on the board's capacity (they did
# while the board was searched slot by slot: see docs/performance.md); this
# pass checks it. The board then holds at most 1024 tasks, so the submit runs
# are smaller.
note "restarting with lantern_fdw.max_tasks = 1024 (the default)"
q "ALTER SYSTEM SET lantern_fdw.max_tasks = 1024" >/dev/null
as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA_B" -l "$BENCH_LOG" -w -t 60 restart >/dev/null || die "restart failed"
measure_submit _d "$SUBMIT_N_DEFAULT"
measure_latency _d
measure_reads _d

# ---- the tables ---------------------------------------------------------------------------
while read -r tag p50 p99; do
	R[${tag}_p50]=$p50
	R[${tag}_p99]=$p99
done < <(q "SELECT tag,
                   round((percentile_cont(0.5) WITHIN GROUP (ORDER BY lat_us) / 1000.0)::numeric, 3),
                   round((percentile_cont(0.99) WITHIN GROUP (ORDER BY lat_us) / 1000.0)::numeric, 3)
              FROM bench_lat GROUP BY tag" | tr '|' ' ')
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
# check A OP B: yes or NO
check() { awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN { ok = (op == "<=") ? a <= b : a >= b; print ok ? "yes" : "NO" }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }
dmb() { awk -v k="$1" 'BEGIN { printf "%+.1f MB", k / 1024 }'; }

rows=()
row() { rows+=("$1|$2|$3|$4|$5|$6"); }
declare -A MET=() MISS=()
# verdict SECTION yes|NO: sets M and counts it.
verdict() {
	local k=${1:-main}
	M=$2
	if [[ $2 == yes ]]; then MET[$k]=$((${MET[$k]:-0} + 1)); else MISS[$k]=$((${MISS[$k]:-0} + 1)); fi
}
separator() { rows+=("$1|||||"); }

# per_call_rows SUFFIX: the rows measured in both passes.
per_call_rows() {
	local s=$1 c p a b f
	for c in "${SUBMIT_CLIENTS[@]}"; do
		for p in p50 p99; do
			a=${R[submit_async_$c${s}_$p]}
			b=${R[submit_plain_$c${s}_$p]}
			f=${R[submit_fdwins_$c${s}_$p]}
			verdict "$s" "$(check "$(awk -v a="$a" -v b="$b" 'BEGIN { print a / b }')" "<=" 1.5)"
			row "submit $p, $c client(s): async_task" "$a ms" "INSERT RETURNING $b ms" "$(ratio "$a" "$b")" "<= 1.5x" "$M"
			row "  same, INSERT INTO lantern.tasks" "$f ms" "INSERT RETURNING $b ms" "$(ratio "$f" "$b")" "" ""
		done
	done
	[[ -n $s ]] || row "  dblink connect+send+disconnect" "" "${R[dblink_submit_1_p50]} / ${R[dblink_submit_1_p99]} ms" "" "" ""
	verdict "$s" "$(check "${R[lat_fresh${s}_p50]}" "<=" 5)"
	row "commit->start p50, fresh connection" "${R[lat_fresh${s}_p50]} ms" "dblink ${R[lat_dblink_p50]} ms" "" "<= 5 ms" "$M"
	row "commit->start p99, fresh connection" "${R[lat_fresh${s}_p99]} ms" "dblink ${R[lat_dblink_p99]} ms" "" "" ""
	row "  p50 to statement_timestamp()" "${R[latst_fresh${s}_p50]} ms" "" "" "" ""
	verdict "$s" "$(check "${R[lat_reuse${s}_p50]}" "<=" 1)"
	row "commit->start p50, reused connection" "${R[lat_reuse${s}_p50]} ms" "dblink ${R[lat_dblink_p50]} ms" "" "<= 1 ms" "$M"
	row "commit->start p99, reused connection" "${R[lat_reuse${s}_p99]} ms" "dblink ${R[lat_dblink_p99]} ms" "" "" ""
	row "  p50 to statement_timestamp()" "${R[latst_reuse${s}_p50]} ms" "" "" "" ""
	row "  p50/p99, submitter synchronous_commit=off" "${R[lat_reuse_async${s}_p50]} / ${R[lat_reuse_async${s}_p99]} ms" "" "" "" ""
	a=${R[scan_tasks${s}_p50]}
	b=${R[scan_tasks_copy${s}_p50]}
	verdict "$s" "$(check "$(awk -v a="$a" -v b="$b" 'BEGIN { print a / b }')" "<=" 2)"
	row "SELECT * (${R[history]} rows), p50" "$a ms" "plain table $b ms" "$(ratio "$a" "$b")" "<= 2x" "$M"
	a=${R[exec_tasks${s}_p50]}
	b=${R[exec_tasks_copy${s}_p50]}
	row "  same, server-side execution only" "$a ms" "plain table $b ms" "$(ratio "$a" "$b")" "" ""
	a=${R[point_tasks${s}_p50]}
	b=${R[point_tasks_copy${s}_p50]}
	verdict "$s" "$(check "$(awk -v a="$a" -v b="$b" 'BEGIN { print a / b }')" "<=" 2)"
	row "WHERE jobid = k, p50" "$a ms" "plain table $b ms" "$(ratio "$a" "$b")" "<= 2x" "$M"
	a=${R[point_tasks${s}_p99]}
	b=${R[point_tasks_copy${s}_p99]}
	row "WHERE jobid = k, p99" "$a ms" "plain table $b ms" "$(ratio "$a" "$b")" "" ""
	verdict "$s" "$([[ ${R[point_index$s]} == yes ]] && echo yes || echo NO)"
	row "WHERE jobid = k uses the index" "${R[point_index$s]}" "Index Scan" "" "index lookup" "$M"
}

separator "lantern_fdw.max_tasks = 20000"
per_call_rows ""
for par in "${PARALLEL[@]}"; do
	verdict "" "$(check "${R[tp_$par]}" ">=" 1000)"
	row "throughput, max_parallel_tasks=$par, $TP_N tasks" "${R[tp_$par]}/s (${R[tp_after_$par]}/s after commit)" \
		"dblink 1 client ${R[dblink_tp_1]}/s" "" ">= 1000/s" "$M"
done
row "  dblink, 4 clients" "" "${R[dblink_tp_4]}/s" "" "" ""
d=$((R[rss_after] - R[rss_warm]))
verdict "" "$( ((d <= MEM_FLAT_KB && d >= -MEM_FLAT_KB)) && echo yes || echo NO)"
row "executor RSS after ${R[mem_tasks]} tasks" "$(mb "${R[rss_after]}") ($(dmb "$d"))" \
	"after warm-up $(mb "${R[rss_warm]}")" "" "flat (5 MB)" "$M"
d=$((R[rss_big] - R[rss_after]))
verdict "" "$( ((d <= MEM_FLAT_KB)) && echo yes || echo NO)"
row "executor RSS peak, task of $BIG_ROWS rows" "$(mb "${R[rss_big]}") ($(dmb "$d"))" \
	"before it $(mb "${R[rss_after]}")" "" "flat (5 MB)" "$M"
separator ""
separator "lantern_fdw.max_tasks = 1024 (default), after a restart"
per_call_rows _d

report() {
	echo
	echo "lantern_fdw benchmark ($MODE), $(date -u '+%Y-%m-%d %H:%M UTC'), $((SECONDS - T_START)) s"
	echo "machine: $(nproc) cores ($cpu_model), $mem_total RAM; load average $load_start at start, $load_end at end"
	echo "PostgreSQL $pg_version; lantern_fdw.so md5 $so_sum (installed $so_time), repository at $commit"
	echo "settings: fsync=on, synchronous_commit=on, track_commit_timestamp=on, shared_buffers=128MB;"
	echo "          lantern_fdw defaults (max_parallel_tasks 4, idle_connection_timeout 10s) unless a row says otherwise"
	echo "executor: RSS $(mb "${R[rss_start]}") at start; after warm-up / after ${R[mem_tasks]} tasks: private (RssAnon)" \
		"$(mb "${R[anon_warm]}") / $(mb "${R[anon_after]}"), shared memory touched (RssShmem) $(mb "${R[shmem_warm]}") /" \
		"$(mb "${R[shmem_after]}"); the $BIG_ROWS-row task: ${R[big_status]}"
	echo
	printf '%s\n' "figure|lantern_fdw|baseline|ratio|target|met" "${rows[@]}" | awk -F'|' '
		{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } n = NR }
		END {
			for (r = 1; r <= n; r++) {
				if (cell[r, 2] == "" && cell[r, 3] == "" && cell[r, 1] != "" && r > 1) { print "== " cell[r, 1] " =="; continue }
				if (cell[r, 1] == "" && r > 1) { print ""; continue }
				line = ""
				for (i = 1; i <= 6; i++) line = line sprintf("%-" w[i] "s", cell[r, i]) (i < 6 ? " | " : "")
				sub(/ +$/, "", line)
				print line
				if (r == 1) { sep = ""; for (i = 1; i <= 6; i++) { s = ""; for (k = 0; k < w[i]; k++) s = s "-"; sep = sep s (i < 6 ? "-|-" : "") } print sep }
			}
		}'
	echo
	echo "targets met at max_tasks = 20000: ${MET[main]:-0} of $((${MET[main]:-0} + ${MISS[main]:-0}));" \
		"per-call targets met at the default max_tasks = 1024: ${MET[_d]:-0} of $((${MET[_d]:-0} + ${MISS[_d]:-0}))"
}
if [[ -n $OUT ]]; then
	report | tee "$OUT"
else
	report
fi
