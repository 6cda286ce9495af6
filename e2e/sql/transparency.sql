-- The transparency suite (issue 16): pg_oncall must be invisible to everyone it does not gate.
--
-- e2e/tests/transparency.rs runs this script with the major's own psql (-X -a, same settings)
-- on two clusters of the same major: one without pg_oncall, one with it preloaded, the
-- extension created and one unrelated role (unrelated_admin, NOLOGIN, on both clusters)
-- gated. The client output and the server log lines of these sessions must be identical.
--
-- Self-contained (it creates its database and roles, and can be run again) and
-- deterministic: no OIDs, pids, timestamps or paths in its output, except those the test
-- normalises (the cluster's directory and port, "PID n" of notifications, pg_temp_n).
--
-- Layout: set-up as the superuser; transparency_common.sql as the superuser (schema tr_su);
-- things only a superuser can do; transparency_common.sql again as the ordinary role
-- tr_alice (schema tr_user); permission errors of an ordinary role; final checks (settings,
-- statistics) as the superuser. Nothing here touches unrelated_admin except the ordinary
-- role's failed SET ROLE, which PostgreSQL itself refuses (tr_alice is not a member).
\set VERBOSITY verbose
\set SHOW_CONTEXT always
\set ON_ERROR_STOP 0
\pset null '(null)'

-- ==================================================================== set-up (superuser)
SELECT current_user, session_user;
DROP DATABASE IF EXISTS transparency;
DROP ROLE IF EXISTS tr_alice;
DROP ROLE IF EXISTS tr_bob;
DROP ROLE IF EXISTS tr_group;
DROP ROLE IF EXISTS tr_nologin;
DROP ROLE IF EXISTS tr_tmp;
CREATE DATABASE transparency;
CREATE ROLE tr_alice LOGIN;
CREATE ROLE tr_bob LOGIN;
CREATE ROLE tr_group NOLOGIN;
CREATE ROLE tr_nologin NOLOGIN;
GRANT tr_group TO tr_alice;
GRANT CREATE ON DATABASE transparency TO tr_alice;
-- Function call counts for pg_stat_user_functions, compared at the end.
ALTER DATABASE transparency SET track_functions = 'all';
\c transparency

-- Objects the ordinary role may see but not use.
CREATE SCHEMA tr_shared;
GRANT USAGE ON SCHEMA tr_shared TO PUBLIC;
CREATE TABLE tr_shared.secret (id int PRIMARY KEY, v text);
INSERT INTO tr_shared.secret VALUES (1, 'x');
CREATE FUNCTION tr_shared.f_secret() RETURNS int LANGUAGE sql AS 'SELECT 1';
REVOKE EXECUTE ON FUNCTION tr_shared.f_secret() FROM PUBLIC;
CREATE FUNCTION tr_shared.read_secret() RETURNS bigint LANGUAGE plpgsql
    AS $$ BEGIN RETURN (SELECT count(*) FROM tr_shared.secret); END $$;
CREATE MATERIALIZED VIEW tr_shared.mv_secret AS SELECT 1 AS a;
CREATE SCHEMA tr_closed;
CREATE TABLE tr_closed.hidden (a int);

-- ==================================================================== common part, superuser
\set sch tr_su
\ir transparency_common.sql

-- ==================================================================== superuser only
SET search_path = tr_su;
-- SET SESSION AUTHORIZATION (superuser only; not a route into any role for others).
SET SESSION AUTHORIZATION tr_alice;
SELECT session_user, current_user;
SET ROLE tr_group;
SELECT session_user, current_user;
SET SESSION AUTHORIZATION tr_bob;
SELECT session_user, current_user;
RESET SESSION AUTHORIZATION;
SELECT session_user, current_user;
BEGIN;
SET LOCAL SESSION AUTHORIZATION tr_bob;
SELECT session_user, current_user;
COMMIT;
SELECT session_user, current_user;
SET SESSION AUTHORIZATION nosuch_role;
SET SESSION AUTHORIZATION DEFAULT;
SELECT set_config('session_authorization', 'tr_bob', false);
SELECT session_user, current_user;
RESET SESSION AUTHORIZATION;
CREATE FUNCTION f_sessauth() RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN SET SESSION AUTHORIZATION tr_bob; RETURN session_user; END $$;
SELECT f_sessauth();
SELECT session_user, current_user;
RESET SESSION AUTHORIZATION;

-- Ownership given to ungated roles, DROP ROLE blocked by dependencies, REASSIGN/DROP OWNED.
CREATE ROLE tr_tmp;
CREATE ROLE tr_bob;
CREATE TABLE tmp_owned (a int);
ALTER TABLE tmp_owned OWNER TO tr_tmp;
CREATE FUNCTION tmp_owned_f() RETURNS int LANGUAGE sql AS 'SELECT 1';
ALTER FUNCTION tmp_owned_f() OWNER TO tr_tmp;
CREATE SCHEMA tmp_owned_schema AUTHORIZATION tr_tmp;
GRANT SELECT ON tr_shared.secret TO tr_tmp;
ALTER DEFAULT PRIVILEGES FOR ROLE tr_tmp GRANT SELECT ON TABLES TO tr_bob;
DROP ROLE tr_tmp;
REASSIGN OWNED BY tr_tmp TO tr_bob;
SELECT c.relname, pg_get_userbyid(c.relowner) AS owner FROM pg_class c WHERE c.relname = 'tmp_owned';
DROP ROLE tr_tmp;
DROP OWNED BY tr_tmp;
DROP ROLE tr_tmp;
DROP ROLE tr_bob;
REASSIGN OWNED BY nosuch_role TO tr_bob;
REASSIGN OWNED BY tr_bob TO nosuch_role;
REASSIGN OWNED BY postgres TO tr_bob;
DROP OWNED BY postgres;
GRANT tr_group TO tr_group;
GRANT tr_alice TO tr_group;
ALTER SYSTEM SET work_mem = 'not a size';
ALTER SYSTEM SET nosuch_parameter = 1;

-- Role settings applied at login and the role startup option, for ungated roles.
SELECT pg_stat_force_next_flush();
ALTER ROLE tr_bob IN DATABASE transparency SET role = 'tr_group';
\c transparency tr_bob
SELECT session_user, current_user;
\c transparency postgres
GRANT tr_group TO tr_bob;
\c transparency tr_bob
SELECT session_user, current_user;
\c transparency postgres
ALTER ROLE tr_bob IN DATABASE transparency RESET role;
REVOKE tr_group FROM tr_bob;
\c "dbname=transparency user=tr_alice options='-c role=tr_group'"
SELECT session_user, current_user;
-- (Refused logins are checked by the test itself: a failed \connect ends a psql script.)
-- A conninfo string, so that later \connect commands do not reuse the options above.
\c "dbname=transparency user=postgres"
SELECT session_user, current_user;

-- ==================================================================== common part, ordinary role
\c transparency tr_alice
\set sch tr_user
\ir transparency_common.sql

-- ==================================================================== ordinary role only
SET search_path = tr_user;
-- Permission errors: the executor's permission checks (ExecutorStart), utility statements,
-- functions, nested in PL/pgSQL.
SELECT * FROM tr_shared.secret;
SELECT * FROM tr_shared.secret WHERE id = 1 FOR UPDATE;
INSERT INTO tr_shared.secret VALUES (2, 'y');
UPDATE tr_shared.secret SET v = 'z';
DELETE FROM tr_shared.secret;
TRUNCATE tr_shared.secret;
BEGIN;
LOCK TABLE tr_shared.secret;
ROLLBACK;
COPY tr_shared.secret TO stdout;
SELECT tr_shared.f_secret();
SELECT tr_shared.read_secret();
DO $$ BEGIN PERFORM count(*) FROM tr_shared.secret; END $$;
DO $$ BEGIN EXECUTE 'TRUNCATE tr_shared.secret'; END $$;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF) SELECT * FROM tr_shared.secret;
CREATE VIEW v_secret AS SELECT * FROM tr_shared.secret;
SELECT * FROM v_secret;
DROP TABLE tr_shared.secret;
ALTER TABLE tr_shared.secret ADD COLUMN z int;
CREATE INDEX ON tr_shared.secret (v);
REFRESH MATERIALIZED VIEW tr_shared.mv_secret;
CREATE TABLE tr_closed.t (a int);
SELECT * FROM tr_closed.hidden;
CREATE ROLE tr_x;
CREATE DATABASE tr_x;
ALTER SYSTEM SET work_mem = '1MB';
SET log_min_messages = debug1;
SELECT pg_read_file('postgresql.conf');
SELECT pg_reload_conf();
CREATE FUNCTION f_c() RETURNS int LANGUAGE c AS 'nosuch', 'nosuch';
VACUUM tr_shared.secret;
ANALYZE tr_shared.secret;
REINDEX TABLE tr_shared.secret;
GRANT SELECT ON tr_shared.secret TO tr_bob;
-- Roles this role is not a member of: PostgreSQL's own refusals (unrelated_admin is the
-- role gated on the cluster with pg_oncall; its refusal must stay PostgreSQL's).
SET ROLE unrelated_admin;
SELECT set_config('role', 'unrelated_admin', false);
BEGIN;
SET LOCAL ROLE unrelated_admin;
ROLLBACK;
DO $$ BEGIN EXECUTE 'SET ROLE unrelated_admin'; END $$;
SELECT current_user;
SET SESSION AUTHORIZATION tr_bob;
SET SESSION AUTHORIZATION tr_alice;
SELECT session_user, current_user;
RESET SESSION AUTHORIZATION;
-- REASSIGN / DROP OWNED of ungated roles: allowed for tr_group (member), not for tr_bob.
REASSIGN OWNED BY tr_bob TO tr_alice;
DROP OWNED BY tr_bob;
REASSIGN OWNED BY tr_group TO tr_alice;
SELECT c.relname, pg_get_userbyid(c.relowner) AS owner
  FROM pg_class c WHERE c.relnamespace = 'tr_user'::regnamespace AND c.relname LIKE 'own%' ORDER BY 1;
ALTER TABLE own_t OWNER TO tr_group;
DROP OWNED BY tr_group;
SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'tr_user'::regnamespace AND c.relname LIKE 'own%' ORDER BY 1;
-- The settings an ordinary role sees (pg_oncall's own excluded, see the final checks).
SELECT count(*) FROM pg_settings WHERE name NOT LIKE 'pg\_oncall.%';
-- Statistics of this session, flushed before psql gets the answer (see the final checks).
SELECT pg_stat_force_next_flush();

-- ==================================================================== final checks (superuser)
\c transparency postgres
-- Every setting, except those that legitimately differ when pg_oncall is loaded:
--   pg_oncall.*                 the library's own settings (exist only where it is loaded);
--   shared_preload_libraries    the one configured difference between the two clusters;
--   shared_memory_size, shared_memory_size_in_huge_pages
--                               computed from what libraries request (pg_oncall's snapshot);
--   port                        each test cluster has its own (paths are normalised).
-- Unaligned, so that column widths do not depend on the length of the cluster's path.
\pset format unaligned
SELECT name, setting, unit, category, context, vartype, source, boot_val, reset_val, pending_restart
  FROM pg_settings
 WHERE name NOT LIKE 'pg\_oncall.%'
   AND name NOT IN ('shared_preload_libraries', 'shared_memory_size', 'shared_memory_size_in_huge_pages', 'port')
 ORDER BY name;
\pset format aligned
-- Statistics: tuples and scans of the script's tables, calls of its functions; not those of
-- the parallel query (how many rows a worker gets through before another one raises, and how
-- many workers start, vary from run to run).
SELECT schemaname, relname, seq_scan, idx_scan, n_tup_ins, n_tup_upd, n_tup_del
  FROM pg_stat_user_tables WHERE schemaname LIKE 'tr\_%' AND relname <> 'par' ORDER BY 1, 2;
SELECT schemaname, funcname, calls
  FROM pg_stat_user_functions WHERE schemaname LIKE 'tr\_%' AND funcname <> 'f_par' ORDER BY 1, 2;
\echo transparency: end of script
