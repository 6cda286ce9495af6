#!/usr/bin/env bash
# The `make demo` on-call schedule (fake PagerDuty's schedule format, see fake-pagerduty/README.md),
# with times relative to now, in escalation policy PDEMO01:
#   alice@example.com  level 1  from 1 h ago            to 8 h from now   (on call now)
#   bob@example.com    level 1  from BOB_STARTS_IN s    to 8 h from now   (default 120 s: refused now)
#   carol@example.com  level 3  from 1 h ago            to 8 h from now   (the whole team; excluded
#                                                                          by max_escalation_level = 2)
#
#   bash scripts/demo-schedule.sh           print it (JSON) on stdout
#   bash scripts/demo-schedule.sh --apply   replace the running demo's schedule with it (restarts
#                                           bob's countdown) and sync the demo cluster at once
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BOB_STARTS_IN=${BOB_STARTS_IN:-120}
case "$BOB_STARTS_IN" in '' | *[!0-9]*) echo "demo-schedule: BOB_STARTS_IN must be a number of seconds" >&2; exit 2 ;; esac

iso() { date -u -d "$1" +%Y-%m-%dT%H:%M:%SZ; }

schedule() {
    local past now8h bob
    past=$(iso '-1 hour')
    now8h=$(iso '+8 hours')
    bob=$(iso "+${BOB_STARTS_IN} seconds")
    cat <<JSON
[
  {"email": "alice@example.com", "name": "Alice", "escalation_policy_id": "PDEMO01", "escalation_level": 1,
   "schedule_id": "PSCHED1", "start": "$past", "end": "$now8h"},
  {"email": "bob@example.com", "name": "Bob", "escalation_policy_id": "PDEMO01", "escalation_level": 1,
   "schedule_id": "PSCHED1", "start": "$bob", "end": "$now8h"},
  {"email": "carol@example.com", "name": "Carol", "escalation_policy_id": "PDEMO01", "escalation_level": 3,
   "schedule_id": null, "start": "$past", "end": "$now8h"}
]
JSON
}

case "${1:-}" in
    "") schedule ;;
    --apply)
        env_file=""
        if [ -n "${PG_ONCALL_DEMO_DIR:-}" ]; then dirs=("$PG_ONCALL_DEMO_DIR"); else dirs=("$REPO/.demo" /tmp/pg_oncall-demo); fi
        for dir in "${dirs[@]}"; do
            if [ -f "$dir/demo.env" ]; then env_file="$dir/demo.env"; break; fi
        done
        [ -n "$env_file" ] || { echo "demo-schedule: no running demo found (run make demo first)" >&2; exit 1; }
        # shellcheck disable=SC1090
        . "$env_file"
        schedule | curl -fsS --max-time 10 -X PUT --data-binary @- "$DEMO_FAKE_URL/_admin/oncalls"
        echo
        PG_ONCALL_CHROOT=${DEMO_CHROOT:-}
        LIB_NAME=demo-schedule
        # shellcheck source=scripts/lib.sh
        . "$REPO/scripts/lib.sh"
        PGCONNECT_TIMEOUT=10 pg_client timeout 60 "$DEMO_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 \
            "host=127.0.0.1 port=$DEMO_PG_PORT dbname=postgres user=postgres" -c "SELECT oncall.refresh()"
        echo "demo-schedule: schedule replaced; bob@example.com goes on call at $(date -d "+${BOB_STARTS_IN} seconds" '+%H:%M:%S %Z')"
        ;;
    *) echo "usage: bash scripts/demo-schedule.sh [--apply]" >&2; exit 2 ;;
esac
