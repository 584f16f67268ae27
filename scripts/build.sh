#!/usr/bin/env bash
# Configure, build and install lantern_fdw into a PostgreSQL server
# (installing needs root for bookworm's server: it writes under /usr/lib/postgresql and /usr/share).
#   PG_MAJOR=17 bash scripts/build.sh   the server scripts/build-server.sh built (default 15)
#   PG_CONFIG=/path/to/pg_config        any other server
#   CMAKE_ARGS="-DLANTERN_SANITIZE=ON"  extra CMake arguments
#   JOBS=N                              parallel build jobs (default 2)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/pg-major.sh
source scripts/pg-major.sh

# One build directory per server: build/pg15, build/pg16, ...
build_dir=build/pg$PG_MAJOR
# CMAKE_ARGS is split on spaces on purpose: it holds several arguments.
# shellcheck disable=SC2086
cmake -S . -B "$build_dir" -DPG_CONFIG="$PG_CONFIG" ${CMAKE_ARGS:-}
cmake --build "$build_dir" -j "${JOBS:-2}"
cmake --install "$build_dir"
