//! DESIGN.md guarantee 2 (top level): once the shift ends, every statement that would run
//! with the gated role as current role fails, judged when it starts by the wall clock — also
//! in a long transaction, with no table change and PagerDuty unreachable — while `RESET
//! ROLE`, `SET ROLE NONE` and leaving the role are never blocked. Nested statements, loops,
//! cursors, portals, the fast path and `COMMIT PREPARED`: `expiry_contexts.rs`.
//!
//! The tests wait on conditions, never on time: a shift "ends" either by a DELETE (then the
//! test waits until a fresh session of alice's is refused) or by its own `ends_at` a few
//! seconds after the test saw it grant (then it waits until the clock passed `ends_at` and a
//! fresh session is refused: `Team::wait_shift_over`).
//!
//! | case | test |
//! |---|---|
//! | a SELECT, a SELECT from a table, CREATE TABLE, CREATE TEMP TABLE after the shift is deleted (each case reports on its own) | `statements_are_refused_once_the_shift_is_gone` |
//! | the shift ends by its `ends_at` in the middle of a long transaction | `a_long_transaction_is_refused_once_ends_at_passes` |
//! | a new `SET ROLE` after `ends_at`, no table change (the cached decision expires) | `a_new_switch_is_refused_after_ends_at` |
//! | `RESET ROLE`, `SET ROLE NONE`, `SET ROLE <ungated>`, `DISCARD ALL` off call and after the end | `reset_none_and_ungated_roles_are_never_blocked` |
//! | the HINT is `SET ROLE NONE`, which also works for a role from `-c role=` | `hint_after_shift_end_is_set_role_none_also_for_startup_role` |
//! | parallel query, COPY TO, EXPLAIN ANALYZE, LOCK, EXECUTE, NOTIFY, CALL after the end (each reports on its own) | `other_statement_kinds_after_the_shift_end` |

use e2e::*;
use postgres::error::SqlState;
use postgres::Client;

#[test]
fn statements_are_refused_once_the_shift_is_gone() {
    let mut t = team(&[]);
    let statements = [
        ("SELECT 1", "a SELECT"),
        ("SELECT count(*) FROM work.t", "a SELECT from a table"),
        ("CREATE TABLE work.made_after_end (x int)", "CREATE TABLE (utility)"),
        ("CREATE TEMP TABLE made_after_end (x int)", "CREATE TEMP TABLE (utility)"),
    ];
    let mut cases = Cases::new();
    for (sql, what) in statements {
        cases.run(what, || {
            let mut alice = t.connect_as("alice");
            ok(alice.batch_execute("SET ROLE prod_admin"), "SET ROLE while on call");
            let n: i64 = ok(alice.query_one("SELECT count(*) FROM work.t", &[]), "read work.t").get(0);
            assert_eq!(n, 2, "prod_admin reads work.t while on call");
            let offset = t.cluster.log_len();
            t.end_alice_shift();
            assert_access_ended(alice.batch_execute(sql), what);
            // The statement did nothing.
            assert!(!t.scalar_bool("SELECT to_regclass('work.made_after_end') IS NOT NULL"), "{what}: nothing was created");
            let line = expect_audit(&t.cluster, offset, "deny", "statement", "alice", GATED);
            assert_eq!(line.get("identity"), ALICE_EMAIL);
            ok(alice.batch_execute("RESET ROLE"), "RESET ROLE");
            assert_eq!(current_user(&mut alice), "alice");
            ok(alice.batch_execute("SELECT 1; CREATE TEMP TABLE alice_own (x int); DROP TABLE alice_own"), "statements as alice herself after RESET ROLE");
        });
        t.start_alice_shift();
    }
    cases.finish();
}

/// The shift ends by its own `ends_at` (no table change, PagerDuty down) in the middle of a
/// long transaction: the next statement is refused, and the rollback undoes the SET ROLE.
#[test]
fn a_long_transaction_is_refused_once_ends_at_passes() {
    let mut t = team(&[]);
    t.pagerduty_down();
    let ends = t.alice_shift_ends_in(SHORT_SHIFT_SECS);
    let mut alice = t.connect_as("alice");
    ok(alice.batch_execute("BEGIN; SET ROLE prod_admin"), "BEGIN; SET ROLE while on call");
    ok(alice.batch_execute("SELECT count(*) FROM work.t"), "a statement while on call, in the transaction");
    t.wait_shift_over(ends);
    assert_access_ended(alice.batch_execute("SELECT count(*) FROM work.t"), "next statement in the long transaction");
    // The refusal aborted the transaction; its rollback also undoes the SET ROLE.
    ok(alice.batch_execute("ROLLBACK"), "ROLLBACK");
    assert_eq!(current_user(&mut alice), "alice");
    ok(alice.batch_execute("SELECT 1"), "alice goes on as herself");
}

/// After `ends_at` passed, with no table change, a new SET ROLE is refused too: the decision
/// cached while she was on call expires at the shift's end.
#[test]
fn a_new_switch_is_refused_after_ends_at() {
    let mut t = team(&[]);
    t.pagerduty_down();
    let ends = t.alice_shift_ends_in(SHORT_SHIFT_SECS);
    let mut alice = t.connect_as("alice");
    ok(alice.batch_execute("SET ROLE prod_admin; RESET ROLE"), "alice switches while on call (her session caches the decision)");
    t.wait_shift_over(ends);
    assert_refused(alice.batch_execute("SET ROLE prod_admin"), GATED, ALICE_EMAIL, "SET ROLE after ends_at, same session");
    assert_eq!(current_user(&mut alice), "alice");
}

/// RESET ROLE, SET ROLE NONE and SET ROLE to an ungated role work in `session`, whatever its
/// current role, and leave it as `user` / `readers`.
#[track_caller]
fn leaving_works(session: &mut Client, user: &str, what: &str) {
    ok(session.batch_execute("RESET ROLE"), &format!("{what}: RESET ROLE"));
    assert_eq!(current_user(session), user, "{what}: after RESET ROLE");
    ok(session.batch_execute("SET ROLE NONE"), &format!("{what}: SET ROLE NONE"));
    assert_eq!(current_user(session), user, "{what}: after SET ROLE NONE");
    ok(session.batch_execute("SET ROLE readers"), &format!("{what}: SET ROLE readers"));
    assert_eq!(current_user(session), "readers", "{what}: after SET ROLE readers");
    ok(session.batch_execute("RESET ROLE"), &format!("{what}: RESET ROLE"));
}

#[test]
fn reset_none_and_ungated_roles_are_never_blocked() {
    let mut t = team(&[]);
    // An off-call user.
    let mut bob = t.connect_as("bob");
    leaving_works(&mut bob, "bob", "off-call bob");
    assert_bob_refused(bob.batch_execute("SET ROLE prod_admin"), "bob SET ROLE");
    leaving_works(&mut bob, "bob", "off-call bob after a refusal");
    let v = ok(simple_value(&mut bob, "SELECT set_config('role', 'none', false)"), "set_config none");
    assert_eq!(v.as_deref(), Some("none"));
    let v = ok(simple_value(&mut bob, "SELECT set_config('role', 'readers', false)"), "set_config readers");
    assert_eq!(v.as_deref(), Some("readers"));
    ok(bob.batch_execute("RESET ROLE"), "RESET ROLE");

    // After the shift ended while the gated role was current: each way out works. (Not
    // `SELECT set_config('role', 'none', false)`: that is a SELECT run as prod_admin, which the
    // per-statement re-check refuses before set_config is evaluated. Not RESET ALL either: it
    // does not reset the role in PostgreSQL.)
    let mut cases = Cases::new();
    for way_out in ["RESET ROLE", "SET ROLE NONE", "SET ROLE readers", "DISCARD ALL"] {
        cases.run(way_out, || {
            let mut alice = t.connect_as("alice");
            ok(alice.batch_execute("SET ROLE prod_admin"), "alice SET ROLE");
            t.end_alice_shift();
            let e = alice.batch_execute("SELECT 1").expect_err("a statement as prod_admin after the shift ended is refused");
            assert_eq!(db_error(&e).code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{}", error_text(&e));
            ok(alice.batch_execute(way_out), &format!("after the shift ended, {way_out}"));
            let expected = if way_out == "SET ROLE readers" { "readers" } else { "alice" };
            assert_eq!(current_user(&mut alice), expected, "after {way_out}");
            leaving_works(&mut alice, "alice", &format!("alice after {way_out}"));
        });
        t.start_alice_shift();
    }
    cases.finish();
}

/// After a shift ends, the HINT says `SET ROLE NONE`, which also works when the role came from
/// the startup options (where `RESET ROLE` goes back to it).
#[test]
fn hint_after_shift_end_is_set_role_none_also_for_startup_role() {
    let mut t = team(&[]);
    t.pagerduty_down();
    let ends = t.alice_shift_ends_in(SHORT_SHIFT_SECS);
    let mut alice = ok(t.cluster.try_connect_with(&with_options(&t.cluster, "alice", "-c role=prod_admin")), "alice -c role=prod_admin");
    assert_eq!(current_user(&mut alice), GATED);
    t.wait_shift_over(ends);
    assert_access_ended(alice.batch_execute("SELECT 1"), "a statement after the end");
    ok(alice.batch_execute("RESET ROLE"), "RESET ROLE is never refused");
    assert_access_ended(alice.batch_execute("SELECT 1"), "RESET ROLE went back to the startup role");
    ok(alice.batch_execute("SET ROLE NONE"), "SET ROLE NONE");
    assert_eq!(current_user(&mut alice), "alice");
    ok(alice.batch_execute("SELECT 1"), "alice continues as herself");
}

#[test]
fn other_statement_kinds_after_the_shift_end() {
    let mut t = team(&[]);
    t.pagerduty_down();
    ok(t.admin.batch_execute("CREATE PROCEDURE work.noop() LANGUAGE sql AS $$ SELECT 1 $$"), "noop");
    let kinds = [
        ("parallel query", "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0", "SELECT count(*) FROM work.secret"),
        ("COPY TO", "SELECT 1", "COPY work.secret TO STDOUT"),
        ("EXPLAIN ANALYZE", "SELECT 1", "EXPLAIN ANALYZE SELECT * FROM work.secret"),
        ("LOCK", "BEGIN", "LOCK TABLE work.secret IN ACCESS EXCLUSIVE MODE"),
        ("EXECUTE of a statement prepared on call", "PREPARE p AS SELECT x FROM work.secret", "EXECUTE p"),
        ("NOTIFY", "SELECT 1", "NOTIFY ch, 's3cr3t'"),
        ("CALL", "SELECT 1", "CALL work.noop()"),
    ];
    let mut cases = Cases::new();
    for (what, before, after) in kinds {
        cases.run(what, || {
            let ends = t.alice_shift_ends_in(SHORT_SHIFT_SECS);
            let mut alice = t.connect_as("alice");
            ok(alice.batch_execute("SET ROLE prod_admin"), what);
            ok(alice.batch_execute(before), &format!("{what}: {before}"));
            t.wait_shift_over(ends);
            assert_access_ended(alice.batch_execute(after), what);
        });
    }
    cases.finish();
}
