//! A failed sync changes nothing (README "Fail-closed rules"): HTTP errors, timeouts, malformed
//! bodies, a refused connection or a 429 leave the previous rows and snapshot in place, and
//! `oncall.refresh()` and `oncall.status()` explain; a 429's `ratelimit-reset` is waited out;
//! a sync too big for the snapshot is refused whole and reported where the DBA looks. (While
//! a sync is stuck, changes still reach decisions: `propagation.rs`.)
//!
//! | case | test |
//! |---|---|
//! | 401, 403, 500, 503, garbage, truncated, timeout, hang, huge body, a 403 echoing the token, 400 (each reports on its own); nothing listening | `faults_keep_previous_rows_and_explain` |
//! | a 429 with `ratelimit-reset`; `refresh(timeout)` shorter than the reset | `rate_limit_reset_is_waited_out` |
//! | 20 on-calls for a 16-shift snapshot | `a_sync_larger_than_the_snapshot_is_reported` |

use std::time::{Duration, Instant};

use chrono::Utc;
use e2e::*;
use fake_pagerduty::{oncall, Fault};

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
    let mut each = Cases::new();
    for (name, fault, expected) in cases {
      each.run(name, || {
        // Whatever an earlier case left behind is undone, and a fresh success first, so no
        // retry of an earlier failure is pending.
        fake.set_persistent_fault(None);
        fake.set_token(TOKEN);
        cluster.refresh();
        eventually("{name}: alice on call before the fault", &cluster, || check_access(&mut alice));
        let rows = pd_rows(&mut admin);
        assert_eq!(rows.len(), 2);
        let before = sync_status(&mut admin);
        assert_eq!(before.last_error, None);
        match &fault {
            Some(f) => fake.set_persistent_fault(Some(f.clone())),
            None => fake.set_token("another-token"),
        }
        let started = Instant::now();
        let err = try_refresh(&mut admin).expect_err(&format!("{name}: oncall.refresh() must raise an ERROR"));
        let took = started.elapsed();
        fake.set_persistent_fault(None);
        fake.set_token(TOKEN);
        eprintln!("{name}: {err} ({took:?})");
        assert!(err.starts_with("ERROR: pg_oncall: PagerDuty sync failed:"), "{name}: {err}");
        assert!(err.contains(expected), "{name}: the error says '{expected}': {err}");
        let after = sync_status(&mut admin);
        let last_error = after.last_error.clone().unwrap_or_else(|| panic!("{name}: status().last_error is NULL"));
        assert!(last_error.contains(expected), "{name}: last_error {last_error:?}");
        assert!(err.contains(&last_error), "{name}: the ERROR carries last_error");
        assert_eq!(after.last_success_at, before.last_success_at, "{name}: no success recorded");
        assert_eq!(after.syncs_failed, before.syncs_failed + 1, "{name}: one failed sync");
        assert!(after.token_configured);
        assert_eq!(pd_rows(&mut admin), rows, "{name}: the previous rows (synced_at included) are intact");
        assert!(check_access(&mut alice), "{name}: alice keeps access");
        assert!(is_on_call(&mut admin, "bob@example.com"), "{name}: bob keeps access");
      });
    }
    fake.set_persistent_fault(None);
    fake.set_token(TOKEN);
    each.finish();
    cluster.refresh();
    assert_eq!(sync_status(&mut admin).last_error, None, "a success clears last_error");

    // Nothing listening at the API URL.
    let rows = pd_rows(&mut admin);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    cluster.set_conf(&format!("pg_oncall.pagerduty_api_url = 'http://127.0.0.1:{closed}'"));
    cluster.reload();
    let err = try_refresh(&mut admin).expect_err("connection refused");
    assert!(err.contains("PagerDuty connection failed"), "{err}");
    assert_eq!(pd_rows(&mut admin), rows);
    assert!(check_access(&mut alice));
    cluster.set_conf(&format!("pg_oncall.pagerduty_api_url = '{}'", fake.url()));
    cluster.reload();
    cluster.refresh();
    cluster.assert_secret_hidden(TOKEN);
    cluster.assert_secret_hidden("another-token");
}

#[test]
fn rate_limit_reset_is_waited_out() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = cluster.connect();
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1)]);
    fake.push_fault(Fault::RateLimited { reset_secs: Some(2) });
    let started = Instant::now();
    cluster.refresh();
    let took = started.elapsed();
    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "a 429, then the retry");
    let gap = requests[1].at.duration_since(requests[0].at);
    // The reset (2 s), not a backoff of its own: well under the next doubling.
    assert!(gap >= Duration::from_millis(1900) && gap < Duration::from_secs(6), "waited {gap:?} for ratelimit-reset: 2");
    assert!(took >= gap, "refresh() returned after the retry ({took:?})");
    let st = sync_status(&mut admin);
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
    assert!(wait_until(PATIENCE, || pd_rows(&mut admin).len() == 2), "the sync lands after the reset");
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
    cluster.refresh();
    eventually("check_access(&mut alice)", &cluster, || check_access(&mut alice));

    // 20 on-calls cannot be published into a 16-shift snapshot: the previous one stays in
    // force, and the DBA must be told where they look (refresh(), status()), not only in the log.
    let mut many: Vec<_> = (0..19).map(|i| oncall(&format!("user{i:02}@example.com"), "EP2", 1)).collect();
    many.push(oncall("bob@example.com", "EP1", 1));
    fake.set_oncalls(many);
    let err = try_refresh(&mut admin).expect_err("a sync whose shifts do not fit in the snapshot must not report success");
    assert!(err.contains("does not fit") && err.contains("pg_oncall.max_shifts"), "{err}");
    let st = sync_status(&mut admin);
    let last_error = st.last_error.unwrap_or_default();
    assert!(last_error.contains("pg_oncall.max_shifts"), "status().last_error explains: {last_error:?}");
    assert!(check_access(&mut alice) && !check_access(&mut bob), "decisions keep the previous snapshot");
    let kept: i64 = admin
        .query_one("SELECT count(*) FROM oncall.shifts WHERE source = 'pagerduty'", &[])
        .unwrap()
        .get(0);
    assert_eq!(kept, 1, "a sync that cannot be published replaces no rows");

    fake.set_oncalls((0..9).map(|i| oncall(&format!("user{i:02}@example.com"), "EP2", 1)).chain([oncall("bob@example.com", "EP1", 1)]).collect());
    cluster.refresh();
    eventually("a sync that fits applies", &cluster, || check_access(&mut bob) && !check_access(&mut alice));
    assert_eq!(sync_status(&mut admin).last_error, None);
    cluster.assert_secret_hidden(TOKEN);
}
