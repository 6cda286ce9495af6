//! The PagerDuty sync (DESIGN.md "Data flow", "Scale"): fixtures from the API's spec and a
//! real bug report become shift rows, pagination (one request per 100 shifts) with the right
//! headers and window, PagerDuty changes reaching decisions after a refresh, the lookahead
//! starting shifts on time while PagerDuty is down, manual rows never touched, and
//! `oncall.refresh()`'s wait, timeout and no-wait. Failures: `sync_faults.rs`.
//!
//! | case | test |
//! |---|---|
//! | the spec's example page and a bug report's page, with and without emails; duplicates | `fixtures_become_shift_rows` |
//! | 250 on-calls: 3 pages, headers, `since`/`until` = now + lookahead | `pagination_250_oncalls` |
//! | a handover after a refresh; a shift fetched by the lookahead starts on time with PagerDuty down | `shift_changes_in_pagerduty_reach_decisions_after_refresh` |
//! | manual rows identical after syncs that add, remove and fail | `manual_rows_are_never_touched_by_a_sync` |
//! | `refresh(timeout)` slower than the sync, `refresh(wait => false)` | `refresh_wait_timeout_and_no_wait` |

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use e2e::*;
use fake_pagerduty::{oncall, Fault};
use postgres::Client;

fn fixture(name: &str) -> String {
    let path = format!("{}/../fixtures/pagerduty/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
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
    cluster.refresh();
    assert_eq!(pd_rows(&mut admin).len(), 1);

    // The spec's example page, verbatim: its user is a reference without email, so the row is
    // skipped (and said so); the sync still replaces the PagerDuty rows wholesale.
    let offset = cluster.log_len();
    fake.set_raw_page(Some(fixture("oncalls_list.json")));
    cluster.refresh();
    assert_eq!(pd_rows(&mut admin), vec![], "no email, no row; alice's row is gone with the old sync");
    assert!(
        cluster.wait_for_log(offset, "1 on-call entries had no user email and were skipped", PATIENCE),
        "the skipped row is reported\n{}",
        cluster.log_tail()
    );
    let st = sync_status(&mut admin);
    assert_eq!((st.last_error.as_deref(), st.shifts, st.pages, st.stale), (None, 0, 1, false));

    // The same page as `include[]=users` returns it, with the user's email.
    fake.set_raw_page(Some(with_emails(&fixture("oncalls_list.json"), "Tim.Wright@Example.com").to_string()));
    cluster.refresh();
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
    cluster.refresh();
    assert_eq!(pd_rows(&mut admin), vec![]);
    assert!(cluster.wait_for_log(offset, "2 on-call entries had no user email", PATIENCE), "{}", cluster.log_tail());

    // With emails, plus an exact duplicate row: one row per level, permanent, no schedule.
    let mut page = with_emails(&fixture("oncalls_permanent_from_issue.json"), "user1@example.com");
    let first = page["oncalls"][0].clone();
    page["oncalls"].as_array_mut().unwrap().push(first);
    fake.set_raw_page(Some(page.to_string()));
    cluster.refresh();
    let rows: Vec<_> = pd_rows(&mut admin).into_iter().map(|r| (r.0, r.1, r.2, r.3, r.4, r.5, r.6)).collect();
    let row = |level| ("user1@example.com".to_string(), Some("user1-id".to_string()), Some("team1-id".to_string()), Some(level), None, None, None);
    assert_eq!(rows, vec![row(11), row(13)], "duplicates dropped, both levels kept, NULL schedule/start/end");
    assert_eq!(sync_status(&mut admin).shifts, 2);
    let at_least = |c: &mut Client, min: i32| -> bool {
        c.query_one("SELECT oncall.is_on_call('USER1@example.com', $1)", &[&min]).unwrap().get(0)
    };
    eventually("permanent shifts grant", &cluster, || at_least(&mut admin, 1));
    assert!(at_least(&mut admin, 13) && !at_least(&mut admin, 14));
    cluster.assert_secret_hidden(TOKEN);
}

#[test]
fn pagination_250_oncalls() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = cluster.connect();
    fake.set_oncalls((0..250).map(|i| oncall(&format!("user{i:03}@example.com"), &format!("EP{}", i % 7), 1 + i % 3)).collect());
    cluster.refresh();
    let n: i64 = admin.query_one("SELECT count(*) FROM oncall.shifts WHERE source = 'pagerduty'", &[]).unwrap().get(0);
    assert_eq!(n, 250);
    let st = sync_status(&mut admin);
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
    eventually("is_on_call(&mut admin, \"user249@example.com\")", &cluster, || is_on_call(&mut admin, "user249@example.com"));
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
    cluster.refresh();
    eventually("alice on call after the refresh", &cluster, || check_access(&mut alice));
    assert!(!check_access(&mut bob), "bob's shift (fetched thanks to the lookahead) starts in an hour");
    assert_eq!(pd_rows(&mut admin).len(), 2);

    // Handover in PagerDuty: bob now, alice off.
    fake.set_oncalls(vec![
        oncall("alice@example.com", "EP1", 1).with_window(now - chrono::Duration::hours(2), now - chrono::Duration::minutes(1)),
        oncall("bob@example.com", "EP1", 1).with_window(now - chrono::Duration::minutes(1), now + chrono::Duration::hours(2)),
    ]);
    assert!(check_access(&mut alice), "nothing changes before the refresh");
    cluster.refresh();
    eventually("handover after the refresh", &cluster, || check_access(&mut bob) && !check_access(&mut alice));
    let rows = pd_rows(&mut admin);
    assert_eq!(rows.len(), 1, "alice's past shift is outside the window: {rows:?}");

    // Thanks to the lookahead, a shift starting soon starts on time while PagerDuty is down.
    let soon = Utc::now() + chrono::Duration::seconds(4);
    fake.set_oncalls(vec![
        oncall("bob@example.com", "EP1", 1).with_window(now - chrono::Duration::minutes(1), now + chrono::Duration::hours(2)),
        oncall("alice@example.com", "EP1", 1).with_window(soon, soon + chrono::Duration::hours(1)),
    ]);
    cluster.refresh();
    fake.set_persistent_fault(Some(Fault::Status { code: 503, body: None, headers: vec![] }));
    let starts_at: DateTime<Utc> = admin
        .query_one("SELECT starts_at FROM oncall.shifts WHERE source = 'pagerduty' AND email = 'alice@example.com'", &[])
        .unwrap()
        .get(0);
    let mut saw = (false, false);
    let deadline = Instant::now() + Duration::from_secs(4) + PATIENCE;
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
    cluster.refresh();
    assert_eq!(pd_rows(&mut admin).len(), 2);
    fake.set_oncalls(vec![]);
    cluster.refresh();
    assert_eq!(pd_rows(&mut admin).len(), 0);
    fake.set_persistent_fault(Some(Fault::Status { code: 500, body: None, headers: vec![] }));
    assert!(try_refresh(&mut admin).is_err());
    fake.set_persistent_fault(None);
    assert_eq!(manual(&mut admin), before, "manual rows identical after syncs that added, removed and failed");
    assert!(is_on_call(&mut admin, "alice@example.com") && is_on_call(&mut admin, "carol@example.com") && is_on_call(&mut admin, "dave@example.com"));
    cluster.assert_secret_hidden(TOKEN);
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
    // At the timeout, not when the 5 s sync ends.
    assert!(took >= Duration::from_millis(950) && took < Duration::from_secs(5), "returned after {took:?}");
    // The sync goes on in the background and lands.
    assert!(
        wait_until(PATIENCE, || pd_rows(&mut admin).len() == 1),
        "the slow sync finished in the background\n{}",
        cluster.log_tail()
    );
    assert_eq!(sync_status(&mut admin).last_error, None);

    // wait => false returns at once, even when the sync will take 3 s.
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1), oncall("bob@example.com", "EP1", 2)]);
    fake.push_fault(Fault::Delay(Duration::from_secs(3)));
    let started = Instant::now();
    admin.batch_execute("SELECT oncall.refresh(wait => false)").unwrap();
    // At once, not when the 3 s sync ends.
    assert!(started.elapsed() < Duration::from_secs(2), "refresh(wait => false) took {:?}", started.elapsed());
    assert!(wait_until(PATIENCE, || pd_rows(&mut admin).len() == 2), "the background sync landed");
    cluster.assert_secret_hidden(TOKEN);
}
