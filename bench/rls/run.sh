#!/usr/bin/env bash
# bench/rls: SELECT count(*) over a 1,000,000-row table with row-level security, as the
# non-superuser "bench@example.com" (on call through a manual shift, so every row is visible),
# one policy at a time on the same table (the policy is swapped between batches, so every
# variant reads the same pages from shared buffers). Parallel query is off on the cluster.
#
#   true  USING (true)                                     reference: the planner drops the qual
#   a     USING (NOT pg_is_in_recovery())                  built-in C function, per row
#   b     USING (oncall.check_oncall_access())             per row
#   a1    USING ((SELECT NOT pg_is_in_recovery()))         InitPlan, once per statement
#   b1    USING ((SELECT oncall.check_oncall_access()))    InitPlan
#   c     USING (EXISTS (SELECT 1 FROM oncall.shifts ...)) the naive SQL (bench has SELECT on
#                                                          oncall.shifts; its role name is its email)
#   d     USING (is_public OR oncall.check_oncall_access())
#   d0    USING (is_public OR NOT pg_is_in_recovery())
#
# One session; RLS_ROUNDS rounds, the variant order rotating each round; per variant and round:
# swap the policy, one untimed query (re-plan, warm), RLS_K timed queries, their median. Each
# query is timed twice: the backend's CPU time (/proc/self/schedstat, see timed_psql) — the
# figure the targets apply to, insensitive to other load on the host — and psql's wall clock.
# Each ratio is the median over rounds of the per-round ratio.
set -euo pipefail
. "$REPO/bench/lib.sh"
ROUNDS=${RLS_ROUNDS:-11}
K=${RLS_K:-3}
ROWS=1000000
VARIANTS=(true a b a1 b1 c d d0)

psql_script main postgres >/dev/null <<SQL
CREATE TABLE rls_t (id int NOT NULL, is_public boolean NOT NULL);
INSERT INTO rls_t SELECT g, g % 100 = 0 FROM generate_series(1, $ROWS) AS g;   -- 1% public
VACUUM (FREEZE, ANALYZE) rls_t;
ALTER TABLE rls_t ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON rls_t FOR SELECT USING (true);
GRANT SELECT ON rls_t TO "bench@example.com";
GRANT SELECT ON oncall.shifts TO "bench@example.com";   -- for the naive policy (c)
CREATE FUNCTION bench_policy(variant text) RETURNS text LANGUAGE sql IMMUTABLE AS \$\$
    SELECT CASE variant
        WHEN 'true' THEN 'true'
        WHEN 'a' THEN 'NOT pg_is_in_recovery()'
        WHEN 'b' THEN 'oncall.check_oncall_access()'
        WHEN 'a1' THEN '(SELECT NOT pg_is_in_recovery())'
        WHEN 'b1' THEN '(SELECT oncall.check_oncall_access())'
        WHEN 'c' THEN 'EXISTS (SELECT 1 FROM oncall.shifts s WHERE lower(s.email) = lower(session_user) AND (s.starts_at IS NULL OR s.starts_at <= now()) AND (s.ends_at IS NULL OR s.ends_at > now()))'
        WHEN 'd' THEN 'is_public OR oncall.check_oncall_access()'
        WHEN 'd0' THEN 'is_public OR NOT pg_is_in_recovery()'
    END \$\$;
CREATE FUNCTION bench_set_policy(variant text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_catalog AS \$\$
BEGIN
    IF bench_policy(variant) IS NULL THEN RAISE EXCEPTION 'unknown variant %', variant; END IF;
    EXECUTE format('ALTER POLICY p ON rls_t USING (%s)', bench_policy(variant));
END \$\$;
GRANT EXECUTE ON FUNCTION bench_set_policy(text) TO "bench@example.com";
SELECT count(*) FROM rls_t;
SQL

# The plans, for the record (and to see which policies are evaluated once per statement).
{
    for v in "${VARIANTS[@]}"; do
        echo "\\echo == $v: USING ($(q main postgres "SELECT bench_policy('$v')"))"
        echo "SELECT bench_set_policy('$v');"
        echo "EXPLAIN (COSTS OFF) SELECT count(*) FROM rls_t;"
    done
} | psql_script main "bench@example.com" | grep -v '^$' >"$BENCH_DIR/rls.plans"
c_plan=$(awk '/^== c:/ { on = 1; next } /^== / { on = 0 } on' "$BENCH_DIR/rls.plans")
if grep -q 'InitPlan' <<<"$c_plan"; then c_how="InitPlan: once per statement"; else c_how="SubPlan: per row"; fi
# What one evaluation of the naive subquery costs (its node in EXPLAIN ANALYZE; oncall.shifts
# holds the 10,000 synced shifts when bench/sync ran first).
c_eval=$(printf '%s\n' "SELECT bench_set_policy('c');" "EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM rls_t;" |
    psql_script main "bench@example.com" | tee -a "$BENCH_DIR/rls.plans" |
    awk '/InitPlan|SubPlan/ { getline; if (match($0, /actual time=[0-9.]+\.\.[0-9.]+/)) { split(substr($0, RSTART + 12, RLENGTH - 12), t, "\\.\\."); print t[2]; exit } }')
shifts_rows=$(q main postgres "SELECT count(*) FROM oncall.shifts")

{
    echo "SET max_parallel_workers_per_gather = 0;"
    for ((r = 0; r < ROUNDS; r++)); do
        for v in $(rotate "$r" "${VARIANTS[@]}"); do
            echo "SELECT bench_set_policy('$v');"
            echo "SELECT count(*) FROM rls_t;"
            for ((k = 0; k < K; k++)); do
                echo "@@ $v.$r"
                echo "SELECT count(*) FROM rls_t;"
            done
        done
    done
} | timed_psql main "bench@example.com" >"$BENCH_DIR/rls.timings"
awk -v n="$ROWS" '$3 != n || $4 == "" { bad = 1 } END { exit bad }' "$BENCH_DIR/rls.timings" ||
    die "bench@example.com did not see all $ROWS rows under every policy (not on call?)"
[ "$(wc -l <"$BENCH_DIR/rls.timings")" -eq $((ROUNDS * K * ${#VARIANTS[@]})) ] || die "rls: missing timings"

# per-round medians: "variant round wall_ms cpu_ms"
awk '{ split($1, t, "."); print t[1], t[2], $2, $4 }' "$BENCH_DIR/rls.timings" | awk '
    function med(list,   n, x, i, j, tmp) {
        n = split(list, x, " ")
        for (i = 2; i <= n; i++) for (j = i; j > 1 && x[j - 1] + 0 > x[j] + 0; j--) { tmp = x[j]; x[j] = x[j - 1]; x[j - 1] = tmp }
        return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
    }
    { key = $1 " " $2; w[key] = w[key] " " $3; c[key] = c[key] " " $4 }
    END { for (key in w) print key, med(w[key]), med(c[key]) }' >"$BENCH_DIR/rls.rounds"
# ms VARIANT [wall|cpu]: median over rounds; paired X Y [wall|cpu]: median over rounds of X/Y.
ms() { awk -v v="$1" -v f="$([ "${2:-cpu}" = wall ] && echo 3 || echo 4)" '$1 == v { print $f }' "$BENCH_DIR/rls.rounds" | median; }
paired() {
    awk -v x="$1" -v y="$2" -v f="$([ "${3:-cpu}" = wall ] && echo 3 || echo 4)" '$1 == x { a[$2] = $f } $1 == y { b[$2] = $f } END { for (r in a) if (b[r] > 0) printf "%.4f\n", a[r] / b[r] }' \
        "$BENCH_DIR/rls.rounds" | median
}
vs() { echo "$1 $(fmt "$(ms "$3")") ms vs $2 $(fmt "$(ms "$4")") ms CPU (wall $(fmt "$(ms "$3" wall)") vs $(fmt "$(ms "$4" wall)") ms, ratio $(fmt "$(paired "$3" "$4" wall)" 3))"; }
row() { # label X Y target-op target [X-label Y-label]
    local label=$1 x=$2 y=$3 op=$4 target=$5 rt
    rt=$(paired "$x" "$y")
    record "$label" "$(vs "${6:-$x}" "${7:-$y}" "$x" "$y")" "$(fmt "$rt" 3)" "$op $target" "$(check "$rt" "$op" "$target")"
}
record "rls: USING (true), reference (qual dropped by the planner)" "true $(fmt "$(ms true)") ms CPU (wall $(fmt "$(ms true wall)") ms)" "-" "-" "info"
row "rls (b)/(a): check_oncall_access() per row vs NOT pg_is_in_recovery() per row" b a '<=' 1.05
row "rls (b')/(a'): (SELECT check_oncall_access()) vs (SELECT NOT pg_is_in_recovery())" b1 a1 '<=' 1.05 "b'" "a'"
row "rls (d)/(d0): is_public OR check_oncall_access() vs is_public OR NOT pg_is_in_recovery()" d d0 '<=' 1.05
row "rls (c)/(b): naive EXISTS on oncall.shifts vs check_oncall_access() [(c) plan: $c_how]" c b '>=' 10
record "rls (c): one evaluation of the naive subquery ($shifts_rows rows in oncall.shifts)" "${c_eval:-?} ms (EXPLAIN ANALYZE); check_oncall_access() per call: $(awk -v b="$(ms b)" -v a="$(ms a)" -v n=$ROWS 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }') ns over NOT pg_is_in_recovery()" "-" "-" "info"
rt=$(paired c b1)
record "rls (c)/(b'): naive EXISTS vs (SELECT check_oncall_access()), both once per statement" "$(vs c "b'" c b1)" "$(fmt "$rt" 3)" "-" "info"
per_row() { awk -v x="$(ms "$1")" -v t="$(ms true)" -v n=$ROWS 'BEGIN { printf "%+.1f", (x - t) * 1e6 / n }'; }
record "rls: CPU per row over USING (true)" "a $(per_row a) ns, b $(per_row b) ns, d0 $(per_row d0) ns, d $(per_row d) ns, a' $(per_row a1) ns, b' $(per_row b1) ns, c $(per_row c) ns" "-" "-" "info"
