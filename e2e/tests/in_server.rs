//! In-server checks (formerly `#[pg_test]`s in `src/tests.rs`, now run through this harness so
//! that one harness covers every major, the chrooted 17 included): the catalog's constraints,
//! the privileges, and every SQL function's answer to bad input. Each expected error is checked
//! by its SQLSTATE (a typo in the SQL fails the test instead of passing it), and the decision
//! functions' input cases run as a non-superuser (a superuser would be answered before the
//! input is looked at).

use e2e::*;
use postgres::error::SqlState;
use postgres::Client;

/// A fresh cluster, a superuser session, and `plain_user` (LOGIN, NOINHERIT, no identity).
fn setup() -> (Cluster, Client, Client) {
    let cluster = Cluster::start(&[]);
    let mut admin = cluster.connect();
    admin.batch_execute("CREATE ROLE plain_user LOGIN NOINHERIT").expect("CREATE ROLE plain_user");
    let plain = cluster.connect_as("plain_user");
    (cluster, admin, plain)
}

/// Asserts that `sql` fails with SQLSTATE `code`.
#[track_caller]
fn fails_with(client: &mut Client, sql: &str, code: &SqlState) {
    match client.batch_execute(sql) {
        Ok(()) => panic!("{sql}: succeeded, expected SQLSTATE {}", code.code()),
        Err(e) => {
            let got = e.code().unwrap_or_else(|| panic!("{sql}: a client error instead of a server error: {e}"));
            assert_eq!(got, code, "{sql}: SQLSTATE {} ({}), expected {}", got.code(), error_text(&e), code.code());
        }
    }
}

#[track_caller]
fn runs(client: &mut Client, sql: &str) {
    client.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e)));
}

#[track_caller]
fn bool_of(client: &mut Client, sql: &str) -> Option<bool> {
    client.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e))).get(0)
}

#[test]
fn library_is_preloaded_and_enforcing() {
    let (_cluster, mut admin, _plain) = setup();
    let libs: String = admin.query_one("SHOW shared_preload_libraries", &[]).unwrap().get(0);
    assert!(libs.contains("pg_oncall"), "{libs}");
    let enforcement: String = admin.query_one("SELECT current_setting('pg_oncall.enforcement')", &[]).unwrap().get(0);
    assert_eq!(enforcement, "enforce");
}

#[test]
fn there_is_no_token_setting() {
    let (_cluster, mut admin, mut plain) = setup();
    for client in [&mut admin, &mut plain] {
        fails_with(client, "SHOW pg_oncall.pagerduty_token", &SqlState::UNDEFINED_OBJECT);
        // The prefix is reserved: no placeholder can be created under it.
        fails_with(client, "SET pg_oncall.pagerduty_token = 'x'", &SqlState::INVALID_NAME);
    }
}

#[test]
fn shifts_reject_nonsense() {
    let (_cluster, mut admin, _plain) = setup();
    let check = &SqlState::CHECK_VIOLATION;
    let not_null = &SqlState::NOT_NULL_VIOLATION;
    let cases: &[(&str, &SqlState)] = &[
        ("INSERT INTO oncall.shifts (source, email) VALUES ('elsewhere', 'a@x.com')", check),
        ("INSERT INTO oncall.shifts (source, email) VALUES ('manual', '')", check),
        ("INSERT INTO oncall.shifts (source, email) VALUES ('manual', '   ')", check),
        ("INSERT INTO oncall.shifts (source, email) VALUES ('manual', NULL)", not_null),
        ("INSERT INTO oncall.shifts (source, email) VALUES (NULL, 'a@x.com')", not_null),
        ("INSERT INTO oncall.shifts (source, email, escalation_level) VALUES ('manual', 'a@x.com', -1)", check),
        ("INSERT INTO oncall.shifts (source, email, starts_at, ends_at) VALUES ('manual', 'a@x.com', now(), now())", check),
        (
            "INSERT INTO oncall.shifts (source, email, starts_at, ends_at) VALUES ('manual', 'a@x.com', now(), now() - '1h'::interval)",
            check,
        ),
        ("INSERT INTO oncall.shifts (source, email) VALUES ('manual', repeat('a', 10000) || '@x.com')", check),
    ];
    for (sql, code) in cases {
        fails_with(&mut admin, sql, code);
    }
    runs(&mut admin, "INSERT INTO oncall.shifts (source, email) VALUES ('manual', 'a@x.com')");
    runs(&mut admin, "INSERT INTO oncall.shifts (source, email, starts_at) VALUES ('manual', 'a@x.com', now())");
}

#[test]
fn gated_roles_reject_nonsense() {
    let (_cluster, mut admin, _plain) = setup();
    runs(&mut admin, "CREATE ROLE gate_target NOLOGIN");
    let check = &SqlState::CHECK_VIOLATION;
    let cases: &[(&str, &SqlState)] = &[
        ("SELECT oncall.gate_role('no_such_role_anywhere')", &SqlState::UNDEFINED_OBJECT),
        ("SELECT oncall.gate_role(NULL)", &SqlState::NULL_VALUE_NOT_ALLOWED),
        ("SELECT oncall.gate_role('gate_target', min_escalation_level => 0)", check),
        ("SELECT oncall.gate_role('gate_target', min_escalation_level => -3)", check),
        ("SELECT oncall.gate_role('gate_target', min_escalation_level => 3, max_escalation_level => 2)", check),
        ("SELECT oncall.gate_role('gate_target', escalation_policy_ids => '{}')", check),
        ("SELECT oncall.gate_role('gate_target', escalation_policy_ids => ARRAY[NULL]::text[])", check),
        ("SELECT oncall.gate_role('gate_target', escalation_policy_ids => ARRAY[repeat('P', 10000)])", check),
    ];
    for (sql, code) in cases {
        fails_with(&mut admin, sql, code);
    }
    runs(&mut admin, "SELECT oncall.gate_role('gate_target', escalation_policy_ids => '{PT20YPA}', gate_login => true)");
    // Replacing a rule resets omitted arguments to their defaults.
    runs(&mut admin, "SELECT oncall.gate_role('gate_target', min_escalation_level => 2)");
    let row = admin
        .query_one("SELECT escalation_policy_ids IS NULL, gate_login FROM oncall.gated_roles WHERE role_name = 'gate_target'", &[])
        .unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1)), (true, false));
    assert_eq!(bool_of(&mut admin, "SELECT oncall.ungate_role('gate_target')"), Some(true));
    assert_eq!(bool_of(&mut admin, "SELECT oncall.ungate_role('gate_target')"), Some(false));
}

#[test]
fn identities_reject_nonsense() {
    let (_cluster, mut admin, _plain) = setup();
    fails_with(&mut admin, "INSERT INTO oncall.identities VALUES ('alice', '')", &SqlState::CHECK_VIOLATION);
    fails_with(&mut admin, "INSERT INTO oncall.identities VALUES ('alice', NULL)", &SqlState::NOT_NULL_VIOLATION);
    runs(&mut admin, "INSERT INTO oncall.identities VALUES ('alice', 'alice@example.com')");
    fails_with(&mut admin, "INSERT INTO oncall.identities VALUES ('alice', 'other@example.com')", &SqlState::UNIQUE_VIOLATION);
}

#[test]
fn override_checks_its_arguments_and_keeps_the_reason() {
    let (_cluster, mut admin, _plain) = setup();
    for sql in [
        "SELECT oncall.override(NULL, '1h', 'incident')",
        "SELECT oncall.override('', '1h', 'incident')",
        "SELECT oncall.override('a@x.com', '-1h', 'incident')",
        "SELECT oncall.override('a@x.com', '0', 'incident')",
        "SELECT oncall.override('a@x.com', '1h', NULL)",
        "SELECT oncall.override('a@x.com', '1h', ' ')",
    ] {
        fails_with(&mut admin, sql, &SqlState::INVALID_PARAMETER_VALUE);
    }
    runs(&mut admin, "SELECT oncall.override('a@x.com', '1h', 'INC-42 database down')");
    let row = admin
        .query_one(
            "SELECT reason, ends_at BETWEEN now() + '59min'::interval AND clock_timestamp() + '1h'::interval
               FROM oncall.shifts WHERE source = 'manual' AND email = 'a@x.com'",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, bool>(1)), ("INC-42 database down".into(), true));
}

#[test]
fn decision_functions_take_bad_input_calmly() {
    let (cluster, mut admin, mut plain) = setup();
    // One gated role, so that a name input is really looked up (a non-superuser with no
    // identity is never on call: a gated role answers false, anything else true).
    runs(&mut admin, "CREATE ROLE gated_x NOLOGIN; SELECT oncall.gate_role('gated_x')");
    assert!(
        wait_until(PATIENCE, || bool_of(&mut plain, "SELECT oncall.check_oncall_access('gated_x')") == Some(false)),
        "the gated role is not refused to plain_user within {PATIENCE:?}\n{}",
        cluster.log_tail()
    );
    let cases: &[(&str, Option<bool>)] = &[
        ("SELECT oncall.check_oncall_access(NULL::name)", None),
        ("SELECT oncall.check_oncall_access('')", Some(true)),
        ("SELECT oncall.check_oncall_access(repeat('r', 10000))", Some(true)),
        ("SELECT oncall.check_oncall_access('no such role')", Some(true)),
        ("SELECT oncall.check_oncall_access('GATED_X')", Some(true)),
        ("SELECT oncall.check_oncall_access('gated_x')", Some(false)),
        ("SELECT oncall.is_on_call(NULL)", None),
        ("SELECT oncall.is_on_call('')", Some(false)),
        ("SELECT oncall.is_on_call(repeat('x', 10000))", Some(false)),
        ("SELECT oncall.is_on_call('nobody@example.com', NULL, NULL)", Some(false)),
        ("SELECT oncall.is_on_call('nobody@example.com', -5, '{}')", Some(false)),
        ("SELECT oncall.check_oncall_access()", Some(false)),
    ];
    for (sql, want) in cases {
        assert_eq!(bool_of(&mut plain, sql), *want, "{sql} as plain_user");
    }
    let who = plain.query_one(r#"SELECT "session_user"::text, identity, on_call FROM oncall.whoami()"#, &[]).unwrap();
    assert_eq!(
        (who.get::<_, String>(0), who.get::<_, Option<String>>(1), who.get::<_, bool>(2)),
        ("plain_user".into(), None, false)
    );
}

#[test]
fn privileges_follow_the_design() {
    let (_cluster, mut admin, mut plain) = setup();
    let can = |admin: &mut Client, what: &str| bool_of(admin, &format!("SELECT has_function_privilege('plain_user', '{what}', 'EXECUTE')"));
    for public in ["oncall.check_oncall_access()", "oncall.check_oncall_access(name)", "oncall.is_on_call(text, int, text[])", "oncall.whoami()"] {
        assert_eq!(can(&mut admin, public), Some(true), "{public}");
    }
    for admin_only in [
        "oncall.refresh(boolean, interval)",
        "oncall.override(text, interval, text, text)",
        "oncall.gate_role(name, text[], text[], int, int, boolean, boolean, interval, boolean)",
        "oncall.ungate_role(name)",
        "oncall.status()",
        "oncall.stats()",
    ] {
        assert_eq!(can(&mut admin, admin_only), Some(false), "{admin_only}");
    }
    // And refused when plain_user tries.
    for sql in [
        "SELECT oncall.refresh(false)",
        "SELECT oncall.override('plain@example.com', '1h', 'me')",
        "SELECT oncall.gate_role('plain_user')",
        "SELECT oncall.ungate_role('plain_user')",
        "SELECT * FROM oncall.status()",
        "SELECT * FROM oncall.stats()",
        "SELECT * FROM oncall.doctor()",
    ] {
        fails_with(&mut plain, sql, &SqlState::INSUFFICIENT_PRIVILEGE);
    }
    for table in ["oncall.gated_roles", "oncall.identities", "oncall.shifts", "oncall.sync_state"] {
        assert_eq!(bool_of(&mut admin, &format!("SELECT has_table_privilege('plain_user', '{table}', 'SELECT')")), Some(false), "{table}");
        fails_with(&mut plain, &format!("SELECT * FROM {table}"), &SqlState::INSUFFICIENT_PRIVILEGE);
    }
}

#[test]
fn functions_are_stable_and_parallel_safe() {
    let (_cluster, mut admin, _plain) = setup();
    let row = admin
        .query_one(
            "SELECT provolatile::text, proparallel::text FROM pg_proc WHERE oid = 'oncall.check_oncall_access()'::regprocedure",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("s".into(), "s".into()));
}

#[test]
fn status_without_token_says_so() {
    let (_cluster, mut admin, _plain) = setup();
    let row = admin.query_one("SELECT token_configured, stale FROM oncall.status()", &[]).unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1)), (false, true));
}

#[test]
fn doctor_reports_an_inheriting_member_and_the_fix_clears_it() {
    let (_cluster, mut admin, _plain) = setup();
    runs(
        &mut admin,
        "CREATE ROLE doc_admin NOLOGIN; CREATE ROLE doc_member LOGIN INHERIT; GRANT doc_admin TO doc_member;
         INSERT INTO oncall.identities VALUES ('doc_member', 'doc@example.com');
         SELECT oncall.gate_role('doc_admin');",
    );
    let inherits = "SELECT count(*) FROM oncall.doctor() WHERE object = 'role doc_member' AND problem LIKE '%inherits%'";
    let count = |admin: &mut Client| -> i64 { admin.query_one(inherits, &[]).unwrap().get(0) };
    assert_eq!(count(&mut admin), 1);
    runs(&mut admin, "ALTER ROLE doc_member NOINHERIT");
    if server_major() >= 16 {
        // From 16 on, inheritance is a property of each grant, fixed when it was made: the
        // grant made while doc_member was INHERIT still inherits.
        assert_eq!(count(&mut admin), 1, "PostgreSQL 16+: the grant WITH INHERIT TRUE still inherits");
        runs(&mut admin, "GRANT doc_admin TO doc_member WITH INHERIT FALSE");
    }
    assert_eq!(count(&mut admin), 0);
}

#[test]
fn privileges_are_refused_to_a_plain_role_and_granted_to_pg_monitor() {
    let cluster = Cluster::start(&[]);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "plain@x.test");
    let mut s = cluster.connect_as("plain@x.test");
    // Everyone may ask.
    for sql in [
        "SELECT oncall.check_oncall_access()",
        "SELECT oncall.check_oncall_access('postgres')",
        "SELECT oncall.is_on_call('someone@x.test')",
        "SELECT oncall.is_on_call('someone@x.test', 2, '{EP1}')",
        "SELECT * FROM oncall.whoami()",
    ] {
        s.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e)));
    }
    // Only superusers may write or sync; status and stats need pg_monitor.
    let denied = [
        "SELECT oncall.refresh()",
        "SELECT oncall.refresh(wait => false)",
        "SELECT * FROM oncall.shifts",
        "INSERT INTO oncall.shifts (source, email) VALUES ('manual', 'plain@x.test')",
        "SELECT * FROM oncall.identities",
        "INSERT INTO oncall.identities VALUES ('plain@x.test', 'other@x.test')",
        "SELECT * FROM oncall.gated_roles",
        "UPDATE oncall.sync_state SET last_success_at = now()",
        "SELECT oncall.override('plain@x.test', '1 hour', 'self-service')",
        "SELECT oncall.gate_role('plain@x.test')",
        "SELECT oncall.ungate_role('plain@x.test')",
        "SELECT oncall._reload_after_commit()",
        "SELECT * FROM oncall.status()",
        "SELECT * FROM oncall.stats()",
    ];
    for sql in denied {
        let e = s.batch_execute(sql).expect_err(sql);
        assert_eq!(e.code(), Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{sql}: {}", error_text(&e));
    }
    assert!(!check_access(&mut s), "nothing the plain role tried put it on call");
    admin.batch_execute("GRANT pg_monitor TO \"plain@x.test\"").unwrap();
    let mut monitor = cluster.connect_as("plain@x.test");
    monitor.batch_execute("SELECT * FROM oncall.status(); SELECT * FROM oncall.stats();").unwrap_or_else(|e| panic!("pg_monitor: {}", error_text(&e)));
}
