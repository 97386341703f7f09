#!/usr/bin/env bash
# Installs the extension's released install scripts and upgrade scripts (sql/realtime--*.sql)
# into an extension directory, next to the current version's script that pgrx generates.
#
#   scripts/install-sql.sh                 # into $(pg_config --sharedir)/extension (PG_PREFIX aware)
#   scripts/install-sql.sh DIR             # into DIR (the Postgres image build uses this)
#
# Why: `cargo pgrx install` / `package` write only realtime--<current>.sql, and copy upgrade
# scripts only from extension/sql/, while ours live in the repository's sql/ with the frozen
# install script of 0.1.0. Without them `CREATE EXTENSION realtime VERSION '0.1.0'` and
# `ALTER EXTENSION realtime UPDATE` fail. The generated realtime--<current>.sql is never
# overwritten: a checked-in script with that name is skipped.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
root="$(cd "$(dirname "$0")/.." && pwd)"

dest="${1:-$("$PG_CONFIG" --sharedir)/extension}"
current="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$root/extension/Cargo.toml" | head -n1)"
[ -n "$current" ] || die "no version in extension/Cargo.toml"
[ -d "$dest" ] || die "no extension directory $dest"

n=0
for f in "$root"/sql/realtime--*.sql; do
    name="$(basename "$f")"
    [ "$name" = "realtime--$current.sql" ] && continue
    if [ -w "$dest" ]; then install -m 0644 "$f" "$dest/$name"; else as_root install -m 0644 "$f" "$dest/$name"; fi
    n=$((n + 1))
done
log "installed $n released/upgrade script(s) of realtime into $dest (current version $current)"
