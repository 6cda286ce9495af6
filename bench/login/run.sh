#!/usr/bin/env bash
# bench/login: pgbench -C (a new connection per transaction, one client) running `SELECT 1`:
#   gated    logging in as login_gated@example.com, gated with gate_login on `main` (its own
#            identity is on call through a manual shift; each login is decided and logged)
#   ungated  logging in as login_plain@example.com on `main`
#   nolib    logging in as login_gated@example.com on `nolib` (library not preloaded)
# Each run is measured by wall-clock TPS and by CPU-normalized TPS (transactions per second of
# CPU spent by the backends and pgbench, see bench/lib.sh); targets apply to the latter.
# Interleaved rounds. Target: gated/ungated connections per second ≥ 0.95.
set -euo pipefail
. "$REPO/bench/lib.sh"
S=$REPO/bench/login/select1.sql
OUT=$BENCH_DIR/login.tps
: >"$OUT"
pgbench_interleaved "$OUT" "$BENCH_ROUNDS" "$BENCH_SECS" \
    "gated|main|login_gated@example.com|$S||-C" \
    "ungated|main|login_plain@example.com|$S||-C" \
    "nolib|nolib|login_gated@example.com|$S||-C"
pgbench_report "$OUT" "login: gated/ungated connections/s (pgbench -C)" gated ungated 0.95 conn/s
pgbench_report "$OUT" "login: gated/no-library connections/s" gated nolib - conn/s
pgbench_report "$OUT" "login: ungated/no-library connections/s" ungated nolib - conn/s
