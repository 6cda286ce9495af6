# Sourced by the scripts (scripts/*.sh) and the benches (bench/lib.sh): the helpers they share,
# one copy each. Set LIB_NAME (the word before "error:" in messages) before sourcing.
#
#   die MESSAGE...              "<LIB_NAME>: error: MESSAGE" on stderr, exit 1
#   IS_ROOT                     1 when running as root, else empty
#   as_postgres CMD ARGS...     a PostgreSQL program as the server's OS user (when we are root),
#                               in PG_ONCALL_CHROOT when set
#   pg_client CMD ARGS...       a PostgreSQL client program as ourselves, in PG_ONCALL_CHROOT when set
#   port_busy PORT              whether something listens on 127.0.0.1:PORT
#   alive_with PID NEEDLE       whether PID is a live process whose command line contains NEEDLE
#   new_token_file PATH PREFIX  writes a random token "<PREFIX>-<hex>" to PATH, mode 0600, owned by
#                               the server's OS user when we are root
#   start_fake_pagerduty BIN TOKEN_FILE SCHEDULE LOG
#                               starts the fake PagerDuty on a free port, detached from our stdout
#                               and stderr; waits (up to 15 s) for its URL; sets FAKE_PID, FAKE_URL
#   start_on_free_port DATA SERVER_LOG OUT_LOG CMD...
#                               picks a free port for the cluster in DATA (`port = N` in its
#                               postgresql.conf), runs CMD (a `pg_ctl … start`) from DATA's parent
#                               directory, output to OUT_LOG, and tries another port (5 attempts)
#                               when that one was taken meanwhile; sets PORT
#
# PG_ONCALL_CHROOT (from scripts/provision.sh): the root file system whose programs these are
# (PostgreSQL 17 from Debian trixie, which needs a newer glibc than this machine's), or empty.
# In the root, any argument that is a path under the root is passed as the root sees it; the
# root's /tmp is the host's, so paths under /tmp need nothing.

LIB_NAME=${LIB_NAME:-pg_oncall}
IS_ROOT=""
[ "$(id -u)" -eq 0 ] && IS_ROOT=1
PG_ONCALL_CHROOT=${PG_ONCALL_CHROOT:-}
PG_ONCALL_CHROOT=${PG_ONCALL_CHROOT%/}

die() {
    echo "$LIB_NAME: error: $*" >&2
    exit 1
}

_pg_in_root() { # _pg_in_root USERSPEC CMD ARGS...
    local spec=$1 a
    shift
    local args=()
    for a in "$@"; do
        case "$a" in "$PG_ONCALL_CHROOT"/*) args+=("${a#"$PG_ONCALL_CHROOT"}") ;; *) args+=("$a") ;; esac
    done
    if [ -n "$spec" ]; then
        chroot --userspec="$spec" "$PG_ONCALL_CHROOT" "${args[@]}"
    else
        chroot "$PG_ONCALL_CHROOT" "${args[@]}"
    fi
}

as_postgres() {
    if [ -n "$PG_ONCALL_CHROOT" ]; then
        _pg_in_root "$(id -u postgres):$(id -g postgres)" "$@"
    elif [ -n "$IS_ROOT" ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_client() {
    if [ -n "$PG_ONCALL_CHROOT" ]; then
        _pg_in_root "" "$@"
    else
        "$@"
    fi
}

port_busy() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

alive_with() {
    local pid=$1 needle=$2
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$needle"
}

new_token_file() {
    local path=$1 prefix=$2
    (
        umask 077
        printf '%s-%s\n' "$prefix" "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$path"
    )
    chmod 0600 "$path"
    [ -z "$IS_ROOT" ] || chown postgres:postgres "$path"
}

start_fake_pagerduty() {
    local bin=$1 token_file=$2 schedule=$3 log=$4
    shift 4
    nohup "$bin" --port 0 --token-file "$token_file" --schedule "$schedule" "$@" </dev/null >"$log" 2>&1 &
    FAKE_PID=$!
    FAKE_URL=""
    local _
    for _ in $(seq 150); do # up to 15 s
        FAKE_URL=$(sed -n 's/^fake-pagerduty listening on \(http:\/\/127\.0\.0\.1:[0-9]*\)$/\1/p' "$log" | head -n 1)
        [ -n "$FAKE_URL" ] && return 0
        kill -0 "$FAKE_PID" 2>/dev/null || die "the fake PagerDuty exited: $(cat "$log")"
        sleep 0.1
    done
    die "the fake PagerDuty did not report its port within 15 s: $(cat "$log")"
}

start_on_free_port() {
    local data=$1 server_log=$2 out_log=$3 attempt candidate before
    shift 3
    PORT=""
    for attempt in 1 2 3 4 5; do
        candidate=$((20000 + RANDOM % 30000))
        port_busy "$candidate" && continue
        sed -i '/^port = /d' "$data/postgresql.conf"
        echo "port = $candidate" >>"$data/postgresql.conf"
        before=$(stat -c %s "$server_log" 2>/dev/null || echo 0)
        if (cd "$(dirname "$data")" && "$@") >>"$out_log" 2>&1; then
            PORT=$candidate
            return 0
        fi
        if tail -c +"$((before + 1))" "$server_log" 2>/dev/null |
            grep -qE 'could not bind|could not create lock file|Address already in use'; then
            echo "$LIB_NAME: port $candidate was taken meanwhile (attempt $attempt); trying another" >&2
            continue
        fi
        die "pg_ctl start failed: $(tail -n 20 "$out_log") $(tail -n 10 "$server_log" 2>/dev/null)"
    done
    die "could not find a free port for PostgreSQL in 5 attempts"
}
