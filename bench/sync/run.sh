#!/usr/bin/env bash
# bench/sync: the PagerDuty sync at scale, against the fake with 10,000 on-call entries across
# 200 escalation policies and 2,000 users (bench/sync/schedule.sh), on cluster `main`:
#   - requests and pages of one sync (oncall.status(); target ≤ 101 requests);
#   - the sync's own duration (status().duration_ms: fetching and parsing), the wall time of
#     oncall.refresh() (fetch + store in oncall.shifts + snapshot reload + publish), and the time
#     until a decision reflects the new shifts;
#   - the snapshot reload after a table change (a manual shift inserted or deleted, 10,000 shifts
#     loaded) until decisions reflect it;
#   - the sync worker's peak RSS (VmHWM) and the shared memory of the snapshot;
#   - the incident sync's extra requests: one sync with 250 open incidents besides the 10,000
#     shifts (pg_oncall.sync_incidents = on for that sync only; target: 3 more requests);
#   - decision time with 10,000 shifts loaded vs 10 (target ≤ 1.2): oncall.is_on_call() per row
#     of generate_series(1,200000), net of the same query without the call (backend CPU time,
#     see timed_psql in bench/lib.sh).
# The schedule alternates small (10 entries) / big (10,000) for SYNC_ROUNDS rounds, and ends big,
# so the benches that follow run with 10,000 PagerDuty shifts in oncall.shifts and the snapshot.
set -euo pipefail
. "$REPO/bench/lib.sh"
ROUNDS=${SYNC_ROUNDS:-3}
K=3
ROWS=200000

bash "$REPO/bench/sync/schedule.sh" big >"$BENCH_DIR/schedule-big.json"
bash "$REPO/bench/sync/schedule.sh" small >"$BENCH_DIR/schedule-small.json"
put_schedule() {
    curl -fsS --max-time 30 -X PUT --data-binary @"$BENCH_DIR/schedule-$1.json" "$FAKE_URL/_admin/oncalls" >/dev/null ||
        die "cannot PUT the $1 schedule to the fake"
}

psql_script main postgres >/dev/null <<'SQL'
-- refresh() then poll the snapshot (1 ms steps) until probe@example.com's on-call state is
-- `expected`; both times in ms from before refresh().
CREATE FUNCTION bench_sync(expected boolean, OUT refresh_ms float8, OUT visible_ms float8)
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
    PERFORM oncall.refresh(true, '60s');
    refresh_ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
    WHILE oncall.is_on_call('probe@example.com') IS DISTINCT FROM expected LOOP
        IF clock_timestamp() - t0 > interval '30s' THEN RAISE EXCEPTION 'bench: sync not visible after 30 s'; END IF;
        PERFORM pg_sleep(0.001);
    END LOOP;
    visible_ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
END $$;
-- Poll until the email's state is `expected`; ms since the setting bench.t0.
CREATE FUNCTION bench_wait(email text, expected boolean) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := current_setting('bench.t0')::timestamptz;
BEGIN
    WHILE oncall.is_on_call(email) IS DISTINCT FROM expected LOOP
        IF clock_timestamp() - t0 > interval '30s' THEN RAISE EXCEPTION 'bench: change not visible after 30 s'; END IF;
        PERFORM pg_sleep(0.001);
    END LOOP;
    RETURN 1000 * extract(epoch FROM clock_timestamp() - t0);
END $$;
SQL

WORKER=$(q main postgres "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_oncall sync'")
[ -n "$WORKER" ] || die "no pg_oncall sync worker"
status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$WORKER/status"; }
HWM_BEFORE=$(status_kb VmHWM)

DEC="SELECT count(*) FROM generate_series(1, $ROWS) AS g WHERE oncall.is_on_call(CASE WHEN g > 0 THEN 'someone@example.com' END);"
BASE="SELECT count(*) FROM generate_series(1, $ROWS) AS g WHERE (CASE WHEN g > 0 THEN 'someone@example.com' END) IS NOT NULL;"
: >"$BENCH_DIR/sync.timings"
: >"$BENCH_DIR/sync.syncs"
for ((r = 0; r < ROUNDS; r++)); do
    for state in $(rotate "$r" small big); do
        put_schedule "$state"
        expected=false
        [ "$state" = big ] && expected=true
        read -r refresh_ms visible_ms < <(q main postgres "SELECT refresh_ms, visible_ms FROM bench_sync($expected)" | tr '|' ' ')
        read -r shifts pages requests duration_ms < <(q main postgres "SELECT shifts, pages, requests, duration_ms FROM oncall.status()" | tr '|' ' ')
        [ -n "${duration_ms:-}" ] && [ -n "${visible_ms:-}" ] || die "sync to the $state schedule: no figures"
        echo "$state $refresh_ms $visible_ms $shifts $pages $requests $duration_ms" >>"$BENCH_DIR/sync.syncs"
        last=$state
        # The literal check, as the probe itself (a fresh session): check_oncall_access() agrees.
        [ "$(q main "probe@example.com" "SELECT oncall.check_oncall_access()")" = "${expected:0:1}" ] ||
            die "probe@example.com: check_oncall_access() does not reflect the $state schedule"
        {
            echo "@@ -"
            echo "$DEC"
            for ((k = 0; k < K; k++)); do
                echo "@@ dec_$state"
                echo "$DEC"
                echo "@@ base_$state"
                echo "$BASE"
            done
        } | timed_psql main postgres | sed "s/^/$r /" >>"$BENCH_DIR/sync.timings"
    done
done
if [ "$last" != big ]; then
    put_schedule big
    q main postgres "SELECT visible_ms FROM bench_sync(true)" >/dev/null
fi
awk '$2 ~ /^dec_/ && $4 != '"$ROWS"' { bad = 1 } END { exit bad }' "$BENCH_DIR/sync.timings" ||
    die "someone@example.com is not on call in every state: $(cat "$BENCH_DIR/sync.timings")"

# Snapshot reload after a table change, with the big schedule loaded.
# (separate statements: psql -c would run the change and the wait in one transaction)
reload_lines=$(
    for ((i = 0; i < 3; i++)); do
        psql_script main postgres <<'SQL' | tail -n 1
SELECT set_config('bench.t0', clock_timestamp()::text, false);
INSERT INTO oncall.shifts (source, email, reason) VALUES ('manual', 'reload-probe@example.com', 'bench');
SELECT bench_wait('reload-probe@example.com', true);
SQL
        psql_script main postgres <<'SQL' | tail -n 1
SELECT set_config('bench.t0', clock_timestamp()::text, false);
DELETE FROM oncall.shifts WHERE email = 'reload-probe@example.com';
SELECT bench_wait('reload-probe@example.com', false);
SQL
    done
)
[ "$(grep -cE '^[0-9.]+$' <<<"$reload_lines")" -eq 6 ] || die "reload timings: $reload_lines"
HWM_AFTER=$(status_kb VmHWM)
RSS_ANON=$(status_kb RssAnon)
[ "$(q main postgres "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_oncall sync'")" = "$WORKER" ] ||
    die "the sync worker restarted during the bench"
read -r shm_size shm_alloc < <(q main postgres "SELECT size, allocated_size FROM pg_shmem_allocations WHERE name = 'pg_oncall snapshot'" | tr '|' ' ')
caps=$(q main postgres "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings WHERE name IN ('pg_oncall.max_shifts', 'pg_oncall.max_identities', 'pg_oncall.max_gated_roles')")
loaded=$(q main postgres "SELECT count(*) FROM oncall.shifts")
# The next benches scan oncall.shifts (the naive RLS policy): no dead rows from the syncs.
q main postgres "VACUUM ANALYZE oncall.shifts" >/dev/null

big() { awk '$1 == "big"' "$BENCH_DIR/sync.syncs"; }
requests=$(big | awk '{ print $6 }' | sort -n | tail -n 1)
pages=$(big | awk '{ print $5 }' | sort -n | tail -n 1)
shifts=$(big | awk '{ print $4 }' | sort -n | tail -n 1)
record "sync: requests per sync (10,000 shifts)" "$requests requests, $pages pages, $shifts shifts" "-" "<= 101 requests" "$(check "$requests" '<=' 101)"
record "sync: fetch duration (status duration_ms)" "median $(fmt "$(big | awk '{ print $7 }' | median)") ms ($(big | awk '{ print $7 }' | spread) ms over $ROUNDS syncs)" "-" "-" "info"
record "sync: oncall.refresh() wall (fetch+store+reload)" "median $(fmt "$(big | awk '{ print $2 }' | median)") ms ($(big | awk '{ print $2 }' | spread) ms)" "-" "-" "info"
record "sync: refresh() start -> decisions reflect it" "median $(fmt "$(big | awk '{ print $3 }' | median)") ms (+$(fmt "$(big | awk '{ print $3 - $2 }' | median)" 1) ms after refresh() returned)" "-" "-" "info"
record "snapshot reload after a table change (10k loaded)" "median $(fmt "$(median <<<"$reload_lines")") ms ($(spread <<<"$reload_lines") ms, 6 changes)" "-" "<= 1000 ms (DESIGN)" "$(check "$(median <<<"$reload_lines")" '<=' 1000)"
record "sync worker peak RSS (VmHWM)" "$((HWM_AFTER / 1024)) MB after the syncs ($((HWM_BEFORE / 1024)) MB before; RssAnon now $((RSS_ANON / 1024)) MB)" "-" "-" "info"
record "snapshot shared memory (pg_shmem_allocations)" "$(awk -v a="$shm_alloc" 'BEGIN { printf "%.2f MB", a / 1048576 }') ($caps; $loaded rows in oncall.shifts)" "-" "-" "info"

# The incident sync's extra requests: 250 open incidents (one assignee each), synced with the
# 10,000 shifts; then back to no incidents and sync_incidents = auto (no rule needs them).
incidents_json() {
    local i
    printf '['
    for ((i = 1; i <= $1; i++)); do
        [ "$i" -eq 1 ] || printf ','
        printf '{"id":"PBINC%04d","service_id":"PBSVC%03d","escalation_policy_id":"BP%03d","assignees":["u%04d@example.com"]}' \
            "$i" "$((i % 200 + 1))" "$((i % 200 + 1))" "$((i * 7 % 2000))"
    done
    printf ']'
}
incidents_json 250 | curl -fsS --max-time 30 -X PUT --data-binary @- "$FAKE_URL/_admin/incidents" >/dev/null ||
    die "cannot PUT the incidents to the fake"
q main postgres "ALTER SYSTEM SET pg_oncall.sync_incidents = on" >/dev/null
q main postgres "SELECT pg_reload_conf()" >/dev/null
q main postgres "SELECT oncall.refresh(true, '60s')" >/dev/null
read -r inc_requests inc_incident_requests inc_incidents inc_shifts inc_duration < <(
    q main postgres "SELECT requests, incident_requests, incidents, shifts, duration_ms FROM oncall.status()" | tr '|' ' ')
q main postgres "ALTER SYSTEM RESET pg_oncall.sync_incidents" >/dev/null
q main postgres "SELECT pg_reload_conf()" >/dev/null
echo '[]' | curl -fsS --max-time 30 -X PUT --data-binary @- "$FAKE_URL/_admin/incidents" >/dev/null || true
[ "${inc_incidents:-}" = 250 ] || die "the incident sync stored ${inc_incidents:-no} incidents, not 250"
record "sync with 250 open incidents: requests per sync" "$inc_requests requests ($inc_incident_requests for incidents), $inc_shifts shifts, $inc_incidents incidents, $(fmt "$inc_duration") ms" "-" "<= 104 requests (101 + 3)" "$(check "$inc_requests" '<=' 104)"

net_per_call() { # round state → ns per call
    local dec base
    dec=$(awk -v r="$1" -v t="dec_$2" '$1 == r && $2 == t { print $5 }' "$BENCH_DIR/sync.timings" | median)
    base=$(awk -v r="$1" -v t="base_$2" '$1 == r && $2 == t { print $5 }' "$BENCH_DIR/sync.timings" | median)
    awk -v d="$dec" -v b="$base" -v n="$ROWS" 'BEGIN { printf "%.1f", (d - b) * 1e6 / n }'
}
ratios="" nets_big="" nets_small="" raw_ratios=""
for ((r = 0; r < ROUNDS; r++)); do
    nb=$(net_per_call "$r" big)
    ns=$(net_per_call "$r" small)
    nets_big+="$nb"$'\n'
    nets_small+="$ns"$'\n'
    ratios+="$(ratio "$nb" "$ns")"$'\n'
    db=$(awk -v r="$r" '$1 == r && $2 == "dec_big" { print $5 }' "$BENCH_DIR/sync.timings" | median)
    ds=$(awk -v r="$r" '$1 == r && $2 == "dec_small" { print $5 }' "$BENCH_DIR/sync.timings" | median)
    raw_ratios+="$(ratio "$db" "$ds")"$'\n'
done
dec_ratio=$(median <<<"$ratios")
record "is_on_call() decision: 10,000 vs 10 shifts" "$(fmt "$(median <<<"$nets_big")" 0) vs $(fmt "$(median <<<"$nets_small")" 0) ns/call net (CPU; whole query $(fmt "$(median <<<"$raw_ratios")" 3)x)" "$(fmt "$dec_ratio" 3)" "<= 1.2" "$(check "$dec_ratio" '<=' 1.2)"
