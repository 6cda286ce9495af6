//! DESIGN.md guarantee 1, membership routes (route `membership`): every statement PostgreSQL
//! allows because the session user is a member of a gated role, whatever INHERIT says, is
//! refused to an off-call member — SQLSTATE 42501 from pg_oncall naming role and identity, and
//! the catalogs unchanged afterwards (owner, ACL, nothing created) — and allowed to an on-call
//! one (or left to PostgreSQL's own answer). One test per statement kind, each on its own
//! cluster (`e2e::team`: prod_admin gated, alice on call, bob not).
//!
//! | route | test |
//! |---|---|
//! | `ALTER FUNCTION pg_temp.f() OWNER TO R` (SECURITY DEFINER, temporary) | `membership_temp_security_definer_function_owner_to` |
//! | temp view granted to PUBLIC, then `ALTER VIEW … OWNER TO R` | `membership_view_owner_to` |
//! | `ALTER TABLE … OWNER TO R` (also temporary, and among other subcommands) | `membership_table_owner_to` |
//! | `ALTER SCHEMA … OWNER TO R` | `membership_schema_owner_to` |
//! | `ALTER TYPE … OWNER TO R` (enum, composite, domain) | `membership_type_owner_to` |
//! | `ALTER SEQUENCE … OWNER TO R` | `membership_sequence_owner_to` |
//! | `ALTER LARGE OBJECT … OWNER TO R` | `membership_large_object_owner_to` |
//! | `ALTER MATERIALIZED VIEW … OWNER TO R` | `membership_materialized_view_owner_to` |
//! | `ALTER {AGGREGATE, PROCEDURE, ROUTINE, COLLATION, CONVERSION, OPERATOR, STATISTICS, TEXT SEARCH …} OWNER TO R` (each kind reports on its own) | `membership_other_object_kinds_owner_to` |
//! | `CREATE SCHEMA … AUTHORIZATION R GRANT …` (elements run as R) | `membership_create_schema_authorization_with_grant` |
//! | `CREATE DATABASE … OWNER R` (CREATEDB) | `membership_create_database_owner` |
//! | `ALTER DATABASE … OWNER TO R` (CREATEDB) | `membership_alter_database_owner_to` |
//! | `ALTER DEFAULT PRIVILEGES FOR ROLE R` (a membership check on PG15) | `membership_alter_default_privileges_for_role` |
//! | `REASSIGN OWNED BY x TO R`, `REASSIGN OWNED BY R`, `DROP OWNED BY R` | `membership_reassign_and_drop_owned` |
//! | `GRANT … GRANTED BY R` | `membership_grant_granted_by` |
//! | a membership route inside PL/pgSQL `EXECUTE`, and inside another member's SECURITY DEFINER function | `membership_routes_nested_and_through_another_members_function` |

use e2e::*;
use postgres::error::SqlState;

// ------------------------------------------------------------------ membership routes

/// The exact attack: a temporary SECURITY DEFINER function reading a table only
/// prod_admin may read, handed to prod_admin.
#[test]
fn membership_temp_security_definer_function_owner_to() {
    let t = team(&[]);
    let create = "CREATE FUNCTION pg_temp.f() RETURNS text LANGUAGE sql SECURITY DEFINER AS $$ SELECT x FROM work.secret $$";
    let mut bob = t.connect_as("bob");
    ok(bob.batch_execute(create), "bob creates the temporary function");
    let offset = t.cluster.log_len();
    assert_bob_refused(bob.batch_execute("ALTER FUNCTION pg_temp.f() OWNER TO prod_admin"), "bob ALTER FUNCTION … OWNER TO");
    let owner: String = bob.query_one("SELECT proowner::regrole::text FROM pg_proc WHERE proname = 'f' AND pronamespace = pg_my_temp_schema()", &[]).unwrap().get(0);
    assert_eq!(owner, "bob", "the function is still bob's");
    let e = bob.batch_execute("SELECT pg_temp.f()").expect_err("bob's function runs with bob's rights");
    assert_eq!(db_error(&e).code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(db_error(&e).message().contains("permission denied for table secret"), "{}", error_text(&e));
    let deny = expect_audit(&t.cluster, offset, "deny", "membership", "bob", GATED);
    assert_eq!(deny.get("identity"), BOB_EMAIL);

    let mut alice = t.connect_as("alice");
    ok(alice.batch_execute(create), "alice creates the temporary function");
    ok(alice.batch_execute("ALTER FUNCTION pg_temp.f() OWNER TO prod_admin"), "on-call alice hands it to prod_admin");
    let v = ok(simple_value(&mut alice, "SELECT pg_temp.f()"), "alice calls it");
    assert_eq!(v.as_deref(), Some("s3cr3t"));
    expect_audit(&t.cluster, offset, "allow", "membership", "alice", GATED);
}

/// A view granted to PUBLIC, then handed to prod_admin: it would read with prod_admin's rights.
#[test]
fn membership_view_owner_to() {
    let t = team(&[]);
    let mut bob = t.connect_as("bob");
    ok(bob.batch_execute("CREATE TEMP VIEW v AS SELECT x FROM work.secret; GRANT SELECT ON v TO PUBLIC"), "bob's view");
    let acl_before: Option<String> = bob.query_one("SELECT relacl::text FROM pg_class WHERE oid = 'v'::regclass", &[]).unwrap().get(0);
    for sql in ["ALTER VIEW v OWNER TO prod_admin", "ALTER TABLE v OWNER TO prod_admin"] {
        assert_bob_refused(bob.batch_execute(sql), sql);
    }
    let (owner, acl): (String, Option<String>) = {
        let r = bob.query_one("SELECT relowner::regrole::text, relacl::text FROM pg_class WHERE oid = 'v'::regclass", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(owner, "bob");
    assert_eq!(acl, acl_before, "no ACL changed");
    assert!(bob.query("SELECT * FROM v", &[]).is_err(), "the view reads with bob's rights: nothing");

    let mut alice = t.connect_as("alice");
    ok(alice.batch_execute("CREATE TEMP VIEW v AS SELECT x FROM work.secret; GRANT SELECT ON v TO PUBLIC; ALTER VIEW v OWNER TO prod_admin"), "alice on call");
    let v = ok(simple_value(&mut alice, "SELECT x FROM v"), "alice reads her view");
    assert_eq!(v.as_deref(), Some("s3cr3t"));
}

/// One `ALTER … OWNER TO prod_admin` case: bob (off call) is refused and `owner_sql` still says
/// bob; alice (on call) succeeds and it says prod_admin.
fn owner_to_case(t: &Team, setup: &str, alter: &str, owner_sql: &str) {
    // Per user: {who} is the user's name, {op} an operator name, {oid} a large object OID.
    let fill = |sql: &str, who: &str| {
        let (op, oid) = if who == "bob" { ("#~#", "5001") } else { ("&~&", "5002") };
        sql.replace("{who}", who).replace("{op}", op).replace("{oid}", oid)
    };
    let mut bob = t.connect_as("bob");
    let bob_setup = fill(setup, "bob");
    ok(bob.batch_execute(&bob_setup), &format!("bob: {bob_setup}"));
    let bob_alter = fill(alter, "bob");
    let offset = t.cluster.log_len();
    assert_bob_refused(bob.batch_execute(&bob_alter), &bob_alter);
    let owner: String = ok(bob.query_one(&fill(owner_sql, "bob"), &[]), owner_sql).get(0);
    assert_eq!(owner, "bob", "{bob_alter}: nothing handed over");
    expect_audit(&t.cluster, offset, "deny", "membership", "bob", GATED);

    let mut alice = t.connect_as("alice");
    let alice_setup = fill(setup, "alice");
    ok(alice.batch_execute(&alice_setup), &format!("alice: {alice_setup}"));
    let alice_alter = fill(alter, "alice");
    ok(alice.batch_execute(&alice_alter), &format!("on-call alice: {alice_alter}"));
    let owner: String = ok(alice.query_one(&fill(owner_sql, "alice"), &[]), owner_sql).get(0);
    assert_eq!(owner, GATED, "{alice_alter}: handed over while on call");
    expect_audit(&t.cluster, offset, "allow", "membership", "alice", GATED);
}

#[test]
fn membership_table_owner_to() {
    let t = team(&[]);
    owner_to_case(
        &t,
        "CREATE TABLE lab.t_{who} (x int)",
        "ALTER TABLE lab.t_{who} OWNER TO prod_admin",
        "SELECT relowner::regrole::text FROM pg_class WHERE oid = 'lab.t_{who}'::regclass",
    );
    // A temporary table too.
    let mut bob = t.connect_as("bob");
    ok(bob.batch_execute("CREATE TEMP TABLE tt (x int)"), "bob's temp table");
    assert_bob_refused(bob.batch_execute("ALTER TABLE tt OWNER TO prod_admin"), "temp table");
    // One subcommand among several.
    ok(bob.batch_execute("CREATE TABLE lab.multi (x int)"), "bob's table");
    assert_bob_refused(bob.batch_execute("ALTER TABLE lab.multi ADD COLUMN y int, OWNER TO prod_admin"), "OWNER TO among subcommands");
    let cols: i64 = bob.query_one("SELECT count(*) FROM pg_attribute WHERE attrelid = 'lab.multi'::regclass AND attnum > 0", &[]).unwrap().get(0);
    assert_eq!(cols, 1, "the whole ALTER TABLE was refused");
}

#[test]
fn membership_schema_owner_to() {
    let t = team(&[]);
    owner_to_case(
        &t,
        "CREATE SCHEMA s_{who}",
        "ALTER SCHEMA s_{who} OWNER TO prod_admin",
        "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 's_{who}'",
    );
}

#[test]
fn membership_type_owner_to() {
    let t = team(&[]);
    owner_to_case(
        &t,
        "CREATE TYPE lab.mood_{who} AS ENUM ('ok')",
        "ALTER TYPE lab.mood_{who} OWNER TO prod_admin",
        "SELECT typowner::regrole::text FROM pg_type WHERE oid = 'lab.mood_{who}'::regtype",
    );
    owner_to_case(
        &t,
        "CREATE TYPE lab.pair_{who} AS (a int, b int)",
        "ALTER TYPE lab.pair_{who} OWNER TO prod_admin",
        "SELECT typowner::regrole::text FROM pg_type WHERE oid = 'lab.pair_{who}'::regtype",
    );
    owner_to_case(
        &t,
        "CREATE DOMAIN lab.pos_{who} AS int CHECK (VALUE > 0)",
        "ALTER DOMAIN lab.pos_{who} OWNER TO prod_admin",
        "SELECT typowner::regrole::text FROM pg_type WHERE oid = 'lab.pos_{who}'::regtype",
    );
}

#[test]
fn membership_sequence_owner_to() {
    let t = team(&[]);
    owner_to_case(
        &t,
        "CREATE SEQUENCE lab.s_{who}",
        "ALTER SEQUENCE lab.s_{who} OWNER TO prod_admin",
        "SELECT relowner::regrole::text FROM pg_class WHERE oid = 'lab.s_{who}'::regclass",
    );
}

#[test]
fn membership_large_object_owner_to() {
    let t = team(&[]);
    owner_to_case(
        &t,
        "SELECT lo_create({oid})",
        "ALTER LARGE OBJECT {oid} OWNER TO prod_admin",
        "SELECT lomowner::regrole::text FROM pg_largeobject_metadata WHERE oid = {oid}",
    );
}

#[test]
fn membership_materialized_view_owner_to() {
    let t = team(&[]);
    owner_to_case(
        &t,
        "CREATE MATERIALIZED VIEW lab.mv_{who} AS SELECT 1 AS one",
        "ALTER MATERIALIZED VIEW lab.mv_{who} OWNER TO prod_admin",
        "SELECT relowner::regrole::text FROM pg_class WHERE oid = 'lab.mv_{who}'::regclass",
    );
}

/// Every other object kind a non-superuser can create and hand over (AlterObjectOwner_internal).
#[test]
fn membership_other_object_kinds_owner_to() {
    let t = team(&[]);
    let kinds: [(&str, &str, &str, &str); 9] = [
        (
            "aggregate",
            "CREATE AGGREGATE lab.agg_{who}(int) (SFUNC = int4pl, STYPE = int)",
            "ALTER AGGREGATE lab.agg_{who}(int) OWNER TO prod_admin",
            "SELECT proowner::regrole::text FROM pg_proc WHERE oid = 'lab.agg_{who}(int)'::regprocedure",
        ),
        (
            "procedure",
            "CREATE PROCEDURE lab.p_{who}() LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$",
            "ALTER PROCEDURE lab.p_{who}() OWNER TO prod_admin",
            "SELECT proowner::regrole::text FROM pg_proc WHERE oid = 'lab.p_{who}()'::regprocedure",
        ),
        (
            "routine",
            "CREATE FUNCTION lab.r_{who}() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$",
            "ALTER ROUTINE lab.r_{who}() OWNER TO prod_admin",
            "SELECT proowner::regrole::text FROM pg_proc WHERE oid = 'lab.r_{who}()'::regprocedure",
        ),
        (
            "collation",
            "CREATE COLLATION lab.c_{who} FROM \"C\"",
            "ALTER COLLATION lab.c_{who} OWNER TO prod_admin",
            "SELECT collowner::regrole::text FROM pg_collation WHERE collname = 'c_{who}'",
        ),
        (
            "conversion",
            "CREATE CONVERSION lab.cv_{who} FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8",
            "ALTER CONVERSION lab.cv_{who} OWNER TO prod_admin",
            "SELECT conowner::regrole::text FROM pg_conversion WHERE conname = 'cv_{who}'",
        ),
        (
            "operator",
            "CREATE FUNCTION lab.opf_{who}(int, int) RETURNS int LANGUAGE sql AS $$ SELECT $1 + $2 $$;
             CREATE OPERATOR lab.{op} (LEFTARG = int, RIGHTARG = int, FUNCTION = lab.opf_{who})",
            "ALTER OPERATOR lab.{op} (int, int) OWNER TO prod_admin",
            "SELECT oprowner::regrole::text FROM pg_operator WHERE oprname = '{op}'",
        ),
        (
            "statistics",
            "CREATE TABLE lab.st_{who} (a int, b int); CREATE STATISTICS lab.stx_{who} ON a, b FROM lab.st_{who}",
            "ALTER STATISTICS lab.stx_{who} OWNER TO prod_admin",
            "SELECT stxowner::regrole::text FROM pg_statistic_ext WHERE stxname = 'stx_{who}'",
        ),
        (
            "text search dictionary",
            "CREATE TEXT SEARCH DICTIONARY lab.d_{who} (TEMPLATE = simple)",
            "ALTER TEXT SEARCH DICTIONARY lab.d_{who} OWNER TO prod_admin",
            "SELECT dictowner::regrole::text FROM pg_ts_dict WHERE dictname = 'd_{who}'",
        ),
        (
            "text search configuration",
            "CREATE TEXT SEARCH CONFIGURATION lab.cfg_{who} (COPY = simple)",
            "ALTER TEXT SEARCH CONFIGURATION lab.cfg_{who} OWNER TO prod_admin",
            "SELECT cfgowner::regrole::text FROM pg_ts_config WHERE cfgname = 'cfg_{who}'",
        ),
    ];
    let mut failures = Vec::new();
    for (kind, setup, alter, owner) in kinds {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            owner_to_case(&t, setup, alter, owner);
        }));
        if let Err(e) = result {
            let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            failures.push(format!("{kind}: {msg}"));
        }
    }
    assert!(failures.is_empty(), "object kinds that failed:\n{}", failures.join("\n"));
}

/// `CREATE SCHEMA … AUTHORIZATION R` runs its elements as R: a GRANT element would give bob
/// SELECT on prod_admin's table (research notes §1.2 #5, reproduced on PG15 without the gate).
#[test]
fn membership_create_schema_authorization_with_grant() {
    let mut t = team(&[]);
    let mut bob = t.connect_as("bob");
    let acl_before = t.scalar_text("SELECT relacl::text FROM pg_class WHERE oid = 'work.secret'::regclass");
    let offset = t.cluster.log_len();
    assert_bob_refused(
        bob.batch_execute("CREATE SCHEMA evil AUTHORIZATION prod_admin GRANT SELECT ON work.secret TO bob"),
        "CREATE SCHEMA AUTHORIZATION with a GRANT element",
    );
    assert_bob_refused(bob.batch_execute("CREATE SCHEMA AUTHORIZATION prod_admin"), "CREATE SCHEMA AUTHORIZATION (schema named after R)");
    assert_bob_refused(bob.batch_execute("CREATE SCHEMA IF NOT EXISTS evil2 AUTHORIZATION prod_admin"), "IF NOT EXISTS");
    assert_eq!(t.scalar_i64("SELECT count(*) FROM pg_namespace WHERE nspname IN ('evil', 'evil2', 'prod_admin')"), 0, "no schema created");
    assert_eq!(t.scalar_text("SELECT relacl::text FROM pg_class WHERE oid = 'work.secret'::regclass"), acl_before, "no ACL changed");
    assert!(!t.scalar_bool("SELECT has_table_privilege('bob', 'work.secret', 'SELECT')"));
    assert!(bob.query("SELECT * FROM work.secret", &[]).is_err(), "bob reads nothing");
    expect_audit(&t.cluster, offset, "deny", "membership", "bob", GATED);

    let mut alice = t.connect_as("alice");
    ok(alice.batch_execute("CREATE SCHEMA ops AUTHORIZATION prod_admin CREATE TABLE notes (x int)"), "on-call alice");
    assert_eq!(t.scalar_text("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'ops'").as_deref(), Some(GATED));
    assert_eq!(t.scalar_text("SELECT relowner::regrole::text FROM pg_class WHERE oid = 'ops.notes'::regclass").as_deref(), Some(GATED));
}

#[test]
fn membership_create_database_owner() {
    let mut t = team(&[]);
    ok(t.admin.batch_execute("ALTER ROLE alice CREATEDB; ALTER ROLE bob CREATEDB"), "CREATEDB");
    let mut bob = t.connect_as("bob");
    let offset = t.cluster.log_len();
    assert_bob_refused(bob.batch_execute("CREATE DATABASE bobdb OWNER prod_admin"), "CREATE DATABASE OWNER");
    assert_bob_refused(bob.batch_execute("CREATE DATABASE bobdb WITH OWNER = \"prod_admin\" TEMPLATE template0"), "WITH OWNER =");
    assert_eq!(t.scalar_i64("SELECT count(*) FROM pg_database WHERE datname = 'bobdb'"), 0, "no database created");
    expect_audit(&t.cluster, offset, "deny", "membership", "bob", GATED);
    let mut alice = t.connect_as("alice");
    ok(alice.batch_execute("CREATE DATABASE alicedb OWNER prod_admin"), "on-call alice");
    assert_eq!(t.scalar_text("SELECT datdba::regrole::text FROM pg_database WHERE datname = 'alicedb'").as_deref(), Some(GATED));
}

#[test]
fn membership_alter_database_owner_to() {
    let mut t = team(&[]);
    ok(t.admin.batch_execute("ALTER ROLE alice CREATEDB; ALTER ROLE bob CREATEDB"), "CREATEDB");
    let mut bob = t.connect_as("bob");
    ok(bob.batch_execute("CREATE DATABASE bobdb"), "bob's database");
    assert_bob_refused(bob.batch_execute("ALTER DATABASE bobdb OWNER TO prod_admin"), "ALTER DATABASE OWNER TO");
    assert_eq!(t.scalar_text("SELECT datdba::regrole::text FROM pg_database WHERE datname = 'bobdb'").as_deref(), Some("bob"));
    let mut alice = t.connect_as("alice");
    ok(alice.batch_execute("CREATE DATABASE alicedb"), "alice's database");
    ok(alice.batch_execute("ALTER DATABASE alicedb OWNER TO prod_admin"), "on-call alice");
    assert_eq!(t.scalar_text("SELECT datdba::regrole::text FROM pg_database WHERE datname = 'alicedb'").as_deref(), Some(GATED));
}

/// PG15 authorizes `ALTER DEFAULT PRIVILEGES FOR ROLE R` by membership: without the gate every
/// table the on-call engineer later creates as prod_admin would be bob's.
#[test]
fn membership_alter_default_privileges_for_role() {
    let mut t = team(&[]);
    let mut bob = t.connect_as("bob");
    let offset = t.cluster.log_len();
    for sql in [
        "ALTER DEFAULT PRIVILEGES FOR ROLE prod_admin GRANT ALL ON TABLES TO bob",
        "ALTER DEFAULT PRIVILEGES FOR USER prod_admin IN SCHEMA work GRANT SELECT ON TABLES TO bob",
        "ALTER DEFAULT PRIVILEGES FOR ROLE bob, prod_admin GRANT EXECUTE ON FUNCTIONS TO bob",
    ] {
        assert_bob_refused(bob.batch_execute(sql), sql);
    }
    assert_eq!(t.scalar_i64("SELECT count(*) FROM pg_default_acl"), 0, "no default privileges set");
    expect_audit(&t.cluster, offset, "deny", "membership", "bob", GATED);

    let mut alice = t.connect_as("alice");
    let on_call = alice.batch_execute("ALTER DEFAULT PRIVILEGES FOR ROLE prod_admin IN SCHEMA work GRANT SELECT ON TABLES TO alice");
    if server_major() >= 16 {
        // From 16 PostgreSQL itself requires the role's privileges (INHERIT): a route no more.
        let e = on_call.expect_err("PostgreSQL refuses a member who does not inherit");
        assert!(db_error(&e).message().contains("permission denied to change default privileges"), "{}", error_text(&e));
        return;
    }
    ok(on_call, "on-call alice");
    assert_eq!(t.scalar_i64("SELECT count(*) FROM pg_default_acl WHERE defaclrole = 'prod_admin'::regrole"), 1);
}

/// `REASSIGN OWNED … TO R`, `REASSIGN OWNED BY R`, `DROP OWNED BY R`: the gate judges them first
/// (off call: its refusal). On call, PostgreSQL decides: `BY R` and `DROP OWNED BY R` need R's
/// privileges (INHERIT) in every major; `… TO R` depends on the major.
#[test]
fn membership_reassign_and_drop_owned() {
    let mut t = team(&[]);
    let mut bob = t.connect_as("bob");
    ok(bob.batch_execute("CREATE TABLE lab.bobs (x int)"), "bob's table");
    for sql in ["REASSIGN OWNED BY bob TO prod_admin", "REASSIGN OWNED BY prod_admin TO bob", "DROP OWNED BY prod_admin", "DROP OWNED BY bob, prod_admin"] {
        assert_bob_refused(bob.batch_execute(sql), sql);
    }
    assert_eq!(t.scalar_text("SELECT relowner::regrole::text FROM pg_class WHERE oid = 'lab.bobs'::regclass").as_deref(), Some("bob"));
    assert_eq!(t.scalar_text("SELECT relowner::regrole::text FROM pg_class WHERE oid = 'work.secret'::regclass").as_deref(), Some(GATED));
    let mut alice = t.connect_as("alice");
    ok(alice.batch_execute("CREATE TABLE lab.alices (x int)"), "alice's table");
    // Admitted by the gate; then PostgreSQL's own rule, which differs between majors (15 and 18
    // want prod_admin's privileges, which a NOINHERIT member lacks; 17 was seen to accept the
    // grant's SET option): either it refuses with its own message and nothing moves, or the
    // objects are prod_admin's.
    let reassign = alice.batch_execute("REASSIGN OWNED BY alice TO prod_admin");
    let alices_owner = match not_refused_by_gate(reassign, "on-call alice REASSIGN OWNED BY alice TO prod_admin") {
        None => GATED,
        Some(e) => {
            assert!(e.message().contains("permission denied to reassign objects"), "PostgreSQL's own refusal: {e:?}");
            "alice"
        }
    };
    for sql in ["REASSIGN OWNED BY prod_admin TO alice", "DROP OWNED BY prod_admin"] {
        let e = not_refused_by_gate(alice.batch_execute(sql), sql);
        assert!(e.as_ref().is_some_and(|e| e.message().contains("permission denied")), "{sql}: PostgreSQL's own refusal: {e:?}");
    }
    assert_eq!(t.scalar_text("SELECT relowner::regrole::text FROM pg_class WHERE oid = 'lab.alices'::regclass").as_deref(), Some(alices_owner));
}

#[test]
fn membership_grant_granted_by() {
    let mut t = team(&[]);
    let mut bob = t.connect_as("bob");
    let acl_before = t.scalar_text("SELECT relacl::text FROM pg_class WHERE oid = 'work.secret'::regclass");
    assert_bob_refused(bob.batch_execute("GRANT SELECT ON work.secret TO bob GRANTED BY prod_admin"), "GRANT … GRANTED BY R");
    assert_bob_refused(bob.batch_execute("REVOKE SELECT ON work.secret FROM bob GRANTED BY prod_admin"), "REVOKE … GRANTED BY R");
    assert_eq!(t.scalar_text("SELECT relacl::text FROM pg_class WHERE oid = 'work.secret'::regclass"), acl_before, "no ACL changed");
    let mut alice = t.connect_as("alice");
    // On call the gate lets it through to PostgreSQL, which wants the grantor to be current user.
    let e = not_refused_by_gate(alice.batch_execute("GRANT SELECT ON work.secret TO alice GRANTED BY prod_admin"), "on-call alice");
    assert!(e.is_some_and(|e| e.message().contains("grantor must be current user")));
    ok(alice.batch_execute("SET ROLE prod_admin; GRANT SELECT ON work.secret TO alice GRANTED BY prod_admin; RESET ROLE"), "as prod_admin");
    assert!(t.scalar_bool("SELECT has_table_privilege('alice', 'work.secret', 'SELECT')"));
}

/// A membership route run nested (PL/pgSQL EXECUTE), and through a SECURITY DEFINER function of
/// another member: judged by the session user, who is off call.
#[test]
fn membership_routes_nested_and_through_another_members_function() {
    let mut t = team(&[]);
    let mut bob = t.connect_as("bob");
    ok(bob.batch_execute("CREATE FUNCTION pg_temp.f() RETURNS text LANGUAGE sql SECURITY DEFINER AS $$ SELECT x FROM work.secret $$"), "f");
    assert_bob_refused(
        bob.batch_execute("DO $$ BEGIN EXECUTE 'ALTER FUNCTION pg_temp.f() OWNER TO prod_admin'; END $$"),
        "EXECUTE in DO",
    );
    // Caught in PL/pgSQL: still nothing handed over, and the caught SQLSTATE is 42501.
    let caught = ok(
        simple_value(
            &mut bob,
            "DO $$ BEGIN ALTER FUNCTION pg_temp.f() OWNER TO prod_admin; EXCEPTION WHEN OTHERS THEN PERFORM set_config('e2e.caught', SQLSTATE, false); END $$;
             SELECT current_setting('e2e.caught', true)",
        ),
        "caught",
    );
    assert_eq!(caught.as_deref(), Some("42501"));
    // alice's SECURITY DEFINER function hands its argument's function to prod_admin.
    ok(
        t.admin.batch_execute(
            "CREATE FUNCTION lab.give(fn text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER
                 AS $$ BEGIN EXECUTE format('ALTER FUNCTION %s OWNER TO prod_admin', fn); END $$;
             ALTER FUNCTION lab.give(text) OWNER TO alice;
             CREATE FUNCTION lab.peek() RETURNS text LANGUAGE sql SECURITY DEFINER AS $$ SELECT x FROM work.secret $$;
             ALTER FUNCTION lab.peek() OWNER TO alice;
             GRANT EXECUTE ON FUNCTION lab.give(text), lab.peek() TO bob;",
        ),
        "alice's functions",
    );
    assert_bob_refused(bob.batch_execute("SELECT lab.give('lab.peek()')"), "through alice's SECURITY DEFINER function");
    assert_eq!(t.scalar_text("SELECT proowner::regrole::text FROM pg_proc WHERE oid = 'lab.peek()'::regprocedure").as_deref(), Some("alice"));
    assert!(bob.batch_execute("SELECT lab.peek()").is_err(), "bob reads nothing through it");
    // alice herself, on call, may.
    let mut alice = t.connect_as("alice");
    ok(alice.batch_execute("SELECT lab.give('lab.peek()')"), "on-call alice through her function");
    assert_eq!(t.scalar_text("SELECT proowner::regrole::text FROM pg_proc WHERE oid = 'lab.peek()'::regprocedure").as_deref(), Some(GATED));
}
