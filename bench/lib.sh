# Shared helpers for the pg_oncall benchmarks; sourced by bench/run.sh and by each bench's run.sh.
# Needs: BENCH_DIR (the run's directory), BINDIR (PostgreSQL's bindir), RESULTS (the TSV file the
# figures are appended to). Clusters live in $BENCH_DIR/<name>/ (data/, server.log, the socket).

# die, IS_ROOT, as_postgres, new_token_file, start_fake_pagerduty, start_on_free_port
LIB_NAME=bench
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

log() { echo "bench: $*" >&2; }

# BENCH_CPU: the one CPU the clusters (every process they fork) and the pgbench client run on, so
# that client and server ping-pong on one core instead of migrating between cores (which makes
# single-client runs swing by 2-5x under other load here); BENCH_CPU=none disables pinning.
BENCH_CPU=${BENCH_CPU:-$(($(nproc) - 1))}
PIN=()
if [ "$BENCH_CPU" != none ] && command -v taskset >/dev/null; then PIN=(taskset -c "$BENCH_CPU"); fi
pinned() { "${PIN[@]}" "$@"; }
pinned_as_postgres() { as_postgres "${PIN[@]}" "$@"; }

# cluster_port NAME: the port a cluster listens on (written by cluster_create).
cluster_port() { cat "$BENCH_DIR/$1/port"; }

# cluster_create NAME PRELOAD(yes|no) [extra postgresql.conf lines...]
# initdb, configuration shared by every cluster of the run, a free port, start (bounded).
cluster_create() {
    local name=$1 preload=$2
    shift 2
    local dir=$BENCH_DIR/$name
    mkdir -p "$dir"
    [ -z "$IS_ROOT" ] || chown postgres:postgres "$dir"
    as_postgres timeout 120 "$BINDIR/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C -N \
        >"$dir/initdb.log" 2>&1 || die "initdb $name failed: $(tail -n 5 "$dir/initdb.log")"
    {
        echo
        echo "# ---- pg_oncall bench (bench/run.sh)"
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$dir'"
        # Same settings on every cluster so that the variants differ only in what is measured.
        echo "shared_buffers = '256MB'"
        echo "max_parallel_workers_per_gather = 0   # as in notes/performance-facts.md"
        echo "jit = off                             # no compile time in the 1M-row scans"
        echo "autovacuum = off                      # no background vacuum during timings (tables are vacuumed once)"
        echo "fsync = off                           # throw-away cluster; the timed paths do not write"
        echo "synchronous_commit = off"
        echo "log_line_prefix = '%m [%p] '"
        echo "max_connections = 50"
        if [ "$preload" = yes ]; then
            echo "shared_preload_libraries = 'pg_oncall'"
            echo "pg_oncall.database = 'postgres'"
        fi
        for line in "$@"; do echo "$line"; done
    } >>"$dir/data/postgresql.conf"
    start_on_free_port "$dir/data" "$dir/server.log" "$dir/pg_ctl.log" \
        pinned_as_postgres timeout 90 "$BINDIR/pg_ctl" -D "$dir/data" -p "${POSTGRES_BIN:-$BINDIR/postgres}" -l "$dir/server.log" -w -t 60 start
    echo "$PORT" >"$dir/port"
    log "cluster $name: port $PORT, preload=$preload, data $dir/data"
}

cluster_stop() {
    local dir=$BENCH_DIR/$1
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_postgres timeout 60 "$BINDIR/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >>"$dir/pg_ctl.log" 2>&1 ||
        as_postgres timeout 30 "$BINDIR/pg_ctl" -D "$dir/data" -m immediate -w -t 20 stop >>"$dir/pg_ctl.log" 2>&1 || true
}

cluster_pid() { head -n 1 "$BENCH_DIR/$1/data/postmaster.pid"; }

# conninfo CLUSTER USER
conninfo() { echo "host=$BENCH_DIR/$1 port=$(cluster_port "$1") dbname=postgres user=$2"; }

# q CLUSTER USER SQL: one statement, unaligned tuples only, errors fatal.
q() {
    PGCONNECT_TIMEOUT=10 timeout 300 "$BINDIR/psql" -X -qAt -v ON_ERROR_STOP=1 "$(conninfo "$1" "$2")" -c "$3"
}

# psql_script CLUSTER USER: a script on stdin; output on stdout.
psql_script() {
    PGCONNECT_TIMEOUT=10 timeout 600 "$BINDIR/psql" -X -qAt -v ON_ERROR_STOP=1 "$(conninfo "$1" "$2")"
}

# median: of the numbers on stdin, one a line.
median() {
    awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit } if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# spread [DIGITS]: "min-max" of the numbers on stdin.
spread() {
    awk 'NF' | sort -g | awk -v d="${1:-1}" 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.*f-%.*f", d, lo, d, hi }'
}

# ratio A B [digits]: A / B
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-3}" 'BEGIN { if (b == 0) print "nan"; else printf "%.*f", d, a / b }'; }

# fmt NUMBER [digits]
fmt() { awk -v a="$1" -v d="${2:-1}" 'BEGIN { printf "%.*f", d, a }'; }

# check VALUE OP LIMIT: PASS or MISS (OP is <= or >=)
check() {
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (v == "nan" || v == "") { print "MISS"; exit }
        ok = (op == "<=") ? (v + 0 <= l + 0) : (v + 0 >= l + 0)
        print ok ? "PASS" : "MISS" }'
}

# record FIGURE VALUES RATIO TARGET RESULT: one row of the results table (TSV).
record() {
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RESULTS"
    log "  $1: $2  ratio=$3  target=$4  $5"
}

# rotate ROUND ITEMS...: the items rotated left by ROUND (interleaving without a fixed order).
rotate() {
    local r=$1
    shift
    local n=$#
    local items=("$@") i
    for ((i = 0; i < n; i++)); do echo "${items[$(((i + r) % n))]}"; done
}

# cluster_cpu_ticks CLUSTER: CPU time (clock ticks) of the postmaster and of all its children
# that have exited (backends of finished connections): utime+stime+cutime+cstime.
cluster_cpu_ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$(cluster_pid "$1")/stat"; }
cluster_children() { pgrep -P "$(cluster_pid "$1")" | wc -l; }

# pgbench_run CLUSTER USER SCRIPT SECONDS [extra pgbench args...]: one single-client run (-n).
# Prints "TPS TRANSACTIONS SERVER_CPU_MS CLIENT_CPU_MS": wall-clock TPS as pgbench reports it,
# the CPU time of the backends that served it (exited and reaped by the postmaster: every
# connection of the run is over when pgbench returns), and pgbench's own CPU time.
pgbench_run() {
    local cluster=$1 user=$2 script=$3 secs=$4
    shift 4
    local out n0 c0 c1 tps txns client i
    n0=$(cluster_children "$cluster")
    c0=$(cluster_cpu_ticks "$cluster")
    out=$(
        PGCONNECT_TIMEOUT=10 pinned timeout $((secs + 60)) "$BINDIR/pgbench" -n -c 1 -j 1 -T "$secs" -f "$script" \
            -h "$BENCH_DIR/$cluster" -p "$(cluster_port "$cluster")" -U "$user" "$@" postgres 2>&1 || echo "PGBENCH FAILED"
        times
    )
    ! grep -q 'PGBENCH FAILED' <<<"$out" || die "pgbench on $cluster as $user failed: $(tail -n 8 <<<"$out")"
    for i in $(seq 200); do # wait (up to 2 s) until the run's backends have exited and been reaped
        [ "$(cluster_children "$cluster")" -le "$n0" ] && break
        sleep 0.01
    done
    c1=$(cluster_cpu_ticks "$cluster")
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -n 1)
    txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out" | head -n 1)
    [ -n "$tps" ] && [ -n "$txns" ] || die "no tps in pgbench output: $out"
    if grep -q 'number of failed transactions: [1-9]' <<<"$out"; then
        die "pgbench on $cluster as $user: failed transactions: $out"
    fi
    # `times`: the second line is the children's user and system time (pgbench, via timeout).
    client=$(tail -n 1 <<<"$out" | awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); n += p[1] * 60 + p[2] } printf "%.1f", n * 1000 }')
    echo "$tps $txns $(awk -v a="$c0" -v b="$c1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (b - a) * 1000 / hz }') $client"
}

# timed_psql CLUSTER USER: runs the psql script on stdin with \timing on. Each statement to be
# timed is preceded by a line `@@ TAG`. Prints one line "TAG WALL_MS RESULT CPU_MS" per timed
# statement: psql's wall-clock time, its last output line (e.g. a count), and the CPU time the
# backend spent from just before to just after it (/proc/self/schedstat read by bench_cpu_ns(),
# which setup_cpu_probe creates; the probe statements add a constant ~0.1 ms).
timed_psql() {
    { echo '\timing on'; awk '/^@@ / { print "SELECT \x27CPU0\x27, bench_cpu_ns();"; print "\\echo " $0; pending = 1; next }
                              { print } pending && /;[[:space:]]*$/ { print "SELECT \x27CPU1\x27, bench_cpu_ns();"; pending = 0 }'; } |
        psql_script "$1" "$2" | awk -F'|' '
        $1 == "CPU0" { c0 = $2; next }
        /^@@ / { split($0, w, " "); cur = w[2]; res = ""; t = ""; next }
        $1 == "CPU1" { if (cur != "") printf "%s %s %s %.3f\n", cur, t, (res == "" ? "-" : res), ($2 - c0) / 1e6; cur = ""; next }
        /^Time: / { if (cur != "" && t == "") { split($0, w, " "); t = w[2] } next }
        { if (cur != "" && t == "") res = $0 }'
}

# setup_cpu_probe CLUSTER: bench_cpu_ns(), this backend's CPU time in ns (for timed_psql).
setup_cpu_probe() {
    psql_script "$1" postgres >/dev/null <<'SQL'
CREATE OR REPLACE FUNCTION public.bench_cpu_ns() RETURNS bigint LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog AS $$ SELECT split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint $$;
GRANT EXECUTE ON FUNCTION public.bench_cpu_ns() TO PUBLIC;
SQL
}

# pick TAG < timed lines: the MS values of TAG, one a line.
pick() { awk -v t="$1" '$1 == t { print $2 }'; }

# pgbench_interleaved OUT ROUNDS SECS SPEC...: SPEC is "id|cluster|user|script|PGOPTIONS|extra args".
# One warm-up run (1 s) per variant, then ROUNDS rounds of one SECS-second run per variant, the
# order rotating each round. Appends "id round tps txns server_cpu_ms client_cpu_ms" to OUT.
pgbench_interleaved() {
    local out=$1 rounds=$2 secs=$3
    shift 3
    local specs=("$@") r i spec id cluster user script opts extra res n=$#
    for spec in "${specs[@]}"; do
        IFS='|' read -r id cluster user script opts extra <<<"$spec"
        # shellcheck disable=SC2086
        PGOPTIONS=$opts pgbench_run "$cluster" "$user" "$script" 1 $extra >/dev/null
    done
    for ((r = 0; r < rounds; r++)); do
        for ((i = 0; i < n; i++)); do
            spec=${specs[$(((i + r) % n))]}
            IFS='|' read -r id cluster user script opts extra <<<"$spec"
            # shellcheck disable=SC2086
            res=$(PGOPTIONS=$opts pgbench_run "$cluster" "$user" "$script" "$secs" $extra)
            echo "$id $r $res" >>"$out"
        done
    done
}

# Per run in OUT: wall TPS ($3), and CPU-normalized TPS: transactions per second of CPU time
# spent on them by server and client together ($4 / ($5 + $6) ms) — what one client would get
# on an otherwise idle machine, insensitive to other load on the host.
# tps_median OUT ID [wall|cpu]; tps_ratio OUT X Y [wall|cpu]: median over rounds of X/Y.
tps_of() { awk -v m="${1:-cpu}" '{ print $1, $2, (m == "wall" ? $3 : $4 * 1000 / ($5 + $6)) }'; }
tps_median() { tps_of "${3:-cpu}" <"$1" | awk -v v="$2" '$1 == v { print $3 }' | median; }
tps_ratio() {
    tps_of "${4:-cpu}" <"$1" |
        awk -v x="$2" -v y="$3" '$1 == x { a[$2] = $3 } $1 == y { b[$2] = $3 } END { for (r in a) if (b[r] > 0) printf "%.4f\n", a[r] / b[r] }' | median
}
# cpu_per_txn OUT ID [server|client]: median µs of CPU per transaction.
cpu_per_txn() { awk -v v="$2" -v w="${3:-server}" '$1 == v { print (w == "server" ? $5 : $6) * 1000 / $4 }' "$1" | median; }

# pgbench_report OUT LABEL X Y TARGET UNIT: the result row of X vs Y (target on the CPU-normalized
# ratio; the wall-clock ratio and the server CPU per transaction are shown beside it).
pgbench_report() {
    local out=$1 label=$2 x=$3 y=$4 target=$5 unit=$6 rt wall result
    rt=$(tps_ratio "$out" "$x" "$y" cpu)
    wall=$(tps_ratio "$out" "$x" "$y" wall)
    result=info
    [ "$target" = "-" ] || result=$(check "$rt" '>=' "$target")
    record "$label" "$x $(fmt "$(tps_median "$out" "$x")" 0) vs $y $(fmt "$(tps_median "$out" "$y")" 0) $unit (CPU-normalized); server CPU $(fmt "$(cpu_per_txn "$out" "$x")" 1) vs $(fmt "$(cpu_per_txn "$out" "$y")" 1) us/txn; wall-clock $(fmt "$(tps_median "$out" "$x" wall)" 0) vs $(fmt "$(tps_median "$out" "$y" wall)" 0), ratio $(fmt "$wall" 3)" \
        "$(fmt "$rt" 3)" "$([ "$target" = "-" ] && echo - || echo ">= $target")" "$result"
}
