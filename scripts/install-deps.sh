#!/usr/bin/env bash
# Installs what building and testing need, skipping whatever is already there:
# Debian packages (Postgres 15 and its headers, clang for bindgen, sudo), cargo-pgrx 0.18.0,
# and `cargo pgrx init` against the system Postgres 15.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

missing=()
for pkg in postgresql-15 postgresql-client-15 postgresql-server-dev-15 libclang-dev clang sudo pkg-config make; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q ' 0\.18\.0'; then
    log "installing cargo-pgrx 0.18.0 (takes about 9 minutes on 2 cores)"
    cargo install cargo-pgrx --version 0.18.0 --locked
fi

if ! grep -q '^pg15' "${PGRX_HOME:-$HOME/.pgrx}/config.toml" 2>/dev/null; then
    log "cargo pgrx init --pg15 $PG_CONFIG"
    cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
fi
