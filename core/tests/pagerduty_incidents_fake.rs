//! `fetch_open_incidents`, `post_note` and `list_notes` over real HTTP against the fake
//! PagerDuty: the open incidents and their assignees, pagination, every fault the fake can
//! inject, the split past 10,000, and the notes' scopes, `From` and uncertain outcomes.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use chrono::{Duration as TimeDelta, Utc};
use fake_pagerduty::{incident, oncall, Endpoint, FakePagerDuty, Fault, User};
use oncall_core::pagerduty::{
    fetch_open_incidents, list_notes, post_note, IncidentStatus, IncidentSyncResult, NoteConfig, NoteError, SyncConfig, SyncError,
};

const TOKEN: &str = "pdREAD-7d9f3c2b1aE5";
const WRITE: &str = "pdWRITE-0c1d2e3f4a5b";
const BOT: &str = "pg-oncall@example.com";

struct Setup {
    fake: FakePagerDuty,
    cfg: SyncConfig,
    notes: NoteConfig,
}

fn setup() -> Setup {
    let fake = FakePagerDuty::start(TOKEN).expect("fake PagerDuty starts");
    fake.set_write_token(Some(WRITE));
    fake.add_users(vec![User::from_email(BOT)]);
    let cfg = SyncConfig {
        api_url: format!("{}/", fake.url()),
        token: TOKEN.into(),
        lookahead_us: 12 * 3600 * 1_000_000,
        http_timeout: Duration::from_secs(5),
        max_body_bytes: SyncConfig::DEFAULT_MAX_BODY_BYTES,
        max_rate_limit_wait: Duration::from_secs(10),
    };
    let notes = NoteConfig::new(&fake.url(), WRITE, Duration::from_secs(2));
    Setup { fake, cfg, notes }
}

fn fetch(s: &Setup) -> Result<IncidentSyncResult, SyncError> {
    fetch_open_incidents(&s.cfg, Utc::now().timestamp_micros(), &AtomicBool::new(false))
}

fn assert_safe(text: &str) {
    assert!(!text.contains(TOKEN) && !text.contains(WRITE), "token leaked: {text}");
    assert!(!text.contains('\n') && text.chars().count() < 400, "{text}");
}

fn expect_error(s: &Setup) -> SyncError {
    let error = fetch(s).expect_err("the sync should fail");
    assert_safe(&format!("{error} {error:?}"));
    error
}

fn three_incidents(fake: &FakePagerDuty) {
    let now = Utc::now();
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1)]);
    fake.set_incidents(vec![
        incident("PINC1", "PSVC1", "EP1")
            .assigned_to("Alice@Example.com")
            .assigned_to("carol@example.com")
            .with_title("Disk full on db-3")
            .created_at(now - TimeDelta::days(40)),
        incident("PINC2", "PSVC2", "EP2").assigned_to("bob@example.com").with_status("acknowledged").with_urgency("low"),
        incident("PINC3", "PSVC1", "EP1").assigned_to("alice@example.com").with_status("resolved"),
    ]);
}

#[test]
fn open_incidents_with_their_assignees() {
    let s = setup();
    three_incidents(&s.fake);
    let result = fetch(&s).unwrap();
    assert_eq!((result.pages, result.requests, result.split_by_time), (1, 1, false));
    let ids: Vec<&str> = result.incidents.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["PINC1", "PINC2"], "open ones only, including one older than a month");
    let first = &result.incidents[0];
    assert_eq!(first.incident_number, 1);
    assert_eq!(first.title, "Disk full on db-3");
    assert_eq!(first.status, IncidentStatus::Triggered);
    assert_eq!(first.urgency.as_deref(), Some("high"));
    assert_eq!((first.service_id.as_deref(), first.escalation_policy_id.as_deref()), (Some("PSVC1"), Some("EP1")));
    assert_eq!(first.assignee_emails, ["alice@example.com", "carol@example.com"]);
    let created = s.fake.incidents()[0].created_at.timestamp_micros();
    assert_eq!(first.created_at_us, created - created % 1_000_000, "second precision as rendered");
    assert_eq!(result.incidents[1].status, IncidentStatus::Acknowledged);

    let request = &s.fake.requests()[0];
    assert_eq!(request.path, "/incidents");
    assert_eq!(request.query_values("statuses[]"), ["triggered", "acknowledged"]);
    assert_eq!(request.query_values("include[]"), ["assignees"]);
    assert_eq!(request.query_values("date_range"), ["all"]);
    assert_eq!(request.query_values("limit"), ["100"]);
    assert_eq!(request.header("authorization"), Some(format!("Token token={TOKEN}").as_str()));
}

#[test]
fn three_pages_of_250_incidents() {
    let s = setup();
    let now = Utc::now();
    s.fake.set_incidents(
        (0..250)
            .map(|i| {
                incident(&format!("P{i:04}"), "S", "EP")
                    .assigned_to("a@example.com")
                    .created_at(now - TimeDelta::seconds(500 - i))
            })
            .collect(),
    );
    let result = fetch(&s).unwrap();
    assert_eq!((result.incidents.len(), result.pages, result.requests), (250, 3, 3));
    let offsets: Vec<String> = s.fake.requests().iter().map(|r| r.query_values("offset")[0].to_string()).collect();
    assert_eq!(offsets, ["0", "100", "200"]);
}

#[test]
fn past_10000_open_incidents_through_the_fake() {
    let s = setup();
    let now = Utc::now();
    // 10,300 incidents over the last 400 days: more than one 6-month window after the cap.
    s.fake.set_incidents(
        (0..10_300)
            .map(|i| incident(&format!("P{i:05}"), "S", "EP").created_at(now - TimeDelta::minutes(57_600 - i * 5)))
            .collect(),
    );
    let result = fetch(&s).unwrap();
    assert!(result.split_by_time);
    assert_eq!(result.incidents.len(), 10_300);
    let requests = s.fake.requests();
    assert_eq!(result.requests as usize, requests.len());
    assert!(requests.iter().all(|r| {
        let limit: u32 = r.query_values("limit")[0].parse().unwrap();
        let offset: u32 = r.query_values("offset")[0].parse().unwrap();
        offset + limit <= 10_000
    }));
    assert!(requests.iter().any(|r| !r.query_values("since").is_empty()));
}

#[test]
fn faults_are_handled_like_the_on_call_sync() {
    let s = setup();
    three_incidents(&s.fake);

    s.fake.push_fault(Fault::RateLimited { reset_secs: Some(1) });
    let started = Instant::now();
    let result = fetch(&s).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
    assert_eq!((result.incidents.len(), result.requests), (2, 2));

    s.fake.push_fault(Fault::RateLimited { reset_secs: None });
    assert_eq!(fetch(&s).unwrap().requests, 2);

    for fault in [
        Fault::Status { code: 502, body: Some("<html>bad gateway</html>".into()), headers: vec![] },
        Fault::Truncated,
        Fault::Delay(Duration::from_secs(7)),
    ] {
        s.fake.push_fault(fault.clone());
        let result = fetch(&s).unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!((result.incidents.len(), result.requests), (2, 2), "{fault:?}");
    }

    s.fake.set_persistent_fault(Some(Fault::Status { code: 503, body: None, headers: vec![] }));
    let error = expect_error(&s);
    assert_eq!(error.to_string(), "PagerDuty server error 503 after 3 attempts");
    s.fake.set_persistent_fault(Some(Fault::RateLimited { reset_secs: Some(30) }));
    let error = expect_error(&s);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
    s.fake.set_persistent_fault(Some(Fault::Garbage));
    let error = expect_error(&s);
    assert!(error.to_string().starts_with("invalid response from PagerDuty (page at offset 0): not valid JSON"), "{error}");
    s.fake.set_persistent_fault(Some(Fault::HugeBody { bytes: 64 * 1024 * 1024 }));
    assert!(matches!(expect_error(&s), SyncError::BodyTooLarge { .. }));
    s.fake.set_persistent_fault(None);

    s.fake.set_token("another-token-000");
    assert_eq!(expect_error(&s), SyncError::Unauthorized);
}

#[test]
fn a_note_is_posted_once_with_the_from_header() {
    let s = setup();
    three_incidents(&s.fake);
    let content = "alice@example.com assumed prod_admin on main/postgres at 2030-01-01 10:00:00+00; reason: INC-1234";
    let note = post_note(&s.notes, "PINC1", BOT, content).unwrap();
    assert_eq!(note.content, content);
    assert!(note.id.is_some() && note.user_id.is_some() && note.created_at_us.is_some());
    let received = s.fake.notes();
    assert_eq!(received.len(), 1);
    assert_eq!(
        (received[0].incident_id.as_str(), received[0].from.as_str(), received[0].content.as_str()),
        ("PINC1", BOT, content)
    );
    let posted = s.fake.requests().into_iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&posted.body).unwrap(),
        serde_json::json!({"note": {"content": content}})
    );
    assert_eq!(posted.header("content-type"), Some("application/json"));

    let listed = list_notes(&s.notes, "PINC1").unwrap();
    assert_eq!(listed.iter().map(|n| n.content.as_str()).collect::<Vec<_>>(), [content]);
}

#[test]
fn note_refusals_are_permanent_and_say_why() {
    let s = setup();
    three_incidents(&s.fake);
    let read_only = NoteConfig { token: TOKEN.into(), ..s.notes.clone() };
    let error = post_note(&read_only, "PINC1", BOT, "x").unwrap_err();
    assert!(error.to_string().starts_with("403: the write token lacks incidents.write: Access Denied (code 2010)"), "{error}");
    assert!(error.is_permanent() && !error.may_have_posted());

    let error = post_note(&s.notes, "PNOPE", BOT, "x").unwrap_err();
    assert_eq!(error.to_string(), "404: PagerDuty has no incident PNOPE: Not Found (code 2100)");
    assert!(error.is_permanent());

    let error = post_note(&s.notes, "PINC1", "stranger@example.com", "x").unwrap_err();
    assert!(error.to_string().starts_with("400: PagerDuty refused the request: Invalid Input Provided (code 2001)"), "{error}");
    assert!(error.is_permanent());

    let wrong = NoteConfig { token: "nope-nope".into(), ..s.notes.clone() };
    assert_eq!(post_note(&wrong, "PINC1", BOT, "x").unwrap_err(), NoteError::Unauthorized);
    for error in [post_note(&read_only, "PINC1", BOT, "x").unwrap_err(), post_note(&wrong, "PINC1", BOT, "x").unwrap_err()] {
        assert_safe(&format!("{error} {error:?}"));
    }
    assert!(s.fake.notes().is_empty());
}

#[test]
fn note_failures_worth_a_retry() {
    let s = setup();
    three_incidents(&s.fake);

    s.fake.push_fault_for(Endpoint::Notes, Fault::RateLimited { reset_secs: Some(4) });
    let error = post_note(&s.notes, "PINC1", BOT, "rate limited").unwrap_err();
    assert_eq!(error, NoteError::RateLimited { retry_after: Some(Duration::from_secs(4)) });
    assert!(!error.is_permanent() && !error.may_have_posted());

    s.fake.push_fault_for(Endpoint::Notes, Fault::Status { code: 500, body: None, headers: vec![] });
    let error = post_note(&s.notes, "PINC1", BOT, "server error").unwrap_err();
    assert!(!error.is_permanent() && error.may_have_posted(), "{error}");

    // A timeout: one attempt, bounded by http_timeout, never retried inside.
    s.fake.push_fault_for(Endpoint::Notes, Fault::Hang);
    let started = Instant::now();
    let error = post_note(&s.notes, "PINC1", BOT, "hang").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    assert_eq!(error, NoteError::Timeout { timeout: Duration::from_secs(2) });
    assert!(s.fake.notes().is_empty());

    // Truncated: PagerDuty stored it, we cannot tell; list_notes settles it.
    s.fake.push_fault_for(Endpoint::Notes, Fault::Truncated);
    let error = post_note(&s.notes, "PINC1", BOT, "cut short").unwrap_err();
    assert!(error.may_have_posted(), "{error}");
    assert!(list_notes(&s.notes, "PINC1").unwrap().iter().any(|n| n.content == "cut short"));
    assert_eq!(s.fake.notes().len(), 1);

    s.fake.push_fault_for(Endpoint::Notes, Fault::Garbage);
    let error = post_note(&s.notes, "PINC1", BOT, "garbage").unwrap_err();
    assert!(matches!(error, NoteError::InvalidResponse { .. }) && error.may_have_posted(), "{error}");

    let posts = s.fake.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 5, "exactly one request per call");
}
