#!/usr/bin/env bash
# Runs `cargo pgrx test` (in-server tests). As root, pgrx runs the cluster as the `postgres`
# OS user, which must be able to write the data directory and read the build tree.
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
pgdata=${PGRX_TEST_PGDATA:-/tmp/pg_oncall-pgrx-tests}
if [ "$(id -u)" -eq 0 ]; then
    rm -rf "$pgdata"
    exec cargo pgrx test pg15 --runas postgres --pgdata "$pgdata"
fi
exec cargo pgrx test pg15
