#!/usr/bin/env bash
# Builds pg_oncall and installs it into the PostgreSQL that PG_CONFIG names.
set -euo pipefail
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="--sudo"
cargo pgrx install --release --pg-config "$PG_CONFIG" $SUDO
