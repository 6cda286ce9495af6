#!/usr/bin/env bash
# Writes pg_oncall's upgrade scripts into the extension directory DIR, next to the install
# script `cargo pgrx package` makes:
#   - sql/released/*: scripts of released versions, frozen (the bases of upgrade paths);
#   - pg_oncall--A--<this version>.sql for each sql/upgrade/pg_oncall--A--<this version>.sql:
#     that file, then sql/api.sql, sql/doctor.sql and sql/monitoring.sql, which redefine every
#     function and view.
# Once a version is released, its assembled scripts are frozen into sql/released/.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: $0 EXTENSION_DIR}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
cp sql/released/*.sql "$dir/"
for upgrade in sql/upgrade/pg_oncall--*--"$version".sql; do
    [ -e "$upgrade" ] || continue
    out=$dir/$(basename "$upgrade")
    cat "$upgrade" sql/api.sql sql/doctor.sql sql/monitoring.sql >"$out.new.$$"
    mv -f "$out.new.$$" "$out"
done
