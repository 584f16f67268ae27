#!/usr/bin/env bash
# Install what lantern_fdw needs to build and test, on Debian bookworm, as root.
# Skips apt entirely when everything is already installed (set FORCE=1 to
# run apt anyway).
set -euo pipefail

packages=(
  postgresql-15 postgresql-server-dev-15 postgresql-contrib-15
  libkrb5-dev libpq-dev
  postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl libipc-run-perl
  cmake g++ make
  locales
  # building pgvector, and servers 16-18, from source (scripts/build-server.sh)
  dpkg-dev bison flex libreadline-dev zlib1g-dev libssl-dev pkg-config xz-utils
  # the Debian package (scripts/package.sh: cpack reads the library's
  # dependencies with file and dpkg-shlibdeps) and its test (a bookworm chroot)
  file debootstrap
)

# A package counts as present if it is installed or provided by an installed
# package (bookworm: postgresql-contrib-15 is provided by postgresql-15).
present=$(dpkg-query -W -f='${db:Status-Abbrev}|${Package}|${Provides}\n' 2>/dev/null |
  awk -F'|' '$1 ~ /^ii/ {
    print $2
    n = split($3, p, /, */)
    for (i = 1; i <= n; i++) { sub(/ .*/, "", p[i]); if (p[i] != "") print p[i] }
  }' | sort -u) || present=
missing=()
for p in "${packages[@]}"; do
  grep -qxF -- "$p" <<<"$present" || missing+=("$p")
done

# Source packages (never binaries) of newer Debian suites: pgvector and
# postgresql-17 from trixie, postgresql-18 from forky. Each suite has its own
# sources file holding only a deb-src line.
add_deb_src() {
  local suite=$1 file=/etc/apt/sources.list.d/lantern-fdw-src-$1.sources
  [[ -f $file ]] && return 1
  cat >"$file" <<EOS
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
}
new_sources=
if [[ $(id -u) -eq 0 ]]; then
  for suite in trixie forky; do
    add_deb_src "$suite" && new_sources=1
  done
fi

if ((${#missing[@]} == 0)) && [[ -z ${FORCE:-} ]]; then
  echo "install-deps: all packages already installed"
else
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: must run as root to install: ${missing[*]:-${packages[*]}}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${packages[@]}"
  new_sources=
fi
if [[ -n $new_sources ]]; then
  apt-get update -q
fi

# The test servers and the demo cluster run as `postgres` (PostgreSQL refuses
# root). Debian's postgresql package creates it; make sure anyway.
if ! id -u postgres >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: OS user postgres is missing; run as root to create it" >&2
    exit 1
  fi
  useradd --system --create-home --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

# test/tap/t/010_smart_shutdown.pl runs a server with lc_messages in German.
if ! locale -a 2>/dev/null | grep -qix 'de_DE\.utf-\?8'; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: the de_DE.UTF-8 locale is missing; run as root to generate it" >&2
    exit 1
  fi
  localedef -i de_DE -f UTF-8 de_DE.UTF-8
fi

# pgvector for bookworm's PostgreSQL 15 (bookworm has no package of it): the
# tests and the demo build vector indexes. Built from trixie's source package;
# lantern_fdw itself does not need it. Servers 16-18 get theirs in
# scripts/build-server.sh.
pg15_config=/usr/lib/postgresql/15/bin/pg_config
if [[ ! -f $("$pg15_config" --sharedir)/extension/vector.control ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: pgvector is missing; run as root to build it" >&2
    exit 1
  fi
  src=$(mktemp -d)
  (
    cd "$src"
    apt-get source -q --only-source pgvector/trixie
    cd pgvector-*/
    make -j"$(nproc)" PG_CONFIG="$pg15_config"
    make PG_CONFIG="$pg15_config" install
  ) >"$src.log" 2>&1 || {
    tail -n 40 "$src.log" >&2
    echo "install-deps: building pgvector failed" >&2
    exit 1
  }
  rm -rf "$src" "$src.log"
  echo "install-deps: pgvector built and installed for PostgreSQL 15"
fi
