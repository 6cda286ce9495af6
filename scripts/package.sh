#!/usr/bin/env bash
# `make package`: one Debian package per PostgreSQL major, release build, with dpkg-deb only:
#
#   target/packages/postgresql-<major>-pg-oncall_<version>_amd64.deb
#
#   bash scripts/package.sh [MAJOR...]     default: $MAJORS, else 15 17 18
#
# Each major is provisioned when missing (scripts/provision.sh, cached) and the library built
# against its headers (`cargo pgrx package`, cached by cargo). The package installs where
# Debian's and the PostgreSQL project's (PGDG) packages of that major look:
#   /usr/lib/postgresql/<major>/lib/pg_oncall.so
#   /usr/share/postgresql/<major>/extension/pg_oncall.control, pg_oncall--<version>.sql, the
#       released versions' scripts and the upgrade scripts (sql/released/, scripts/upgrade-scripts.sh)
#   /usr/share/doc/postgresql-<major>-pg-oncall/README.md, copyright (MIT), examples/monitoring/
# and depends on the server package of that major, `postgresql-<major>`, and on the C
# libraries the library links (libc6 at the newest symbol version it uses). 18 is built
# against the PyPI wheel's headers here (no Debian package of 18 exists in Debian's archive):
# its package is for PGDG's postgresql-18, the same major and ABI.
#
# Prints the path of each package on stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
say() { echo "package: $*" >&2; }
die() {
    echo "package: error: $*" >&2
    exit 1
}

for tool in dpkg-deb readelf objdump strip md5sum gzip; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg-dev binutils; bash scripts/setup.sh installs them)"
done

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$VERSION" ] || die "no version in Cargo.toml"
# PGXN's META.json names the same version (a release bumps both).
grep -q "\"version\": \"$VERSION\"" META.json || die "META.json does not name version $VERSION (Cargo.toml)"
ARCH=$(dpkg --print-architecture)
OUT=$REPO/target/packages
mkdir -p "$OUT"

# depends_of LIB: the Depends entries for the shared libraries LIB links, besides the server.
depends_of() {
    local lib=$1 needed glibc deps=()
    glibc=$(objdump -T "$lib" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)
    for needed in $(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        case "$needed" in
            libc.so.6 | libm.so.6 | libdl.so.2 | libpthread.so.0 | librt.so.1 | ld-linux-x86-64.so.2) ;;
            libgcc_s.so.1) deps+=("libgcc-s1") ;;
            *) die "$lib links $needed: add its Debian package to depends_of in scripts/package.sh" ;;
        esac
    done
    deps+=("libc6 (>= ${glibc:-2.17})")
    local IFS=,
    echo "${deps[*]}" | sed 's/,/, /g'
}

build_major() {
    local major=$1 env PG_CONFIG PG_ONCALL_CHROOT
    env=$(bash scripts/provision.sh "$major") || die "provisioning PostgreSQL $major failed"
    eval "$env"
    "$PG_CONFIG" --version | grep -q "^PostgreSQL $major" || die "$PG_CONFIG is not PostgreSQL $major"
    local name=postgresql-$major-pg-oncall
    local deb=$OUT/${name}_${VERSION}_${ARCH}.deb
    local work=$OUT/build/$major
    local build=$work/pgrx stage=$work/root
    rm -rf "$work"
    mkdir -p "$build"
    say "PostgreSQL $major: release build against $("$PG_CONFIG" --version) ($PG_CONFIG)"
    PGRX_PG_CONFIG_PATH=$PG_CONFIG nice cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$build" >&2

    local lib ext
    lib=$(find "$build" -name pg_oncall.so -type f | head -n 1)
    ext=$(find "$build" -name pg_oncall.control -type f -printf '%h\n' | head -n 1)
    [ -n "$lib" ] && [ -n "$ext" ] && [ -f "$ext/pg_oncall--$VERSION.sql" ] ||
        die "cargo pgrx package left no pg_oncall.so, pg_oncall.control and pg_oncall--$VERSION.sql in $build"

    local libdir=usr/lib/postgresql/$major/lib
    local extdir=usr/share/postgresql/$major/extension
    local docdir=usr/share/doc/$name
    mkdir -p "$stage/DEBIAN" "$stage/$libdir" "$stage/$extdir" "$stage/$docdir/examples/monitoring"
    install -m 0644 "$lib" "$stage/$libdir/pg_oncall.so"
    strip --strip-unneeded "$stage/$libdir/pg_oncall.so"
    install -m 0644 "$ext/pg_oncall.control" "$ext/pg_oncall--$VERSION.sql" "$stage/$extdir/"
    bash scripts/upgrade-scripts.sh "$stage/$extdir"
    chmod 0644 "$stage/$extdir"/*
    install -m 0644 README.md "$stage/$docdir/README.md"
    install -m 0644 docs/monitoring/* "$stage/$docdir/examples/monitoring/"
    {
        echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
        echo "Upstream-Name: pg_oncall"
        echo
        echo "Files: *"
        echo "License: MIT"
        sed 's/^$/./; s/^/ /' LICENSE
    } >"$stage/$docdir/copyright"
    chmod 0644 "$stage/$docdir/copyright"

    local depends size
    depends="postgresql-$major, $(depends_of "$stage/$libdir/pg_oncall.so")"
    size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
    cat >"$stage/DEBIAN/control" <<EOF
Package: $name
Version: $VERSION
Architecture: $ARCH
Maintainer: pg_oncall maintainers <maintainers@users.noreply.r-seed-466664b1.example>
Installed-Size: $size
Depends: $depends
Section: database
Priority: optional
Description: privileged PostgreSQL $major roles only while you are on call in PagerDuty
 pg_oncall is a PostgreSQL extension that lets engineers use privileged
 database roles only while they are on call in PagerDuty: a background worker
 syncs the on-call schedule into shared memory, and a gate on every route into
 a gated role (SET ROLE, set_config, function SET clauses, login, membership)
 allows the on-call engineer and refuses everyone else, with an audit log.
 .
 This package is built for PostgreSQL $major. Add pg_oncall to
 shared_preload_libraries, restart, and CREATE EXTENSION pg_oncall.
EOF
    (cd "$stage" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
    chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"
    find "$stage" -type d -exec chmod 0755 {} +
    rm -f "$deb"
    dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
    say "PostgreSQL $major: $deb ($(du -h "$deb" | cut -f1); Depends: $depends)"
    echo "$deb"
}

majors=("$@")
[ ${#majors[@]} -gt 0 ] || read -r -a majors <<<"${MAJORS:-15 17 18}"
for major in "${majors[@]}"; do
    case "$major" in 15 | 16 | 17 | 18) ;; *) die "unsupported major: $major (15, 16, 17 or 18)" ;; esac
    build_major "$major"
done
