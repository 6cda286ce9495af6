#!/usr/bin/env bash
# pg_oncall benchmarks: `make bench` (setup + release install first), or `bash bench/run.sh [BENCH...]`
# with BENCH among sync rls set_role statement login (default: all, in that order).
#
# Every figure is a ratio of variants measured side by side in this run, on the same clusters,
# interleaved round by round (the order rotates each round), repeated, and reduced by medians;
# nothing here is a timing assertion. The run:
#   1. snapshots the PostgreSQL that PG_CONFIG names (`make bench [PG=18]`: a private tree of that
#      major made by scripts/pgtree.sh) into a private, relocated tree with a verified
#      *release* pg_oncall.so (other sessions' `make test-e2e` installs debug builds over the
#      system library at any time; a running cluster keeps the file it mapped, but each new
#      cluster would pick up whatever is installed at that moment);
#   2. starts the fake PagerDuty (target/release/fake-pagerduty, built by cargo) and two
#      clusters from that tree: `main` (pg_oncall preloaded) and `nolib` (not preloaded);
#   3. runs the benches (bench/<name>/run.sh), each appending rows to the results table;
#   4. prints the table (figure, values, ratio, target, PASS/MISS) and writes
#      bench/results-latest.txt.
# Bounded: BENCH_TIME_LIMIT seconds (default 540) for the whole run; the clusters and the fake
# are stopped and the run directory removed at exit (BENCH_KEEP=1 keeps the directory).
#
# Knobs: BENCH_PACKAGE (a `cargo pgrx package --out-dir` tree to measure instead of the installed
# build), BENCH_ROUNDS (pgbench rounds, default 7), BENCH_SECS (seconds per pgbench run, default 3),
# RLS_ROUNDS (default 11), SYNC_ROUNDS (default 3), BENCH_CPU (the CPU the clusters and pgbench
# are pinned to, default the last one; `none` to not pin), PG_CONFIG.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export REPO
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
if [ -n "${PG_ONCALL_CHROOT:-}" ]; then
    echo "bench: the benchmarks run servers directly, not in a chroot (PG_ONCALL_CHROOT): use a major whose programs run on this machine (15, 18)" >&2
    exit 2
fi
BINDIR=$("$PG_CONFIG" --bindir)
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
SHAREDIR=$("$PG_CONFIG" --sharedir)
export BINDIR
export BENCH_ROUNDS=${BENCH_ROUNDS:-7}
export BENCH_SECS=${BENCH_SECS:-3}
export RLS_ROUNDS=${RLS_ROUNDS:-11}
TIME_LIMIT=${BENCH_TIME_LIMIT:-540}
ALL_BENCHES=(sync rls set_role statement login)
if [ $# -gt 0 ]; then BENCHES=("$@"); else BENCHES=("${ALL_BENCHES[@]}"); fi
for b in "${BENCHES[@]}"; do
    [ -f "$REPO/bench/$b/run.sh" ] || { echo "bench: unknown bench $b (known: ${ALL_BENCHES[*]})" >&2; exit 2; }
done

STARTED=$(date +%s)
# The commit and working-tree state being measured, read now (the tree may change during the run).
GIT_STATE="git $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" && git diff --quiet HEAD -- src core sql Cargo.toml 2>/dev/null || echo '+uncommitted changes in src/core/sql')"
BENCH_DIR=$(mktemp -d /tmp/pg_oncall-bench.XXXXXX)
chmod 0755 "$BENCH_DIR"
export BENCH_DIR
export RESULTS=$BENCH_DIR/results.tsv
: >"$RESULTS"
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"

FAKE_PID=""
WATCHDOG_PID=""
CLUSTERS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -z "$WATCHDOG_PID" ] || kill "$WATCHDOG_PID" 2>/dev/null || true
    if [ "$rc" -ne 0 ]; then
        echo "bench: FAILED (exit $rc)" >&2
        for c in "${CLUSTERS[@]}"; do
            [ -f "$BENCH_DIR/$c/server.log" ] || continue
            echo "bench: last lines of the $c server log:" >&2
            grep -v 'pg_oncall: allow ' "$BENCH_DIR/$c/server.log" | tail -n 15 | sed 's/^/    /' >&2
        done
    fi
    for c in "${CLUSTERS[@]}"; do cluster_stop "$c"; done
    if [ -n "$FAKE_PID" ]; then
        kill "$FAKE_PID" 2>/dev/null || true
        wait "$FAKE_PID" 2>/dev/null || true
    fi
    if [ "${BENCH_KEEP:-}" = 1 ]; then
        echo "bench: kept $BENCH_DIR" >&2
    else
        rm -rf "$BENCH_DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'echo "bench: time limit (${TIME_LIMIT}s) reached or terminated" >&2; exit 124' TERM
(
    sleep "$TIME_LIMIT" &
    sleeper=$!
    trap 'kill $sleeper 2>/dev/null; exit 0' TERM
    wait $sleeper
    kill -TERM $$ 2>/dev/null
) </dev/null >/dev/null 2>&1 &
WATCHDOG_PID=$!

for prog in psql pgbench initdb pg_ctl postgres; do
    [ -x "$BINDIR/$prog" ] || die "$BINDIR/$prog is missing (make setup)"
done
command -v curl >/dev/null || die "curl is missing"
if [ -n "$IS_ROOT" ]; then id postgres >/dev/null 2>&1 || die "the postgres OS user is missing"; fi

# ---------------------------------------------------------------- 1. a private PostgreSQL tree

is_release_so() {
    if command -v readelf >/dev/null; then
        ! readelf -S "$1" 2>/dev/null | grep -q '\.debug_info'
    else
        [ "$(stat -c %s "$1")" -lt 40000000 ]
    fi
}

# PostgreSQL finds its lib and share directories relative to the postgres executable (a
# relocatable installation): <root>/lib/postgresql/15/bin/postgres → <root>/lib/postgresql/15/lib,
# <root>/share/postgresql/15. Everything is a symbolic link to the system installation except
# the postgres executable and pg_oncall's files, which are copies taken now.
PGROOT=$BENCH_DIR/pg
# The installation's prefix: <prefix>/lib/postgresql/15/bin (Debian), <prefix>/bin (the PyPI wheel).
PREFIX=${BINDIR%/lib/*}
[ "$PREFIX" != "$BINDIR" ] || PREFIX=$(dirname "$BINDIR")
rel_bin=${BINDIR#"$PREFIX"/}
rel_lib=${PKGLIBDIR#"$PREFIX"/}
rel_share=${SHAREDIR#"$PREFIX"/}
[ "$rel_bin" != "$BINDIR" ] && [ "$rel_lib" != "$PKGLIBDIR" ] && [ "$rel_share" != "$SHAREDIR" ] ||
    die "expected bindir, pkglibdir and sharedir under one prefix ($PREFIX)"
mkdir -p "$PGROOT/$rel_bin" "$PGROOT/$rel_lib" "$PGROOT/$rel_share/extension"
cp "$BINDIR/postgres" "$PGROOT/$rel_bin/postgres"
for f in "$PKGLIBDIR"/*; do [ "$(basename "$f")" = pg_oncall.so ] || ln -s "$f" "$PGROOT/$rel_lib/"; done
for f in "$SHAREDIR"/*; do [ "$(basename "$f")" = extension ] || ln -s "$f" "$PGROOT/$rel_share/"; done
# BENCH_PACKAGE: a `cargo pgrx package --out-dir DIR` tree to benchmark instead of the installed
# build (to compare a candidate change: library and SQL are both taken from it).
EXT_FROM=$SHAREDIR/extension
SO_CANDIDATES=("$PKGLIBDIR/pg_oncall.so" "$REPO/target/release/libpg_oncall.so")
if [ -n "${BENCH_PACKAGE:-}" ]; then
    EXT_FROM=$BENCH_PACKAGE$SHAREDIR/extension
    SO_CANDIDATES=("$BENCH_PACKAGE$PKGLIBDIR/pg_oncall.so")
fi
for f in "$SHAREDIR"/extension/*; do
    case "$(basename "$f")" in pg_oncall*) ;; *) ln -s "$f" "$PGROOT/$rel_share/extension/" ;; esac
done
cp "$EXT_FROM"/pg_oncall* "$PGROOT/$rel_share/extension/" || die "no pg_oncall extension files in $EXT_FROM"
SO=$PGROOT/$rel_lib/pg_oncall.so
SO_FROM=""
for candidate in "${SO_CANDIDATES[@]}"; do
    [ -f "$candidate" ] || continue
    cp "$candidate" "$SO.tmp"
    if is_release_so "$SO.tmp"; then
        mv "$SO.tmp" "$SO"
        SO_FROM=$candidate
        break
    fi
    log "$candidate is a debug build (has .debug_info); not benchmarking it"
    rm -f "$SO.tmp"
done
[ -n "$SO_FROM" ] || die "no release build of pg_oncall.so found (run make install, or make bench)"
[ -f "$PGROOT/$rel_share/extension/pg_oncall.control" ] || die "pg_oncall is not installed in $SHAREDIR (make install)"
# The SQL script and the library must come from the same build: every C symbol the script
# names must be exported by the library.
if command -v nm >/dev/null; then
    exported=$(nm -D --defined-only "$SO" | awk '{ print $NF }')
    for sym in $(grep -ho "AS 'MODULE_PATHNAME', '[^']*'" "$PGROOT/$rel_share/extension"/pg_oncall--*.sql | sed "s/.*, '\(.*\)'/\1/" | sort -u); do
        grep -qx "$sym" <<<"$exported" ||
            die "$SO_FROM does not export $sym, which the installed SQL script uses: the library and $SHAREDIR/extension are from different builds (run make bench, which installs a release build first)"
    done
fi
chmod -R a+rX "$PGROOT"
export POSTGRES_BIN=$PGROOT/$rel_bin/postgres
SO_SHA=$(sha256sum "$SO" | cut -c1-16)
log "pg_oncall.so: release build from $SO_FROM (sha256 $SO_SHA...), private tree $PGROOT"

# ---------------------------------------------------------------- 2. the fake PagerDuty and the clusters

FAKE_BIN=$REPO/target/release/fake-pagerduty
# Always through cargo: a binary older than the fake's sources would not speak today's API.
log "building the fake PagerDuty (cargo build --release -p fake-pagerduty; quick when up to date)"
(cd "$REPO" && cargo build --release -q -p fake-pagerduty) || die "cannot build the fake PagerDuty"
TOKEN_FILE=$BENCH_DIR/pagerduty.token
new_token_file "$TOKEN_FILE" bench
bash "$REPO/bench/sync/schedule.sh" small >"$BENCH_DIR/schedule-small.json"
start_fake_pagerduty "$FAKE_BIN" "$TOKEN_FILE" "$BENCH_DIR/schedule-small.json" "$BENCH_DIR/fake-pagerduty.log"
export FAKE_URL
log "fake PagerDuty $FAKE_URL (pid $FAKE_PID)"

CLUSTERS=(main nolib)
# 10,000 PagerDuty shifts (bench/sync) plus the manual ones: above the default capacity of 10,000.
cluster_create main yes \
    "pg_oncall.pagerduty_api_url = '$FAKE_URL'" \
    "pg_oncall.pagerduty_token_file = '$TOKEN_FILE'" \
    "pg_oncall.refresh_interval = '1h'          # syncs only when the bench asks (oncall.refresh())" \
    "pg_oncall.max_shifts = 10100"
cluster_create nolib no

# Roles (same names on both clusters; gated only on main):
#   "bench@example.com"        LOGIN NOINHERIT, the session user; on call by a manual shift
#   bench_gated / bench_plain  NOLOGIN, granted to bench; bench_gated is gated on main
#   "login_gated@example.com"  LOGIN, gated with gate_login on main, on call by a manual shift
#   "login_plain@example.com"  LOGIN, not gated
#   "probe@example.com"        LOGIN, on call only in the big PagerDuty schedule (bench/sync)
#   "quiet@example.com", "nostmt@example.com"  like bench, with the audit LOG line suppressed
#                              (log_min_messages = fatal) or without the STATEMENT line PostgreSQL
#                              adds to it (log_min_error_statement = panic): bench/set_role
ROLES_SQL='
CREATE ROLE "bench@example.com" LOGIN NOINHERIT;
CREATE ROLE bench_gated NOLOGIN;
CREATE ROLE bench_plain NOLOGIN;
GRANT bench_gated, bench_plain TO "bench@example.com";
CREATE ROLE "login_gated@example.com" LOGIN;
CREATE ROLE "login_plain@example.com" LOGIN;
CREATE ROLE "probe@example.com" LOGIN;
CREATE ROLE "quiet@example.com" LOGIN NOINHERIT;
CREATE ROLE "nostmt@example.com" LOGIN NOINHERIT;
GRANT bench_gated, bench_plain TO "quiet@example.com", "nostmt@example.com";
ALTER ROLE "quiet@example.com" SET log_min_messages = fatal;
ALTER ROLE "nostmt@example.com" SET log_min_error_statement = panic;
'
psql_script main postgres >/dev/null <<SQL
CREATE EXTENSION pg_oncall;
$ROLES_SQL
SELECT oncall.gate_role('bench_gated');
SELECT oncall.gate_role('login_gated@example.com', gate_login => true);
INSERT INTO oncall.shifts (source, email, reason) VALUES
    ('manual', 'bench@example.com', 'bench'), ('manual', 'login_gated@example.com', 'bench'),
    ('manual', 'quiet@example.com', 'bench'), ('manual', 'nostmt@example.com', 'bench');
SQL
psql_script nolib postgres >/dev/null <<<"$ROLES_SQL"
setup_cpu_probe main
[ -n "$(q main postgres "SELECT bench_cpu_ns()")" ] || die "cannot read /proc/self/schedstat"

# The worker syncs the small schedule at start and loads the snapshot: wait for both (bounded).
ready=""
for _ in $(seq 300); do
    if [ "$(q main postgres "SELECT syncs_ok > 0 FROM oncall.status()" 2>/dev/null)" = t ] &&
        [ "$(q main "bench@example.com" "SELECT oncall.check_oncall_access()" 2>/dev/null)" = t ]; then
        ready=1
        break
    fi
    sleep 0.1
done
[ -n "$ready" ] || die "main: no successful sync or bench@example.com not on call after 30 s: $(q main postgres 'SELECT last_error FROM oncall.status()')"
q main "bench@example.com" "SET ROLE bench_gated; RESET ROLE" >/dev/null || die "main: SET ROLE bench_gated refused"
q main "login_gated@example.com" "SELECT 1" >/dev/null || die "main: login as login_gated@example.com refused"
# Both clusters run the private tree's postgres, and main maps the private release library.
for c in main nolib; do
    exe=$(readlink "/proc/$(cluster_pid "$c")/exe")
    [ "$exe" = "$POSTGRES_BIN" ] || die "$c runs $exe, not $POSTGRES_BIN"
done
grep -q "$SO" "/proc/$(cluster_pid main)/maps" || die "main has not mapped $SO"
! grep -q 'pg_oncall\.so' "/proc/$(cluster_pid nolib)/maps" || die "nolib has pg_oncall mapped"

# ---------------------------------------------------------------- 3. the benches

for b in "${BENCHES[@]}"; do
    log "---- $b"
    t0=$(date +%s)
    bash "$REPO/bench/$b/run.sh"
    log "---- $b done in $(($(date +%s) - t0)) s"
done

# ---------------------------------------------------------------- 4. the table

ELAPSED=$(($(date +%s) - STARTED))
OUT=$REPO/bench/results-latest.txt
{
    echo "pg_oncall bench on PostgreSQL $("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/') — $(date -u '+%Y-%m-%d %H:%M UTC'), run.sh took ${ELAPSED} s (benches: ${BENCHES[*]})"
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(free -h | awk '/^Mem:/ { print $2 }') RAM, load average at end $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "build: $GIT_STATE at start (the library is whatever make install built from the tree then), pg_oncall.so release (from $SO_FROM, sha256 $SO_SHA...), $("$BINDIR/postgres" --version)"
    echo "settings: rounds ${BENCH_ROUNDS} x ${BENCH_SECS}s per pgbench variant, ${RLS_ROUNDS} RLS rounds; ratios are medians of per-round ratios of"
    echo "          CPU time (RLS, decisions) or CPU-normalized TPS (pgbench: transactions per CPU-second of server + client);"
    echo "          wall-clock figures are shown beside them (other load on this host makes those noisy);"
    echo "          clusters and pgbench pinned to CPU ${BENCH_CPU} (BENCH_CPU)"
    echo
    awk -F'\t' '
        BEGIN { h[1] = "figure"; h[2] = "value(s)"; h[3] = "ratio"; h[4] = "target"; h[5] = "result" }
        { n++; for (i = 1; i <= 5; i++) { c[n, i] = $i; if (length($i) > w[i]) w[i] = length($i) } }
        END {
            for (i = 1; i <= 5; i++) if (length(h[i]) > w[i]) w[i] = length(h[i])
            line = ""; sep = ""
            for (i = 1; i <= 5; i++) { line = line sprintf("%-*s", w[i], h[i]) (i < 5 ? " | " : ""); sep = sep sprintf("%s", substr("----------------------------------------------------------------------------------------------------------------------------------------------------------------", 1, w[i])) (i < 5 ? "-+-" : "") }
            print line; print sep
            for (r = 1; r <= n; r++) { line = ""; for (i = 1; i <= 5; i++) line = line sprintf("%-*s", w[i], c[r, i]) (i < 5 ? " | " : ""); print line }
        }' "$RESULTS"
    misses=$(awk -F'\t' '$5 == "MISS"' "$RESULTS" | wc -l)
    passes=$(awk -F'\t' '$5 == "PASS"' "$RESULTS" | wc -l)
    echo
    echo "$passes PASS, $misses MISS"
    echo
    echo "---- raw data (per run / per round)"
    for f in sync.syncs sync.timings rls.rounds rls.plans set_role.tps statement.tps login.tps; do
        [ -s "$BENCH_DIR/$f" ] || continue
        echo
        case $f in
            sync.syncs) echo "# $f: schedule refresh_ms visible_ms shifts pages requests duration_ms" ;;
            sync.timings) echo "# $f: round query wall_ms count cpu_ms" ;;
            rls.rounds) echo "# $f: variant round wall_ms cpu_ms (medians of ${RLS_K:-3} queries)" ;;
            rls.plans) echo "# $f: EXPLAIN of each policy variant" ;;
            *) echo "# $f: variant round wall_tps transactions server_cpu_ms client_cpu_ms" ;;
        esac
        case $f in
            *.tps | rls.rounds) sort -k1,1 -k2,2n "$BENCH_DIR/$f" | sed 's/^/  /' ;;
            *) sed 's/^/  /' "$BENCH_DIR/$f" ;;
        esac
    done
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo
cat "$OUT"
echo
echo "(written to bench/results-latest.txt)"
