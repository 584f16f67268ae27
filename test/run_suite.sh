#!/usr/bin/env bash
# Run one test suite: regress | pgtap | isolation | tap.
#
#   test/run_suite.sh <suite>
#
# Env: PG_BINDIR (default: pg_config --bindir), PG_CONFIG (default:
# $PG_BINDIR/pg_config, else pg_config from PATH). CTest sets both.
#
# PostgreSQL refuses to run as root. When started as root, this script copies
# what the server-side user needs (sql/, expected/, test/) to a fresh directory
# owned by the OS user `postgres` and runs itself again there as that user: the
# checkout may live where `postgres` cannot read it (e.g. under /root in CI).
# When started as another user, it runs in a fresh directory of its own.
set -euo pipefail

suite=${1:-}
case $suite in
  regress | pgtap | isolation | tap) ;;
  *)
    echo "usage: $0 regress|pgtap|isolation|tap" >&2
    exit 2
    ;;
esac

if [[ -n ${PG_CONFIG:-} ]]; then
  :
elif [[ -n ${PG_BINDIR:-} && -x $PG_BINDIR/pg_config ]]; then
  PG_CONFIG=$PG_BINDIR/pg_config
else
  PG_CONFIG=pg_config
fi
PG_BINDIR=${PG_BINDIR:-$("$PG_CONFIG" --bindir)}
PGXS=$("$PG_CONFIG" --pkglibdir)/pgxs
export PG_CONFIG PG_BINDIR
pg_major=$("$PG_CONFIG" --version | sed -E 's/^[^0-9]*([0-9]+).*/\1/')

# One port per suite and server version, so that suites and versions can run
# side by side (ctest -j, several PG_MAJOR at once).
case $suite in
  regress) port=$((54000 + pg_major * 10 + 1)) ;;
  pgtap) port=$((54000 + pg_major * 10 + 2)) ;;
  isolation) port=$((54000 + pg_major * 10 + 3)) ;;
  tap) port=0 ;; # unused: PostgreSQL::Test::Cluster picks its own ports
esac

die() {
  echo "run_suite.sh [$suite]: $*" >&2
  exit 1
}

# ---------------------------------------------------------------------------
# Phase 1 (no LANTERN_TEST_WORKDIR yet): prepare the work directory.
# ---------------------------------------------------------------------------
if [[ -z ${LANTERN_TEST_WORKDIR:-} ]]; then
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [[ $(id -u) -eq 0 ]]; then
    base=/tmp/lantern_fdw_tests
  else
    base=${TMPDIR:-/tmp}/lantern_fdw_tests-$(id -un)
  fi
  W=$base/pg$pg_major/$suite
  rm -rf "$W"
  mkdir -p "$W"
  chmod 755 "$base" "$base/pg$pg_major" # postgres must reach $W even under umask 077
  # Port reservations of the TAP clusters, shared by every run on this machine.
  export LANTERN_TEST_PORTDIR=$base/portlock
  mkdir -p "$LANTERN_TEST_PORTDIR"
  chmod 1777 "$LANTERN_TEST_PORTDIR"
  for d in sql expected test; do
    if [[ -d $repo/$d ]]; then
      cp -R "$repo/$d" "$W/"
    fi
  done
  cd "$W" # the checkout's cwd may be unreadable for postgres

  if [[ $(id -u) -eq 0 ]]; then
    # The test-only stand-in for Lantern's extension (test/lantern_standin/).
    extdir=$("$PG_CONFIG" --sharedir)/extension
    if [[ -f $extdir/lantern.control ]] && ! grep -q 'lantern_fdw test stand-in' "$extdir/lantern.control"; then
      die "$extdir/lantern.control is not lantern_fdw's test stand-in (a real Lantern?); the tests need the stand-in there"
    fi
    install -m 644 "$repo"/test/lantern_standin/lantern.control \
      "$repo"/test/lantern_standin/lantern--0.0.0.sql "$extdir/"
    if ! id -u postgres >/dev/null 2>&1; then
      useradd --system --create-home --home-dir /var/lib/postgresql \
        --shell /bin/bash postgres
    fi
    chown -R postgres: "$W"
    echo "run_suite.sh [$suite]: running as postgres in $W"
    exec runuser -u postgres -- env LANTERN_TEST_WORKDIR="$W" \
      LANTERN_TEST_PORTDIR="$LANTERN_TEST_PORTDIR" \
      PG_BINDIR="$PG_BINDIR" PG_CONFIG="$PG_CONFIG" \
      bash "$W/test/run_suite.sh" "$suite"
  fi
  echo "run_suite.sh [$suite]: running as $(id -un) in $W"
  export LANTERN_TEST_WORKDIR=$W
fi

# ---------------------------------------------------------------------------
# Phase 2: run the suite as an unprivileged user inside the work directory.
# ---------------------------------------------------------------------------
W=$LANTERN_TEST_WORKDIR
cd "$W"
[[ $(id -u) -ne 0 ]] || die "refusing to run a PostgreSQL server as root"
[[ -f test/regress.conf ]] || die "missing test/regress.conf"

# Connection settings from the caller's environment must not leak into tests.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGPASSFILE \
  PGSERVICE PGSERVICEFILE PGOPTIONS PGSSLMODE
export PATH=$PG_BINDIR:$PATH
export LC_MESSAGES=C

# Print the last lines of the given files (those that exist).
show_tail() {
  local lines=$1 f
  shift
  for f in "$@"; do
    [[ -f $f ]] || continue
    echo "======== tail -n $lines $f ========"
    tail -n "$lines" "$f"
  done
}

# Print a file in full, but not more than 500 lines.
show_file() {
  [[ -s $1 ]] || return 0
  echo "======== $1 ========"
  head -n 500 "$1"
}

# Test names listed in a pg_regress schedule ("test: a b c" lines).
schedule_tests() {
  sed -n 's/^[[:space:]]*test:[[:space:]]*//p' "$1" | tr -s ' \t' '\n' | sed '/^$/d'
}

# Every source file must be in the schedule, and every scheduled test must
# have its source and expected output: a test that is never run, or that
# cannot be run, is a mistake to report, not to skip.
check_schedule() {
  local schedule=$1 srcdir=$2 ext=$3 expdir=$4 f name bad=0
  local -a listed
  [[ -f $schedule ]] || die "missing $schedule"
  mapfile -t listed < <(schedule_tests "$schedule")
  for f in "$srcdir"/*"$ext"; do
    [[ -e $f ]] || continue
    name=$(basename "$f" "$ext")
    [[ $name == lantern_fdw--* ]] && continue # the install script, not a test
    if ! printf '%s\n' "${listed[@]}" | grep -qxF -- "$name"; then
      echo "error: $f is not listed in $schedule" >&2
      bad=1
    fi
  done
  for name in "${listed[@]}"; do
    if [[ ! -f $srcdir/$name$ext ]]; then
      echo "error: $schedule lists '$name' but $srcdir/$name$ext does not exist" >&2
      bad=1
    fi
    if [[ ! -f $expdir/$name.out ]]; then
      echo "error: $schedule lists '$name' but $expdir/$name.out does not exist" >&2
      bad=1
    fi
  done
  for name in $(printf '%s\n' "${listed[@]}" | sort | uniq -d); do
    echo "error: $schedule lists '$name' more than once" >&2
    bad=1
  done
  ((bad == 0)) || die "schedule check failed (see above)"
  ((${#listed[@]} > 0)) || die "no tests: $schedule lists no tests"
}

run_regress() {
  check_schedule test/schedule sql .sql expected
  local rc=0
  "$PGXS/src/test/regress/pg_regress" \
    --temp-instance="$W/tmp_check" \
    --temp-config=test/regress.conf \
    --bindir="$PG_BINDIR" \
    --inputdir="$W" \
    --outputdir="$W" \
    --schedule="$W/test/schedule" \
    --dbname=lantern_regress \
    --no-locale --encoding=UTF8 \
    --port="$port" || rc=$?
  if ((rc != 0)); then
    show_file "$W/regression.diffs"
    show_tail 100 "$W/log/postmaster.log"
    die "regression tests failed (work dir $W)"
  fi
}

run_isolation() {
  check_schedule test/isolation/schedule test/isolation/specs .spec test/isolation/expected
  local rc=0
  mkdir -p "$W/iso_out"
  "$PGXS/src/test/isolation/pg_isolation_regress" \
    --temp-instance="$W/iso_tmp_check" \
    --temp-config=test/regress.conf \
    --bindir="$PG_BINDIR" \
    --inputdir="$W/test/isolation" \
    --outputdir="$W/iso_out" \
    --schedule="$W/test/isolation/schedule" \
    --dbname=lantern_isolation \
    --no-locale --encoding=UTF8 \
    --port="$port" || rc=$?
  if ((rc != 0)); then
    show_file "$W/iso_out/regression.diffs"
    show_tail 100 "$W/iso_out/log/postmaster.log"
    die "isolation tests failed (work dir $W)"
  fi
}

pgtap_stop() {
  if [[ -f $W/data/postmaster.pid ]]; then
    pg_ctl -D "$W/data" -m fast -w -t 60 stop >/dev/null || true
  fi
}

run_pgtap() {
  local -a files
  shopt -s nullglob
  files=(test/pgtap/*.sql)
  shopt -u nullglob
  ((${#files[@]} > 0)) || die "no tests: test/pgtap/ has no *.sql files"

  initdb -D "$W/data" -A trust --no-sync --no-locale -E UTF8 >"$W/initdb.log" 2>&1 ||
    {
      cat "$W/initdb.log"
      die "initdb failed"
    }
  {
    echo
    echo "# added by test/run_suite.sh"
    cat test/regress.conf
    echo "port = $port"
    echo "listen_addresses = ''"
    echo "unix_socket_directories = '$W'"
    echo "fsync = off"
  } >>"$W/data/postgresql.conf"

  trap pgtap_stop EXIT
  if ! pg_ctl -D "$W/data" -l "$W/server.log" -w -t 120 start >/dev/null; then
    show_tail 100 "$W/server.log"
    die "could not start the test server"
  fi
  createdb -h "$W" -p "$port" lantern_tap

  local rc=0
  pg_prove --psql-bin "$PG_BINDIR/psql" --failures --comments --nocolor \
    -h "$W" -p "$port" -d lantern_tap "${files[@]}" || rc=$?
  if ((rc != 0)); then
    show_tail 100 "$W/server.log"
    die "pgTAP tests failed (work dir $W)"
  fi
}

run_tap() {
  local -a files
  shopt -s nullglob
  files=(test/tap/t/*.pl)
  shopt -u nullglob
  ((${#files[@]} > 0)) || die "no tests: test/tap/t/ has no *.pl files"

  # What PostgreSQL::Test::Utils/Cluster read from the environment:
  # TESTDIR    - (15) base of tmp_check/ (data dirs, logs, port locks);
  # TESTDATADIR, TESTLOGDIR - (16 and later) the data and log directories;
  #              unset, they are relative paths ("tmp_check", "log"), and a
  #              relative $node->logfile means nothing to the server's
  #              pg_read_file. Both point where 15 puts them.
  # PG_REGRESS - pg_regress binary, run by Cluster->init (--config-auth);
  # PATH       - initdb, pg_ctl, psql and pg_config of the target server.
  # PG_TEST_PORT_DIR: one port reservation directory for all concurrent runs
  # (several server versions at once), so their clusters never share a port.
  local rc=0
  PG_TEST_PORT_DIR=$LANTERN_TEST_PORTDIR \
    TESTDIR=$W TESTDATADIR=$W/tmp_check TESTLOGDIR=$W/tmp_check/log \
    PG_REGRESS=$PGXS/src/test/regress/pg_regress \
    prove -v -I "$PGXS/src/test/perl" -I "$W/test/tap" "${files[@]}" || rc=$?
  if ((rc != 0)); then
    shopt -s nullglob
    show_tail 60 "$W"/tmp_check/log/*
    shopt -u nullglob
    die "TAP tests failed (work dir $W)"
  fi
}

"run_$suite"
echo "run_suite.sh [$suite]: all tests passed"
