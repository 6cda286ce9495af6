-- The part of the transparency suite run twice: as the superuser (schema tr_su) and as the
-- ordinary role tr_alice (schema tr_user). Included by transparency.sql with :sch set.
CREATE SCHEMA :sch;
SET search_path = :sch;
SELECT session_user, current_user, current_setting('is_superuser') AS is_superuser;

-- ---------------------------------------------------------------- notices and warnings
DROP TABLE IF EXISTS nosuch_table;
DO $$
BEGIN
    RAISE NOTICE 'notice from a DO block';
    RAISE WARNING 'warning from a DO block' USING DETAIL = 'warning detail', HINT = 'warning hint';
END $$;
CREATE FUNCTION f_notice(i int) RETURNS int LANGUAGE plpgsql
    AS $$ BEGIN RAISE NOTICE 'f_notice(%)', i; RETURN i; END $$;
SELECT f_notice(1);
CREATE TABLE IF NOT EXISTS tr_notices (a int);
CREATE TABLE IF NOT EXISTS tr_notices (a int);
SET client_min_messages = warning;
DO $$ BEGIN RAISE NOTICE 'hidden notice'; RAISE WARNING 'shown warning'; END $$;
RESET client_min_messages;
DO $$ BEGIN RAISE NOTICE 'notice with fields' USING DETAIL = 'd', HINT = 'h', SCHEMA = 's',
    TABLE = 't', COLUMN = 'c', CONSTRAINT = 'k', DATATYPE = 'dt', ERRCODE = 'P0042'; END $$;
LISTEN tr_channel;
NOTIFY tr_channel, 'hello';
SELECT pg_notify('tr_channel', 'from a function');
UNLISTEN *;

-- ---------------------------------------------------------------- plain errors (no utility statement)
SELECT 1 / 0;
SELECT nosuchcol FROM pg_class WHERE false;
SELECT * FROM nosuch_table;
SELECT 'abc'::int;
SELECT f_notice('x');
SELECT f_nosuch(1);

-- ---------------------------------------------------------------- DDL errors (position, caret)
CREATE TABLE t_bad (a int, b nosuchtype);
CREATE TABLE t_bad (a int REFERENCES nosuch_table);
CREATE TABLE t_bad (a int, a int);
CREATE TABLE t_bad (a int CHECK (nosuchcol > 0));
CREATE TABLE t_bad (a int DEFAULT 1 / 0);
CREATE FUNCTION f_bad(int) RETURNS int LANGUAGE sql AS 'SELECT $2';
CREATE FUNCTION f_bad() RETURNS int LANGUAGE sql AS 'SELECT nosuchcol FROM pg_class';
CREATE FUNCTION f_bad() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETUR 1; END $$;
CREATE FUNCTION f_bad() RETURNS int LANGUAGE plpgsql AS $$ DECLARE x nosuchtype; BEGIN RETURN 1; END $$;
CREATE FUNCTION f_bad() RETURNS int LANGUAGE nosuchlang AS 'x';
CREATE VIEW v_bad AS SELECT nosuchcol FROM pg_class;
CREATE INDEX ON nosuch_table (a);
ALTER TABLE nosuch_table ADD COLUMN x int;
COMMENT ON TABLE nosuch_table IS 'x';
CREATE TABLE t_ok (a int);
CREATE TABLE t_ok (a int);
INSERT INTO t_ok VALUES (1);
CREATE INDEX t_ok_div ON t_ok ((a / 0));
CREATE TABLE t_ctas AS SELECT 1 / 0 AS x;
SELECT 1 / 0 AS x INTO t_selinto;
DROP TABLE t_ok, nosuch_table;
DROP FUNCTION f_nosuch(int);

-- ---------------------------------------------------------------- DO blocks and CALL (CONTEXT lines)
DO $$ BEGIN PERFORM 1 / 0; END $$;
DO $$ DECLARE r int; BEGIN SELECT nosuchcol INTO r FROM pg_class; END $$;
DO $$ BEGIN EXECUTE 'CREATE TABLE t_bad (a nosuchtype)'; END $$;
DO $$ BEGIN EXECUTE 'DO $d$ BEGIN PERFORM 1 / 0; END $d$'; END $$;
DO $$ BEGIN ASSERT 1 = 2, 'assertion message'; END $$;
DO $$ BEGIN RAISE; END $$;
DO $$ BEGIN nosuch_statement; END $$;
CREATE PROCEDURE p_raise() LANGUAGE plpgsql AS $$ BEGIN PERFORM 1 / 0; END $$;
CALL p_raise();
CREATE PROCEDURE p_nested() LANGUAGE plpgsql AS $$ BEGIN CALL p_raise(); END $$;
CALL p_nested();
CREATE PROCEDURE p_sql_raise() LANGUAGE sql AS 'SELECT 1 / 0';
CALL p_sql_raise();
CREATE FUNCTION f_raise() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1 / 0; END $$;
SELECT f_raise();
CREATE FUNCTION f_sql_raise() RETURNS int LANGUAGE sql AS 'SELECT 1 / 0';
SELECT f_sql_raise();
CREATE FUNCTION f_exec(stmt text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE stmt; END $$;
SELECT f_exec('CREATE TABLE t_bad (a nosuchtype)');
SELECT f_exec('DO $d$ BEGIN PERFORM 1 / 0; END $d$');
SELECT f_exec('CALL p_raise()');
CALL nosuch_proc();
CALL p_raise(1);
CALL f_raise();
CREATE PROCEDURE p_out(INOUT x int) LANGUAGE plpgsql AS $$ BEGIN x := x * 2; RAISE NOTICE 'p_out %', x; END $$;
CALL p_out(21);

-- ---------------------------------------------------------------- procedures with transaction control
CREATE TABLE tc (i int);
CREATE PROCEDURE p_tc(fail boolean) LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tc VALUES (1);
    COMMIT;
    INSERT INTO tc VALUES (2);
    ROLLBACK;
    INSERT INTO tc VALUES (3);
    COMMIT;
    RAISE NOTICE 'p_tc: rows %', (SELECT string_agg(i::text, ',' ORDER BY i) FROM tc);
    IF fail THEN
        INSERT INTO tc VALUES (4);
        PERFORM 1 / 0;
    END IF;
END $$;
CALL p_tc(false);
CALL p_tc(true);
SELECT i FROM tc ORDER BY i;
BEGIN;
CALL p_tc(false);
ROLLBACK;
CREATE PROCEDURE p_tc_outer() LANGUAGE plpgsql
    AS $$ BEGIN CALL p_tc(false); COMMIT; RAISE NOTICE 'p_tc_outer committed'; CALL p_tc(true); END $$;
CALL p_tc_outer();
DO $$ BEGIN INSERT INTO tc VALUES (5); COMMIT; INSERT INTO tc VALUES (6); ROLLBACK; END $$;
SELECT i, count(*) FROM tc GROUP BY i ORDER BY i;
CREATE FUNCTION f_commit() RETURNS void LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;
SELECT f_commit();
CREATE PROCEDURE p_commit_in_exception() LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        COMMIT;
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'caught: % %', SQLSTATE, SQLERRM;
    END;
END $$;
CALL p_commit_in_exception();
CREATE PROCEDURE p_tc_set() LANGUAGE plpgsql SET work_mem = '2MB' AS $$ BEGIN COMMIT; END $$;
CALL p_tc_set();
CREATE PROCEDURE p_tc_loop() LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    FOR r IN SELECT i FROM generate_series(1, 3) AS i LOOP
        INSERT INTO tc VALUES (100 + r.i);
        IF r.i % 2 = 0 THEN ROLLBACK; ELSE COMMIT; END IF;
    END LOOP;
END $$;
CALL p_tc_loop();
SELECT i FROM tc WHERE i > 100 ORDER BY i;

-- ---------------------------------------------------------------- RAISE ... USING every field
CREATE PROCEDURE p_fields() LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'custom error with every field'
        USING DETAIL = 'the detail', HINT = 'the hint', ERRCODE = 'check_violation',
              SCHEMA = 'the_schema', TABLE = 'the_table', COLUMN = 'the_column',
              CONSTRAINT = 'the_constraint', DATATYPE = 'the_datatype';
END $$;
CALL p_fields();
DO $$ BEGIN CALL p_fields(); END $$;
CREATE FUNCTION f_fields() RETURNS void LANGUAGE plpgsql AS $$ BEGIN CALL p_fields(); END $$;
SELECT f_fields();
DO $$ BEGIN RAISE SQLSTATE 'P0042' USING MESSAGE = 'custom sqlstate'; END $$;
DO $$ BEGIN RAISE unique_violation USING MESSAGE = 'by condition name', SCHEMA = 'sch', TABLE = 'tab', CONSTRAINT = 'con'; END $$;

-- ---------------------------------------------------------------- constraint violations
CREATE TABLE parent (id int PRIMARY KEY);
INSERT INTO parent VALUES (1);
CREATE TABLE child (id int, pid int, note text);
INSERT INTO child VALUES (1, 1, 'a'), (1, 2, NULL);
ALTER TABLE child ADD CONSTRAINT child_note_check CHECK (note IS NOT NULL);
ALTER TABLE child ALTER COLUMN note SET NOT NULL;
ALTER TABLE child ADD CONSTRAINT child_id_key UNIQUE (id);
CREATE UNIQUE INDEX child_id_idx ON child (id);
ALTER TABLE child ADD CONSTRAINT child_pid_fkey FOREIGN KEY (pid) REFERENCES parent (id);
ALTER TABLE child ADD CONSTRAINT child_pid_fkey2 FOREIGN KEY (pid) REFERENCES parent (id) NOT VALID;
ALTER TABLE child VALIDATE CONSTRAINT child_pid_fkey2;
ALTER TABLE child ADD COLUMN d int NOT NULL;
ALTER TABLE child ADD COLUMN e int DEFAULT 1 CONSTRAINT child_e_check CHECK (e > 1);
ALTER TABLE child ALTER COLUMN note TYPE int;
ALTER TABLE child ALTER COLUMN note TYPE int USING note::int;
ALTER TABLE child ALTER COLUMN nosuchcol SET NOT NULL;
INSERT INTO parent VALUES (1);
INSERT INTO child (id, pid, note) VALUES (3, 3, 'x');
UPDATE parent SET id = 2;
DELETE FROM parent;
CREATE TABLE part (a int) PARTITION BY RANGE (a);
CREATE TABLE part1 PARTITION OF part FOR VALUES FROM (0) TO (10);
CREATE TABLE part2 PARTITION OF part FOR VALUES FROM (5) TO (15);
INSERT INTO part VALUES (20);
CREATE TABLE part_more (a int);
INSERT INTO part_more VALUES (3);
ALTER TABLE part ATTACH PARTITION part_more FOR VALUES FROM (20) TO (30);
CREATE DOMAIN posint AS int CONSTRAINT posint_check CHECK (VALUE > 0);
CREATE TABLE dom (v posint);
INSERT INTO dom VALUES (7);
ALTER DOMAIN posint ADD CONSTRAINT posint_small CHECK (VALUE < 5);
ALTER DOMAIN posint SET NOT NULL;
INSERT INTO dom VALUES (NULL);
ALTER DOMAIN posint SET NOT NULL;
SELECT (-1)::posint;
INSERT INTO dom VALUES (-1);

-- ---------------------------------------------------------------- COPY (CONTEXT with line numbers)
CREATE TABLE cp (a int, b text NOT NULL, CONSTRAINT cp_a_check CHECK (a < 100));
COPY cp FROM stdin;
1	one
2	two
three	3
\.
COPY cp FROM stdin;
1	one
2
\.
COPY cp FROM stdin WITH (FORMAT csv);
1,one
200,two
\.
COPY cp FROM stdin WITH (FORMAT csv);
1,one
2,
\.
COPY cp FROM stdin;
1	one
\.
\copy cp from stdin
x	y
\.
COPY cp TO stdout;
COPY cp (nosuchcol) TO stdout;
COPY nosuch_table TO stdout;
COPY (SELECT 1 / 0) TO stdout;
COPY (SELECT f_raise()) TO stdout;
COPY cp TO stdout WITH (FORMAT nosuch);
COPY cp FROM '/nonexistent/transparency.data';

-- ---------------------------------------------------------------- EXPLAIN ANALYZE
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF) SELECT count(*) FROM cp;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF) SELECT f_notice(2);
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF) SELECT 1 / 0;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF) SELECT f_raise();
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, BUFFERS OFF) INSERT INTO parent VALUES (1);
EXPLAIN (COSTS OFF) SELECT nosuchcol FROM parent;
EXPLAIN (NOSUCHOPTION) SELECT 1;

-- ---------------------------------------------------------------- REFRESH MATERIALIZED VIEW
CREATE TABLE mvsrc (a int);
INSERT INTO mvsrc VALUES (1), (2);
CREATE FUNCTION f_div(i int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 10 / i; END $$;
CREATE MATERIALIZED VIEW mv AS SELECT f_div(a) AS x, a FROM mvsrc;
CREATE UNIQUE INDEX mv_a ON mv (a);
UPDATE mvsrc SET a = 0 WHERE a = 2;
REFRESH MATERIALIZED VIEW mv;
REFRESH MATERIALIZED VIEW CONCURRENTLY mv;
UPDATE mvsrc SET a = 1;
REFRESH MATERIALIZED VIEW CONCURRENTLY mv;
REFRESH MATERIALIZED VIEW mv;
CREATE MATERIALIZED VIEW mv_bad AS SELECT f_div(0);
CREATE TABLE mvsrc2 (a int);
INSERT INTO mvsrc2 VALUES (1);
CREATE MATERIALIZED VIEW mv2 AS SELECT f_div(a) AS x FROM mvsrc2;
UPDATE mvsrc2 SET a = 0;
REFRESH MATERIALIZED VIEW mv2;
REFRESH MATERIALIZED VIEW nosuch_mv;

-- ---------------------------------------------------------------- cursors and prepared statements
BEGIN;
DECLARE c CURSOR FOR SELECT f_div(i) FROM generate_series(1, 0, -1) AS i;
FETCH 1 FROM c;
FETCH 1 FROM c;
ROLLBACK;
PREPARE q(int) AS SELECT 10 / $1;
EXECUTE q(5);
EXECUTE q(0);
EXECUTE q('x');
EXECUTE nosuch_q;
DEALLOCATE q;

-- ---------------------------------------------------------------- errors during executor start-up
-- Initial partition pruning evaluates a stable function in ExecutorStart (ExecInitAppend) when
-- the plan is generic (with constant arguments the planner already calls it, for estimates).
CREATE TABLE pruned (a int) PARTITION BY LIST (a);
CREATE TABLE pruned1 PARTITION OF pruned FOR VALUES IN (1);
CREATE TABLE pruned2 PARTITION OF pruned FOR VALUES IN (2);
CREATE FUNCTION f_stable_fields(i int) RETURNS int LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF i = 0 THEN
        RAISE EXCEPTION 'raised while the executor starts' USING DETAIL = 'the detail',
            ERRCODE = 'P0043', SCHEMA = 'the_schema', TABLE = 'the_table', COLUMN = 'the_column',
            CONSTRAINT = 'the_constraint', DATATYPE = 'the_datatype';
    END IF;
    RETURN i;
END $$;
CREATE FUNCTION f_prune(i int) RETURNS bigint LANGUAGE plpgsql
    AS $$ BEGIN RETURN (SELECT count(*) FROM pruned WHERE a = f_stable_fields(i)); END $$;
SELECT * FROM pruned WHERE a = f_stable_fields(0);
SET plan_cache_mode = force_generic_plan;
SELECT f_prune(1);
SELECT f_prune(0);
PREPARE pq(int) AS SELECT * FROM pruned WHERE a = f_stable_fields($1);
EXPLAIN (COSTS OFF) EXECUTE pq(1);
EXECUTE pq(0);
DEALLOCATE pq;
RESET plan_cache_mode;

-- ---------------------------------------------------------------- cancellation, parallel query
SET statement_timeout = '50ms';
SELECT pg_sleep(1);
DO $$ BEGIN PERFORM pg_sleep(1); END $$;
RESET statement_timeout;
CREATE TABLE par AS SELECT i FROM generate_series(1, 2000) AS i;
ANALYZE par;
CREATE FUNCTION f_par(i int) RETURNS int LANGUAGE plpgsql PARALLEL SAFE
    AS $$ BEGIN IF i = 1000 THEN RAISE EXCEPTION 'raised in a parallel worker' USING TABLE = 'par'; END IF; RETURN i; END $$;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
GRANT USAGE ON SCHEMA :sch TO tr_group;
GRANT SELECT ON par TO tr_group;
SELECT count(*) FROM par WHERE f_par(i) > 0 AND i <> 1000;
SET ROLE tr_group;
SELECT count(*) FROM par WHERE f_par(i) > 0 AND i <> 1000;
RESET ROLE;
SELECT count(*) FROM par WHERE f_par(i) > 0;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET parallel_leader_participation;

-- ---------------------------------------------------------------- errors caught in PL/pgSQL
CREATE FUNCTION diag(stmt text) RETURNS TABLE (field text, value text) LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text; det text; hnt text; ctx text;
    sch text; tbl text; col text; typ text; con text;
BEGIN
    BEGIN
        EXECUTE stmt;
        RETURN QUERY VALUES ('result', 'no error');
        RETURN;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS
            st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
            hnt = PG_EXCEPTION_HINT, ctx = PG_EXCEPTION_CONTEXT, sch = SCHEMA_NAME,
            tbl = TABLE_NAME, col = COLUMN_NAME, typ = PG_DATATYPE_NAME, con = CONSTRAINT_NAME;
    END;
    RETURN QUERY VALUES ('sqlstate', st), ('message', msg), ('detail', det), ('hint', hnt),
        ('schema', sch), ('table', tbl), ('column', col), ('datatype', typ),
        ('constraint', con), ('context', ctx);
END $$;
SELECT * FROM diag('SELECT f_div(0)');
SELECT * FROM diag('INSERT INTO parent VALUES (1)');
SELECT * FROM diag('CREATE TABLE t_bad (a nosuchtype)');
SELECT * FROM diag('DO $d$ BEGIN PERFORM 1 / 0; END $d$');
SELECT * FROM diag('CALL p_raise()');
SELECT * FROM diag('CALL p_fields()');
SELECT * FROM diag('ALTER TABLE child ADD CONSTRAINT child_note_check CHECK (note IS NOT NULL)');
SELECT * FROM diag('ALTER TABLE child ALTER COLUMN note SET NOT NULL');
SELECT * FROM diag('ALTER TABLE child ADD CONSTRAINT child_id_key UNIQUE (id)');
SELECT * FROM diag('ALTER TABLE child VALIDATE CONSTRAINT child_pid_fkey2');
SELECT * FROM diag('ALTER DOMAIN posint ADD CONSTRAINT posint_small CHECK (VALUE < 5)');
SELECT * FROM diag('REFRESH MATERIALIZED VIEW mv');
SELECT * FROM diag('REFRESH MATERIALIZED VIEW mv2');
SET plan_cache_mode = force_generic_plan;
SELECT * FROM diag('SELECT f_prune(0)');
RESET plan_cache_mode;
SELECT * FROM diag('EXPLAIN ANALYZE SELECT f_div(0)');
SELECT * FROM diag('COPY cp TO stdout');
SELECT * FROM diag('SET ROLE nosuch_role');
SELECT * FROM diag('SET work_mem = ''lots''');
DO $$
BEGIN
    BEGIN
        CALL p_fields();
    EXCEPTION WHEN check_violation THEN
        RAISE NOTICE 'caught check_violation: %', SQLERRM;
        RAISE;
    END;
END $$;
DO $$
BEGIN
    EXECUTE 'DO $d$ BEGIN RAISE SQLSTATE ''P0042'' USING MESSAGE = ''application error''; END $d$';
EXCEPTION WHEN SQLSTATE 'P0042' THEN
    RAISE NOTICE 'caught the application''s own SQLSTATE: %', SQLERRM;
END $$;
DO $$
BEGIN
    ALTER TABLE child ALTER COLUMN note SET NOT NULL;
EXCEPTION WHEN not_null_violation THEN
    RAISE NOTICE 'caught not_null_violation: %', SQLERRM;
END $$;
SELECT count(*) FROM child;

-- ---------------------------------------------------------------- savepoints
BEGIN;
CREATE TABLE sp (a int);
SAVEPOINT s1;
CREATE TABLE sp (a int);
SELECT 1;
ROLLBACK TO SAVEPOINT s1;
INSERT INTO sp VALUES (1);
SAVEPOINT s2;
ALTER TABLE sp ADD CONSTRAINT sp_a_check CHECK (a > 1);
ROLLBACK TO s2;
SAVEPOINT s3;
CALL p_raise();
ROLLBACK TO s3;
SAVEPOINT s4;
SET ROLE tr_group;
SELECT current_user;
ROLLBACK TO s4;
SELECT current_user;
RELEASE SAVEPOINT s1;
SELECT a FROM sp;
ROLLBACK TO nosuch_savepoint;
COMMIT;
SELECT a FROM sp;
\set ON_ERROR_ROLLBACK on
BEGIN;
CREATE TABLE sp2 (a int);
CREATE TABLE sp2 (a int);
INSERT INTO sp2 VALUES (1);
DO $$ BEGIN PERFORM 1 / 0; END $$;
CALL p_fields();
COMMIT;
SELECT a FROM sp2;
\set ON_ERROR_ROLLBACK off
SAVEPOINT outside;
RELEASE SAVEPOINT outside;
COMMIT;
BEGIN;
BEGIN;
PREPARE TRANSACTION 'tr_prepared';
ROLLBACK;

-- ---------------------------------------------------------------- roles and settings (no gated role)
SELECT session_user, current_user;
SET ROLE tr_group;
SELECT session_user, current_user, current_setting('role') AS role;
RESET ROLE;
SET ROLE tr_bob;
SELECT current_user;
RESET ROLE;
SET ROLE nosuch_role;
SET ROLE NONE;
SELECT set_config('role', 'tr_group', false), current_user;
RESET ROLE;
SELECT set_config('role', 'tr_bob', false);
RESET ROLE;
SELECT set_config('role', 'tr_group', true), current_user;
SELECT current_user;
BEGIN;
SET LOCAL ROLE tr_group;
SELECT current_user;
COMMIT;
SELECT current_user;
BEGIN;
SET ROLE tr_group;
ROLLBACK;
SELECT current_user;
CREATE FUNCTION f_as_group() RETURNS text LANGUAGE sql SET role = tr_group AS 'SELECT current_user::text';
SELECT f_as_group(), current_user;
CREATE FUNCTION f_as_bob() RETURNS text LANGUAGE sql SET role = tr_bob AS 'SELECT current_user::text';
SELECT f_as_bob();
DO $$ BEGIN EXECUTE 'SET ROLE tr_group'; RAISE NOTICE 'in DO: %', current_user; EXECUTE 'RESET ROLE'; END $$;
DO $$ BEGIN PERFORM set_config('role', 'tr_bob', true); END $$;
CREATE FUNCTION f_secdef() RETURNS text LANGUAGE plpgsql SECURITY DEFINER
    AS $$ BEGIN SET ROLE tr_group; RETURN current_user; END $$;
SELECT f_secdef();
SHOW role;
SET work_mem = '2MB';
SHOW work_mem;
RESET work_mem;
SET work_mem = 'lots';
SET nosuch_parameter = 1;
SET tr_custom.thing = 'x';
SHOW tr_custom.thing;
SET work_mem = '3MB';
SET ROLE tr_group;
RESET ALL;
SELECT current_user, current_setting('work_mem') AS work_mem;
SET ROLE tr_group;
DISCARD ALL;
SELECT session_user, current_user;
SET search_path = :sch;
SET SESSION AUTHORIZATION DEFAULT;

-- ---------------------------------------------------------------- ALTER ... OWNER TO ungated roles
CREATE TABLE own_t (a int);
ALTER TABLE own_t OWNER TO tr_group;
ALTER TABLE own_t OWNER TO tr_bob;
ALTER TABLE own_t OWNER TO nosuch_role;
CREATE FUNCTION own_f() RETURNS int LANGUAGE sql AS 'SELECT 1';
ALTER FUNCTION own_f() OWNER TO tr_group;
CREATE TYPE own_type AS (a int);
ALTER TYPE own_type OWNER TO tr_group;
CREATE VIEW own_v AS SELECT 1 AS a;
ALTER VIEW own_v OWNER TO tr_group;
CREATE SEQUENCE own_s;
ALTER SEQUENCE own_s OWNER TO tr_group;
CREATE TEMP TABLE own_tmp (a int);
ALTER TABLE own_tmp OWNER TO tr_group;
ALTER SCHEMA :sch OWNER TO tr_group;
ALTER SCHEMA :sch OWNER TO CURRENT_USER;
SELECT c.relname, pg_get_userbyid(c.relowner) AS owner
  FROM pg_class c WHERE c.relnamespace = :'sch'::regnamespace AND c.relname LIKE 'own%' ORDER BY 1;

-- ---------------------------------------------------------------- extended protocol
SELECT nosuchcol FROM parent \gdesc
SELECT 1 / 0 AS x \gdesc
-- \bind (psql 16 and later) in a file of its own: an older psql reports an unknown
-- command even in a skipped \if branch.
SELECT :VERSION_NUM >= 160000 AS psql_has_bind \gset
\if :psql_has_bind
\ir transparency_bind.sql
\endif

-- ---------------------------------------------------------------- \errverbose
\set VERBOSITY terse
CREATE TABLE t_bad (a nosuchtype);
\errverbose
DO $$ BEGIN PERFORM 1 / 0; END $$;
\errverbose
CALL p_fields();
\errverbose
ALTER TABLE child ADD CONSTRAINT child_note_check CHECK (note IS NOT NULL);
\errverbose
\set VERBOSITY default
REFRESH MATERIALIZED VIEW mv;
\set VERBOSITY verbose
SELECT pg_stat_force_next_flush();
