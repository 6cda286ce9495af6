#!/usr/bin/env bash
# Builds pg_oncall and installs it into the PostgreSQL that PG_CONFIG names.
# Files are renamed into place, never overwritten: a running server keeps the library it has
# mapped (overwriting a mapped .so in place can crash its processes). Restart to load the new one.
# PROFILE=debug builds faster, for tests; the default is an optimized release build.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PGRX_PG_CONFIG_PATH=$PG_CONFIG
out=target/pg_oncall-package
rm -rf "$out"
if [ "${PROFILE:-release}" = debug ]; then
    cargo pgrx package --debug --pg-config "$PG_CONFIG" --out-dir "$out"
else
    cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$out"
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
(cd "$out" && find . -type f) | while read -r rel; do
    dest="/${rel#./}"
    $SUDO mkdir -p "$(dirname "$dest")"
    $SUDO cp "$out/$rel" "$dest.new.$$"
    $SUDO chmod 0644 "$dest.new.$$"
    $SUDO mv -f "$dest.new.$$" "$dest"
    echo "installed $dest"
done
extdir=$("$PG_CONFIG" --sharedir)/extension
staging=$(mktemp -d)
bash scripts/upgrade-scripts.sh "$staging"
for f in "$staging"/*; do
    $SUDO cp "$f" "$extdir/$(basename "$f").new.$$"
    $SUDO chmod 0644 "$extdir/$(basename "$f").new.$$"
    $SUDO mv -f "$extdir/$(basename "$f").new.$$" "$extdir/$(basename "$f")"
    echo "installed $extdir/$(basename "$f")"
done
rm -rf "$staging"
