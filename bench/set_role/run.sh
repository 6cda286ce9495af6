#!/usr/bin/env bash
# bench/set_role: pgbench (-n, one client) running `SET ROLE r; RESET ROLE;` as bench@example.com:
#   gated    r = bench_gated, gated on `main` (bench is on call: every SET ROLE is allowed, and
#            logged: one `pg_oncall: allow` LOG line each, as DESIGN.md requires)
#   ungated  r = bench_plain on `main` (library loaded, role not gated)
#   nolib    r = bench_gated on `nolib` (library not preloaded)
# and, to see where the gated cost goes (DESIGN.md asks one LOG line per allowed switch):
#   gated_nostmt  as gated, session user nostmt@example.com: log_min_error_statement = panic, so
#                 PostgreSQL does not add its STATEMENT line after each audit line
#   gated_nolog   as gated, session user quiet@example.com: log_min_messages = fatal, so the audit
#                 line is built by pg_oncall but not emitted
# Each run is measured by wall-clock TPS and by CPU-normalized TPS (transactions per second of
# CPU spent by the backends and pgbench, see bench/lib.sh); targets apply to the latter.
# Interleaved rounds (bench/lib.sh pgbench_interleaved). Target: gated/ungated TPS ≥ 0.95.
set -euo pipefail
. "$REPO/bench/lib.sh"
D=$REPO/bench/set_role
OUT=$BENCH_DIR/set_role.tps
: >"$OUT"
pgbench_interleaved "$OUT" "$BENCH_ROUNDS" "$BENCH_SECS" \
    "gated|main|bench@example.com|$D/gated.sql||" \
    "ungated|main|bench@example.com|$D/ungated.sql||" \
    "nolib|nolib|bench@example.com|$D/gated.sql||" \
    "gated_nostmt|main|nostmt@example.com|$D/gated.sql||" \
    "gated_nolog|main|quiet@example.com|$D/gated.sql||"
pgbench_report "$OUT" "set_role: gated/ungated TPS (SET ROLE r; RESET ROLE)" gated ungated 0.95 TPS
pgbench_report "$OUT" "set_role: gated/no-library TPS" gated nolib - TPS
pgbench_report "$OUT" "set_role: ungated/no-library TPS" ungated nolib - TPS
pgbench_report "$OUT" "set_role: gated without PostgreSQL's STATEMENT line / ungated" gated_nostmt ungated - TPS
pgbench_report "$OUT" "set_role: gated with the audit line not emitted / ungated" gated_nolog ungated - TPS
