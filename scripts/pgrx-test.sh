#!/usr/bin/env bash
# Runs `cargo pgrx test` (in-server tests) against the private PostgreSQL tree whose pg_config
# is $1 (scripts/pgtree.sh), never the system's: pgrx installs the extension where the
# pg_config it is configured with says, so it gets a PGRX_HOME of its own naming that tree.
# As root, pgrx runs the cluster as the `postgres` OS user, which must be able to write the
# data directory and read the build tree.
set -euo pipefail
cd "$(dirname "$0")/.."
pg_config=${1:?usage: $0 PRIVATE_PG_CONFIG}
major=$("$pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
export PGRX_HOME=$PWD/target/pgrx-home/$major
mkdir -p "$PGRX_HOME"
printf '[configs]\npg%s = "%s"\n' "$major" "$pg_config" >"$PGRX_HOME/config.toml"
export PGRX_PG_CONFIG_PATH=$pg_config
pgdata=${PGRX_TEST_PGDATA:-/tmp/pg_oncall-pgrx-tests-$major-$$}
if [ "$(id -u)" -eq 0 ]; then
    rm -rf "$pgdata"
    trap 'rm -rf "$pgdata"' EXIT
    cargo pgrx test "pg$major" --runas postgres --pgdata "$pgdata"
else
    cargo pgrx test "pg$major"
fi
