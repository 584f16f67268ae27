#!/usr/bin/env bash
# The single test command: install dependencies, build and install the
# extension, then run every CTest suite (regress, pgtap, isolation, tap).
#   bash scripts/test.sh            all suites
#   bash scripts/test.sh regress    only suites matching the regex (ctest -R)
#   PG_MAJOR=17 bash scripts/test.sh   against PostgreSQL 17 (15, the default,
#                                      16, 17, 18; built first if not cached)
# Ends with a line "N passed, N failed" and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/pg-major.sh
source scripts/pg-major.sh
bash scripts/install-deps.sh
bash scripts/build-server.sh
bash scripts/build.sh

filter=()
if [[ -n ${1:-} ]]; then
  filter=(-R "$1")
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
(cd "build/pg$PG_MAJOR" && ctest --output-on-failure "${filter[@]}") 2>&1 | tee "$log" || rc=$?

# ctest's summary: "NN% tests passed, F tests failed out of T".
summary=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
if [[ -n $summary ]]; then
  failed=$(sed -E 's/.* ([0-9]+) tests? failed out of.*/\1/' <<<"$summary")
  total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$summary")
else
  failed=0
  total=0
fi
echo "$((total - failed)) passed, $failed failed"

if ((total == 0)); then
  echo "test.sh: no tests were run" >&2
  exit 1
fi
if ((rc != 0 || failed != 0)); then
  exit 1
fi
