//! End-to-end tests of the foundation (DESIGN.md, issue "foundation"): committed table changes
//! reach every session's decisions within a second, identity rules, shift windows and their
//! boundaries, escalation levels, staleness, the cluster-wide snapshot, capacity overflow,
//! RLS policies, and a worker database that does not exist.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use e2e::*;
use postgres::Client;

const ONE_SECOND: Duration = Duration::from_secs(1);

fn whoami_identity(session: &mut Client) -> Option<String> {
    session.query_one("SELECT identity FROM oncall.whoami()", &[]).expect("whoami()").get(0)
}

/// Asserts that `f` holds within 1 s (DESIGN.md's bound for changes reaching decisions).
#[track_caller]
fn within_one_second(what: &str, cluster: &Cluster, f: impl FnMut() -> bool) {
    within(what, ONE_SECOND, cluster, f)
}

#[test]
fn committed_changes_reach_sessions_within_one_second() {
    let cluster = Cluster::start(&[]);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "alice@example.com");
    let mut alice = cluster.connect_as("alice@example.com");
    assert!(!check_access(&mut alice), "no shift yet");

    // An uncommitted insert grants nothing; the commit grants within a second.
    let mut tx = admin.transaction().unwrap();
    tx.execute(
        "INSERT INTO oncall.shifts (source, email, starts_at, ends_at) VALUES ('manual', 'alice@example.com', now() - interval '1 min', now() + interval '1 h')",
        &[],
    )
    .unwrap();
    holds_for("an uncommitted shift grants nothing", Duration::from_millis(300), || !check_access(&mut alice));
    tx.commit().unwrap();
    within_one_second("INSERT commit → check_oncall_access() true", &cluster, || check_access(&mut alice));

    // A rolled-back delete changes nothing.
    let mut tx = admin.transaction().unwrap();
    tx.execute("DELETE FROM oncall.shifts WHERE email = 'alice@example.com'", &[]).unwrap();
    tx.rollback().unwrap();
    holds_for("a rolled-back DELETE keeps access", Duration::from_millis(300), || check_access(&mut alice));

    admin.execute("DELETE FROM oncall.shifts WHERE email = 'alice@example.com'", &[]).unwrap();
    within_one_second("DELETE commit → check_oncall_access() false", &cluster, || !check_access(&mut alice));

    // An UPDATE moving the window into the past ends access too; TRUNCATE as well.
    add_manual_shift(&mut admin, "alice@example.com");
    within_one_second("re-insert → true", &cluster, || check_access(&mut alice));
    admin
        .execute("UPDATE oncall.shifts SET starts_at = now() - interval '2 h', ends_at = now() - interval '1 h' WHERE email = 'alice@example.com'", &[])
        .unwrap();
    within_one_second("UPDATE to a past window → false", &cluster, || !check_access(&mut alice));
    add_manual_shift(&mut admin, "alice@example.com");
    within_one_second("insert again → true", &cluster, || check_access(&mut alice));
    admin.batch_execute("TRUNCATE oncall.shifts").unwrap();
    within_one_second("TRUNCATE → false", &cluster, || !check_access(&mut alice));

    // A session opened after the change decides the same way from its first statement.
    add_manual_shift(&mut admin, "alice@example.com");
    within_one_second("insert → true", &cluster, || check_access(&mut alice));
    assert!(check_access(&mut cluster.connect_as("alice@example.com")), "a new session is on call too");
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

    within_one_second("carol (identities row, case-insensitive) on call", &cluster, || check_access(&mut carol));
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
    assert!(
        wait_until(Duration::from_secs(2), || check_access(&mut erin)),
        "erin → erin@corp.example after the reload\n{}",
        cluster.log_tail()
    );
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
    assert!(
        wait_until(Duration::from_secs(2), || !check_access(&mut erin)),
        "erin has no identity again once email_domain is reset"
    );
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
    within_one_second("snapshot has the shifts", &cluster, || is_on_call(&mut admin, "infinite@x.test"));
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
    let (_, ends_at) = shift_with_window(&mut admin, "ending@x.test", "now() - interval '1 minute'", "now() + interval '2 seconds'");
    let (starts_at, _) = shift_with_window(&mut admin, "starting@x.test", "now() + interval '2 seconds'", "NULL");
    let (ends_at, starts_at) = (ends_at.unwrap(), starts_at.unwrap());
    within_one_second("the ending shift grants", &cluster, || check_access(&mut ending));
    let (mut saw_true, mut saw_false) = ((false, false), (false, false));
    let deadline = Instant::now() + Duration::from_secs(6);
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
    within_one_second("shifts loaded", &cluster, || is_on_call(&mut admin, "nolvl@x.test"));

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
    assert!(wait_until(Duration::from_secs(2), || !check_access(&mut lvl1)), "level 1 no longer counts");
    assert_eq!(table(&mut admin, None, None), [false, true, true, false], "min_escalation_level = 2");
    assert_eq!(table(&mut admin, Some(1), None), [true, true, true, true], "an explicit min_escalation_level wins over the setting");
    assert!(check_access(&mut lvl3));

    cluster.alter_system("pg_oncall.max_escalation_level", "2");
    assert!(wait_until(Duration::from_secs(2), || !check_access(&mut lvl3)), "level 3 is above max_escalation_level");
    assert_eq!(table(&mut admin, None, None), [false, true, false, false], "levels 2..2");
    assert_eq!(table(&mut admin, Some(1), None), [true, true, false, true], "explicit min 1, max still 2");
    assert_eq!(table(&mut admin, Some(3), None), [false, false, false, false], "min 3 above max 2: nothing");

    cluster.alter_system_reset("pg_oncall.min_escalation_level");
    assert!(wait_until(Duration::from_secs(2), || check_access(&mut lvl1)), "level 1 counts again");
    assert_eq!(table(&mut admin, None, None), [true, true, false, true]);
    cluster.alter_system_reset("pg_oncall.max_escalation_level");
    assert!(wait_until(Duration::from_secs(2), || check_access(&mut lvl3)), "no upper bound again");
    assert_eq!(table(&mut admin, None, None), [true, true, true, true]);
}

#[test]
fn manual_rows_grant_while_pagerduty_rows_are_stale() {
    let cluster = Cluster::start(&[]);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "pd@x.test");
    let mut pd = cluster.connect_as("pd@x.test");
    let last_success: Option<DateTime<Utc>> = admin.query_one("SELECT last_success_at FROM oncall.sync_state", &[]).unwrap().get(0);
    assert_eq!(last_success, None, "no token, never synced");
    admin
        .batch_execute(
            "INSERT INTO oncall.shifts (source, email, pagerduty_user_id, escalation_policy_id, escalation_level, schedule_id, synced_at)
                  VALUES ('pagerduty', 'pd@x.test', 'PPD0001', 'EP1', 1, 'S1', now()),
                         ('manual', 'man@x.test', NULL, NULL, NULL, NULL, NULL);",
        )
        .unwrap();
    within_one_second("manual row grants without any sync", &cluster, || is_on_call(&mut admin, "man@x.test"));
    assert!(!is_on_call(&mut admin, "pd@x.test"), "a PagerDuty row never synced (last_success_at NULL) grants nothing");
    assert!(!check_access(&mut pd));
    let stale: bool = admin.query_one("SELECT stale FROM oncall.status()", &[]).unwrap().get(0);
    assert!(stale, "status says stale before any successful sync");

    admin.execute("UPDATE oncall.sync_state SET last_success_at = now()", &[]).unwrap();
    within_one_second("last_success_at = now() → the PagerDuty row grants", &cluster, || check_access(&mut pd));
    assert!(is_on_call(&mut admin, "pd@x.test"));
    let stale: bool = admin.query_one("SELECT stale FROM oncall.status()", &[]).unwrap().get(0);
    assert!(!stale);

    // Older than max_staleness (default 15 min): fail closed for PagerDuty rows only.
    admin.execute("UPDATE oncall.sync_state SET last_success_at = now() - interval '20 minutes'", &[]).unwrap();
    within_one_second("last success 20 min ago → the PagerDuty row stops granting", &cluster, || !check_access(&mut pd));
    assert!(!is_on_call(&mut admin, "pd@x.test"));
    assert!(is_on_call(&mut admin, "man@x.test"), "manual rows are not subject to max_staleness");
    let stale: bool = admin.query_one("SELECT stale FROM oncall.status()", &[]).unwrap().get(0);
    assert!(stale);

    // Raising max_staleness past the data's age makes it fresh again, with no table change.
    cluster.alter_system("pg_oncall.max_staleness", "'1h'");
    assert!(wait_until(Duration::from_secs(2), || check_access(&mut pd)), "max_staleness = 1h: fresh again");
}

#[test]
fn snapshot_is_cluster_wide() {
    let cluster = Cluster::start(&[]);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "wide@x.test");
    admin.batch_execute("CREATE DATABASE other").unwrap();
    // The extension is not created in `other`: bind a function straight to the preloaded
    // library's entry point (the one oncall.check_oncall_access() uses), so a session there
    // can ask the shared-memory snapshot.
    let row = admin
        .query_one("SELECT probin, prosrc FROM pg_proc WHERE oid = 'oncall.check_oncall_access()'::regprocedure", &[])
        .unwrap();
    let (library, symbol): (String, String) = (row.get(0), row.get(1));
    let mut other_admin = cluster.connect_db("postgres", "other");
    other_admin
        .batch_execute(&format!(
            "CREATE FUNCTION public.oncall_check() RETURNS boolean STABLE LANGUAGE c AS {}, {};",
            quote_literal(&library),
            quote_literal(&symbol)
        ))
        .unwrap_or_else(|e| panic!("binding {library} {symbol} in database other: {}", error_text(&e)));
    let schemas: i64 = other_admin.query_one("SELECT count(*) FROM pg_namespace WHERE nspname = 'oncall'", &[]).unwrap().get(0);
    assert_eq!(schemas, 0, "no extension (no oncall schema) in database other");
    let mut here = cluster.connect_as("wide@x.test");
    let mut there = cluster.connect_db("wide@x.test", "other");
    let check_there = |c: &mut Client| -> bool { c.query_one("SELECT public.oncall_check()", &[]).unwrap().get(0) };
    assert!(!check_access(&mut here) && !check_there(&mut there));

    add_manual_shift(&mut admin, "wide@x.test");
    within_one_second("a shift committed in postgres grants in postgres", &cluster, || check_access(&mut here));
    within_one_second("… and in database other", &cluster, || check_there(&mut there));
    admin.execute("DELETE FROM oncall.shifts WHERE email = 'wide@x.test'", &[]).unwrap();
    within_one_second("the delete reaches database other", &cluster, || !check_there(&mut there));
    assert!(!check_access(&mut here));
    // Gating role switches in a database without the extension is the gate's job (src/gate.rs):
    // covered by the gate's own tests once it exists.
}

#[test]
fn snapshot_overflow_keeps_the_previous_snapshot() {
    let cluster = Cluster::start(&["pg_oncall.max_shifts = 16"]);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "alice@example.com");
    let mut alice = cluster.connect_as("alice@example.com");
    admin
        .batch_execute(
            "INSERT INTO oncall.shifts (source, email, starts_at, ends_at)
             SELECT 'manual', 'alice@example.com', now() - i * interval '1 minute', now() + i * interval '1 hour'
               FROM generate_series(1, 10) AS i",
        )
        .unwrap();
    within_one_second("10 shifts fit in 16", &cluster, || check_access(&mut alice));

    let offset = cluster.log_len();
    admin
        .batch_execute(
            "BEGIN;
             INSERT INTO oncall.shifts (source, email) SELECT 'manual', 'extra' || i || '@x.test' FROM generate_series(1, 10) AS i;
             INSERT INTO oncall.shifts (source, email) SELECT 'manual', 'extra' || i || '@x.test' FROM generate_series(11, 20) AS i;
             COMMIT;",
        )
        .unwrap();
    assert!(
        cluster.wait_for_log(offset, "does not fit", Duration::from_secs(5)),
        "no 'does not fit' line after 30 shifts with max_shifts = 16\n{}",
        cluster.log_tail()
    );
    let log = cluster.log_since(offset);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("does not fit")).collect();
    assert!(lines[0].contains("pg_oncall.max_shifts"), "the line names the setting: {}", lines[0]);
    assert!(lines[0].contains("30") && lines[0].contains("16"), "the line says how many and the capacity: {}", lines[0]);
    holds_for("alice keeps access from the previous snapshot", ONE_SECOND, || check_access(&mut alice));
    assert!(!is_on_call(&mut admin, "extra1@x.test"), "rows of the refused snapshot grant nothing");
    let lines = cluster.log_since(offset).lines().filter(|l| l.contains("does not fit")).count();
    assert_eq!(lines, 1, "said once per change, not once per wake-up");
    let overflow_findings = |admin: &mut Client| -> i64 {
        admin
            .query_one("SELECT count(*) FROM oncall.doctor() WHERE object = 'shared memory'", &[])
            .unwrap()
            .get(0)
    };
    assert_eq!(overflow_findings(&mut admin), 1, "doctor() reports the overflow, not only the log");

    admin.execute("DELETE FROM oncall.shifts WHERE email LIKE 'extra%'", &[]).unwrap();
    add_manual_shift(&mut admin, "late@x.test");
    within_one_second("after the delete, new changes apply again", &cluster, || is_on_call(&mut admin, "late@x.test"));
    assert_eq!(overflow_findings(&mut admin), 0, "the finding goes once a snapshot fits again");
    admin.execute("DELETE FROM oncall.shifts WHERE email = 'alice@example.com'", &[]).unwrap();
    within_one_second("and alice's delete applies", &cluster, || !check_access(&mut alice));
}

#[test]
fn row_level_security_policies() {
    let cluster = Cluster::start(&[]);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "rls@example.com");
    admin
        .batch_execute(
            "CREATE TABLE public.per_row (id int, secret text);
             CREATE TABLE public.per_statement (id int, secret text);
             INSERT INTO public.per_row SELECT i, 'row ' || i FROM generate_series(1, 3) AS i;
             INSERT INTO public.per_statement SELECT i, 'row ' || i FROM generate_series(1, 3) AS i;
             ALTER TABLE public.per_row ENABLE ROW LEVEL SECURITY;
             ALTER TABLE public.per_statement ENABLE ROW LEVEL SECURITY;
             CREATE POLICY on_call ON public.per_row USING (oncall.check_oncall_access());
             CREATE POLICY on_call ON public.per_statement USING ((SELECT oncall.check_oncall_access()));
             GRANT SELECT ON public.per_row, public.per_statement TO \"rls@example.com\";",
        )
        .unwrap();
    let mut s = cluster.connect_as("rls@example.com");
    let visible = |s: &mut Client| -> (i64, i64) {
        let row = s
            .query_one("SELECT (SELECT count(*) FROM public.per_row), (SELECT count(*) FROM public.per_statement)", &[])
            .unwrap_or_else(|e| panic!("select: {}", error_text(&e)));
        (row.get(0), row.get(1))
    };
    assert_eq!(visible(&mut s), (0, 0), "not on call: no rows");

    let ends_at: DateTime<Utc> = admin
        .query_one(
            "INSERT INTO oncall.shifts (source, email, starts_at, ends_at) VALUES ('manual', 'rls@example.com', now(), now() + interval '2 seconds') RETURNING ends_at",
            &[],
        )
        .unwrap()
        .get(0);
    within_one_second("on call: rows visible", &cluster, || visible(&mut s) == (3, 3));
    // Until the end rows stay visible; from the end on, none (no table change involved).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let row = s
            .query_one(
                "SELECT (SELECT count(*) FROM public.per_row), (SELECT count(*) FROM public.per_statement), statement_timestamp() < $1",
                &[&ends_at],
            )
            .unwrap();
        let (a, b, before_end): (i64, i64, bool) = (row.get(0), row.get(1), row.get(2));
        let expected = if before_end { 3 } else { 0 };
        assert_eq!((a, b), (expected, expected), "rows at a statement {} the shift's end", if before_end { "before" } else { "after" });
        if !before_end {
            break;
        }
        assert!(Instant::now() < deadline, "the shift did not end");
        std::thread::sleep(Duration::from_millis(50));
    }

    add_manual_shift(&mut admin, "rls@example.com");
    within_one_second("a new shift: rows visible again", &cluster, || visible(&mut s) == (3, 3));
    admin.execute("DELETE FROM oncall.shifts WHERE email = 'rls@example.com'", &[]).unwrap();
    within_one_second("shift deleted: no rows", &cluster, || visible(&mut s) == (0, 0));
}

#[test]
fn missing_worker_database_is_reported_once() {
    let cluster = Cluster::builder().conf(&["pg_oncall.database = 'no_such_db'"]).no_wait_ready().start();
    let missing = |log: &str| log.lines().filter(|l| l.contains("\"no_such_db\"") && l.contains("does not exist")).count();
    assert!(
        wait_until(Duration::from_secs(10), || missing(&cluster.log()) >= 1),
        "the log never says that database no_such_db does not exist\n{}",
        cluster.log_tail()
    );
    std::thread::sleep(Duration::from_secs(3));
    let log = cluster.log();
    assert!((1..=2).contains(&missing(&log)), "said {} times in ~3 s (restart loop?)\n{log}", missing(&log));
    for bad in ["exited with exit code", "terminated by signal", "FATAL", "PANIC"] {
        assert!(!log.contains(bad), "unexpected '{bad}' in the log:\n{log}");
    }
    assert_eq!(cluster.worker_pid(), None, "no sync worker without its database");

    // Ungated sessions work normally, and decisions answer (nothing is loaded: not on call).
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "plain@x.test");
    admin.batch_execute("CREATE TABLE public.t (v int); GRANT ALL ON public.t TO \"plain@x.test\";").unwrap();
    add_manual_shift(&mut admin, "plain@x.test");
    let mut plain = cluster.connect_as("plain@x.test");
    plain.batch_execute("INSERT INTO public.t VALUES (1), (2)").unwrap();
    let n: i64 = plain.query_one("SELECT count(*) FROM public.t", &[]).unwrap().get(0);
    assert_eq!(n, 2);
    assert!(!check_access(&mut plain), "no worker, no snapshot: nothing grants");
    let err = admin.batch_execute("SELECT oncall.refresh()").map_err(|e| error_text(&e)).expect_err("refresh without a worker");
    assert!(err.contains("sync worker is not running") && err.contains("no_such_db"), "{err}");
    let mut tcp = cluster.connect_tcp_as("plain@x.test");
    let addr: Option<String> = tcp.query_one("SELECT host(inet_client_addr())", &[]).unwrap().get(0);
    assert_eq!(addr.as_deref(), Some("127.0.0.1"), "connect_tcp_as goes over TCP");
    let addr: Option<String> = plain.query_one("SELECT host(inet_client_addr())", &[]).unwrap().get(0);
    assert_eq!(addr, None, "connect_as goes over the Unix socket");

    // Once the database appears, the launcher starts the worker there, which waits for the
    // extension quietly and then loads the snapshot.
    let offset = cluster.log_len();
    admin.batch_execute("CREATE DATABASE no_such_db").unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || cluster.worker_pid().is_some()),
        "the worker did not start within 15 s of CREATE DATABASE\n{}",
        cluster.log_tail()
    );
    let mut db_admin = cluster.connect_db("postgres", "no_such_db");
    db_admin.batch_execute("CREATE EXTENSION pg_oncall").unwrap();
    add_manual_shift(&mut db_admin, "plain@x.test");
    assert!(
        wait_until(Duration::from_secs(10), || check_access(&mut plain)),
        "the worker in no_such_db loads its tables\n{}",
        cluster.log_tail()
    );
    let log = cluster.log_since(offset);
    assert!(!log.contains("FATAL") && !log.contains("exited with exit code"), "{log}");
}

#[test]
fn privileges_follow_the_contract() {
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

#[test]
fn override_grants_for_its_duration_and_is_logged_loudly() {
    let cluster = Cluster::start(&[]);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "eve@x.test");
    let mut eve = cluster.connect_as("eve@x.test");
    let offset = cluster.log_len();
    let until: DateTime<Utc> = admin
        .query_one("SELECT oncall.override(' Eve@X.test ', '2 seconds', 'incident 7: disk full')", &[])
        .unwrap()
        .get(0);
    within_one_second("override grants", &cluster, || check_access(&mut eve));
    let row = admin.query_one("SELECT email, reason, created_by::text, ends_at FROM oncall.shifts WHERE source = 'manual'", &[]).unwrap();
    let (email, reason, by, ends): (String, String, String, DateTime<Utc>) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!((email.as_str(), reason.as_str(), by.as_str(), ends), ("Eve@X.test", "incident 7: disk full", "postgres", until));
    let log = cluster.log_since(offset);
    let line = log.lines().find(|l| l.contains("override")).unwrap_or_else(|| panic!("no override line in the log:\n{log}"));
    assert!(line.contains("WARNING"), "{line}");
    for part in ["by=postgres", "for=Eve@X.test", "until=", "incident 7: disk full"] {
        assert!(line.contains(part), "the override line names {part}: {line}");
    }
    assert!(
        wait_until(Duration::from_secs(4), || !check_access(&mut eve)),
        "the override ends with its duration, with no table change"
    );
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

/// Without `shared_preload_libraries` there is no gate: loading the library refuses clearly
/// (ERROR with a hint) instead of half-working, and the extension's C functions say so too.
#[test]
fn the_library_refuses_to_load_unless_preloaded() {
    let mut cluster = Cluster::builder().no_wait_ready().start();
    cluster.set_conf("shared_preload_libraries = ''");
    cluster.restart();
    let mut admin = cluster.connect();
    for sql in ["LOAD 'pg_oncall'", "SELECT oncall.check_oncall_access()"] {
        let err = admin.batch_execute(sql).expect_err("the library must refuse to load");
        let db = err.as_db_error().unwrap_or_else(|| panic!("{sql}: {}", error_text(&err)));
        assert!(db.message().contains("shared_preload_libraries"), "{sql}: {}", db.message());
        assert!(db.hint().is_some_and(|h| h.contains("shared_preload_libraries")), "{sql}: {:?}", db.hint());
    }
    let err = admin.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_oncall_other").err();
    assert!(err.is_some(), "sanity: an unknown extension errors");
    let doctor: i64 = admin
        .query_one("SELECT count(*) FROM oncall.doctor() WHERE object = 'shared_preload_libraries'", &[])
        .unwrap()
        .get(0);
    assert_eq!(doctor, 1, "doctor() (plain SQL) reports it");
}
