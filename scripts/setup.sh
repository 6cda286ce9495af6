#!/usr/bin/env bash
# Installs what building and testing pg_oncall needs, idempotently: Debian packages (PostgreSQL
# 15, which also brings the `postgres` OS user and the clients; the C toolchain; the tools the
# scripts call), and cargo-pgrx at the pinned version. Fast when everything is already present.
# Other majors: scripts/provision.sh (which installs, when it needs them, python3 and pip for
# the PostgreSQL 18 wheel and debootstrap for the PostgreSQL 17 root).
# No `cargo pgrx init`: every build names its pg_config (PGRX_PG_CONFIG_PATH, --pg-config),
# so ~/.pgrx/config.toml is neither needed nor touched.
#
# Rust itself is not a Debian package recent enough (bookworm has 1.63): without cargo and
# rustc at the workspace's rust-version, this stops at once and prints the command to run.
#
# Tools the scripts call, and where they come from:
#   here (Debian):  gcc, libc6-dev, make, clang, libclang-dev, pkg-config (builds); curl (demo
#                   schedule, benches); binutils: readelf, objdump, strip, nm (packages, benches);
#                   sudo; postgresql-15 and postgresql-server-dev-15 (psql, pgbench, the server)
#   provision.sh:   python3, python3-pip (18), debootstrap (17)
#   always there:   Debian's essential packages: coreutils (timeout, chroot, sha1sum, md5sum,
#                   nproc...), util-linux (runuser, flock, mountpoint, taskset), dpkg (dpkg-deb,
#                   dpkg-query), apt, tar, gzip, sed, grep, findutils, diffutils (cmp, diff), mawk
set -euo pipefail

PGRX_VERSION=0.18.1
PG15_CONFIG=/usr/lib/postgresql/15/bin/pg_config
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# ---------------------------------------------------------------- Rust, first: nothing else works without it
RUST_VERSION=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -n 1)
RUSTUP_COMMAND=""
command -v curl >/dev/null 2>&1 || RUSTUP_COMMAND="${SUDO:+sudo }apt-get install -y curl ca-certificates && "
RUSTUP_COMMAND="${RUSTUP_COMMAND}curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain $RUST_VERSION && . \"\$HOME/.cargo/env\""
rust_missing() {
    echo "setup: error: $1" >&2
    echo "setup: pg_oncall needs Rust $RUST_VERSION or newer (rust-version in Cargo.toml). Run:" >&2
    echo >&2
    echo "    $2" >&2
    echo >&2
    echo "setup: then run make again." >&2
    exit 1
}
if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ] && [ -x "$HOME/.cargo/bin/rustc" ]; then
        rust_missing "cargo and rustc are in $HOME/.cargo/bin, which is not on PATH" ". \"\$HOME/.cargo/env\""
    fi
    rust_missing "Rust (cargo, rustc) is not installed" "$RUSTUP_COMMAND"
fi
have_rust=$(rustc --version 2>/dev/null | sed -n 's/^rustc \([0-9][0-9]*\.[0-9][0-9]*\(\.[0-9][0-9]*\)\{0,1\}\).*/\1/p')
[ -n "$have_rust" ] || rust_missing "rustc --version printed \"$(rustc --version 2>&1 | head -n 1)\"" "$RUSTUP_COMMAND"
if [ "$(printf '%s\n%s\n' "$RUST_VERSION" "$have_rust" | sort -V | head -n 1)" != "$RUST_VERSION" ]; then
    if command -v rustup >/dev/null 2>&1; then
        rust_missing "rustc is $have_rust ($(command -v rustc))" "rustup toolchain install $RUST_VERSION && rustup default $RUST_VERSION"
    fi
    rust_missing "rustc is $have_rust ($(command -v rustc)), not installed by rustup" "$RUSTUP_COMMAND"
fi

missing=()
# libkrb5-dev and libssl-dev: the server headers of Port (src/pg/port.c) include theirs.
for pkg in postgresql-15 postgresql-server-dev-15 libclang-dev clang gcc libc6-dev make sudo pkg-config curl binutils libkrb5-dev libssl-dev; do
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
