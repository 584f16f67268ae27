#!/usr/bin/env bash
# Build PostgreSQL $PG_MAJOR (16, 17 or 18) from source into
# $LANTERN_CACHE_DIR/pg$PG_MAJOR, with pgTAP and pgvector, unless that
# directory already holds a finished build. 15 is Debian bookworm's package
# and needs nothing here. Runs as root.
# The server's source is the release tarball:
#   - ../shared/vendor/postgresql-$PG_MAJOR.*.tar.* beside the checkout, if
#     there is one (16.2 is there: no Debian suite has 16);
#   - else the upstream tarball (.orig.tar.*) of Debian's source package:
#     postgresql-17 of trixie, postgresql-18 of forky. Debian's patches are
#     not applied: they put the libraries under /usr/lib/postgresql/N, outside
#     the cache directory.
# pgTAP and pgvector: the upstream tarballs of Debian's source packages.
# Only sources are taken from trixie and forky, never binaries: their libc is
# newer than bookworm's. The deb-src lines and the build dependencies come
# from scripts/install-deps.sh (scripts/test.sh runs it first).
# Two stages, each marked done by a stamp in the prefix, so a failure in the
# second (the extensions) does not rebuild the server. Two runs for the same
# major wait for each other (a lock in the cache directory).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/pg-major.sh
source "$repo/scripts/pg-major.sh"

[[ $PG_MAJOR != 15 ]] || exit 0
prefix=$LANTERN_CACHE_DIR/pg$PG_MAJOR
stamp=$prefix/.lantern_fdw-build-complete
server_stamp=$prefix/.lantern_fdw-server-complete
mkdir -p "$LANTERN_CACHE_DIR"
exec 9>"$LANTERN_CACHE_DIR/pg$PG_MAJOR.lock"
flock 9
if [[ -f $stamp ]]; then
  echo "build-server: PostgreSQL $PG_MAJOR is cached in $prefix"
  exit 0
fi

jobs=${JOBS:-$(nproc)}
work=$LANTERN_CACHE_DIR/src/pg$PG_MAJOR
rm -rf "$work"
mkdir -p "$work"
cd "$work"
echo "build-server: building PostgreSQL $PG_MAJOR into $prefix (log: $work/build.log)"
exec 3>&1 >"$work/build.log" 2>&1
# On failure, show where it stopped (the log stays in $work).
trap 'rc=$?; if ((rc != 0)); then tail -n 40 "$work/build.log" >&3;
  echo "build-server: building PostgreSQL $PG_MAJOR failed (log: $work/build.log)" >&3; fi' EXIT

# Source packages known to be served whole, for when the version a suite's
# index names is not (seen: the registry lists postgresql-17 17.12 of trixie
# and forky's pgvector 0.8.7, but returns 404 for their files). NAME -> the
# .dsc in Debian's pool and its SHA-256; the files it lists are checked
# against the checksums in the .dsc.
declare -A pool_dsc=(
  [postgresql-17]="p/postgresql-17/postgresql-17_17.11-0+deb13u1.dsc bf148ae423a982707c3f60672c3a072ef62b701bd9f5df847d9f4b8c9b3e3b18"
  [pgvector]="p/pgvector/pgvector_0.8.6-1.dsc d08de2aa48b7cb70319cc896aa3d95514690d1009f96579dbe6b23c59634f4e6"
)
pool=http://deb.debian.org/debian/pool/main

# pool_download NAME: fetch the pinned source package of NAME with apt's own
# downloader, each file checked against its SHA-256.
pool_download() {
  local entry=${pool_dsc[$1]:-} path hash dsc sum size file
  [[ -n $entry ]] || return 1
  read -r path hash <<<"$entry"
  dsc=$(basename "$path")
  /usr/lib/apt/apt-helper download-file "$pool/${path//+/%2b}" "$dsc" "SHA256:$hash" || return 1
  sed -n '/^Checksums-Sha256:/,/^[^ ]/{/^ /p}' "$dsc" | while read -r sum size file; do
    /usr/lib/apt/apt-helper download-file "$pool/$(dirname "$path")/${file//+/%2b}" "$file" "SHA256:$sum" || exit 1
  done
}

# upstream_source NAME/SUITE: unpack the upstream tarball of that source
# package into NAME.src: the version the suite's index names (apt-get source;
# it fails when the registry lacks the .dsc or the Debian part, but still
# fetches the rest), else the pinned one above.
upstream_source() {
  local -a tarballs
  apt-get source -q --download-only --only-source "$1/$2" || true
  shopt -s nullglob
  tarballs=("$1"_*.orig.tar.*)
  if ((${#tarballs[@]} != 1)); then
    rm -f "$1"_*
    pool_download "$1" || true
    tarballs=("$1"_*.orig.tar.*)
  fi
  shopt -u nullglob
  ((${#tarballs[@]} == 1)) || {
    echo "build-server: could not download the upstream source of $1/$2 (is its deb-src line there? scripts/install-deps.sh adds it)" >&3
    return 1
  }
  mkdir "$1.src"
  tar xf "${tarballs[0]}" -C "$1.src" --strip-components=1
}

# Stage 1: the server and its contrib modules.
if [[ ! -f $server_stamp ]]; then
  rm -rf "$prefix"
  shopt -s nullglob
  vendor=("$repo/../shared/vendor/postgresql-$PG_MAJOR".*.tar.*)
  shopt -u nullglob
  if ((${#vendor[@]} > 0)); then
    mkdir postgresql.src
    tar xf "${vendor[-1]}" -C postgresql.src --strip-components=1
  else
    case $PG_MAJOR in
      16)
        echo "build-server: no Debian suite has PostgreSQL 16; put its release tarball in $repo/../shared/vendor" >&3
        exit 1
        ;;
      17) upstream_source postgresql-17 trixie ;;
      18) upstream_source postgresql-18 forky ;;
    esac
    mv "postgresql-$PG_MAJOR.src" postgresql.src
  fi
  srcdir=postgresql.src
  (
    cd "$srcdir"
    ./configure --prefix="$prefix" --enable-tap-tests --without-icu --with-openssl
    make -j"$jobs"
    make install
    make -C contrib -j"$jobs" install
  )
  touch "$server_stamp"
fi

# Stage 2: extensions the tests and the demo use, built with this server's
# pg_config: pgTAP from trixie; pgvector from forky, else trixie, else the
# pinned 0.8.6 above (trixie's 0.8.0 does not build against 18).
build_ext() { # build_ext NAME SUITE...: the first suite whose source builds
  local name=$1 suite
  shift
  for suite in "$@"; do
    rm -rf "$name.src" "$name"_*
    if upstream_source "$name" "$suite" 3>/dev/null &&
      make -C "$name.src" PG_CONFIG="$prefix/bin/pg_config" -j"$jobs" &&
      make -C "$name.src" PG_CONFIG="$prefix/bin/pg_config" install; then
      return
    fi
  done
  echo "build-server: could not build $name from: $*" >&3
  return 1
}
build_ext pgtap trixie
build_ext pgvector forky trixie

# What the test suites take from this installation: fail here, not in a suite.
pgxs=$("$prefix/bin/pg_config" --pkglibdir)/pgxs
share=$("$prefix/bin/pg_config" --sharedir)
for f in "$pgxs/src/test/regress/pg_regress" \
  "$pgxs/src/test/isolation/pg_isolation_regress" \
  "$pgxs/src/test/perl/PostgreSQL/Test/Cluster.pm" \
  "$pgxs/src/test/perl/PostgreSQL/Test/Utils.pm" \
  "$share/extension/dblink.control" "$share/extension/pgtap.control" \
  "$share/extension/vector.control"; do
  [[ -e $f ]] || { echo "build-server: $f was not installed" >&3; exit 1; }
done

# The servers run as the OS user postgres, who must read (not write) the tree.
chmod -R a+rX "$prefix"
touch "$stamp"
cd /
rm -rf "$work"
echo "build-server: PostgreSQL $PG_MAJOR built in $prefix" >&3
