#!/usr/bin/env bash
# The whole test run (README's second command; .ci/run runs it in CI, as
# root in a fresh clone, without stdin).
# Every suite (scripts/test.sh: pg_regress, pgTAP, isolation, TAP, META.json)
# on PostgreSQL 15, 16, 17 and 18, one after the other (a server that is not
# in /var/cache/lantern_fdw yet is built first, see scripts/build-server.sh),
# then the package test (scripts/test-package.sh). Sequential on purpose: a
# server build beside a running suite would slow the suite's servers down.
#   LANTERN_CI_MAJORS="15 17"   only those servers
#   LANTERN_CI_PACKAGE=0        skip the package test
# Ends with one line "N passed, N failed" over everything; exits non-zero on
# any failure (a server that could not be built or a step that printed no
# summary counts as one failure).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

majors=${LANTERN_CI_MAJORS:-15 16 17 18}
passed=0 failed=0
timings=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# run_step NAME COMMAND...: runs it, adds its "N passed, N failed" to the totals.
run_step() {
  local name=$1 start=$SECONDS rc=0 line p f
  shift
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$log" || rc=$?
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
  if [[ -n $line ]]; then
    p=${line%% passed*}
    f=${line#*passed, }
    f=${f%% failed*}
  else
    p=0 f=0
  fi
  if ((rc != 0 && f == 0)); then
    f=1 # it failed before or without counting (a build, a missing server)
  fi
  passed=$((passed + p))
  failed=$((failed + f))
  timings+=("$name: $((SECONDS - start)) s, $p passed, $f failed")
}

run_step "install-deps" bash scripts/install-deps.sh
for major in $majors; do
  run_step "PostgreSQL $major" env PG_MAJOR="$major" \
    flock "/tmp/lantern_pg$major.lock" bash scripts/test.sh
done
if [[ ${LANTERN_CI_PACKAGE:-1} != 0 ]]; then
  run_step "package" bash scripts/test-package.sh
fi

echo "=== timings"
printf '%s\n' "${timings[@]}"
echo "total: $SECONDS s"
echo "$passed passed, $failed failed"
((failed == 0))
