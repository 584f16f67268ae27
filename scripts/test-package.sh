#!/usr/bin/env bash
# Package test: build postgresql-15-lantern-fdw_<version>_amd64.deb, install it
# with `apt-get install ./<file>.deb` in a fresh Debian bookworm chroot (a
# machine where lantern_fdw was never built: no compiler, no sources), start
# the cluster Debian's postgresql-15 creates, CREATE EXTENSION, run one task,
# then purge the package. Runs as root; needs Debian's package registry.
#   bash scripts/test-package.sh
# The bookworm base (debootstrap --variant=minbase) is cached in
# $LANTERN_CACHE_DIR/chroot-bookworm and copied afresh for every run.
# Only PostgreSQL 15 is tested this way: bookworm packages no other major, so
# the Depends of postgresql-16/17/18-lantern-fdw cannot be met there.
# Ends with "N passed, N failed" and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PG_MAJOR=15
# shellcheck source=scripts/pg-major.sh
source scripts/pg-major.sh
[[ $(id -u) -eq 0 ]] || { echo "test-package.sh: must run as root (chroot)" >&2; exit 1; }

port=54990 # the chroot shares the network with this machine
base=$LANTERN_CACHE_DIR/chroot-bookworm
stamp=$base/.lantern_fdw-chroot-complete

passed=0 failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $*"; failed=$((failed + 1)); }
check() { # check DESCRIPTION COMMAND...: one test
  local what=$1
  shift
  if "$@"; then ok "$what"; else not_ok "$what"; fi
}

deb=$(bash scripts/package.sh | tail -n 1)
echo "test-package.sh: built $deb"
name=$(dpkg-deb -f "$deb" Package)

# What the package holds: the library, the control file, the SQL scripts and
# the docs, nothing else (no test files).
unexpected=$(dpkg-deb -c "$deb" | awk '{print $6}' | grep -v '/$' |
  grep -Ev "^\./usr/lib/postgresql/15/lib/lantern_fdw\.so$|^\./usr/share/postgresql/15/extension/lantern_fdw(\.control|--[0-9.]+(--[0-9.]+)?\.sql)$|^\./usr/share/doc/$name/[A-Za-z-]+\.md$" || true)
check "the package holds only the library, control file, SQL scripts and docs${unexpected:+ (unexpected: $unexpected)}" \
  test -z "$unexpected"
for f in ./usr/lib/postgresql/15/lib/lantern_fdw.so ./usr/share/postgresql/15/extension/lantern_fdw.control \
  ./usr/share/doc/"$name"/README.md; do
  check "the package holds $f" grep -qxF "$f" < <(dpkg-deb -c "$deb" | awk '{print $6}')
done
depends=$(dpkg-deb -f "$deb" Depends)
check "Depends names libpq5 ($depends)" grep -Eq '(^|, )libpq5( |,|$)' <<<"$depends"
minor=$("$PG_CONFIG" --version | grep -Eo '[0-9]+\.[0-9]+' | head -n 1)
check "Depends names postgresql-15 (>= $minor), the minor release it was built with" \
  grep -Eq "(^|, )postgresql-15 \(>= ${minor//./\\.}\)(,|\$)" <<<"$depends"

# The bookworm base, built once.
if [[ ! -f $stamp ]]; then
  command -v debootstrap >/dev/null ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
  rm -rf "$base"
  echo "test-package.sh: debootstrap bookworm into $base"
  debootstrap --variant=minbase bookworm "$base" http://deb.debian.org/debian >"$base.log" 2>&1 || {
    tail -n 30 "$base.log" >&2
    exit 1
  }
  touch "$stamp"
fi

root=$(mktemp -d /var/tmp/lantern-fdw-package.XXXXXX)
cleanup() {
  if [[ -f $root/var/lib/postgresql/15/main/postmaster.pid ]]; then
    chroot "$root" pg_ctlcluster 15 main stop -m immediate >/dev/null 2>&1 || true
  fi
  umount "$root/dev/shm" 2>/dev/null || true
  umount "$root/proc" 2>/dev/null || true
  if ! mountpoint -q "$root/proc" && ! mountpoint -q "$root/dev/shm"; then
    rm -rf "$root"
  fi
}
trap cleanup EXIT
cp -a "$base/." "$root/"
rm -f "$root/.lantern_fdw-chroot-complete"
mount -t proc proc "$root/proc"
mkdir -p "$root/dev/shm"
mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# apt reaches the package registry as this machine's apt does (its proxy,
# mirror and validity settings).
cp -a /etc/apt/apt.conf.d/. "$root/etc/apt/apt.conf.d/"
# A bookworm machine as Debian sets it up: with its updates and security fixes.
cat >"$root/etc/apt/sources.list" <<EOS
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOS
# Packages must not start services in a chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

check "lantern_fdw was never built in the chroot (no compiler, no cmake, no lantern_fdw files)" \
  in_root sh -c '! command -v cmake && ! command -v g++ && ! ls /usr/lib/postgresql/*/lib/lantern_fdw.so' >/dev/null 2>&1

cp "$deb" "$root/tmp/"
log=$root/tmp/apt.log
if in_root sh -c "cd /tmp && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./$(basename "$deb")" >"$log" 2>&1; then
  ok "apt-get install ./$(basename "$deb") installs it with its dependencies"
else
  tail -n 30 "$log"
  not_ok "apt-get install ./$(basename "$deb")"
fi
check "dpkg lists $name as installed" \
  in_root sh -c "dpkg-query -W -f='\${db:Status-Abbrev}' $name | grep -q '^ii'"

# The cluster Debian's postgresql-15 created: preload the library, own port.
conf=$root/etc/postgresql/15/main/conf.d/lantern_fdw.conf
if [[ -d ${conf%/*} ]]; then
  printf "shared_preload_libraries = 'lantern_fdw'\nport = %s\n" "$port" >"$conf"
fi
if in_root pg_ctlcluster 15 main start >"$root/tmp/start.log" 2>&1; then
  ok "the cluster starts with lantern_fdw preloaded"
else
  cat "$root/tmp/start.log"
  tail -n 30 "$root"/var/log/postgresql/*.log 2>/dev/null || true
  not_ok "the cluster starts with lantern_fdw preloaded"
fi
psql_() { in_root runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -At -p "$port" "$@"; }

check "CREATE EXTENSION lantern_fdw" psql_ -c 'CREATE EXTENSION lantern_fdw' -c 'CREATE TABLE t (a int)'
version=$(psql_ -c "SELECT extversion FROM pg_extension WHERE extname = 'lantern_fdw'" 2>&1 || true)
check "the installed version is the package's ($version)" test "$version" = "$(dpkg-deb -f "$deb" Version)"
status=$(psql_ 2>&1 <<'SQL' || true
SELECT lantern.async_task('INSERT INTO t VALUES (42)', 'package test') AS j \gset
SELECT lantern.wait_task(:j, '120s');
SQL
)
check "a task runs to the end: wait_task says '$status'" test "$status" = succeeded
rows=$(psql_ -c 'SELECT a FROM t' 2>&1 || true)
check "the task's INSERT is there ($rows)" test "$rows" = 42
row=$(psql_ -c "SELECT job_name, status, error_message IS NULL FROM lantern.tasks" 2>&1 || true)
check "lantern.tasks reports it ($row)" test "$row" = "package test|succeeded|t"

in_root pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
if in_root sh -c "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q $name" >"$log" 2>&1; then
  ok "apt-get purge $name"
else
  tail -n 30 "$log"
  not_ok "apt-get purge $name"
fi
left=$(in_root sh -c 'ls /usr/lib/postgresql/15/lib/lantern_fdw.so /usr/share/postgresql/15/extension/lantern_fdw* 2>/dev/null' || true)
check "purging removes its files${left:+ (left: $left)}" test -z "$left"

echo "$passed passed, $failed failed"
((failed == 0))
