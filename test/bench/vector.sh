#!/usr/bin/env bash
# Vector index build, background against foreground: the same pgvector HNSW
# build run through lantern.async_task (submitted, then waited for with
# lantern.wait_task) and directly in psql, alternated (foreground first), on
# one throwaway cluster. Prints each run's wall time, whether parallel
# maintenance workers helped it, and the ratio background / foreground
# (target: at most 1.05). Not part of the test suite: it measures.
#
#   bash test/bench/vector.sh [--runs N] [--rows N] [--dim N] [--out FILE] [--keep]
#     --runs N   builds of each kind (default 3, at least 3)
#     --rows N   vectors in the table (default 60000, as scripts/demo.sh: enough blocks for parallel workers)
#     --dim N    their dimension (default 32)
#   BENCH_PORT=N (default 5460)
#
# Needs pgvector installed for the server (scripts/install-deps.sh builds it
# for PostgreSQL 15) and lantern_fdw built and installed (scripts/build.sh).
# Wall times are taken by this script around one psql call each, so both
# kinds include one connection start-up. Parallel workers are seen by
# sampling pg_stat_activity (rows with a leader_pid) every 0.1 s while the
# build runs: nothing else runs on the cluster meanwhile.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=test/bench/lib.sh
source "$HERE/lib.sh"

RUNS=3
ROWS=60000
DIM=32
OUT=
while (($#)); do
	case $1 in
	--runs) RUNS=$2; shift ;;
	--rows) ROWS=$2; shift ;;
	--dim) DIM=$2; shift ;;
	--out) OUT=$(realpath -m "$2"); shift ;;
	--keep) BENCH_KEEP=1 ;;
	*) die "unknown option $1 (see the head of $0)" ;;
	esac
	shift
done
[[ $RUNS =~ ^[0-9]+$ ]] && ((RUNS >= 3)) || die "--runs must be a number >= 3"
[[ $ROWS =~ ^[1-9][0-9]*$ && $DIM =~ ^[1-9][0-9]*$ ]] || die "--rows and --dim must be positive numbers"

bench_require
[[ -f $("$PG_CONFIG" --sharedir)/extension/vector.control ]] ||
	die "pgvector is not installed for this server; run: bash scripts/install-deps.sh"

trap bench_cluster_stop EXIT
bench_cluster_start "maintenance_work_mem = '512MB'
max_worker_processes = 16
max_parallel_maintenance_workers = 2"

note "creating $ROWS random vectors of dimension $DIM"
q "CREATE EXTENSION lantern_fdw" "CREATE EXTENSION vector" \
	"CREATE TABLE items (id bigint PRIMARY KEY, embedding vector($DIM))" \
	"INSERT INTO items SELECT g, ARRAY(SELECT random() FROM generate_series(1, $DIM) WHERE g > 0)::vector FROM generate_series(1, $ROWS) g" \
	"VACUUM ANALYZE items" "CHECKPOINT" >/dev/null

BUILD="CREATE INDEX items_hnsw ON items USING hnsw (embedding vector_l2_ops)"

# Prints the most parallel workers seen at once until file $1 exists.
sample_workers() {
	local max=0 n
	while [[ ! -e $1 ]]; do
		n=$(q "SELECT count(*) FROM pg_stat_activity WHERE leader_pid IS NOT NULL")
		((n > max)) && max=$n
		sleep 0.1
	done
	echo "$max"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# run KIND I: one build; prints "ms workers [task duration ms]".
run_build() {
	local kind=$1 i=$2 flag=$BENCH_WORK/stop.$kind.$2 t0 t1 workers extra=
	q "DROP INDEX IF EXISTS items_hnsw" "CHECKPOINT" >/dev/null
	sample_workers "$flag" >"$BENCH_WORK/workers.$kind.$i" &
	local sampler=$!
	t0=$(now_ms)
	if [[ $kind == foreground ]]; then
		q "$BUILD" >/dev/null
	else
		"$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$BENCH_SOCK" -p "$BENCH_PORT" -U postgres -d "$BENCH_DB" \
			-v build="$BUILD" >"$BENCH_WORK/bg.$i" <<'EOF'
SELECT lantern.async_task(:'build', 'bench hnsw') AS jobid \gset
SELECT lantern.wait_task(:jobid, '1 hour');
SELECT round(extract(epoch FROM duration) * 1000) FROM lantern.tasks WHERE jobid = :jobid;
EOF
	fi
	t1=$(now_ms)
	touch "$flag"
	wait "$sampler"
	workers=$(cat "$BENCH_WORK/workers.$kind.$i")
	if [[ $kind == background ]]; then
		local status
		status=$(sed -n 1p "$BENCH_WORK/bg.$i")
		[[ $status == succeeded ]] || die "background build $i ended '$status'"
		extra=$(sed -n 2p "$BENCH_WORK/bg.$i")
	fi
	echo "$((t1 - t0)) $workers $extra"
}

declare -a fg_ms bg_ms
report=$BENCH_WORK/report
{
	echo "HNSW build on $ROWS vectors of dimension $DIM (m = 16, ef_construction = 64), maintenance_work_mem = 512MB,"
	echo "max_parallel_maintenance_workers = 2, $(nproc) CPUs; $RUNS builds of each kind, alternated"
	echo
	printf '%-4s %-11s %10s %9s %s\n' run kind wall_ms workers "task duration (ms)"
} >"$report"
for ((i = 1; i <= RUNS; i++)); do
	for kind in foreground background; do
		read -r ms workers extra < <(run_build $kind "$i")
		if [[ $kind == foreground ]]; then fg_ms+=("$ms"); else bg_ms+=("$ms"); fi
		printf '%-4s %-11s %10s %9s %s\n' "$i" "$kind" "$ms" "$workers" "$extra" | tee -a "$report" >&2
	done
done

stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1; s+=$1} END {printf "%.0f %.0f", s/NR, (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
read -r fg_mean fg_median <<<"$(stats "${fg_ms[@]}")"
read -r bg_mean bg_median <<<"$(stats "${bg_ms[@]}")"
{
	echo
	echo "foreground: mean $fg_mean ms, median $fg_median ms"
	echo "background: mean $bg_mean ms, median $bg_median ms"
	awk -v b="$bg_mean" -v f="$fg_mean" -v bm="$bg_median" -v fm="$fg_median" \
		'BEGIN {printf "ratio background / foreground: %.3f (means), %.3f (medians); target <= 1.05: %s\n", b/f, bm/fm, (b/f <= 1.05 ? "met" : "NOT met")}'
	echo "workers: the most parallel maintenance workers seen at once during the build (0: none)"
} >>"$report"
cat "$report"
[[ -z $OUT ]] || cp "$report" "$OUT"
