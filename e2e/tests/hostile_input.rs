//! Hostile input (DESIGN.md guarantees 1 and 5, and the server's health): role names that
//! could break or forge an audit line, role values past NAMEDATALEN, NULLs; hostile values to
//! the functions everyone may call; deep recursion; a non-superuser `LOAD`. The gate still
//! decides right, every audit line parses back to the exact name, no internal error, no crash.
//!
//! | case | test |
//! |---|---|
//! | quotes, spaces, Unicode, 63-byte names, newlines, `x route=login reason=forged`, backslashes as gated role names; a 65-byte value; missing roles; `set_config` with NULLs | `hostile_role_names_and_values` |
//! | hostile values to `is_on_call`, `check_oncall_access`, `whoami`, `set_config`; deep recursion through a `SET role` function | `hostile_inputs_do_not_crash_or_raise_internal_errors` |
//! | `is_on_call(…, ARRAY[NULL])` is no internal error (was bug M1) | `is_on_call_ignores_null_array_elements` |
//! | a non-superuser `LOAD`s a library to displace the PL/pgSQL plugin | `load_of_a_library_by_a_non_superuser_is_refused` |

use e2e::*;
use postgres::error::SqlState;

#[test]
fn hostile_role_names_and_values() {
    let mut t = team(&[]);
    let (cluster, admin) = (&t.cluster, &mut t.admin);
    let long = format!("{}x", "é".repeat(31));
    assert_eq!(long.len(), 63, "NAMEDATALEN - 1 bytes");
    let names = [
        "it's \"quoted\"".to_string(),
        "with space".to_string(),
        "ünïcødé-rôle ☃".to_string(),
        long.clone(),
        "line\nbreak".to_string(),
        "x route=login reason=forged".to_string(),
        "back\\slash".to_string(),
    ];
    for name in &names {
        let q = quote_ident(name);
        admin
            .batch_execute(&format!("CREATE ROLE {q} NOLOGIN; GRANT {q} TO alice, bob;"))
            .unwrap_or_else(|e| panic!("create {name:?}: {}", error_text(&e)));
        admin.execute("SELECT oncall.gate_role($1::text::name)", &[name]).unwrap_or_else(|e| panic!("gate {name:?}: {}", error_text(&e)));
    }
    cluster.sync_point();
    let mut alice = cluster.connect_as("alice");
    let mut bob = cluster.connect_as("bob");
    for name in &names {
        let q = quote_ident(name);
        let offset = cluster.log_len();
        alice.batch_execute(&format!("SET ROLE {q}")).unwrap_or_else(|e| panic!("alice SET ROLE {q}: {}", error_text(&e)));
        assert_eq!(&current_user(&mut alice), name);
        alice.batch_execute("RESET ROLE").unwrap();
        assert_refused(bob.batch_execute(&format!("SET ROLE {q}")), name, BOB_EMAIL, &format!("bob SET ROLE {q}"));
        assert_refused(bob.query_one("SELECT set_config('role', $1, false)", &[name]), name, BOB_EMAIL, &format!("bob set_config {q}"));
        assert_eq!(current_user(&mut bob), "bob");
        // The log lines: one line each, role quoted, parsed back to the exact name.
        let allow = expect_audit(cluster, offset, "allow", "set_role", "alice", name);
        let deny = expect_audit(cluster, offset, "deny", "set_role", "bob", name);
        assert_eq!(allow.get("identity"), ALICE_EMAIL);
        assert_eq!(deny.get("reason"), "not on call");
        log_fence(cluster, &mut alice);
        log_fence(cluster, &mut bob);
        let raw: Vec<String> = decision_log_lines(cluster, offset).into_iter().map(|l| l.message).collect();
        assert_eq!(raw.len(), 3, "{name:?}: alice's allow, bob's two denies, nothing else: {raw:#?}");
        assert!(raw.iter().all(|l| l.contains("role=\"")), "{name:?}: the role value is quoted: {raw:?}");
        // PostgreSQL continues its own multi-line messages (ERROR, STATEMENT) with a tab; no
        // continuation line may carry audit fields.
        assert!(
            !cluster.log_since(offset).lines().filter(|l| !l.starts_with("20")).any(|l| l.contains("session_user=") || l.contains("route=")),
            "{name:?}: an audit line was split\n{}",
            cluster.log_since(offset)
        );
    }
    // A name longer than NAMEDATALEN - 1 through set_config (not truncated like an identifier)
    // must not reach the 63-byte gated role ungated.
    let too_long = format!("{long}zz");
    let r = bob.query_one("SELECT set_config('role', $1, false)", &[&too_long]);
    assert!(r.is_err(), "a 65-byte role value must not succeed for bob");
    assert_eq!(current_user(&mut bob), "bob");

    // SET ROLE to a role that does not exist: PostgreSQL's own error, no decision. (PG15 reports
    // it from the role setting's check hook: 22023 invalid_parameter_value.)
    let offset = cluster.log_len();
    for session in [&mut alice, &mut bob] {
        let e = session.batch_execute("SET ROLE no_such_role").unwrap_err();
        let db = db_error(&e);
        assert_eq!(db.code(), &SqlState::INVALID_PARAMETER_VALUE, "{}", error_text(&e));
        assert_eq!(db.message(), "role \"no_such_role\" does not exist");
        let e = session.query_one("SELECT set_config('role', 'no_such_role', false)", &[]).unwrap_err();
        assert_eq!(db_error(&e).message(), "role \"no_such_role\" does not exist");
    }
    log_fence(cluster, &mut alice);
    log_fence(cluster, &mut bob);
    assert!(decision_log_lines(cluster, offset).is_empty(), "no decision for a missing role");

    // set_config('role', NULL, ...) resets the role, as PostgreSQL 15 does without the extension
    // (it returns 'none'): for an off-call user, and for an on-call user inside the gated role.
    let v = simple_value(&mut bob, "SELECT set_config('role', NULL, false)").unwrap_or_else(|e| panic!("bob set_config NULL: {}", error_text(&e)));
    assert_eq!(v.as_deref(), Some("none"));
    assert_eq!(current_user(&mut bob), "bob");
    alice.batch_execute("SET ROLE prod_admin").unwrap();
    let v = simple_value(&mut alice, "SELECT set_config('role', NULL, false)").unwrap_or_else(|e| panic!("alice set_config NULL: {}", error_text(&e)));
    assert_eq!(v.as_deref(), Some("none"));
    assert_eq!(current_user(&mut alice), "alice");
    let v = simple_value(&mut bob, "BEGIN; SELECT set_config('role', NULL, true); COMMIT").unwrap();
    assert_eq!(v.as_deref(), Some("none"));
    // set_config(NULL, ...): PostgreSQL's "SET requires parameter name" (22004).
    for sql in ["SELECT set_config(NULL, 'prod_admin', false)", "SELECT set_config(NULL, NULL, false)"] {
        let e = simple_value(&mut bob, sql).unwrap_err();
        let db = db_error(&e);
        assert_eq!(db.code(), &SqlState::NULL_VALUE_NOT_ALLOWED, "{sql}: {}", error_text(&e));
        assert_eq!(db.message(), "SET requires parameter name", "{sql}");
    }
    assert_eq!(current_user(&mut bob), "bob");
    // Sessions are fine afterwards.
    alice.batch_execute("SET ROLE prod_admin; SELECT 1; RESET ROLE").unwrap();
    assert_refused(bob.batch_execute("SET ROLE prod_admin"), GATED, BOB_EMAIL, "bob after the hostile input");
}

#[test]
fn hostile_inputs_do_not_crash_or_raise_internal_errors() {
    let mut t = team(&[]);
    let started: String = t.admin.query_one("SELECT pg_postmaster_start_time()::text", &[]).unwrap().get(0);
    ok(
        t.admin.batch_execute(
            "CREATE FUNCTION public.rec(n int) RETURNS int LANGUAGE plpgsql SET role = prod_admin
                 AS $$ BEGIN IF n <= 0 THEN RETURN 0; END IF; RETURN public.rec(n - 1) + 1; END $$",
        ),
        "recursive function",
    );
    let mut bob = t.connect_as("bob");
    let statements = [
        "SELECT oncall.is_on_call(NULL)",
        "SELECT oncall.is_on_call('')",
        "SELECT oncall.is_on_call(repeat('é', 50000000))",
        "SELECT oncall.is_on_call(E'alice@example.com\\n', -2147483648, '{}')",
        "SELECT oncall.is_on_call('alice@example.com', 2147483647, '{{a,b},{c,d}}')",
        "SELECT oncall.is_on_call('alice@example.com', NULL, (SELECT array_agg(g::text) FROM generate_series(1, 200000) g))",
        "SELECT oncall.check_oncall_access(NULL::name)",
        "SELECT oncall.check_oncall_access(repeat('x', 1000))",
        "SELECT oncall.check_oncall_access(E'prod_admin\\u0001')",
        "SELECT * FROM oncall.whoami()",
        "SELECT * FROM oncall._whoami()",
        "SELECT set_config('role', repeat('p', 100000), false)",
        "SELECT public.rec(100000)",
        "CREATE DATABASE x OWNER \"prod_admin \"",
    ];
    for sql in statements {
        if let Err(e) = bob.batch_execute(sql) {
            let code = db_error(&e).code().clone();
            assert_ne!(code, SqlState::INTERNAL_ERROR, "{sql}: an internal error: {}", error_text(&e));
        }
    }
    let mut alice = t.connect_as("alice");
    let e = alice.batch_execute("SELECT public.rec(100000)").expect_err("too deep");
    assert_eq!(db_error(&e).code(), &SqlState::STATEMENT_TOO_COMPLEX, "{}", error_text(&e));
    let now: String = t.admin.query_one("SELECT pg_postmaster_start_time()::text", &[]).unwrap().get(0);
    assert_eq!(now, started, "the server did not restart");
    assert!(!t.cluster.log().contains("terminated by signal"), "no backend crashed");
    ok(bob.batch_execute("SELECT 1"), "bob's session works on");
}

#[test]
fn is_on_call_ignores_null_array_elements() {
    let t = team(&[]);
    let mut bob = t.connect_as("bob");
    let r = bob.batch_execute("SELECT oncall.is_on_call('alice@example.com', NULL, ARRAY['P1', NULL])");
    if let Err(e) = r {
        assert_ne!(db_error(&e).code(), &SqlState::INTERNAL_ERROR, "{}", error_text(&e));
    }
}

#[test]
fn load_of_a_library_by_a_non_superuser_is_refused() {
    let t = team(&[]);
    let mut bob = t.connect_as("bob");
    for lib in ["plpgsql", "auto_explain", "$libdir/plugins/plugin_debugger", "pg_oncall"] {
        let e = bob.batch_execute(&format!("LOAD '{lib}'"));
        if let Err(e) = &e {
            assert!(!db_error(e).message().contains("pg_oncall:"), "{lib}: {}", error_text(e));
        }
        // Whatever LOAD did, the gate still holds in PL/pgSQL.
        assert_bob_refused(bob.batch_execute("DO $$ BEGIN SET ROLE prod_admin; END $$"), &format!("after LOAD '{lib}'"));
    }
}
