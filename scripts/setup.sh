#!/usr/bin/env bash
# Installs what building and testing pg_oncall needs, idempotently: Debian packages (PostgreSQL
# 15, which also brings the `postgres` OS user and the clients), and cargo-pgrx at the pinned
# version. Fast when everything is already present. Other majors: scripts/provision.sh.
# No `cargo pgrx init`: every build names its pg_config (PGRX_PG_CONFIG_PATH, --pg-config),
# so ~/.pgrx/config.toml is neither needed nor touched.
set -euo pipefail

PGRX_VERSION=0.18.1
PG15_CONFIG=/usr/lib/postgresql/15/bin/pg_config
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

missing=()
# libkrb5-dev and libssl-dev: the server headers of Port (src/pg/port.c) include theirs.
for pkg in postgresql-15 postgresql-server-dev-15 libclang-dev clang sudo pkg-config libkrb5-dev libssl-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    # Debian's postgresql package would otherwise create and start a cluster on port 5432.
    $SUDO mkdir -p /etc/postgresql-common
    grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf ||
        echo 'create_main_cluster = false' | $SUDO tee -a /etc/postgresql-common/createcluster.conf >/dev/null
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! cargo pgrx --version 2>/dev/null | grep -q " ${PGRX_VERSION}\$"; then
    echo "setup: installing cargo-pgrx ${PGRX_VERSION} (a few minutes, once)"
    cargo install cargo-pgrx --version "=${PGRX_VERSION}" --locked
fi

echo "setup: ok (cargo-pgrx ${PGRX_VERSION}, $("$PG15_CONFIG" --version))"
