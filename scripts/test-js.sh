#!/usr/bin/env bash
# `make test-js`: installs the TypeScript SDK's locked dependencies (npm ci), builds it (tsc) and
# runs its tests with the node test runner: the SDK and React hooks against a real relay and
# Postgres, and the demo page in headless Chromium. Then the unmodified @supabase/supabase-js
# (tests/supabase-js, its own lockfile) against the relay's Supabase endpoint, in Node and in
# headless Chromium. Needs the relay built and the extension
# installed where $PG_BIN points (the Makefile sees to both).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../clients/typescript"

command -v node >/dev/null || die "Node.js 20 is required for the TypeScript SDK tests (node not found)"
major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$major" -ge 20 ] || die "Node.js 20 or newer is required (found $(node --version))"
[ -x /usr/bin/chromium ] || die "/usr/bin/chromium is missing: run scripts/install-deps.sh (apt-get install -y chromium)"

log "npm ci (clients/typescript)"
npm ci --no-audit --no-fund --loglevel=error
log "building the SDK (tsc)"
npm run --silent build
log "type checks of typed channels (tsc --noEmit)"
npm run --silent typecheck
log "SDK, React and browser tests (node --test)"
node --test --test-concurrency=1 test/*.test.mjs

log "npm ci (tests/supabase-js)"
cd ../../tests/supabase-js
npm ci --no-audit --no-fund --loglevel=error
log "unmodified @supabase/supabase-js against the relay, Node and Chromium (node --test)"
node --test --test-concurrency=1 test/*.test.mjs
