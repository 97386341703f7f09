#!/usr/bin/env bash
# Installs what building and testing need, skipping whatever is already there:
# Debian packages (Postgres 15 and its headers, clang for bindgen, sudo, Chromium for the demo
# page's browser test), cargo-pgrx 0.18.0, and `cargo pgrx init` against the system Postgres 15.
# Node.js 20 and npm are expected to be installed (the TypeScript SDK's dependencies come from
# `npm ci` in scripts/test-js.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

missing=()
for pkg in postgresql-15 postgresql-client-15 postgresql-server-dev-15 libclang-dev clang sudo pkg-config make chromium; do
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

if [ -n "${PG_PREFIX:-}" ]; then
    # A private Postgres copy (see pg-prefix.sh) with its own pgrx config and its own test port,
    # so `cargo pgrx test` here never meets another checkout's test server.
    "$(dirname "$0")/pg-prefix.sh" "$PG_PREFIX"
    mkdir -p "$PGRX_HOME"
    port=$((30000 + $(printf '%s' "$PG_PREFIX" | cksum | cut -d' ' -f1) % 20000))
    printf 'base_testing_port = %s\n\n[configs]\npg15 = "%s"\n' "$port" "$PG_CONFIG" >"$PGRX_HOME/config.toml.new"
    mv "$PGRX_HOME/config.toml.new" "$PGRX_HOME/config.toml"
elif ! grep -q '^pg15' "${PGRX_HOME:-$HOME/.pgrx}/config.toml" 2>/dev/null; then
    log "cargo pgrx init --pg15 $PG_CONFIG"
    cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
fi
