#!/usr/bin/env bash
# Build PostgreSQL $PG_MAJOR (16, 17 or 18) from source into
# $LANTERN_CACHE_DIR/pg$PG_MAJOR, with pgTAP and pgvector, unless that
# directory already holds a finished build. 15 is Debian bookworm's package
# and needs nothing here. Runs as root (apt-get source needs the deb-src lines
# that scripts/install-deps.sh adds).
#   16: ../shared/vendor/postgresql-16.2.tar.xz (no Debian suite has 16)
#   17: Debian trixie's source package postgresql-17
#   18: Debian forky's source package postgresql-18
# Only source packages are taken from trixie and forky, never binaries: their
# libc is newer than bookworm's.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/pg-major.sh
source "$repo/scripts/pg-major.sh"

[[ $PG_MAJOR != 15 ]] || exit 0
prefix=$LANTERN_CACHE_DIR/pg$PG_MAJOR
stamp=$prefix/.lantern_fdw-build-complete
if [[ -f $stamp ]]; then
  echo "build-server: PostgreSQL $PG_MAJOR is cached in $prefix"
  exit 0
fi

jobs=${JOBS:-$(nproc)}
work=$LANTERN_CACHE_DIR/src/pg$PG_MAJOR
rm -rf "$work" "$prefix"
mkdir -p "$work"
cd "$work"
echo "build-server: building PostgreSQL $PG_MAJOR into $prefix (log: $work/build.log)"
exec 3>&1 >"$work/build.log" 2>&1

# apt-get source NAME/SUITE: unpack the newest source of NAME in SUITE here.
debian_source() {
  apt-get source -q --only-source "$1/$2"
}

case $PG_MAJOR in
  16)
    vendor=$repo/../shared/vendor/postgresql-16.2.tar.xz
    [[ -f $vendor ]] || { echo "build-server: $vendor is missing" >&3; exit 1; }
    tar xJf "$vendor"
    ;;
  17) debian_source postgresql-17 trixie ;;
  18) debian_source postgresql-18 forky ;;
esac
srcdir=$(find . -maxdepth 1 -type d -name 'postgresql-*' | head -n 1)
[[ -n $srcdir ]] || { echo "build-server: no source tree unpacked in $work" >&3; exit 1; }
(
  cd "$srcdir"
  ./configure --prefix="$prefix" --enable-tap-tests --without-icu --with-openssl
  make -j"$jobs"
  make install
  make -C contrib -j"$jobs" install
)

# Extensions the tests and the demo use, from Debian's source packages, built
# with this server's pg_config.
for pkg in pgtap/trixie pgvector/trixie; do
  debian_source "${pkg%/*}" "${pkg#*/}"
done
for d in pgtap-*/ pgvector-*/; do
  make -C "$d" PG_CONFIG="$prefix/bin/pg_config" -j"$jobs"
  make -C "$d" PG_CONFIG="$prefix/bin/pg_config" install
done

# The servers run as the OS user postgres, who must read (not write) the tree.
chmod -R a+rX "$prefix"
touch "$stamp"
rm -rf "$work"
echo "build-server: PostgreSQL $PG_MAJOR built in $prefix" >&3
