# Sourced: runs the PostgreSQL programs of the installation under test wherever they run.
#
# PG_ONCALL_CHROOT (from scripts/provision.sh): the root file system whose programs these are
# (PostgreSQL 17 from Debian trixie, which needs a newer glibc than this machine's), or empty.
# In the root, any argument that is a path under the root is passed as the root sees it; the
# root's /tmp is the host's, so paths under /tmp need nothing.
#
#   as_postgres CMD ARGS...   as the server's OS user (when we are root), in the root if any
#   pg_client CMD ARGS...     as ourselves, in the root if any (psql, pg_isready...)

PG_ONCALL_CHROOT=${PG_ONCALL_CHROOT:-}
PG_ONCALL_CHROOT=${PG_ONCALL_CHROOT%/}

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
    elif [ "$(id -u)" -eq 0 ]; then
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
