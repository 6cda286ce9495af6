#!/usr/bin/env bash
# The package test of one major (`make test` runs it after the end-to-end suite):
#
#   bash scripts/package-test.sh MAJOR        e.g. 15; builds the package (scripts/package.sh)
#
#   1. the .deb's control fields (name, version, architecture, Depends on postgresql-MAJOR) and
#      its exact file list (library, control file, install, released and upgrade scripts, docs);
#   2. its Depends, resolved by apt against the installation of that major when it is a Debian
#      package (15: this machine; 17: the trixie root, scripts/provision.sh): nothing but the
#      package itself to install. 18 is a PyPI wheel here, not a Debian package: apt must find
#      postgresql-18 (PGDG's) to be the one dependency it cannot resolve;
#   3. `dpkg --root` installs it into a throw-away root (dependencies checked in 2), dpkg verifies
#      the installed files against the package's md5sums;
#   4. a private tree of that major holding exactly the installed files (scripts/pgtree.sh
#      --payload) runs e2e/tests/packages.rs: CREATE EXTENSION, the gate (SET ROLE of an on-call
#      user allowed, of another refused), and ALTER EXTENSION UPDATE from every release;
#   5. `dpkg --root --purge` removes it, leaving no file behind; the root and the tree are deleted.
# Nothing is installed into a PostgreSQL of the system's. Ends with one line:
#   == PostgreSQL MAJOR: package test passed in S s ==
set -euo pipefail
cd "$(dirname "$0")/.."
major=${1:?usage: $0 MAJOR}
started=$(date +%s)
fail() {
    echo "package-test: PostgreSQL $major: FAILED: $*" >&2
    exit 1
}
say() { echo "package-test: PostgreSQL $major: $*" >&2; }

deb=$(bash scripts/package.sh "$major" | tail -n 1)
[ -f "$deb" ] || fail "scripts/package.sh made no package"
built=$(date +%s)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
name=postgresql-$major-pg-oncall

# ---------------------------------------------------------------- 1. control fields and files
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = "$name" ] || fail "Package: $(field Package), not $name"
[ "$(field Version)" = "$version" ] || fail "Version: $(field Version), not $version"
[ "$(field Architecture)" = "$(dpkg --print-architecture)" ] || fail "Architecture: $(field Architecture)"
depends=$(field Depends)
case ", $depends," in *", postgresql-$major,"*) ;; *) fail "Depends ($depends) does not name postgresql-$major" ;; esac
servers=$(grep -oE 'postgresql-[0-9]+[^ ,]*' <<<"$depends" | sort -u)
[ "$servers" = "postgresql-$major" ] || fail "Depends names other PostgreSQL packages: $depends"

ext=usr/share/postgresql/$major/extension
doc=usr/share/doc/$name
expected=$(
    {
        echo "usr/lib/postgresql/$major/lib/pg_oncall.so"
        echo "$ext/pg_oncall.control"
        echo "$ext/pg_oncall--$version.sql"
        for f in sql/released/*.sql; do echo "$ext/$(basename "$f")"; done
        for f in sql/upgrade/pg_oncall--*--"$version".sql; do [ ! -e "$f" ] || echo "$ext/$(basename "$f")"; done
        echo "$doc/README.md"
        echo "$doc/copyright"
        for f in docs/monitoring/*; do echo "$doc/examples/monitoring/$(basename "$f")"; done
    } | sort
)
actual=$(dpkg-deb --fsys-tarfile "$deb" | tar -t | grep -v '/$' | sed 's#^\./##' | sort)
[ "$actual" = "$expected" ] || fail "the package's files differ from the expected ones:
$(diff <(echo "$expected") <(echo "$actual") | sed 's/^/    /')"
grep -q "Permission is hereby granted" <(dpkg-deb --fsys-tarfile "$deb" | tar -xO "./$doc/copyright") || fail "copyright holds no MIT license"
say "control and files ok ($(echo "$expected" | wc -l) files; Depends: $depends)"

# ---------------------------------------------------------------- 2. Depends against the major's installation
env=$(bash scripts/provision.sh "$major") || fail "provisioning failed"
eval "$env"
export PG_CONFIG PG_ONCALL_CHROOT
installation_pg_config=$PG_CONFIG
work=$(mktemp -d /tmp/pg_oncall-package-test-XXXXXX)
tree_dir=$(pwd)/target/pgtree/$major/package
cleanup() {
    [ -z "${root:-}" ] || rm -rf --one-file-system "$root"
    if [ -L "$tree_dir/tree" ]; then rm -rf --one-file-system "$(readlink -f "$tree_dir/tree")"; fi
    rm -rf --one-file-system "$tree_dir" "$work"
}
trap cleanup EXIT
cp "$deb" "$work/"
chmod -R a+rX "$work"
local_deb=$work/$(basename "$deb")
simulate() { # apt, as the installation of this major sees it (read-only: --simulate)
    if [ -n "$PG_ONCALL_CHROOT" ]; then
        chroot "$PG_ONCALL_CHROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C \
            apt-get install --simulate --no-install-recommends "$local_deb"
    else
        LANG=C apt-get install --simulate --no-install-recommends "$local_deb"
    fi
}
server_is_deb() {
    if [ -n "$PG_ONCALL_CHROOT" ]; then
        chroot "$PG_ONCALL_CHROOT" dpkg-query -W -f='${Status}' "postgresql-$major" 2>/dev/null | grep -q "install ok installed"
    else
        dpkg-query -W -f='${Status}' "postgresql-$major" 2>/dev/null | grep -q "install ok installed"
    fi
}
if server_is_deb; then
    out=$(simulate 2>&1) || fail "apt cannot install the package next to postgresql-$major:
$out"
    others=$(echo "$out" | sed -n 's/^Inst \([^ ]*\).*/\1/p' | grep -vx "$name" || true)
    [ -z "$others" ] || fail "installing the package would also install: $others"
    echo "$out" | grep -q "^Inst $name " || fail "apt would not install $name:
$out"
    say "Depends resolved by the installed postgresql-$major${PG_ONCALL_CHROOT:+ (in $PG_ONCALL_CHROOT)}: nothing else to install"
else
    if out=$(simulate 2>&1); then
        fail "apt installs the package without postgresql-$major, which is not installed here: its Depends is wrong"
    fi
    unmet=$(echo "$out" | sed -n 's/.*Depends: \([^ ]*\).*/\1/p' | sort -u)
    [ "$unmet" = "postgresql-$major" ] || fail "apt's unmet dependencies are not just postgresql-$major:
$out"
    say "PostgreSQL $major is not a Debian package here ($installation_pg_config): the package depends on postgresql-$major (the PostgreSQL project's apt repository), the one dependency apt cannot resolve here; testing its payload"
fi

# ---------------------------------------------------------------- 3. dpkg into a throw-away root
root=$work/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
dpkg --root="$root" --force-depends --install "$local_deb" >"$work/dpkg-install.log" 2>&1 ||
    fail "dpkg --install failed: $(cat "$work/dpkg-install.log")"
dpkg-query --root="$root" -W -f='${Status} ${Version}' "$name" | grep -qx "install ok installed $version" ||
    fail "dpkg does not list $name $version as installed"
dpkg --root="$root" --verify "$name" || fail "dpkg --verify: installed files differ from the package's md5sums"
installed=$(cd "$root" && find usr -type f | sort)
[ "$installed" = "$expected" ] || fail "dpkg installed other files than the package lists"
say "installed into $root with dpkg"

# ---------------------------------------------------------------- 4. the payload in a cluster
tree_pg_config=$(PG_CONFIG=$installation_pg_config bash scripts/pgtree.sh --payload "$root" "$tree_dir")
lib=$("$tree_pg_config" --pkglibdir)/pg_oncall.so
cmp -s "$lib" "$root/usr/lib/postgresql/$major/lib/pg_oncall.so" || fail "the tree's library is not the package's"
say "private tree with the package's files: $tree_pg_config"
PG_CONFIG=$tree_pg_config PG_ONCALL_PACKAGE=$deb nice cargo test -p e2e --test packages -- --test-threads=1 ||
    fail "the package's payload failed in a PostgreSQL $major cluster (e2e/tests/packages.rs)"

# ---------------------------------------------------------------- 5. removal
dpkg --root="$root" --purge "$name" >"$work/dpkg-purge.log" 2>&1 || fail "dpkg --purge failed: $(cat "$work/dpkg-purge.log")"
left=$(cd "$root" && find . -path ./var/lib/dpkg -prune -o ! -type d -print)
[ -z "$left" ] || fail "files left after dpkg --purge: $left"
[ -z "$(cd "$root" && find usr -mindepth 1 2>/dev/null)" ] || fail "directories left under usr after dpkg --purge: $(cd "$root" && find usr -mindepth 1)"
dpkg-query --root="$root" -W "$name" >/dev/null 2>&1 && fail "dpkg still knows $name after --purge"
say "removed with dpkg --purge: nothing left"
echo "== PostgreSQL $major: package test passed in $(($(date +%s) - started)) s (package built in $((built - started)) s) =="
