//! `pg_oncall.enforcement` (DESIGN.md, configuration): `enforce` denies; `audit` logs
//! would-be denials (`audit_deny`) and allows, for switches, statements and logins; `off`
//! decides nothing and logs nothing; back to `enforce`, open sessions are refused again.
//!
//! | case | test |
//! |---|---|
//! | enforce → audit → off → enforce, in the same sessions | `enforcement_modes_audit_off_enforce` |

use e2e::*;

#[test]
fn enforcement_modes_audit_off_enforce() {
    let mut t = team(&[]);
    t.gate_ops_bot();
    let cluster = &t.cluster;
    let mut bob = cluster.connect_as("bob");
    let mut alice = cluster.connect_as("alice");
    assert_bob_refused(bob.batch_execute("SET ROLE prod_admin"), "enforce");

    // audit: the would-be refusal is logged and allowed.
    cluster.alter_system("pg_oncall.enforcement", "'audit'");
    let offset = cluster.log_len();
    ok(bob.batch_execute("SET ROLE prod_admin"), "audit mode: bob SET ROLE");
    assert_eq!(current_user(&mut bob), GATED);
    let line = expect_audit(cluster, offset, "audit_deny", "set_role", "bob", GATED);
    assert_eq!(line.get("reason"), "not on call");
    // Statements bob runs as prod_admin are audited too, not refused.
    ok(bob.batch_execute("SELECT count(*) FROM work.t"), "audit mode: statements run");
    expect_audit(cluster, offset, "audit_deny", "statement", "bob", GATED);
    ok(bob.batch_execute("RESET ROLE"), "RESET ROLE");
    let mut bot = ok(cluster.try_connect("ops_bot", "postgres"), "audit mode: ops_bot logs in");
    assert_eq!(current_user(&mut bot), "ops_bot");
    expect_audit(cluster, offset, "audit_deny", "login", "ops_bot", "ops_bot");
    assert!(audits_on(cluster, offset, "set_role").iter().all(|a| a.decision != "deny"), "no hard deny in audit mode");

    // off: no decision at all, nothing logged.
    cluster.alter_system("pg_oncall.enforcement", "'off'");
    let offset = cluster.log_len();
    ok(bob.batch_execute("SET ROLE prod_admin"), "off: bob SET ROLE");
    assert_eq!(current_user(&mut bob), GATED);
    ok(bob.batch_execute("SELECT count(*) FROM work.t"), "off: statements run");
    ok(bob.batch_execute("RESET ROLE"), "RESET ROLE");
    ok(alice.batch_execute("SET ROLE prod_admin; RESET ROLE"), "off: alice");
    let mut bot = ok(cluster.try_connect("ops_bot", "postgres"), "off: ops_bot logs in");
    assert_eq!(current_user(&mut bot), "ops_bot");
    // bob's and alice's lines precede their fences; ops_bot's login was logged (if at all)
    // before the server answered it.
    log_fence(cluster, &mut bob);
    log_fence(cluster, &mut alice);
    let lines = decision_log_lines(cluster, offset);
    assert!(lines.is_empty(), "enforcement = off logs no decision: {lines:#?}");

    // enforce again: refused again, in the same session.
    cluster.alter_system("pg_oncall.enforcement", "'enforce'");
    let offset = cluster.log_len();
    assert_bob_refused(bob.batch_execute("SET ROLE prod_admin"), "enforce again");
    assert_eq!(current_user(&mut bob), "bob");
    expect_audit(cluster, offset, "deny", "set_role", "bob", GATED);
    assert_login_refused(cluster.try_connect("ops_bot", "postgres"), "ops_bot", OPS_BOT_EMAIL, "enforce again");
}
