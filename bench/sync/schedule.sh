#!/usr/bin/env bash
# Prints a fake-PagerDuty schedule (fake-pagerduty/README.md format) for bench/sync.
#
#   bash bench/sync/schedule.sh big     10,000 on-call entries: 200 escalation policies (BP001..BP200)
#                                       x 5 levels x 10 consecutive one-hour slots, 2,000 users
#                                       (u0001..u1999@example.com and someone@example.com), 5 entries each
#   bash bench/sync/schedule.sh small   10 entries: the 5 of someone@example.com and 5 of other users
#
# Slot k runs from now-30min+k h to now+30min+k h: slot 0 is on call now and every slot overlaps
# the sync window [now, now+12h] (pg_oncall.lookahead) for the half hour a bench run can take.
# Entry i (0..9999): policy i/50, level (i%50)/10+1, slot i%10, user i%2000. So a user k with
# k%10 = 0 (someone@example.com is user 0, probe@example.com user 10) is on call now in 5
# policies, probe@example.com at level 2. probe@example.com is not in the small schedule.
set -euo pipefail
kind=${1:-big}
now=$(date -u +%s)
slots=""
for k in 0 1 2 3 4 5 6 7 8 9; do
    s=$((now - 1800 + k * 3600))
    slots+="$(date -u -d "@$s" +%Y-%m-%dT%H:%M:%SZ) $(date -u -d "@$((s + 3600))" +%Y-%m-%dT%H:%M:%SZ) "
done
awk -v kind="$kind" -v slots="$slots" '
function user(k) {
    if (k == 0) return "someone@example.com"
    if (k == 10) return "probe@example.com"
    return sprintf("u%04d@example.com", k)
}
function entry(i,   p, j) {
    p = int(i / 50); j = i % 50
    return sprintf("{\"email\":\"%s\",\"escalation_policy_id\":\"BP%03d\",\"escalation_level\":%d,\"start\":\"%s\",\"end\":\"%s\"}",
                   user(i % 2000), p + 1, int(j / 10) + 1, start[j % 10], end_[j % 10])
}
BEGIN {
    n = split(slots, t, " ")
    for (k = 0; k < 10; k++) { start[k] = t[2 * k + 1]; end_[k] = t[2 * k + 2] }
    printf "["
    if (kind == "small") {
        # someone@example.com: entries 0, 2000, 4000, 6000, 8000; five others: users 1..5 (not probe).
        split("0 2000 4000 6000 8000 1 2 3 4 5", ids, " ")
        for (x = 1; x <= 10; x++) printf "%s%s\n", (x > 1 ? "," : ""), entry(ids[x])
    } else {
        for (i = 0; i < 10000; i++) printf "%s%s\n", (i > 0 ? "," : ""), entry(i)
    }
    print "]"
}'
