#!/usr/bin/env bash
# Runs the end-to-end suite (every e2e/tests binary) on one major and ends with one line naming
# it: `== PostgreSQL <major>: e2e N passed, M failed, in S s ==`.
#
#   PG_CONFIG=<private tree's pg_config> [PG_ONCALL_CHROOT=<root>] bash scripts/e2e.sh MAJOR
#
# `make test-major PG=<major>` (and so `make test`) sets the environment: scripts/provision.sh,
# then scripts/pgtree.sh. Extra arguments go to the test binaries (a test name filter...).
set -uo pipefail
cd "$(dirname "$0")/.."
major=${1:?usage: $0 MAJOR [test args...]}
shift
: "${PG_CONFIG:?PG_CONFIG must name the private tree under test (scripts/pgtree.sh)}"
started=$(date +%s)
version=$("$PG_CONFIG" --version) || exit 1
echo "== PostgreSQL $major: $version, pg_config $PG_CONFIG${PG_ONCALL_CHROOT:+, servers run in $PG_ONCALL_CHROOT} =="
case "$version" in "PostgreSQL $major"*) ;; *) echo "e2e: $PG_CONFIG is not PostgreSQL $major" >&2; exit 1 ;; esac
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test -p e2e --no-fail-fast -- --test-threads=1 "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -o 'test result: [a-zA-Z]*\. [0-9]* passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -o '[0-9]* failed;' "$log" | awk '{s += $1} END {print s + 0}')
echo "== PostgreSQL $major: e2e $passed passed, $failed failed, in $(($(date +%s) - started)) s =="
exit "$status"
