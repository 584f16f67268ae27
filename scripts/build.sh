#!/usr/bin/env bash
# Configure, build and install lantern_fdw into the PostgreSQL 15 server
# (installing needs root: it writes under /usr/lib/postgresql and /usr/share).
#   CMAKE_ARGS="-DLANTERN_SANITIZE=ON" bash scripts/build.sh
#   PG_CONFIG=/path/to/pg_config    pick another server
#   JOBS=N                          parallel build jobs (default 2)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
# CMAKE_ARGS is split on spaces on purpose: it holds several arguments.
# shellcheck disable=SC2086
cmake -S . -B build -DPG_CONFIG="$PG_CONFIG" ${CMAKE_ARGS:-}
cmake --build build -j "${JOBS:-2}"
cmake --install build
