# Shared helpers for the project's scripts. Source it; do not run it.
# shellcheck shell=bash

export PATH="$HOME/.cargo/bin:$PATH"
# PG_PREFIX (optional): a private copy of Postgres made by scripts/pg-prefix.sh; when set, the
# extension is installed and tested there instead of in the system Postgres.
if [ -n "${PG_PREFIX:-}" ]; then
    PG_BIN="$PG_PREFIX/usr/lib/postgresql/15/bin"
    PG_CONFIG="$PG_BIN/pg_config"
    # cargo pgrx reads its Postgres list from PGRX_HOME: keep a private one beside the prefix.
    export PGRX_HOME="${PGRX_HOME:-$PG_PREFIX/pgrx-home}"
fi
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_CONFIG="${PG_CONFIG:-$PG_BIN/pg_config}"
export PG_BIN PG_CONFIG
# Where cargo puts binaries: CARGO_TARGET_DIR when set, else the workspace's target/.
TARGET_DIR="${CARGO_TARGET_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

# Runs a command as root (directly when we are root, else through sudo).
as_root() { if is_root; then "$@"; else sudo "$@"; fi; }

# Runs a Postgres server command: as the postgres user when we are root (Postgres refuses
# root), as ourselves otherwise.
as_pg() { if is_root; then runuser -u postgres -- "$@"; else "$@"; fi; }

# Makes a directory the Postgres server user owns.
pg_owned_dir() {
    mkdir -p "$1"
    if is_root; then chown postgres:postgres "$1"; fi
}
