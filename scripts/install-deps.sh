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
