//! DESIGN.md guarantee 3, the login gate: a login *as* a role with `gate_login` succeeds only
//! while the role's own identity is on call, over TCP and the Unix socket alike; a refusal is
//! FATAL 28000 naming the role and its identity, with one genuine `deny … route=login` line;
//! logins as ungated roles are not decisions. (A per-role rule's policy filter at login:
//! `rules.rs`.)
//!
//! | case | test |
//! |---|---|
//! | off call refused over TCP and the socket, on call allowed, refused again after the shift; ungated roles log in undecided | `login_gate_refuses_off_call_logins_over_tcp_and_socket` |

use e2e::*;
use postgres::{Client, Config};

/// Connection settings over TCP only (asserted with [`over_tcp`] where a login succeeds).
fn tcp_only(cluster: &Cluster, role: &str) -> Config {
    cluster.tcp_config(role, "postgres")
}

/// Whether the session came over TCP (and not the Unix socket).
fn over_tcp(session: &mut Client) -> bool {
    session.query_one("SELECT inet_client_addr() IS NOT NULL", &[]).unwrap().get(0)
}

#[test]
fn login_gate_refuses_off_call_logins_over_tcp_and_socket() {
    let mut t = team(&[]);
    t.gate_ops_bot();
    let cluster = &t.cluster;

    let offset = cluster.log_len();
    assert_login_refused(cluster.try_connect_with(&tcp_only(cluster, "ops_bot")), "ops_bot", OPS_BOT_EMAIL, "TCP");
    assert_login_refused(cluster.try_connect_with(&cluster.config("ops_bot", "postgres")), "ops_bot", OPS_BOT_EMAIL, "Unix socket");
    // A login's decision is logged during authentication, before the server answers: both
    // lines are in the log once the refusals came back.
    let denies: Vec<Audit> = audits_on(cluster, offset, "login").into_iter().filter(|a| a.decision == "deny").collect();
    assert_eq!(denies.len(), 2, "one deny line per refused login\n{}", cluster.log_since(offset));
    for line in &denies {
        assert_eq!(line.get("role"), "ops_bot");
        assert_eq!(line.get("session_user"), "ops_bot");
        assert_eq!(line.get("identity"), OPS_BOT_EMAIL);
        assert_eq!(line.get("reason"), "not on call");
    }

    // Unrelated roles log in normally, over both routes, while ops_bot is refused.
    for role in ["bob", "alice", "postgres"] {
        let mut c = ok(cluster.try_connect_with(&tcp_only(cluster, role)), &format!("{role} over TCP"));
        assert_eq!(current_user(&mut c), role);
        assert!(over_tcp(&mut c));
        let mut c = ok(cluster.try_connect(role, "postgres"), &format!("{role} over the socket"));
        assert_eq!(current_user(&mut c), role);
        assert!(!over_tcp(&mut c));
    }
    // Those logins are over (and authenticated) before the sessions answered: anything they
    // logged is in the log now.
    assert!(
        decision_log_lines(cluster, offset).iter().map(parse_audit).all(|a| a.get("session_user") == "ops_bot"),
        "logins as ungated roles are not decisions\n{}",
        cluster.log_since(offset)
    );

    // On call: both routes let ops_bot in.
    add_manual_shift(&mut t.admin, OPS_BOT_EMAIL);
    cluster.sync_point();
    let offset = cluster.log_len();
    let mut tcp = ok(cluster.try_connect_with(&tcp_only(cluster, "ops_bot")), "ops_bot on call, TCP");
    assert_eq!(current_user(&mut tcp), "ops_bot");
    assert!(over_tcp(&mut tcp));
    let mut sock = ok(cluster.try_connect("ops_bot", "postgres"), "ops_bot on call, socket");
    assert_eq!(current_user(&mut sock), "ops_bot");
    assert!(!over_tcp(&mut sock));
    let allow = expect_audit(cluster, offset, "allow", "login", "ops_bot", "ops_bot");
    assert_eq!(allow.get("identity"), OPS_BOT_EMAIL);
    assert_eq!(allow.get("reason"), "on call");

    // The shift ends: refused again.
    t.admin.execute("DELETE FROM oncall.shifts WHERE email = $1", &[&OPS_BOT_EMAIL]).unwrap();
    cluster.sync_point();
    assert_login_refused(cluster.try_connect_with(&tcp_only(cluster, "ops_bot")), "ops_bot", OPS_BOT_EMAIL, "TCP after the shift");
    assert_login_refused(cluster.try_connect("ops_bot", "postgres"), "ops_bot", OPS_BOT_EMAIL, "socket after the shift");
}
