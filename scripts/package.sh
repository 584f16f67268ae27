#!/usr/bin/env bash
# Build the Debian package of lantern_fdw for one PostgreSQL major:
#   bash scripts/package.sh                 postgresql-15-lantern-fdw_<version>_amd64.deb
#   PG_MAJOR=17 bash scripts/package.sh     postgresql-17-lantern-fdw_<version>_amd64.deb
# It compiles against that server's headers (pg_config, see scripts/pg-major.sh)
# and installs into Debian's directories for that major (/usr/lib/postgresql/N/lib,
# /usr/share/postgresql/N/extension, docs in /usr/share/doc/postgresql-N-lantern-fdw).
# Installs nothing on this machine. Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/pg-major.sh
source scripts/pg-major.sh

build_dir=build/pkg-pg$PG_MAJOR
rm -rf "$build_dir"
mkdir -p "$build_dir"
cmake -S . -B "$build_dir" -DPG_CONFIG="$PG_CONFIG" -DLANTERN_DEBIAN_LAYOUT=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build_dir/package.log" 2>&1 || {
  cat "$build_dir/package.log" >&2
  exit 1
}
cmake --build "$build_dir" -j "${JOBS:-2}" >>"$build_dir/package.log" 2>&1 || {
  tail -n 60 "$build_dir/package.log" >&2
  exit 1
}
(cd "$build_dir" && cpack -G DEB) >>"$build_dir/package.log" 2>&1 || {
  tail -n 60 "$build_dir/package.log" >&2
  exit 1
}
shopt -s nullglob
debs=("$PWD/$build_dir"/postgresql-"$PG_MAJOR"-lantern-fdw_*.deb)
((${#debs[@]} == 1)) || {
  echo "package.sh: expected one .deb in $build_dir, found ${#debs[@]}" >&2
  exit 1
}
echo "${debs[0]}"
