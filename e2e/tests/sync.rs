//! End-to-end tests of the PagerDuty sync worker (issue "PagerDuty sync worker") against the
//! fake PagerDuty: fixtures to rows, pagination, decisions after a refresh, manual rows left
//! alone, every fault leaving the previous rows in place with an explanation, rate limits,
//! staleness, token files, a terminated worker coming back, and the token never showing.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use e2e::*;
use fake_pagerduty::{oncall, FakePagerDuty, Fault};
use postgres::Client;

const TOKEN: &str = "e2eTok-7Qx2Lm9Vw4Rb";

fn fixture(name: &str) -> String {
    let path = format!("{}/../fixtures/pagerduty/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// `SELECT oncall.refresh()`: Ok, or the error's text.
fn refresh(c: &mut Client) -> Result<(), String> {
    c.batch_execute("SELECT oncall.refresh()").map_err(|e| error_text(&e))
}

#[track_caller]
fn refresh_ok(cluster: &Cluster, c: &mut Client) {
    if let Err(e) = refresh(c) {
        panic!("oncall.refresh() failed: {e}\n{}", cluster.log_tail());
    }
}

type Row = (String, Option<String>, Option<String>, Option<i32>, Option<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Every PagerDuty row, sorted: (email, user id, policy, level, schedule, starts, ends, synced_at).
fn pd_rows(c: &mut Client) -> Vec<Row> {
    c.query(
        "SELECT email, pagerduty_user_id, escalation_policy_id, escalation_level, schedule_id, starts_at, ends_at, synced_at
           FROM oncall.shifts WHERE source = 'pagerduty'
          ORDER BY email, escalation_policy_id, escalation_level, starts_at NULLS FIRST",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7)))
    .collect()
}

#[derive(Debug)]
#[allow(dead_code)]
struct Status {
    token_configured: bool,
    last_success_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    stale: bool,
    shifts: i32,
    pages: i32,
    requests: i32,
    syncs_ok: i64,
    syncs_failed: i64,
}

fn status(c: &mut Client) -> Status {
    let r = c
        .query_one(
            "SELECT token_configured, last_success_at, last_error, stale, shifts, pages, requests, syncs_ok, syncs_failed FROM oncall.status()",
            &[],
        )
        .unwrap();
    Status {
        token_configured: r.get(0),
        last_success_at: r.get(1),
        last_error: r.get(2),
        stale: r.get(3),
        shifts: r.get(4),
        pages: r.get(5),
        requests: r.get(6),
        syncs_ok: r.get(7),
        syncs_failed: r.get(8),
    }
}

/// Adds `email` to every user object of a fixture page (the fixtures carry user references,
/// which have no email: what `/oncalls` returns without `include[]=users`).
fn with_emails(page: &str, email: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(page).unwrap();
    for row in v["oncalls"].as_array_mut().unwrap() {
        row["user"]["email"] = serde_json::Value::String(email.into());
        row["user"]["type"] = serde_json::Value::String("user".into());
    }
    v
}

#[test]
fn fixtures_become_shift_rows() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = cluster.connect();
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1)]);
    refresh_ok(&cluster, &mut admin);
    assert_eq!(pd_rows(&mut admin).len(), 1);

    // The spec's example page, verbatim: its user is a reference without email, so the row is
    // skipped (and said so); the sync still replaces the PagerDuty rows wholesale.
    let offset = cluster.log_len();
    fake.set_raw_page(Some(fixture("oncalls_list.json")));
    refresh_ok(&cluster, &mut admin);
    assert_eq!(pd_rows(&mut admin), vec![], "no email, no row; alice's row is gone with the old sync");
    assert!(
        cluster.wait_for_log(offset, "1 on-call entries had no user email and were skipped", Duration::from_secs(2)),
        "the skipped row is reported\n{}",
        cluster.log_tail()
    );
    let st = status(&mut admin);
    assert_eq!((st.last_error.as_deref(), st.shifts, st.pages, st.stale), (None, 0, 1, false));

    // The same page as `include[]=users` returns it, with the user's email.
    fake.set_raw_page(Some(with_emails(&fixture("oncalls_list.json"), "Tim.Wright@Example.com").to_string()));
    refresh_ok(&cluster, &mut admin);
    let rows = pd_rows(&mut admin);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (email, user, policy, level, schedule, starts, ends, synced) = rows[0].clone();
    assert_eq!(email, "Tim.Wright@Example.com", "stored as PagerDuty sent it (compared case-insensitively)");
    assert_eq!(
        (user.as_deref(), policy.as_deref(), level, schedule.as_deref()),
        (Some("PT23IWX"), Some("PT20YPA"), Some(2), Some("PI7DH85"))
    );
    assert_eq!(starts, Some(Utc.with_ymd_and_hms(2015, 3, 6, 20, 28, 51).unwrap()), "-05:00 offset converted");
    assert_eq!(ends, Some(Utc.with_ymd_and_hms(2015, 3, 7, 20, 28, 51).unwrap()));
    assert!(synced.is_some());
    assert!(!is_on_call(&mut admin, "tim.wright@example.com"), "a 2015 shift is over");

    // The permanent/duplicate page from a real bug report, verbatim: two references, no email.
    let offset = cluster.log_len();
    fake.set_raw_page(Some(fixture("oncalls_permanent_from_issue.json")));
    refresh_ok(&cluster, &mut admin);
    assert_eq!(pd_rows(&mut admin), vec![]);
    assert!(cluster.wait_for_log(offset, "2 on-call entries had no user email", Duration::from_secs(2)), "{}", cluster.log_tail());

    // With emails, plus an exact duplicate row: one row per level, permanent, no schedule.
    let mut page = with_emails(&fixture("oncalls_permanent_from_issue.json"), "user1@example.com");
    let first = page["oncalls"][0].clone();
    page["oncalls"].as_array_mut().unwrap().push(first);
    fake.set_raw_page(Some(page.to_string()));
    refresh_ok(&cluster, &mut admin);
    let rows: Vec<_> = pd_rows(&mut admin).into_iter().map(|r| (r.0, r.1, r.2, r.3, r.4, r.5, r.6)).collect();
    let row = |level| ("user1@example.com".to_string(), Some("user1-id".to_string()), Some("team1-id".to_string()), Some(level), None, None, None);
    assert_eq!(rows, vec![row(11), row(13)], "duplicates dropped, both levels kept, NULL schedule/start/end");
    assert_eq!(status(&mut admin).shifts, 2);
    let at_least = |c: &mut Client, min: i32| -> bool {
        c.query_one("SELECT oncall.is_on_call('USER1@example.com', $1)", &[&min]).unwrap().get(0)
    };
    assert!(wait_until(Duration::from_secs(1), || at_least(&mut admin, 1)), "permanent shifts grant");
    assert!(at_least(&mut admin, 13) && !at_least(&mut admin, 14));
    cluster.assert_secret_hidden(TOKEN);
}

#[test]
fn pagination_250_oncalls() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = cluster.connect();
    fake.set_oncalls((0..250).map(|i| oncall(&format!("user{i:03}@example.com"), &format!("EP{}", i % 7), 1 + i % 3)).collect());
    refresh_ok(&cluster, &mut admin);
    let n: i64 = admin.query_one("SELECT count(*) FROM oncall.shifts WHERE source = 'pagerduty'", &[]).unwrap().get(0);
    assert_eq!(n, 250);
    let st = status(&mut admin);
    assert_eq!(
        (st.pages, st.requests, st.shifts, st.last_error.as_deref(), st.stale, st.token_configured),
        (3, 3, 250, None, false, true),
        "{st:?}"
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 3, "one request per 100 shifts");
    for (i, r) in requests.iter().enumerate() {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/oncalls"));
        assert_eq!(r.header("authorization"), Some(format!("Token token={TOKEN}").as_str()));
        assert!(r.header("accept").unwrap_or_default().contains("application/vnd.pagerduty+json;version=2"));
        assert_eq!(r.query_values("include[]"), vec!["users"]);
        assert_eq!(r.query_values("limit"), vec!["100"]);
        assert_eq!(r.query_values("offset"), vec![(i * 100).to_string().as_str()]);
        assert_eq!(r.query_values("since").len(), 1);
        assert_eq!(r.query_values("until").len(), 1);
    }
    // The window asked for: from now to now + lookahead (default 12 h).
    let bound = |name: &str| -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(requests[0].query_values(name)[0]).unwrap_or_else(|e| panic!("{name}: {e}")).with_timezone(&Utc)
    };
    let (since, until) = (bound("since"), bound("until"));
    assert!((Utc::now() - since).num_seconds().abs() < 60, "since is now: {since}");
    // since is rounded down and until up to whole seconds, so the window covers [now, now + lookahead].
    let window = (until - since).num_seconds();
    assert!((12 * 3600..=12 * 3600 + 1).contains(&window), "until = since + lookahead (12 h), got {window} s");
    assert!(wait_until(Duration::from_secs(1), || is_on_call(&mut admin, "user249@example.com")));
    cluster.assert_secret_hidden(TOKEN);
}

#[test]
fn shift_changes_in_pagerduty_reach_decisions_after_refresh() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "alice@example.com");
    create_login_role(&mut admin, "bob@example.com");
    let mut alice = cluster.connect_as("alice@example.com");
    let mut bob = cluster.connect_as("bob@example.com");
    let now = Utc::now();
    fake.set_oncalls(vec![
        oncall("alice@example.com", "EP1", 1).with_window(now - chrono::Duration::hours(1), now + chrono::Duration::hours(1)),
        oncall("bob@example.com", "EP1", 1).with_window(now + chrono::Duration::hours(1), now + chrono::Duration::hours(2)),
    ]);
    refresh_ok(&cluster, &mut admin);
    assert!(wait_until(Duration::from_secs(1), || check_access(&mut alice)), "alice on call after the refresh");
    assert!(!check_access(&mut bob), "bob's shift (fetched thanks to the lookahead) starts in an hour");
    assert_eq!(pd_rows(&mut admin).len(), 2);

    // Handover in PagerDuty: bob now, alice off.
    fake.set_oncalls(vec![
        oncall("alice@example.com", "EP1", 1).with_window(now - chrono::Duration::hours(2), now - chrono::Duration::minutes(1)),
        oncall("bob@example.com", "EP1", 1).with_window(now - chrono::Duration::minutes(1), now + chrono::Duration::hours(2)),
    ]);
    assert!(check_access(&mut alice), "nothing changes before the refresh");
    refresh_ok(&cluster, &mut admin);
    assert!(wait_until(Duration::from_secs(1), || check_access(&mut bob) && !check_access(&mut alice)), "handover after the refresh");
    let rows = pd_rows(&mut admin);
    assert_eq!(rows.len(), 1, "alice's past shift is outside the window: {rows:?}");

    // Thanks to the lookahead, a shift starting soon starts on time while PagerDuty is down.
    let soon = Utc::now() + chrono::Duration::seconds(2);
    fake.set_oncalls(vec![
        oncall("bob@example.com", "EP1", 1).with_window(now - chrono::Duration::minutes(1), now + chrono::Duration::hours(2)),
        oncall("alice@example.com", "EP1", 1).with_window(soon, soon + chrono::Duration::hours(1)),
    ]);
    refresh_ok(&cluster, &mut admin);
    fake.set_persistent_fault(Some(Fault::Status { code: 503, body: None, headers: vec![] }));
    let starts_at: DateTime<Utc> = admin
        .query_one("SELECT starts_at FROM oncall.shifts WHERE source = 'pagerduty' AND email = 'alice@example.com'", &[])
        .unwrap()
        .get(0);
    let mut saw = (false, false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !saw.1 {
        let row = alice.query_one("SELECT oncall.check_oncall_access(), statement_timestamp() >= $1", &[&starts_at]).unwrap();
        let (got, started): (bool, bool) = (row.get(0), row.get(1));
        assert_eq!(got, started, "alice's upcoming shift at a statement {} its start", if started { "after" } else { "before" });
        if got { saw.1 = true } else { saw.0 = true }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(saw.0 && saw.1, "alice was off, then on call from her shift's start, with PagerDuty down");
    fake.set_persistent_fault(None);
    cluster.assert_secret_hidden(TOKEN);
}

#[test]
fn manual_rows_are_never_touched_by_a_sync() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "INSERT INTO oncall.shifts (source, email, escalation_policy_id, escalation_level, starts_at, ends_at, reason, created_by) VALUES
                ('manual', 'alice@example.com', 'EP1', 1, NULL, NULL, 'static rotation', 'postgres'),
                ('manual', 'carol@example.com', NULL, NULL, now() - interval '1 h', now() + interval '1 h', 'incident 42', 'postgres');
             SELECT oncall.override('dave@example.com', '1 hour', 'break glass');",
        )
        .unwrap();
    let manual = |c: &mut Client| -> Vec<String> {
        c.query("SELECT s::text FROM oncall.shifts AS s WHERE source = 'manual' ORDER BY s::text", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let before = manual(&mut admin);
    assert_eq!(before.len(), 3);
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1), oncall("bob@example.com", "EP2", 1)]);
    refresh_ok(&cluster, &mut admin);
    assert_eq!(pd_rows(&mut admin).len(), 2);
    fake.set_oncalls(vec![]);
    refresh_ok(&cluster, &mut admin);
    assert_eq!(pd_rows(&mut admin).len(), 0);
    fake.set_persistent_fault(Some(Fault::Status { code: 500, body: None, headers: vec![] }));
    assert!(refresh(&mut admin).is_err());
    fake.set_persistent_fault(None);
    assert_eq!(manual(&mut admin), before, "manual rows identical after syncs that added, removed and failed");
    assert!(is_on_call(&mut admin, "alice@example.com") && is_on_call(&mut admin, "carol@example.com") && is_on_call(&mut admin, "dave@example.com"));
    cluster.assert_secret_hidden(TOKEN);
}

#[test]
fn faults_keep_previous_rows_and_explain() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&["pg_oncall.http_timeout = '1s'"], TOKEN);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "alice@example.com");
    let mut alice = cluster.connect_as("alice@example.com");
    let now = Utc::now();
    fake.set_oncalls(vec![
        oncall("alice@example.com", "EP1", 1),
        oncall("bob@example.com", "EP2", 2).with_window(now - chrono::Duration::hours(1), now + chrono::Duration::hours(3)).with_schedule(None),
    ]);
    let json = |s: &str| Some(s.to_string());
    let cases: Vec<(&str, Option<Fault>, &str)> = vec![
        ("401 (wrong token)", None, "rejected the API token (401)"),
        ("403", Some(Fault::Status { code: 403, body: json(r#"{"error":{"message":"Access Denied","code":2010}}"#), headers: vec![] }), "403"),
        ("500", Some(Fault::Status { code: 500, body: None, headers: vec![] }), "server error 500"),
        ("503", Some(Fault::Status { code: 503, body: json(r#"{"error":{"message":"Service Unavailable","code":2000}}"#), headers: vec![] }), "server error 503"),
        ("garbage body", Some(Fault::Garbage), "invalid response from PagerDuty"),
        ("truncated body", Some(Fault::Truncated), "cut off"),
        ("timeout", Some(Fault::Delay(Duration::from_secs(3))), "did not answer within 1 s"),
        ("hang", Some(Fault::Hang), "did not answer within 1 s"),
        ("huge body", Some(Fault::HugeBody { bytes: 64 << 20 }), "larger than"),
        ("403 echoing the token", Some(Fault::Status { code: 403, body: Some(format!(r#"{{"error":{{"message":"token {TOKEN} lacks oncalls.read","code":2010}}}}"#)), headers: vec![] }), "403"),
        ("400", Some(Fault::Status { code: 400, body: json(r#"{"error":{"message":"Invalid Input Provided","code":2001,"errors":["since is invalid"]}}"#), headers: vec![] }), "rejected the request (400"),
    ];
    for (name, fault, expected) in cases {
        // A fresh success first, so no retry of an earlier failure is pending.
        refresh_ok(&cluster, &mut admin);
        assert!(wait_until(Duration::from_secs(1), || check_access(&mut alice)), "{name}: alice on call before the fault");
        let rows = pd_rows(&mut admin);
        assert_eq!(rows.len(), 2);
        let before = status(&mut admin);
        assert_eq!(before.last_error, None);
        match &fault {
            Some(f) => fake.set_persistent_fault(Some(f.clone())),
            None => fake.set_token("another-token"),
        }
        let started = Instant::now();
        let err = refresh(&mut admin).expect_err(&format!("{name}: oncall.refresh() must raise an ERROR"));
        let took = started.elapsed();
        fake.set_persistent_fault(None);
        fake.set_token(TOKEN);
        eprintln!("{name}: {err} ({took:?})");
        assert!(err.starts_with("ERROR: pg_oncall: PagerDuty sync failed:"), "{name}: {err}");
        assert!(err.contains(expected), "{name}: the error says '{expected}': {err}");
        let after = status(&mut admin);
        let last_error = after.last_error.clone().unwrap_or_else(|| panic!("{name}: status().last_error is NULL"));
        assert!(last_error.contains(expected), "{name}: last_error {last_error:?}");
        assert!(err.contains(&last_error), "{name}: the ERROR carries last_error");
        assert_eq!(after.last_success_at, before.last_success_at, "{name}: no success recorded");
        assert_eq!(after.syncs_failed, before.syncs_failed + 1, "{name}: one failed sync");
        assert!(after.token_configured);
        assert_eq!(pd_rows(&mut admin), rows, "{name}: the previous rows (synced_at included) are intact");
        assert!(check_access(&mut alice), "{name}: alice keeps access");
        assert!(is_on_call(&mut admin, "bob@example.com"), "{name}: bob keeps access");
    }
    refresh_ok(&cluster, &mut admin);
    assert_eq!(status(&mut admin).last_error, None, "a success clears last_error");

    // Nothing listening at the API URL.
    let rows = pd_rows(&mut admin);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    cluster.set_conf(&format!("pg_oncall.pagerduty_api_url = 'http://127.0.0.1:{closed}'"));
    cluster.reload();
    let err = refresh(&mut admin).expect_err("connection refused");
    assert!(err.contains("PagerDuty connection failed"), "{err}");
    assert_eq!(pd_rows(&mut admin), rows);
    assert!(check_access(&mut alice));
    cluster.set_conf(&format!("pg_oncall.pagerduty_api_url = '{}'", fake.url()));
    cluster.reload();
    refresh_ok(&cluster, &mut admin);
    cluster.assert_secret_hidden(TOKEN);
    cluster.assert_secret_hidden("another-token");
}

#[test]
fn refresh_wait_timeout_and_no_wait() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = cluster.connect();
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1)]);
    fake.push_fault(Fault::Delay(Duration::from_secs(5)));
    let started = Instant::now();
    let err = admin
        .batch_execute("SELECT oncall.refresh(wait => true, timeout => '1s')")
        .map_err(|e| error_text(&e))
        .expect_err("a sync slower than the timeout is an ERROR");
    let took = started.elapsed();
    assert!(err.contains("did not finish within"), "{err}");
    assert!(took >= Duration::from_millis(950) && took < Duration::from_secs(3), "returned after {took:?}");
    // The sync goes on in the background and lands.
    assert!(
        wait_until(Duration::from_secs(10), || pd_rows(&mut admin).len() == 1),
        "the slow sync finished in the background\n{}",
        cluster.log_tail()
    );
    assert_eq!(status(&mut admin).last_error, None);

    // wait => false returns at once, even when the sync will take 3 s.
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1), oncall("bob@example.com", "EP1", 2)]);
    fake.push_fault(Fault::Delay(Duration::from_secs(3)));
    let started = Instant::now();
    admin.batch_execute("SELECT oncall.refresh(wait => false)").unwrap();
    assert!(started.elapsed() < Duration::from_millis(500), "refresh(wait => false) took {:?}", started.elapsed());
    assert!(wait_until(Duration::from_secs(10), || pd_rows(&mut admin).len() == 2), "the background sync landed");
    cluster.assert_secret_hidden(TOKEN);
}

#[test]
fn rate_limit_reset_is_waited_out() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = cluster.connect();
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1)]);
    fake.push_fault(Fault::RateLimited { reset_secs: Some(2) });
    let started = Instant::now();
    refresh_ok(&cluster, &mut admin);
    let took = started.elapsed();
    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "a 429, then the retry");
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(gap >= Duration::from_millis(1900) && gap < Duration::from_secs(4), "waited {gap:?} for ratelimit-reset: 2");
    assert!(took >= gap, "refresh() returned after the retry ({took:?})");
    let st = status(&mut admin);
    assert_eq!((st.requests, st.pages, st.shifts, st.last_error.as_deref()), (2, 1, 1, None), "{st:?}");
    assert_eq!(pd_rows(&mut admin).len(), 1);

    // A sync waiting out a 429 has not finished: refresh() with a shorter timeout says so,
    // and the sync lands once the reset has passed.
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1), oncall("bob@example.com", "EP1", 1)]);
    fake.push_fault(Fault::RateLimited { reset_secs: Some(3) });
    let err = admin
        .batch_execute("SELECT oncall.refresh(timeout => '1s')")
        .map_err(|e| error_text(&e))
        .expect_err("a sync waiting out a 429 is not finished");
    assert!(err.contains("did not finish within"), "{err}");
    assert!(wait_until(Duration::from_secs(10), || pd_rows(&mut admin).len() == 2), "the sync lands after the reset");
    cluster.assert_secret_hidden(TOKEN);
}

#[test]
fn stale_pagerduty_rows_stop_granting_manual_rows_do_not() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&["pg_oncall.max_staleness = '2s'"], TOKEN);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "alice@example.com");
    create_login_role(&mut admin, "bob@example.com");
    let mut alice = cluster.connect_as("alice@example.com");
    let mut bob = cluster.connect_as("bob@example.com");
    add_manual_shift(&mut admin, "bob@example.com");
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1)]);
    refresh_ok(&cluster, &mut admin);
    fake.set_persistent_fault(Some(Fault::Status { code: 503, body: None, headers: vec![] }));
    let stale_at = status(&mut admin).last_success_at.unwrap() + chrono::Duration::seconds(2);
    assert!(wait_until(Duration::from_secs(1), || check_access(&mut alice)), "fresh PagerDuty shift grants");
    // Every answer must match the data's age at the statement's own timestamp.
    let (mut saw_fresh, mut saw_stale) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !saw_stale {
        let row = alice.query_one("SELECT oncall.check_oncall_access(), statement_timestamp() < $1", &[&stale_at]).unwrap();
        let (got, fresh): (bool, bool) = (row.get(0), row.get(1));
        assert_eq!(got, fresh, "alice at a statement {} the data goes stale ({stale_at})", if fresh { "before" } else { "after" });
        saw_fresh |= got;
        saw_stale |= !got;
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(saw_fresh && saw_stale, "fresh, then stale after max_staleness");
    assert!(check_access(&mut bob), "manual shifts ignore max_staleness");
    assert!(status(&mut admin).stale);
    assert!(refresh(&mut admin).is_err(), "PagerDuty still failing");
    assert!(!check_access(&mut alice));
    fake.set_persistent_fault(None);
    refresh_ok(&cluster, &mut admin);
    assert!(wait_until(Duration::from_secs(1), || check_access(&mut alice)), "a successful sync makes it fresh again");
    cluster.assert_secret_hidden(TOKEN);
}

#[test]
fn token_file_missing_empty_or_wrong() {
    let fake = FakePagerDuty::start(TOKEN).unwrap();
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1)]);
    let cluster = Cluster::builder().conf(&["pg_oncall.refresh_interval = '1h'"]).pagerduty(&fake.url(), None).start();
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "alice@example.com");
    create_login_role(&mut admin, "carol@example.com");
    let mut alice = cluster.connect_as("alice@example.com");
    let mut carol = cluster.connect_as("carol@example.com");
    add_manual_shift(&mut admin, "carol@example.com");

    let err = refresh(&mut admin).expect_err("no token file: refresh fails");
    assert!(err.contains("pagerduty_token_file is not set"), "{err}");
    let st = status(&mut admin);
    assert!(!st.token_configured);
    assert!(st.last_error.as_deref().unwrap_or_default().contains("pagerduty_token_file is not set"), "{st:?}");
    assert!(check_access(&mut carol), "manual shifts work without a token");
    assert!(fake.requests().is_empty(), "nothing sent without a token");

    let empty = cluster.raw_file("  \n\n");
    cluster.set_conf(&format!("pg_oncall.pagerduty_token_file = '{}'", empty.display()));
    cluster.reload();
    let err = refresh(&mut admin).expect_err("empty token file: refresh fails");
    assert!(err.contains("is empty"), "{err}");
    assert!(!status(&mut admin).token_configured);

    cluster.set_conf("pg_oncall.pagerduty_token_file = '/nonexistent/e2e/pagerduty.token'");
    cluster.reload();
    let err = refresh(&mut admin).expect_err("unreadable token file: refresh fails");
    assert!(err.contains("cannot read the PagerDuty token file"), "{err}");
    assert!(!status(&mut admin).token_configured);
    assert!(fake.requests().is_empty(), "nothing sent without a token");
    assert!(check_access(&mut carol));

    // A good token (whitespace around it is trimmed), picked up on reload.
    let good = cluster.raw_file(&format!("  {TOKEN}\t\n\n"));
    cluster.set_conf(&format!("pg_oncall.pagerduty_token_file = '{}'", good.display()));
    cluster.reload();
    refresh_ok(&cluster, &mut admin);
    let st = status(&mut admin);
    assert!(st.token_configured && st.last_error.is_none(), "{st:?}");
    assert!(wait_until(Duration::from_secs(1), || check_access(&mut alice)), "synced shifts grant");
    let requests = fake.requests();
    let auth = requests.last().and_then(|r| r.header("authorization"));
    assert_eq!(auth, Some(format!("Token token={TOKEN}").as_str()), "the trimmed token is sent");

    // A rotated token in the same file is re-read on reload.
    std::fs::write(&good, "e2eRotated-9Tz4\n").unwrap();
    cluster.reload();
    let err = refresh(&mut admin).expect_err("the fake does not know the rotated token");
    assert!(err.contains("rejected the API token"), "{err}");
    assert!(status(&mut admin).token_configured, "a readable token file is configured, even if PagerDuty rejects it");
    assert!(check_access(&mut alice), "the previous rows stay");
    cluster.assert_secret_hidden(TOKEN);
    cluster.assert_secret_hidden("e2eRotated-9Tz4");
}

#[test]
fn worker_comes_back_after_termination() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "alice@example.com");
    create_login_role(&mut admin, "carol@example.com");
    create_login_role(&mut admin, "dave@example.com");
    let mut alice = cluster.connect_as("alice@example.com");
    let mut carol = cluster.connect_as("carol@example.com");
    let mut dave = cluster.connect_as("dave@example.com");
    add_manual_shift(&mut admin, "carol@example.com");
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1)]);
    refresh_ok(&cluster, &mut admin);
    assert!(wait_until(Duration::from_secs(1), || check_access(&mut alice) && check_access(&mut carol)));

    let offset = cluster.log_len();
    let old = cluster.worker_pid().expect("the sync worker runs");
    let killed: bool = admin.query_one("SELECT pg_terminate_backend($1)", &[&old]).unwrap().get(0);
    assert!(killed);
    let started = Instant::now();
    let mut new = None;
    while started.elapsed() < Duration::from_secs(15) {
        assert!(check_access(&mut alice) && check_access(&mut carol), "decisions keep working without the worker ({:?})", started.elapsed());
        if let Some(pid) = cluster.worker_pid().filter(|&p| p != old) {
            new = Some(pid);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let back_after = started.elapsed();
    assert!(new.is_some(), "the sync worker did not come back within 15 s\n{}", cluster.log_tail());
    eprintln!("worker back after {back_after:?}");
    assert!(back_after < Duration::from_secs(10), "the worker came back only after {back_after:?}");

    // The new worker serves changes and refreshes.
    add_manual_shift(&mut admin, "dave@example.com");
    assert!(wait_until(Duration::from_secs(1), || check_access(&mut dave)), "the new worker loads changes\n{}", cluster.log_tail());
    fake.set_oncalls(vec![]);
    refresh_ok(&cluster, &mut admin);
    assert!(wait_until(Duration::from_secs(1), || !check_access(&mut alice)), "the new worker syncs");
    let log = cluster.log_since(offset);
    assert!(!log.contains("terminating any other active server processes") && !log.contains("reinitializing"), "no crash-restart:\n{log}");
    cluster.assert_secret_hidden(TOKEN);
}

#[test]
fn decisions_survive_a_restart_while_pagerduty_is_down() {
    let (mut cluster, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "alice@example.com");
    create_login_role(&mut admin, "carol@example.com");
    add_manual_shift(&mut admin, "carol@example.com");
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1)]);
    refresh_ok(&cluster, &mut admin);
    let rows = pd_rows(&mut admin);
    drop(admin);
    fake.set_persistent_fault(Some(Fault::Status { code: 503, body: None, headers: vec![] }));
    let offset = cluster.log_len();
    cluster.restart();
    // The snapshot is rebuilt from the durable table: decisions work before PagerDuty answers.
    let mut alice = cluster.connect_as("alice@example.com");
    let mut carol = cluster.connect_as("carol@example.com");
    assert!(check_access(&mut alice), "PagerDuty rows (synced minutes ago) grant after a restart\n{}", cluster.log_tail());
    assert!(check_access(&mut carol), "manual rows grant after a restart");
    let mut admin = cluster.connect();
    assert!(
        wait_until(Duration::from_secs(10), || cluster.log_since(offset).contains("server error 503")),
        "the start-up sync after the restart tried PagerDuty and failed\n{}",
        cluster.log_tail()
    );
    assert_eq!(pd_rows(&mut admin), rows, "a failed sync after a restart keeps the rows");
    assert!(check_access(&mut alice));
    fake.set_persistent_fault(None);
    refresh_ok(&cluster, &mut admin);
    cluster.assert_secret_hidden(TOKEN);
}

#[test]
fn a_sync_larger_than_the_snapshot_is_reported() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&["pg_oncall.max_shifts = 16"], TOKEN);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "alice@example.com");
    create_login_role(&mut admin, "bob@example.com");
    let mut alice = cluster.connect_as("alice@example.com");
    let mut bob = cluster.connect_as("bob@example.com");
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1)]);
    refresh_ok(&cluster, &mut admin);
    assert!(wait_until(Duration::from_secs(1), || check_access(&mut alice)));

    // 20 on-calls cannot be published into a 16-shift snapshot: the previous one stays in
    // force, and the DBA must be told where they look (refresh(), status()), not only in the log.
    let mut many: Vec<_> = (0..19).map(|i| oncall(&format!("user{i:02}@example.com"), "EP2", 1)).collect();
    many.push(oncall("bob@example.com", "EP1", 1));
    fake.set_oncalls(many);
    let err = refresh(&mut admin).expect_err("a sync whose shifts do not fit in the snapshot must not report success");
    assert!(err.contains("does not fit") && err.contains("pg_oncall.max_shifts"), "{err}");
    let st = status(&mut admin);
    let last_error = st.last_error.unwrap_or_default();
    assert!(last_error.contains("pg_oncall.max_shifts"), "status().last_error explains: {last_error:?}");
    assert!(check_access(&mut alice) && !check_access(&mut bob), "decisions keep the previous snapshot");
    let kept: i64 = admin
        .query_one("SELECT count(*) FROM oncall.shifts WHERE source = 'pagerduty'", &[])
        .unwrap()
        .get(0);
    assert_eq!(kept, 1, "a sync that cannot be published replaces no rows");

    fake.set_oncalls((0..9).map(|i| oncall(&format!("user{i:02}@example.com"), "EP2", 1)).chain([oncall("bob@example.com", "EP1", 1)]).collect());
    refresh_ok(&cluster, &mut admin);
    assert!(wait_until(Duration::from_secs(1), || check_access(&mut bob) && !check_access(&mut alice)), "a sync that fits applies");
    assert_eq!(status(&mut admin).last_error, None);
    cluster.assert_secret_hidden(TOKEN);
}

/// SIGTERM and SIGHUP are honoured at once even while the worker waits on a slow PagerDuty
/// (the HTTP request runs on a helper thread; the worker's own thread keeps polling signals).
#[test]
fn signals_are_honoured_during_a_slow_request() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&["pg_oncall.http_timeout = '60s'"], TOKEN);
    let mut admin = cluster.connect();
    fake.set_persistent_fault(Some(Fault::Delay(Duration::from_secs(30))));
    admin.execute("SELECT oncall.refresh(wait => false)", &[]).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || fake.requests().iter().any(|r| r.path == "/oncalls")),
        "the sync did not start"
    );

    // SIGHUP: a reload returns promptly and the worker keeps running.
    let pid = cluster.worker_pid().expect("the sync worker runs");
    let reloaded = Instant::now();
    cluster.reload();
    assert!(reloaded.elapsed() < Duration::from_secs(5), "reload took {:?}", reloaded.elapsed());
    assert_eq!(cluster.worker_pid(), Some(pid), "SIGHUP does not stop the worker");

    // SIGTERM: the worker exits well before the 30 s request would end.
    let terminated = Instant::now();
    let sent: bool = admin.query_one("SELECT pg_terminate_backend($1)", &[&pid]).unwrap().get(0);
    assert!(sent);
    assert!(
        wait_until(Duration::from_secs(3), || cluster.worker_pid() != Some(pid)),
        "the worker still runs {:?} after SIGTERM during a slow request\n{}",
        terminated.elapsed(),
        cluster.log_tail()
    );
    fake.set_persistent_fault(None);
    assert!(
        wait_until(Duration::from_secs(15), || cluster.worker_pid().is_some_and(|p| p != pid)),
        "the worker came back"
    );
    cluster.assert_secret_hidden(TOKEN);
}
