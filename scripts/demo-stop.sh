#!/usr/bin/env bash
# Stops what `make demo` (scripts/demo.sh) left running: the throw-away PostgreSQL cluster and
# the fake PagerDuty. Safe to run twice, and when nothing is running. Only ever stops the
# processes recorded in the demo directory (the cluster's postmaster.pid, fake-pagerduty.pid).
# The directory itself (logs, data) is kept for inspection; the next `make demo` replaces it.
#
# Demo directories looked at: $PG_ONCALL_DEMO_DIR if set, else <repo>/.demo and /tmp/pg_oncall-demo.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
QUIET=""
[ "${1:-}" = "--quiet" ] && QUIET=1

say() { [ -n "$QUIET" ] || echo "$@"; }

# as_postgres, alive_with
LIB_NAME=demo-stop
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

stop_cluster() {
    local dir=$1 data=$1/data bindir pid
    [ -f "$data/postmaster.pid" ] || { say "demo-stop: no PostgreSQL running in $data"; return 0; }
    # The installation the demo ran from (demo.env), else PG_CONFIG's.
    bindir=""
    if [ -f "$dir/demo.env" ]; then
        bindir=$(sed -n "s/^DEMO_BINDIR='\(.*\)'$/\1/p" "$dir/demo.env")
        PG_ONCALL_CHROOT=$(sed -n "s/^DEMO_CHROOT='\(.*\)'$/\1/p" "$dir/demo.env")
    fi
    [ -n "$bindir" ] || bindir=$("$PG_CONFIG" --bindir)
    pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
    if ! as_postgres timeout 15 "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1 &&
        ! { [ -n "$pid" ] && alive_with "$pid" "$data"; }; then
        say "demo-stop: PostgreSQL is not running in $data (stale postmaster.pid)"
        return 0
    fi
    say "demo-stop: stopping PostgreSQL in $data (pid ${pid:-?})"
    STOPPED=1
    if as_postgres timeout 45 "$bindir/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1; then
        return 0
    fi
    say "demo-stop: fast shutdown did not finish; immediate shutdown"
    as_postgres timeout 20 "$bindir/pg_ctl" -D "$data" -m immediate -w -t 15 stop >/dev/null 2>&1 || true
    # Last resort, our own postmaster only (its pid file, its data directory on its command line).
    if [ -n "$pid" ] && alive_with "$pid" "$data"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    if [ -n "$pid" ] && alive_with "$pid" "$data"; then
        echo "demo-stop: PostgreSQL (pid $pid) is still running" >&2
        return 1
    fi
}

stop_fake() {
    local dir=$1 pid i
    [ -f "$dir/fake-pagerduty.pid" ] || { say "demo-stop: no fake PagerDuty recorded in $dir"; return 0; }
    pid=$(cat "$dir/fake-pagerduty.pid" 2>/dev/null || true)
    # Its command line names the demo's token file: a recycled pid is never ours.
    if [ -n "$pid" ] && alive_with "$pid" "$dir/pagerduty.token"; then
        say "demo-stop: stopping the fake PagerDuty (pid $pid)"
        STOPPED=1
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 50); do
            alive_with "$pid" "$dir/pagerduty.token" || break
            sleep 0.1
        done
        if alive_with "$pid" "$dir/pagerduty.token"; then
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
        if alive_with "$pid" "$dir/pagerduty.token"; then
            echo "demo-stop: the fake PagerDuty (pid $pid) is still running" >&2
            return 1
        fi
    else
        say "demo-stop: the fake PagerDuty is not running"
    fi
    rm -f "$dir/fake-pagerduty.pid"
}

status=0
found=""
STOPPED=""
if [ -n "${PG_ONCALL_DEMO_DIR:-}" ]; then DIRS=("$PG_ONCALL_DEMO_DIR"); else DIRS=("$REPO/.demo" /tmp/pg_oncall-demo); fi
for dir in "${DIRS[@]}"; do
    [ -d "$dir" ] || continue
    [ -f "$dir/demo.env" ] || [ -f "$dir/fake-pagerduty.pid" ] || [ -d "$dir/data" ] || continue
    found=1
    stop_cluster "$dir" || status=1
    stop_fake "$dir" || status=1
    rm -f "$dir/demo.env"
    if [ "$status" -eq 0 ] && [ -n "$STOPPED" ]; then say "demo-stop: stopped (files kept in $dir)"; fi
    STOPPED=""
done
[ -n "$found" ] || say "demo-stop: no demo found; nothing to stop"
exit "$status"
