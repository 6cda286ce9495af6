//! DESIGN.md guarantee 1, the `role` setting: every way of making a gated role the current
//! role is refused to an off-call member and allowed to an on-call one, with the contract's
//! refusal (SQLSTATE 42501, message naming role and identity, DETAIL, HINT), the role left
//! unchanged, and one genuine audit line per decision with the route's name. Then the
//! non-routes and what is not a switch. One test per route, each on its own cluster
//! (`e2e::team`: prod_admin gated, alice on call, bob not).
//!
//! | route | test |
//! |---|---|
//! | `SET ROLE` | `set_role` |
//! | `SET LOCAL ROLE` in a transaction | `set_local_role` |
//! | `set_config('role', r, false)` | `set_config_session` |
//! | `set_config('role', r, true)` | `set_config_transaction_local` |
//! | a function's `SET role = r` clause (SQL and PL/pgSQL), at call time | `function_set_clause` |
//! | `DO` block with `SET ROLE` | `do_block_set_role` |
//! | `DO` block catching the refusal | `do_block_catching_the_refusal_stays_itself` |
//! | PL/pgSQL `EXECUTE 'SET ROLE …'` | `plpgsql_execute_set_role` |
//! | extended protocol, the role as a bound parameter | `extended_protocol_bound_parameter` |
//! | `-c role=r` in the startup options (login refused, FATAL) | `startup_option_role` |
//! | `ALTER ROLE s SET role = r` applied at login (WARNING, logs in as itself) | `role_default_at_login` |
//! | every database of the cluster, and `ALTER DATABASE … SET role` | `every_database_and_database_role_default` |
//! | `UPDATE pg_settings`, `SET SESSION AUTHORIZATION` (non-routes) | `non_routes_update_pg_settings_and_session_authorization` |
//! | a non-member (PostgreSQL's own refusal), a member without identity | `non_members_get_postgresql_own_refusal_and_no_decision` |
//! | `CREATE FUNCTION … SET role = r` by an off-call member: not a switch | `creating_a_function_with_set_role_is_not_a_switch` |
//!
//! Membership routes: `routes_membership.rs`; roles reached through a gated role:
//! `routes_role_chains.rs`; per-role rules: `rules.rs`.

use e2e::*;
use postgres::error::SqlState;
use postgres::Client;

/// The team, and a fresh session for alice and one for bob (the first allow per session,
/// role and shift is logged; later ones are counted), with the log offset before them.
fn team_and_sessions() -> (Team, Client, Client, usize) {
    let t = team(&[]);
    let alice = t.connect_as("alice");
    let bob = t.connect_as("bob");
    let offset = t.cluster.log_len();
    (t, alice, bob, offset)
}

#[test]
fn set_role() {
    let (t, mut alice, mut bob, offset) = team_and_sessions();
    ok(alice.batch_execute("SET ROLE prod_admin"), "alice SET ROLE");
    assert_eq!(current_user(&mut alice), GATED);
    ok(alice.batch_execute("RESET ROLE"), "RESET ROLE");
    assert_bob_refused(bob.batch_execute("SET ROLE prod_admin"), "bob SET ROLE");
    assert_eq!(current_user(&mut bob), "bob");
    let allow = expect_audit(&t.cluster, offset, "allow", "set_role", "alice", GATED);
    assert_eq!((allow.get("identity"), allow.get("reason")), (ALICE_EMAIL, "on call"));
    let deny = expect_audit(&t.cluster, offset, "deny", "set_role", "bob", GATED);
    assert_eq!((deny.get("identity"), deny.get("reason")), (BOB_EMAIL, "not on call"));
}

#[test]
fn set_local_role() {
    let (t, mut alice, mut bob, offset) = team_and_sessions();
    {
        let mut tx = ok(alice.transaction(), "BEGIN");
        ok(tx.batch_execute("SET LOCAL ROLE prod_admin"), "alice SET LOCAL ROLE");
        let user: String = ok(tx.query_one("SELECT current_user::text", &[]), "current_user").get(0);
        assert_eq!(user, GATED);
        ok(tx.commit(), "COMMIT");
    }
    assert_eq!(current_user(&mut alice), "alice", "SET LOCAL ends with the transaction");
    {
        let mut tx = ok(bob.transaction(), "BEGIN");
        assert_bob_refused(tx.batch_execute("SET LOCAL ROLE prod_admin"), "bob SET LOCAL ROLE");
        ok(tx.rollback(), "ROLLBACK");
    }
    assert_eq!(current_user(&mut bob), "bob");
    expect_audit(&t.cluster, offset, "allow", "set_role", "alice", GATED);
    expect_audit(&t.cluster, offset, "deny", "set_role", "bob", GATED);
}

#[test]
fn set_config_session() {
    let (t, mut alice, mut bob, offset) = team_and_sessions();
    let value = ok(simple_value(&mut alice, "SELECT set_config('role', 'prod_admin', false)"), "alice set_config(false)");
    assert_eq!(value.as_deref(), Some(GATED));
    assert_eq!(current_user(&mut alice), GATED);
    ok(alice.batch_execute("RESET ROLE"), "RESET ROLE");
    assert_bob_refused(simple_value(&mut bob, "SELECT set_config('role', 'prod_admin', false)"), "bob set_config(false)");
    assert_eq!(current_user(&mut bob), "bob");
    expect_audit(&t.cluster, offset, "allow", "set_config", "alice", GATED);
    expect_audit(&t.cluster, offset, "deny", "set_config", "bob", GATED);
}

#[test]
fn set_config_transaction_local() {
    let (t, mut alice, mut bob, offset) = team_and_sessions();
    {
        let mut tx = ok(alice.transaction(), "BEGIN");
        ok(tx.batch_execute("SELECT set_config('role', 'prod_admin', true)"), "alice set_config(true)");
        let user: String = ok(tx.query_one("SELECT current_user::text", &[]), "current_user").get(0);
        assert_eq!(user, GATED);
        ok(tx.commit(), "COMMIT");
    }
    assert_eq!(current_user(&mut alice), "alice");
    {
        let mut tx = ok(bob.transaction(), "BEGIN");
        assert_bob_refused(tx.batch_execute("SELECT set_config('role', 'prod_admin', true)"), "bob set_config(true)");
        ok(tx.rollback(), "ROLLBACK");
    }
    assert_eq!(current_user(&mut bob), "bob");
    expect_audit(&t.cluster, offset, "allow", "set_config", "alice", GATED);
    expect_audit(&t.cluster, offset, "deny", "set_config", "bob", GATED);
}

/// A SECURITY INVOKER function created by a superuser with `SET role = prod_admin`, in SQL
/// and in PL/pgSQL: judged at each call.
#[test]
fn function_set_clause() {
    let (mut t, mut alice, mut bob, offset) = team_and_sessions();
    ok(
        t.admin.batch_execute(
            "CREATE FUNCTION public.as_admin() RETURNS text LANGUAGE sql SECURITY INVOKER SET role = prod_admin
                 AS $$ SELECT current_user::text $$;
             CREATE FUNCTION public.as_admin_plpgsql() RETURNS text LANGUAGE plpgsql SECURITY INVOKER SET role = prod_admin
                 AS $$ BEGIN RETURN current_user::text; END $$;",
        ),
        "create functions",
    );
    for f in ["public.as_admin()", "public.as_admin_plpgsql()"] {
        let inside = ok(simple_value(&mut alice, &format!("SELECT {f}")), &format!("alice {f}"));
        assert_eq!(inside.as_deref(), Some(GATED), "{f} runs as prod_admin for alice");
        assert_eq!(current_user(&mut alice), "alice", "the function's SET ends with it");
        assert_bob_refused(simple_value(&mut bob, &format!("SELECT {f}")), &format!("bob {f}"));
        assert_eq!(current_user(&mut bob), "bob");
    }
    expect_audit(&t.cluster, offset, "allow", "function_set", "alice", GATED);
    let denies = wait_for_audits(&t.cluster, offset, 2, |a| a.decision == "deny" && a.get("route") == "function_set");
    assert_eq!(denies.len(), 2, "one deny line per refused call\n{}", t.cluster.log_since(offset));
}

/// A DO block with SET ROLE (the setting outlives the block, as PostgreSQL does).
#[test]
fn do_block_set_role() {
    let (t, mut alice, mut bob, offset) = team_and_sessions();
    ok(alice.batch_execute("DO $$ BEGIN SET ROLE prod_admin; END $$"), "alice DO SET ROLE");
    assert_eq!(current_user(&mut alice), GATED);
    ok(alice.batch_execute("RESET ROLE"), "RESET ROLE");
    assert_bob_refused(bob.batch_execute("DO $$ BEGIN SET ROLE prod_admin; END $$"), "bob DO SET ROLE");
    assert_eq!(current_user(&mut bob), "bob");
    expect_audit(&t.cluster, offset, "allow", "set_role", "alice", GATED);
    expect_audit(&t.cluster, offset, "deny", "set_role", "bob", GATED);
}

/// A DO block that catches the refusal: the caught SQLSTATE is 42501, and the user is still
/// itself inside the handler and afterwards.
#[test]
fn do_block_catching_the_refusal_stays_itself() {
    let (t, _alice, mut bob, offset) = team_and_sessions();
    ok(
        bob.batch_execute(
            "DO $$
             BEGIN
                 BEGIN
                     SET ROLE prod_admin;
                     PERFORM set_config('e2e.caught', 'no error', false);
                 EXCEPTION WHEN OTHERS THEN
                     PERFORM set_config('e2e.caught', SQLSTATE || ' ' || current_user, false);
                 END;
             END $$",
        ),
        "bob DO with handler",
    );
    let caught = ok(simple_value(&mut bob, "SELECT current_setting('e2e.caught')"), "caught");
    assert_eq!(caught.as_deref(), Some("42501 bob"), "caught SQLSTATE and current_user in the handler");
    assert_eq!(current_user(&mut bob), "bob", "after the caught refusal");
    ok(bob.batch_execute("SELECT 1"), "bob's session works on");
    expect_audit(&t.cluster, offset, "deny", "set_role", "bob", GATED);
}

#[test]
fn plpgsql_execute_set_role() {
    let (t, mut alice, mut bob, offset) = team_and_sessions();
    ok(alice.batch_execute("DO $$ BEGIN EXECUTE 'SET ROLE prod_admin'; END $$"), "alice EXECUTE SET ROLE");
    assert_eq!(current_user(&mut alice), GATED);
    ok(alice.batch_execute("RESET ROLE"), "RESET ROLE");
    assert_bob_refused(bob.batch_execute("DO $$ BEGIN EXECUTE 'SET ROLE prod_admin'; END $$"), "bob EXECUTE SET ROLE");
    assert_eq!(current_user(&mut bob), "bob");
    expect_audit(&t.cluster, offset, "allow", "set_role", "alice", GATED);
    expect_audit(&t.cluster, offset, "deny", "set_role", "bob", GATED);
}

#[test]
fn extended_protocol_bound_parameter() {
    let (t, mut alice, mut bob, offset) = team_and_sessions();
    let row = ok(alice.query_one("SELECT set_config('role', $1, false)", &[&GATED]), "alice extended set_config");
    assert_eq!(row.get::<_, String>(0), GATED);
    assert_eq!(current_user(&mut alice), GATED);
    ok(alice.batch_execute("RESET ROLE"), "RESET ROLE");
    assert_bob_refused(bob.query_one("SELECT set_config('role', $1, false)", &[&GATED]), "bob extended set_config");
    assert_eq!(current_user(&mut bob), "bob");
    expect_audit(&t.cluster, offset, "allow", "set_config", "alice", GATED);
    expect_audit(&t.cluster, offset, "deny", "set_config", "bob", GATED);
}

/// `-c role=prod_admin` in the startup options: alice logs in as prod_admin, bob's login is
/// refused (FATAL 42501), and he can still log in without the option.
#[test]
fn startup_option_role() {
    let (t, _alice, _bob, offset) = team_and_sessions();
    let mut alice_opt = ok(t.cluster.try_connect_with(&with_options(&t.cluster, "alice", "-c role=prod_admin")), "alice -c role=prod_admin");
    assert_eq!(current_user(&mut alice_opt), GATED);
    let refused = t.cluster.try_connect_with(&with_options(&t.cluster, "bob", "-c role=prod_admin")).map(|_| ());
    let db = assert_refused(refused, GATED, BOB_EMAIL, "bob -c role=prod_admin");
    assert_eq!(db.severity(), "FATAL", "a startup refusal ends the connection");
    expect_audit(&t.cluster, offset, "allow", "startup_option", "alice", GATED);
    expect_audit(&t.cluster, offset, "deny", "startup_option", "bob", GATED);
    assert_eq!(current_user(&mut t.connect_as("bob")), "bob", "bob logs in without the option");
}

/// `ALTER ROLE x SET role = prod_admin`, applied at login: alice (on call) gets it; bob logs
/// in as himself with a WARNING naming the role and his identity, also in the server log.
#[test]
fn role_default_at_login() {
    let (mut t, _alice, _bob, offset) = team_and_sessions();
    ok(t.admin.batch_execute("ALTER ROLE alice SET role = prod_admin; ALTER ROLE bob SET role = prod_admin"), "role defaults");
    let (mut alice, alice_notices) = connect_collecting(&t.cluster, t.cluster.config("alice", "postgres"));
    assert_eq!(current_user(&mut alice), GATED, "alice (on call) gets her role default");
    assert!(alice_notices.lock().unwrap().is_empty(), "no warning for alice: {:?}", alice_notices.lock().unwrap());
    let (mut bob, bob_notices) = connect_collecting(&t.cluster, t.cluster.config("bob", "postgres"));
    assert_eq!(current_user(&mut bob), "bob", "bob logs in as himself");
    let warnings = bob_notices.lock().unwrap().clone();
    assert!(
        warnings.iter().any(|n| n.severity() == "WARNING" && n.message().contains(GATED) && n.message().contains(BOB_EMAIL)),
        "bob got a WARNING naming the role and his identity: {warnings:?}"
    );
    expect_audit(&t.cluster, offset, "allow", "role_default", "alice", GATED);
    expect_audit(&t.cluster, offset, "deny", "role_default", "bob", GATED);
    assert!(
        t.cluster.log_since(offset).lines().any(|l| l.contains("WARNING:") && l.contains("permission denied to set role \"prod_admin\"")),
        "the WARNING is in the server log too\n{}",
        t.cluster.log_since(offset)
    );
}

/// The gate holds in every database of the cluster (the extension is created in one), and
/// for a database's role default.
#[test]
fn every_database_and_database_role_default() {
    let (mut t, _alice, _bob, offset) = team_and_sessions();
    ok(t.admin.batch_execute("CREATE DATABASE other_db"), "CREATE DATABASE");
    ok(t.admin.batch_execute("ALTER DATABASE other_db SET role = prod_admin"), "database role default");
    let mut alice_other = t.cluster.connect_db("alice", "other_db");
    assert_eq!(current_user(&mut alice_other), GATED, "alice gets other_db's role default");
    let (mut bob_other, bob_notices) = connect_collecting(&t.cluster, t.cluster.config("bob", "other_db"));
    assert_eq!(current_user(&mut bob_other), "bob");
    assert!(
        bob_notices.lock().unwrap().iter().any(|n| n.severity() == "WARNING" && n.message().contains(GATED)),
        "bob got a WARNING: {:?}",
        bob_notices.lock().unwrap()
    );
    expect_audit(&t.cluster, offset, "deny", "role_default", "bob", GATED);
    assert_bob_refused(bob_other.batch_execute("SET ROLE prod_admin"), "bob SET ROLE in other_db");
    ok(alice_other.batch_execute("RESET ROLE; SET ROLE prod_admin; RESET ROLE"), "alice in other_db");
}

#[test]
fn non_routes_update_pg_settings_and_session_authorization() {
    let t = team(&[]);
    for (user, identity) in [("bob", BOB_EMAIL), ("alice", ALICE_EMAIL)] {
        let mut session = t.connect_as(user);
        // pg_settings does not list `role`: the UPDATE reaches nothing.
        let listed: i64 = ok(session.query_one("SELECT count(*) FROM pg_settings WHERE name = 'role'", &[]), "pg_settings").get(0);
        assert_eq!(listed, 0, "role is not in pg_settings");
        let updated = ok(session.execute("UPDATE pg_settings SET setting = 'prod_admin' WHERE name = 'role'", &[]), "UPDATE pg_settings");
        assert_eq!(updated, 0, "{user}: UPDATE pg_settings affects no row");
        assert_eq!(current_user(&mut session), user, "{user}: UPDATE pg_settings changes no role");

        // SET SESSION AUTHORIZATION is superuser-only: PostgreSQL's own refusal, not the gate's.
        let offset = t.cluster.log_len();
        let e = session.batch_execute("SET SESSION AUTHORIZATION prod_admin").expect_err("SET SESSION AUTHORIZATION refused");
        let db = db_error(&e);
        assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{}", error_text(&e));
        assert!(db.message().contains("session authorization"), "PostgreSQL's own message: {}", error_text(&e));
        assert!(!db.message().contains("pg_oncall") && !db.message().contains(identity), "not the gate's message: {}", error_text(&e));
        assert_eq!(current_user(&mut session), user);
        let session_user: String = ok(session.query_one("SELECT session_user::text", &[]), "session_user").get(0);
        assert_eq!(session_user, user);
        // Anything the statements above logged precedes this session's fence.
        log_fence(&t.cluster, &mut session);
        let lines = decision_log_lines(&t.cluster, offset);
        assert!(lines.is_empty(), "no gate decision for a non-route: {lines:#?}");
    }
}

#[test]
fn non_members_get_postgresql_own_refusal_and_no_decision() {
    let mut t = team(&[]);
    ok(t.admin.batch_execute("CREATE ROLE carol LOGIN NOINHERIT"), "carol");
    let mut carol = t.connect_as("carol");
    let offset = t.cluster.log_len();
    let e = carol.batch_execute("SET ROLE prod_admin").unwrap_err();
    let db = db_error(&e);
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{}", error_text(&e));
    assert_eq!(db.message(), "permission denied to set role \"prod_admin\"", "PostgreSQL's own message for a non-member");
    // Anything the refused SET ROLE logged precedes carol's fence.
    log_fence(&t.cluster, &mut carol);
    assert!(decision_log_lines(&t.cluster, offset).is_empty(), "a non-member's attempt is PostgreSQL's refusal, not a gate decision");

    // A member without any identity: refused by the gate, the DETAIL says why.
    ok(t.admin.batch_execute("GRANT prod_admin TO carol"), "GRANT");
    assert_refused_because(carol.batch_execute("SET ROLE prod_admin"), GATED, "carol", "no PagerDuty identity", "carol without identity");
    let line = expect_audit(&t.cluster, offset, "deny", "set_role", "carol", GATED);
    assert_eq!(line.get("identity"), "-");
    assert_eq!(line.get("reason"), "no identity");
}

/// An off-call member may create a function with `SET role = prod_admin` (PostgreSQL would
/// apply it while validating the body): created, nothing logged or counted; calling it is the
/// switch, refused.
#[test]
fn creating_a_function_with_set_role_is_not_a_switch() {
    let mut t = team(&[]);
    let before = t.stats();
    let offset = t.cluster.log_len();
    let mut bob = t.connect_as("bob");
    for (name, lang, body) in [("f_sql", "sql", "SELECT current_user::text"), ("f_pl", "plpgsql", "BEGIN RETURN current_user::text; END")] {
        ok(
            bob.batch_execute(&format!("CREATE FUNCTION lab.{name}() RETURNS text LANGUAGE {lang} SET role = prod_admin AS $${body}$$")),
            &format!("bob creates lab.{name}"),
        );
    }
    ok(bob.batch_execute("CREATE PROCEDURE lab.p() LANGUAGE sql SET role = prod_admin AS $$ SELECT 1 $$"), "procedure");
    ok(bob.batch_execute("CREATE FUNCTION lab.g() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$; ALTER FUNCTION lab.g() SET role = prod_admin"), "ALTER FUNCTION SET role");
    // Anything bob's statements logged precedes his fence.
    log_fence(&t.cluster, &mut bob);
    assert!(decision_log_lines(&t.cluster, offset).is_empty(), "no decision logged:\n{}", t.cluster.log_since(offset));
    assert_eq!(t.stats(), before, "no decision counted");
    assert_bob_refused(bob.batch_execute("SELECT lab.f_sql()"), "calling it");
    assert_bob_refused(bob.batch_execute("SELECT lab.f_pl()"), "calling it");
    let mut alice = t.connect_as("alice");
    let v = ok(simple_value(&mut alice, "SELECT lab.f_pl()"), "on-call alice calls it");
    assert_eq!(v.as_deref(), Some(GATED));
}
