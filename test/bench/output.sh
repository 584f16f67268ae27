#!/usr/bin/env bash
# lantern_fdw benchmark of task output (issue 12): the throughput of trivial
# tasks, whose output (command tag, rows, timing) is now recorded with the
# outcome, with and without messages; and keep_result for a 100,000-row
# SELECT against COPY (SELECT ...) TO STDOUT of the same rows (the task's
# duration, and the executor's peak memory). Measures, asserts nothing.
#
#   bash test/bench/output.sh [--tasks N] [--rounds N] [--throughput-only]
#   bash test/bench/output.sh --compare BUILD_DIR... [--pairs N] [--tasks N] [--rounds N]
#
# Runs against the installed library; against a build without task output
# (no keep_result) it measures the throughput alone. --compare installs each
# build directory in turn (cmake --install), --pairs times over (default 3),
# measuring the throughput on a fresh cluster each time, and prints each
# build's figures and medians: builds alternate within one run so that the
# machine's drift hits them alike. It leaves the last build installed.
# Hold the server's lock (flock /tmp/lantern_pg15.lock) around it and around
# its install.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/bench/lib.sh
source "$HERE/lib.sh"

TASKS=5000
ROUNDS=3
PAIRS=3
THROUGHPUT_ONLY=0
COMPARE=()
while (($#)); do
	case $1 in
	--tasks) TASKS=$2; shift ;;
	--rounds) ROUNDS=$2; shift ;;
	--pairs) PAIRS=$2; shift ;;
	--throughput-only) THROUGHPUT_ONLY=1 ;;
	--compare)
		while [[ $# -gt 1 && $2 != --* ]]; do COMPARE+=("$2"); shift; done ;;
	*) die "unknown option $1" ;;
	esac
	shift
done

if ((${#COMPARE[@]})); then
	out=$(mktemp)
	for ((p = 1; p <= PAIRS; p++)); do
		for build in "${COMPARE[@]}"; do
			cmake --install "$build" >/dev/null
			bash "$0" --tasks "$TASKS" --rounds "$ROUNDS" --throughput-only | sed "s|^|$build: |" | tee -a "$out"
		done
	done
	# The median of each build's warm rounds (the first round of a cluster is cold).
	for build in "${COMPARE[@]}"; do
		for kind in "'SELECT 1'" "raising a NOTICE"; do
			grep -F "$build: " "$out" | grep -F "$kind" | grep -v ' round 1:' |
				sed -E 's|.*: ([0-9]+)/s$|\1|' | sort -n |
				awk -v b="$build" -v k="$kind" '{v[NR] = $1} END {
					m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
					printf "%s: %s: median %d/s of %d warm rounds (%d to %d)\n", b, k, m, NR, v[1], v[NR] }'
		done
	done
	rm -f "$out"
	exit 0
fi

bench_require
trap bench_cluster_stop EXIT
bench_cluster_start "lantern_fdw.max_parallel_tasks = 4
lantern_fdw.max_tasks = 20000"
q "CREATE EXTENSION lantern_fdw" "CREATE TABLE tp_mark (name text, lo bigint, hi bigint)" >/dev/null
has_output=$(q "SELECT to_regclass('lantern.task_output') IS NOT NULL")

# Tasks per second from the submitting transaction's start to the last end.
throughput() {
	local name=$1 query=$2
	q "INSERT INTO tp_mark SELECT '$name', min(j), max(j)
	     FROM (SELECT lantern.async_task('$query') AS j FROM generate_series(1, $TASKS)) s" >/dev/null
	wait_all_tasks 900
	q "SELECT round(($TASKS / extract(epoch FROM max(t.started_at + t.duration) - min(t.started_at)))::numeric)
	     FROM tp_mark m JOIN _lantern_fdw.task_log t ON t.jobid BETWEEN m.lo AND m.hi
	    WHERE m.name = '$name'"
	q "DELETE FROM tp_mark" >/dev/null
}

peak_kb() { awk '/^VmHWM/ {print $2}' "/proc/$(executor_pid)/status"; }

for ((r = 1; r <= ROUNDS; r++)); do
	echo "round $r: $TASKS tasks 'SELECT 1': $(throughput plain 'SELECT 1')/s"
	echo "round $r: $TASKS tasks raising a NOTICE: $(throughput notice "DO \$\$BEGIN RAISE NOTICE ''hello''; END\$\$")/s"
done

if [[ $has_output == t && $THROUGHPUT_ONLY == 0 ]]; then
	q "CREATE TABLE rows100k AS SELECT g AS id, md5(g::text) AS h, g * 1.5 AS x FROM generate_series(1, 100000) g" \
	  "VACUUM ANALYZE rows100k" >/dev/null
	for ((r = 1; r <= ROUNDS; r++)); do
		for mode in copy keep; do
			before=$(peak_kb)
			if [[ $mode == copy ]]; then
				j=$(q "SELECT lantern.async_task('COPY (SELECT * FROM rows100k) TO STDOUT')")
			else
				j=$(q "SELECT lantern.async_task('SELECT * FROM rows100k', keep_result => true)")
			fi
			q "SELECT lantern.wait_task($j, '600 s')" >/dev/null
			after=$(peak_kb)
			echo "round $r: $mode: $(q "SELECT extract(epoch FROM duration) * 1000 || ' ms, ' || command || ', kept ' ||
			    coalesce(octet_length(result::text), 0) || ' bytes, truncated ' || truncated
			  FROM lantern.task_output WHERE jobid = $j"); executor peak $before -> $after kB"
		done
	done
	# The default cap keeps about 1MB; with the cap raised, all the rows.
	set_guc lantern_fdw.max_output_size 100MB
	before=$(peak_kb)
	j=$(q "SELECT lantern.async_task('SELECT * FROM rows100k', keep_result => true)")
	q "SELECT lantern.wait_task($j, '600 s')" >/dev/null
	echo "keep all (max_output_size 100MB): $(q "SELECT extract(epoch FROM duration) * 1000 || ' ms, kept ' ||
	    octet_length(result::text) || ' bytes, truncated ' || truncated FROM lantern.task_output WHERE jobid = $j"); executor peak $before -> $(peak_kb) kB"
fi
