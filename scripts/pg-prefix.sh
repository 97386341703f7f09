#!/usr/bin/env bash
# Makes a private, relocated copy of the system Postgres 15 under $1 (default: $PG_PREFIX), so a
# checkout can install its build of the extension there instead of into the system Postgres.
# Postgres finds its share and lib folders relative to its binary, so the copy works as is.
# Used when several checkouts build and test on one machine: each sets PG_PREFIX to its own
# folder and `make test` installs and tests there. Idempotent.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

prefix="${1:-${PG_PREFIX:-}}"
[ -n "$prefix" ] || die "usage: scripts/pg-prefix.sh DIR (or set PG_PREFIX)"
sys_bin=/usr/lib/postgresql/15/bin
[ -x "$sys_bin/postgres" ] || die "no system Postgres 15 in $sys_bin (run scripts/install-deps.sh)"

bin="$prefix/usr/lib/postgresql/15/bin"
if [ -x "$bin/postgres" ] && [ "$("$bin/postgres" --version)" = "$("$sys_bin/postgres" --version)" ]; then
    # Copies made before the headers were copied too: add them (a release build of the
    # extension runs bindgen against $(pg_config --includedir-server)).
    if [ ! -d "$prefix/usr/include/postgresql/15/server" ] && [ -d /usr/include/postgresql/15/server ]; then
        mkdir -p "$prefix/usr/include"
        cp -a /usr/include/postgresql "$prefix/usr/include/"
    fi
    exit 0
fi
log "copying the system Postgres 15 into $prefix"
rm -rf "$prefix/usr"
mkdir -p "$prefix/usr/lib/postgresql" "$prefix/usr/share/postgresql"
cp -a /usr/lib/postgresql/15 "$prefix/usr/lib/postgresql/"
cp -a /usr/share/postgresql/15 "$prefix/usr/share/postgresql/"
# The server headers (postgresql-server-dev-15): the relocated pg_config points bindgen here.
if [ -d /usr/include/postgresql/15/server ]; then
    mkdir -p "$prefix/usr/include"
    cp -a /usr/include/postgresql "$prefix/usr/include/"
fi
# Drop any realtime build the system copy carried: this prefix holds only our own installs.
rm -f "$prefix"/usr/share/postgresql/15/extension/realtime* "$prefix"/usr/lib/postgresql/15/lib/realtime.so
[ "$("$bin/pg_config" --sharedir)" = "$prefix/usr/share/postgresql/15" ] ||
    die "the copy in $prefix does not relocate (pg_config --sharedir says $("$bin/pg_config" --sharedir))"
