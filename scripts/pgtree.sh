#!/usr/bin/env bash
# Makes a private, relocated copy of the PostgreSQL installation that PG_CONFIG names, with
# pg_oncall built from this tree installed into it, and prints the private pg_config's path.
#
#   bash scripts/pgtree.sh [--debug] DIR
#
# Tests and benches run every cluster from such a tree, so they never write into the system's
# PostgreSQL and always test exactly the library just built. PostgreSQL finds its lib and
# share directories relative to its own executable (after resolving symbolic links), so the
# programs are copies and everything else links to the system installation, except pg_oncall's
# files, which are copies. The library is renamed into place: a cluster still running from an
# older copy keeps the file it mapped.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [ "${1:-}" = --debug ]; then
    profile=debug
    shift
fi
[ $# -eq 1 ] || { echo "usage: $0 [--debug] DIR" >&2; exit 2; }
mkdir -p "$1"
root=$(cd "$1" && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
bindir=$("$PG_CONFIG" --bindir)
pkglibdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)
includedir=$("$PG_CONFIG" --includedir)

# The paths under the common prefix of the installation keep their shape (that is how
# PostgreSQL relocates: <prefix>/lib/postgresql/15/bin → <prefix>/share/postgresql/15).
prefix=${bindir%%/lib/*}
[ "$prefix" != "$bindir" ] || prefix=$(dirname "$bindir")
rel() { echo "${1#"$prefix"/}"; }
for d in "$bindir" "$pkglibdir" "$sharedir" "$includedir"; do
    case "$d" in "$prefix"/*) ;; *) echo "pgtree: $d is not under $prefix" >&2; exit 1 ;; esac
done

link_all() { # link_all FROM TO [EXCEPT-GLOB]: a symbolic link in TO for each entry of FROM
    local from=$1 to=$2 except=${3:-}
    mkdir -p "$to"
    for f in "$from"/*; do
        local name
        name=$(basename "$f")
        # shellcheck disable=SC2053  # a glob on purpose
        [ -z "$except" ] || [[ $name != $except ]] || continue
        [ -e "$to/$name" ] || [ -L "$to/$name" ] || ln -s "$f" "$to/$name"
    done
}

mkdir -p "$root/$(rel "$bindir")"
for f in "$bindir"/*; do
    dest=$root/$(rel "$bindir")/$(basename "$f")
    cmp -s "$f" "$dest" 2>/dev/null || { cp "$f" "$dest.new.$$" && mv -f "$dest.new.$$" "$dest"; }
done
link_all "$pkglibdir" "$root/$(rel "$pkglibdir")" pg_oncall.so
link_all "$sharedir" "$root/$(rel "$sharedir")" extension
link_all "$includedir" "$root/$(rel "$includedir")"
link_all "$sharedir/extension" "$root/$(rel "$sharedir")/extension" 'pg_oncall*'

private_pg_config=$root/$(rel "$bindir")/pg_config
[ "$("$private_pg_config" --pkglibdir)" = "$root/$(rel "$pkglibdir")" ] ||
    { echo "pgtree: $private_pg_config does not relocate (reports $("$private_pg_config" --pkglibdir))" >&2; exit 1; }

out=target/pgtree-package-$profile
rm -rf "$out"
args=(--pg-config "$private_pg_config" --out-dir "$out")
[ "$profile" = release ] || args+=(--debug)
PGRX_PG_CONFIG_PATH=$private_pg_config cargo pgrx package "${args[@]}" >&2
(cd "$out" && find . -type f) | while read -r f; do
    dest=${f#.}
    mkdir -p "$(dirname "$dest")"
    cp "$out/$f" "$dest.new.$$"
    mv -f "$dest.new.$$" "$dest"
done
bash scripts/upgrade-scripts.sh "$root/$(rel "$sharedir")/extension"
chmod -R a+rX "$root"
echo "$private_pg_config"
