-- pg_oncall 0.1.0 → 0.2.0: what changes in tables and in objects api.sql and doctor.sql do not
-- redefine. scripts/upgrade-scripts.sh appends those two files (every statement in them can be
-- run again) to make the installed pg_oncall--0.1.0--0.2.0.sql.

-- Guarantee 8: the CHECK constraints' helper resolves names in pg_catalog only.
ALTER FUNCTION @extschema@._ids_valid(text[]) SET search_path = pg_catalog, pg_temp;
