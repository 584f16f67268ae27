# Sourced by the scripts: picks the PostgreSQL server to build and test against.
#   PG_MAJOR=15 (default)  Debian bookworm's packaged server
#   PG_MAJOR=16|17|18      a server built from source into $LANTERN_CACHE_DIR/pg$PG_MAJOR
#                          by scripts/build-server.sh
# PG_CONFIG, if set, wins over PG_MAJOR.
PG_MAJOR=${PG_MAJOR:-15}
LANTERN_CACHE_DIR=${LANTERN_CACHE_DIR:-/var/cache/lantern_fdw}
case $PG_MAJOR in
  15) PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config} ;;
  16 | 17 | 18) PG_CONFIG=${PG_CONFIG:-$LANTERN_CACHE_DIR/pg$PG_MAJOR/bin/pg_config} ;;
  *)
    echo "PG_MAJOR must be 15, 16, 17 or 18, not '$PG_MAJOR'" >&2
    exit 2
    ;;
esac
export PG_MAJOR PG_CONFIG LANTERN_CACHE_DIR
