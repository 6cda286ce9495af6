#!/usr/bin/env bash
# bench/statement: pgbench (-n, one client) running `SELECT 1` as bench@example.com with a role
# current for the whole connection, set at login with PGOPTIONS='-c role=r' (the login passes
# the gate: bench is on call), so every statement goes through the ExecutorStart re-check:
#   gated    r = bench_gated on `main`
#   ungated  r = bench_plain on `main`
#   nolib    r = bench_gated on `nolib` (library not preloaded)
#   norole   no role set, on `main` (the re-check returns at once)
# Each run is measured by wall-clock TPS and by CPU-normalized TPS (transactions per second of
# CPU spent by the backends and pgbench, see bench/lib.sh); targets apply to the latter.
# Interleaved rounds. Target: gated/ungated TPS ≥ 0.97.
set -euo pipefail
. "$REPO/bench/lib.sh"
S=$REPO/bench/statement/select1.sql
OUT=$BENCH_DIR/statement.tps
: >"$OUT"
pgbench_interleaved "$OUT" "$BENCH_ROUNDS" "$BENCH_SECS" \
    "gated|main|bench@example.com|$S|-c role=bench_gated|" \
    "ungated|main|bench@example.com|$S|-c role=bench_plain|" \
    "nolib|nolib|bench@example.com|$S|-c role=bench_gated|" \
    "norole|main|bench@example.com|$S||"
pgbench_report "$OUT" "statement: gated/ungated TPS (SELECT 1 with the role current)" gated ungated 0.97 TPS
pgbench_report "$OUT" "statement: gated/no-library TPS" gated nolib - TPS
pgbench_report "$OUT" "statement: gated/no role set TPS (same cluster)" gated norole - TPS
