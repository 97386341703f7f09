#!/usr/bin/env bash
# Runs the extension's #[pg_test] and unit tests in a throwaway Postgres that pgrx manages.
# As root, Postgres must run as the postgres user, so the data folder is owned by it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../extension"

if is_root; then
    root="${PGRX_TEST_ROOT:-${PG_PREFIX:+$PG_PREFIX/pgrx-test}}"
    root="${root:-/tmp/realtime-pgrx-test}"
    pg_owned_dir "$root"
    exec cargo pgrx test pg15 --runas postgres --pgdata "$root/data"
else
    exec cargo pgrx test pg15
fi
