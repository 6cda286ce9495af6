//! Who a rule admits (DESIGN.md guarantees 1 and 3, "Catalog"): a session user's identity
//! (identities row, a role named like an email, `email_domain`), the shift's window and its
//! boundaries, escalation levels (rule and GUCs), a rule's escalation policies and schedules —
//! decided through the gate end to end (SET ROLE, membership routes, login) with the DETAIL and
//! audit reason naming the filter — and break-glass overrides.
//!
//! | case | test |
//! |---|---|
//! | per-role rules through `SET ROLE` and a membership route: another policy, another schedule, no schedule, below/above the rule's levels (each case reports on its own) | `per_role_rules_through_the_gate` |
//! | a `gate_login` rule's policy filter at login | `per_role_rule_at_login` |
//! | identity rules with real login roles; identity changes within 1 s | `identity_rules_with_real_login_roles` |
//! | shift windows (open, closed, future, infinite) and the exact boundaries, with no table change | `shift_windows_and_boundaries` |
//! | `min/max_escalation_level` settings, `is_on_call`'s filters, manual rows' NULL level and policy | `escalation_level_settings_and_is_on_call` |
//! | `oncall.override()`: grants for its duration, logged as a WARNING, checks its arguments | `override_grants_for_its_duration_and_is_logged_loudly` |

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use e2e::*;
use fake_pagerduty::oncall;
use postgres::Client;

fn whoami_identity(session: &mut Client) -> Option<String> {
    session.query_one("SELECT identity FROM oncall.whoami()", &[]).expect("whoami()").get(0)
}

/// A rule's filters, decided through the gate end to end: users on call in PagerDuty in one
/// policy, schedule and level each, SET ROLE to roles gated with different rules. Each (role,
/// user) case reports on its own: allowed (and `check_oncall_access(role)` agrees), or refused
/// with the DETAIL and the audit `reason` that name the filter that did not admit them.
#[test]
fn per_role_rules_through_the_gate() {
    let mut t = team(&[]);
    ok(
        t.admin.batch_execute(
            "CREATE ROLE ep_admin NOLOGIN;     SELECT oncall.gate_role('ep_admin', escalation_policy_ids => '{EP1}');
             CREATE ROLE sched_admin NOLOGIN;  SELECT oncall.gate_role('sched_admin', schedule_ids => '{SCHED-EP1}');
             CREATE ROLE low_admin NOLOGIN;    SELECT oncall.gate_role('low_admin', max_escalation_level => 1);
             CREATE ROLE senior_admin NOLOGIN; SELECT oncall.gate_role('senior_admin', min_escalation_level => 2);
             CREATE ROLE both_admin NOLOGIN;   SELECT oncall.gate_role('both_admin', escalation_policy_ids => '{EP1}', max_escalation_level => 2);
             CREATE ROLE carol LOGIN NOINHERIT; CREATE ROLE dave LOGIN NOINHERIT;
             CREATE ROLE erin LOGIN NOINHERIT;  CREATE ROLE frank LOGIN NOINHERIT;
             GRANT ep_admin, sched_admin, low_admin, senior_admin, both_admin TO carol, dave, erin, frank;
             INSERT INTO oncall.identities VALUES ('carol', 'carol@example.com'), ('dave', 'dave@example.com'),
                                                  ('erin', 'erin@example.com'), ('frank', 'frank@example.com');
             CREATE TABLE lab.dave_t (x int); ALTER TABLE lab.dave_t OWNER TO dave;",
        ),
        "rules and users",
    );
    // In PagerDuty: carol EP1 level 1 (schedule SCHED-EP1), dave EP2 level 1 (SCHED-EP2),
    // erin EP1 level 3 (SCHED-EP1), frank EP1 level 2 as a direct target (no schedule).
    t.fake.set_oncalls(vec![
        oncall("carol@example.com", "EP1", 1),
        oncall("dave@example.com", "EP2", 1),
        oncall("erin@example.com", "EP1", 3),
        oncall("frank@example.com", "EP1", 2).with_schedule(None),
    ]);
    t.cluster.refresh();
    t.cluster.sync_point();

    const POLICY: (&str, &str) = ("is on call, but not in an escalation policy or schedule", "outside escalation policies or schedules");
    const LEVEL: (&str, &str) = ("is on call, but not at an escalation level", "outside escalation levels");
    let cases: [(&str, &str, Option<(&str, &str)>); 20] = [
        ("ep_admin", "carol", None),
        ("ep_admin", "dave", Some(POLICY)),
        ("ep_admin", "erin", None),
        ("ep_admin", "frank", None),
        ("sched_admin", "carol", None),
        ("sched_admin", "dave", Some(POLICY)),
        ("sched_admin", "erin", None),
        ("sched_admin", "frank", Some(POLICY)),
        ("low_admin", "carol", None),
        ("low_admin", "dave", None),
        ("low_admin", "erin", Some(LEVEL)),
        ("low_admin", "frank", Some(LEVEL)),
        ("senior_admin", "carol", Some(LEVEL)),
        ("senior_admin", "dave", Some(LEVEL)),
        ("senior_admin", "erin", None),
        ("senior_admin", "frank", None),
        ("both_admin", "carol", None),
        ("both_admin", "dave", Some(POLICY)),
        ("both_admin", "erin", Some(LEVEL)),
        ("both_admin", "frank", None),
    ];
    let mut cases_run = Cases::new();
    for (role, user, refusal) in cases {
        let name = format!("{user} → {role}");
        cases_run.run(&name, || {
            let identity = format!("{user}@example.com");
            let mut session = t.connect_as(user);
            let offset = t.cluster.log_len();
            let result = session.batch_execute(&format!("SET ROLE {role}"));
            match refusal {
                None => {
                    ok(result, &format!("{name}: SET ROLE"));
                    assert_eq!(current_user(&mut session), role);
                    ok(session.batch_execute("RESET ROLE"), "RESET ROLE");
                    assert!(may_assume(&mut session, role), "{name}: check_oncall_access agrees");
                    let allow = expect_audit(&t.cluster, offset, "allow", "set_role", user, role);
                    assert_eq!(allow.get("reason"), "on call");
                }
                Some((detail, reason)) => {
                    assert_refused_because(result, role, &identity, detail, &name);
                    assert_eq!(current_user(&mut session), user);
                    assert!(!may_assume(&mut session, role), "{name}: check_oncall_access agrees");
                    let deny = expect_audit(&t.cluster, offset, "deny", "set_role", user, role);
                    assert_eq!((deny.get("identity"), deny.get("reason")), (identity.as_str(), reason), "{name}: the audit line");
                }
            }
        });
    }
    // The same rule judges the membership routes: dave (EP2) may not hand his table to
    // ep_admin, carol (EP1) may hand hers.
    cases_run.run("dave → ep_admin by membership", || {
        let mut dave = t.connect_as("dave");
        assert_refused_because(
            dave.batch_execute("ALTER TABLE lab.dave_t OWNER TO ep_admin"),
            "ep_admin",
            "dave@example.com",
            POLICY.0,
            "dave ALTER TABLE … OWNER TO ep_admin",
        );
    });
    cases_run.finish();
}

/// A rule's filters at login (`gate_login`): the role's own identity on call in another
/// policy is refused, with the reason in the DETAIL; in the rule's policy, it logs in.
#[test]
fn per_role_rule_at_login() {
    let mut t = team(&[]);
    ok(
        t.admin.batch_execute(
            "CREATE ROLE ep_bot LOGIN;
             INSERT INTO oncall.identities VALUES ('ep_bot', 'ep-bot@example.com');
             SELECT oncall.gate_role('ep_bot', escalation_policy_ids => '{EP1}', gate_login => true);",
        ),
        "ep_bot",
    );
    t.fake.set_oncalls(vec![oncall("ep-bot@example.com", "EP2", 1)]);
    t.cluster.refresh();
    t.cluster.sync_point();
    let offset = t.cluster.log_len();
    let db = assert_login_refused(t.cluster.try_connect("ep_bot", "postgres"), "ep_bot", "ep-bot@example.com", "on call in EP2 only");
    assert!(db.detail().is_some_and(|d| d.contains("not in an escalation policy or schedule")), "the DETAIL gives the reason: {:?}", db.detail());
    let deny = expect_audit(&t.cluster, offset, "deny", "login", "ep_bot", "ep_bot");
    assert_eq!(deny.get("reason"), "outside escalation policies or schedules");

    t.fake.set_oncalls(vec![oncall("ep-bot@example.com", "EP1", 1)]);
    t.cluster.refresh();
    t.cluster.sync_point();
    let mut bot = ok(t.cluster.try_connect("ep_bot", "postgres"), "on call in EP1: ep_bot logs in");
    assert_eq!(current_user(&mut bot), "ep_bot");
}

#[test]
fn identity_rules_with_real_login_roles() {
    let cluster = Cluster::start(&[]);
    let mut admin = cluster.connect();
    for role in ["carol", "Dave@Example.com", "erin", "frank", "gina"] {
        create_login_role(&mut admin, role);
    }
    admin
        .batch_execute(
            "INSERT INTO oncall.identities VALUES ('carol', 'Carol.Smith@Example.COM'), ('gina', 'gina.real@example.com');
             INSERT INTO oncall.shifts (source, email) VALUES
                ('manual', 'carol.smith@EXAMPLE.com'),   -- identities row, other case
                ('manual', 'dave@example.COM'),          -- role name with '@', other case
                ('manual', 'erin@corp.example'),         -- only reachable through email_domain
                ('manual', 'frank'),                     -- an email-less row: frank has no identity
                ('manual', 'gina@corp.example');         -- gina's identities row wins over the domain",
        )
        .unwrap();
    let mut carol = cluster.connect_as("carol");
    let mut dave = cluster.connect_as("Dave@Example.com");
    let mut erin = cluster.connect_as("erin");
    let mut frank = cluster.connect_as("frank");
    let mut gina = cluster.connect_as("gina");

    eventually("carol (identities row, case-insensitive) on call", &cluster, || check_access(&mut carol));
    assert!(check_access(&mut dave), "a role named like an email is that email, compared case-insensitively");
    assert!(!check_access(&mut erin), "no identities row, no '@', no email_domain: no identity");
    assert!(!check_access(&mut frank), "a role without identity is never on call, even with a shift under its bare name");
    assert!(!check_access(&mut gina), "gina's identity is gina.real@example.com");
    assert_eq!(whoami_identity(&mut carol).as_deref(), Some("carol.smith@example.com"));
    assert_eq!(whoami_identity(&mut dave).as_deref(), Some("dave@example.com"));
    assert_eq!(whoami_identity(&mut erin), None);
    assert_eq!(whoami_identity(&mut frank), None);

    // The email_domain fallback, set the way a DBA would: ALTER SYSTEM + reload.
    cluster.alter_system("pg_oncall.email_domain", "'corp.example'");
    eventually("erin → erin@corp.example after the reload", &cluster, || check_access(&mut erin));
    assert_eq!(whoami_identity(&mut erin).as_deref(), Some("erin@corp.example"));
    assert_eq!(whoami_identity(&mut frank).as_deref(), Some("frank@corp.example"));
    assert!(!check_access(&mut frank), "frank@corp.example has no shift");
    assert!(!check_access(&mut gina), "an identities row wins over the domain fallback");
    assert!(check_access(&mut carol), "carol keeps her mapped identity");
    assert!(check_access(&mut cluster.connect_as("erin")), "a new session sees the domain too");

    // Identity changes propagate like shift changes.
    admin.execute("UPDATE oncall.identities SET email = 'GINA@corp.example' WHERE role_name = 'gina'", &[]).unwrap();
    within_one_second("gina's identity changed → on call", &cluster, || check_access(&mut gina));
    admin.execute("DELETE FROM oncall.identities WHERE role_name = 'carol'", &[]).unwrap();
    within_one_second("carol's identity removed → carol@corp.example, not on call", &cluster, || {
        !check_access(&mut carol)
    });
    assert_eq!(whoami_identity(&mut carol).as_deref(), Some("carol@corp.example"));

    cluster.alter_system_reset("pg_oncall.email_domain");
    eventually("erin has no identity again once email_domain is reset", &cluster, || !check_access(&mut erin));
    assert_eq!(whoami_identity(&mut erin), None);
}

/// Inserts a manual shift with SQL window expressions and returns (starts_at, ends_at).
fn shift_with_window(admin: &mut Client, email: &str, starts: &str, ends: &str) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let row = admin
        .query_one(
            &format!(
                "INSERT INTO oncall.shifts (source, email, starts_at, ends_at) VALUES ('manual', $1, {starts}, {ends})
                 RETURNING CASE WHEN isfinite(starts_at) THEN starts_at END, CASE WHEN isfinite(ends_at) THEN ends_at END"
            ),
            &[&email],
        )
        .unwrap_or_else(|e| panic!("insert shift for {email}: {}", error_text(&e)));
    (row.get(0), row.get(1))
}

#[test]
fn shift_windows_and_boundaries() {
    let cluster = Cluster::start(&[]);
    let mut admin = cluster.connect();
    let cases = [
        ("started@x.test", "now() - interval '1 second'", "now() + interval '1 hour'", true),
        ("ended@x.test", "now() - interval '1 hour'", "now() - interval '1 second'", false),
        ("open-start@x.test", "NULL", "now() + interval '1 hour'", true),
        ("open-end@x.test", "now() - interval '1 hour'", "NULL", true),
        ("open-both@x.test", "NULL", "NULL", true),
        ("future@x.test", "now() + interval '1 hour'", "NULL", false),
        ("future-closed@x.test", "now() + interval '1 hour'", "now() + interval '2 hours'", false),
        ("infinite@x.test", "'-infinity'", "'infinity'", true),
    ];
    for (email, starts, ends, _) in cases {
        create_login_role(&mut admin, email);
        shift_with_window(&mut admin, email, starts, ends);
    }
    // Each shift was its own commit: the last one seen means every one is in the snapshot.
    eventually("snapshot has the shifts", &cluster, || is_on_call(&mut admin, "infinite@x.test"));
    for (email, starts, ends, expected) in cases {
        let mut session = cluster.connect_as(email);
        assert_eq!(check_access(&mut session), expected, "{email}: starts {starts}, ends {ends}");
        assert_eq!(is_on_call(&mut admin, email), expected, "is_on_call({email})");
    }

    // Boundaries pass with no table change: the decision cache must expire exactly there.
    create_login_role(&mut admin, "ending@x.test");
    create_login_role(&mut admin, "starting@x.test");
    let mut ending = cluster.connect_as("ending@x.test");
    let mut starting = cluster.connect_as("starting@x.test");
    // Warm both sessions' caches before the shifts exist.
    assert!(!check_access(&mut ending) && !check_access(&mut starting));
    let (_, ends_at) = shift_with_window(&mut admin, "ending@x.test", "now() - interval '1 minute'", "now() + interval '3 seconds'");
    let (starts_at, _) = shift_with_window(&mut admin, "starting@x.test", "now() + interval '3 seconds'", "NULL");
    let (ends_at, starts_at) = (ends_at.unwrap(), starts_at.unwrap());
    // Wait for the grant, or for the end (then the loop below fails: never saw it grant).
    eventually("the ending shift grants, or ended", &cluster, || Utc::now() >= ends_at || check_access(&mut ending));
    let (mut saw_true, mut saw_false) = ((false, false), (false, false));
    let deadline = Instant::now() + Duration::from_secs(3) + PATIENCE;
    while Instant::now() < deadline {
        // The answer must match the window at the statement's own timestamp, every time.
        let row = ending.query_one("SELECT oncall.check_oncall_access(), statement_timestamp() < $1", &[&ends_at]).unwrap();
        let (got, expected): (bool, bool) = (row.get(0), row.get(1));
        assert_eq!(got, expected, "ending shift at a statement {} its end ({ends_at})", if expected { "before" } else { "after" });
        if got { saw_true.0 = true } else { saw_false.0 = true }
        let row = starting.query_one("SELECT oncall.check_oncall_access(), statement_timestamp() >= $1", &[&starts_at]).unwrap();
        let (got, expected): (bool, bool) = (row.get(0), row.get(1));
        assert_eq!(got, expected, "starting shift at a statement {} its start ({starts_at})", if expected { "after" } else { "before" });
        if got { saw_true.1 = true } else { saw_false.1 = true }
        if saw_false.0 && saw_true.1 && Utc::now() > ends_at.max(starts_at) + chrono::Duration::milliseconds(500) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(saw_true.0 && saw_false.0, "the ending shift granted, then stopped granting at its end");
    assert!(saw_false.1 && saw_true.1, "the starting shift did not grant, then granted from its start");
}

#[test]
fn escalation_level_settings_and_is_on_call() {
    let cluster = Cluster::start(&[]);
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "INSERT INTO oncall.shifts (source, email, escalation_policy_id, escalation_level) VALUES
                ('manual', 'lvl1@x.test', 'EP1', 1),
                ('manual', 'lvl2@x.test', 'EP2', 2),
                ('manual', 'lvl3@x.test', 'EP1', 3),
                ('manual', 'nolvl@x.test', NULL, NULL);",
        )
        .unwrap();
    create_login_role(&mut admin, "lvl1@x.test");
    create_login_role(&mut admin, "lvl3@x.test");
    let mut lvl1 = cluster.connect_as("lvl1@x.test");
    let mut lvl3 = cluster.connect_as("lvl3@x.test");
    eventually("shifts loaded", &cluster, || is_on_call(&mut admin, "nolvl@x.test"));

    let on_call = |c: &mut Client, email: &str, min: Option<i32>, policies: Option<Vec<&str>>| -> Option<bool> {
        let policies: Option<Vec<String>> = policies.map(|p| p.into_iter().map(String::from).collect());
        c.query_one("SELECT oncall.is_on_call($1, $2, $3)", &[&email, &min, &policies])
            .unwrap_or_else(|e| panic!("is_on_call: {}", error_text(&e)))
            .get(0)
    };
    let table = |c: &mut Client, min: Option<i32>, policies: Option<Vec<&str>>| -> [bool; 4] {
        ["lvl1@x.test", "lvl2@x.test", "lvl3@x.test", "nolvl@x.test"]
            .map(|e| on_call(c, e, min, policies.clone()).expect("is_on_call returns non-NULL for an email"))
    };
    assert_eq!(table(&mut admin, None, None), [true, true, true, true], "default levels: 1..∞");
    assert_eq!(table(&mut admin, Some(2), None), [false, true, true, false], "min level 2 (a NULL level counts as 1)");
    assert_eq!(table(&mut admin, Some(3), None), [false, false, true, false]);
    assert_eq!(table(&mut admin, None, Some(vec!["EP1"])), [true, false, true, true], "a manual NULL policy matches any filter");
    assert_eq!(table(&mut admin, Some(2), Some(vec!["EP2", "EPX"])), [false, true, false, false]);
    assert_eq!(table(&mut admin, None, Some(vec!["EPX"])), [false, false, false, true]);
    assert_eq!(on_call(&mut admin, "nobody@x.test", None, None), Some(false));
    assert_eq!(on_call(&mut admin, "LVL2@X.TEST", None, None), Some(true), "emails compare case-insensitively");
    assert_eq!(on_call(&mut admin, "", None, None), Some(false));
    let null: Option<bool> = admin.query_one("SELECT oncall.is_on_call(NULL)", &[]).unwrap().get(0);
    assert_eq!(null, None, "is_on_call(NULL) is NULL");
    assert!(check_access(&mut lvl1) && check_access(&mut lvl3));

    cluster.alter_system("pg_oncall.min_escalation_level", "2");
    eventually("level 1 no longer counts", &cluster, || !check_access(&mut lvl1));
    assert_eq!(table(&mut admin, None, None), [false, true, true, false], "min_escalation_level = 2");
    assert_eq!(table(&mut admin, Some(1), None), [true, true, true, true], "an explicit min_escalation_level wins over the setting");
    assert!(check_access(&mut lvl3));

    cluster.alter_system("pg_oncall.max_escalation_level", "2");
    eventually("level 3 is above max_escalation_level", &cluster, || !check_access(&mut lvl3));
    assert_eq!(table(&mut admin, None, None), [false, true, false, false], "levels 2..2");
    assert_eq!(table(&mut admin, Some(1), None), [true, true, false, true], "explicit min 1, max still 2");
    assert_eq!(table(&mut admin, Some(3), None), [false, false, false, false], "min 3 above max 2: nothing");

    cluster.alter_system_reset("pg_oncall.min_escalation_level");
    eventually("level 1 counts again", &cluster, || check_access(&mut lvl1));
    assert_eq!(table(&mut admin, None, None), [true, true, false, true]);
    cluster.alter_system_reset("pg_oncall.max_escalation_level");
    eventually("no upper bound again", &cluster, || check_access(&mut lvl3));
    assert_eq!(table(&mut admin, None, None), [true, true, true, true]);
}

#[test]
fn override_grants_for_its_duration_and_is_logged_loudly() {
    let cluster = Cluster::start(&[]);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "eve@x.test");
    let mut eve = cluster.connect_as("eve@x.test");
    let offset = cluster.log_len();
    let until: DateTime<Utc> = admin
        .query_one("SELECT oncall.override(' Eve@X.test ', '4 seconds', 'incident 7: disk full')", &[])
        .unwrap()
        .get(0);
    let mut granted = false;
    eventually("override grants (or has ended)", &cluster, || {
        granted = Utc::now() < until && check_access(&mut eve);
        granted || Utc::now() >= until
    });
    assert!(granted, "the 4 s override did not grant before its end");
    let row = admin.query_one("SELECT email, reason, created_by::text, ends_at FROM oncall.shifts WHERE source = 'manual'", &[]).unwrap();
    let (email, reason, by, ends): (String, String, String, DateTime<Utc>) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!((email.as_str(), reason.as_str(), by.as_str(), ends), ("Eve@X.test", "incident 7: disk full", "postgres", until));
    let log = cluster.log_since(offset);
    let line = log.lines().find(|l| l.contains("override")).unwrap_or_else(|| panic!("no override line in the log:\n{log}"));
    assert!(line.contains("WARNING"), "{line}");
    for part in ["by=postgres", "for=Eve@X.test", "until=", "incident 7: disk full"] {
        assert!(line.contains(part), "the override line names {part}: {line}");
    }
    eventually("the override ends with its duration, with no table change", &cluster, || !check_access(&mut eve));
    assert!(Utc::now() >= until);
    for sql in [
        "SELECT oncall.override(NULL, '1 hour', 'r')",
        "SELECT oncall.override(' ', '1 hour', 'r')",
        "SELECT oncall.override('eve@x.test', '0', 'r')",
        "SELECT oncall.override('eve@x.test', '-1 hour', 'r')",
        "SELECT oncall.override('eve@x.test', '1 hour', '')",
        "SELECT oncall.override('eve@x.test', '1 hour', NULL)",
    ] {
        let e = admin.batch_execute(sql).expect_err(sql);
        assert_eq!(e.code(), Some(&postgres::error::SqlState::INVALID_PARAMETER_VALUE), "{sql}: {}", error_text(&e));
    }
}
