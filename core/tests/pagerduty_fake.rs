//! `fetch_all` over real HTTP against the fake PagerDuty: pagination, every fault the fake can
//! inject, cancellation, and the split past 10,000 rows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fake_pagerduty::{oncall, FakePagerDuty, Fault, Oncall};
use oncall_core::pagerduty::{fetch_all, SyncConfig, SyncError, SyncResult};

const TOKEN: &str = "pdTEST-7d9f3c2b1aE5";

struct Setup {
    fake: FakePagerDuty,
    cfg: SyncConfig,
}

fn setup() -> Setup {
    let fake = FakePagerDuty::start(TOKEN).expect("fake PagerDuty starts");
    let cfg = SyncConfig {
        api_url: format!("{}/", fake.url()),
        token: TOKEN.into(),
        lookahead_us: 12 * 3600 * 1_000_000,
        http_timeout: Duration::from_secs(5),
        max_body_bytes: SyncConfig::DEFAULT_MAX_BODY_BYTES,
        max_rate_limit_wait: Duration::from_secs(10),
    };
    Setup { fake, cfg }
}

fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

fn fetch(setup: &Setup) -> Result<SyncResult, SyncError> {
    fetch_all(&setup.cfg, now_us(), &AtomicBool::new(false))
}

fn people(n: usize, policy: &str) -> Vec<Oncall> {
    (0..n)
        .map(|i| {
            oncall(
                &format!("user{i:04}@example.com"),
                policy,
                1 + (i % 3) as i32,
            )
        })
        .collect()
}

/// The error, after checking what every error must satisfy for a DBA.
fn expect_error(setup: &Setup) -> SyncError {
    let error = fetch(setup).expect_err("the sync should fail");
    assert_displays_safely(&error);
    error
}

fn assert_displays_safely(error: &SyncError) {
    let text = error.to_string();
    assert!(!text.contains(TOKEN), "token leaked: {text}");
    assert!(
        !format!("{error:?}").contains(TOKEN),
        "token leaked: {error:?}"
    );
    assert!(!text.contains('\n') && text.chars().count() < 400, "{text}");
}

#[test]
fn three_pages_of_250_oncalls() {
    let s = setup();
    s.fake.set_oncalls(people(250, "PENG"));
    let result = fetch(&s).unwrap();
    assert_eq!(
        (result.shifts.len(), result.pages, result.requests),
        (250, 3, 3)
    );
    assert!(!result.split_by_policy);
    assert_eq!(result.skipped_without_email, 0);
    let requests = s.fake.requests();
    assert_eq!(requests.len(), 3);
    for (i, request) in requests.iter().enumerate() {
        assert_eq!(request.path, "/oncalls");
        assert_eq!(request.query_values("include[]"), ["users"]);
        assert_eq!(request.query_values("limit"), ["100"]);
        assert_eq!(request.query_values("offset"), [(i * 100).to_string()]);
        assert_eq!(
            request.header("authorization"),
            Some(format!("Token token={TOKEN}").as_str())
        );
        assert_eq!(
            request.header("accept"),
            Some("application/vnd.pagerduty+json;version=2")
        );
        assert!(request
            .header("user-agent")
            .unwrap()
            .starts_with("pg_oncall/"));
        let since = request.query_values("since")[0]
            .parse::<DateTime<Utc>>()
            .unwrap();
        let until = request.query_values("until")[0]
            .parse::<DateTime<Utc>>()
            .unwrap();
        assert!(
            (until - since - chrono::Duration::hours(12))
                .num_seconds()
                .abs()
                <= 1
        );
    }
    let shift = result
        .shifts
        .iter()
        .find(|s| s.email == "user0007@example.com")
        .unwrap();
    assert_eq!(
        (shift.escalation_policy_id.as_str(), shift.escalation_level),
        ("PENG", 2)
    );
    assert_eq!(shift.schedule_id.as_deref(), Some("SCHED-PENG"));
    assert_eq!((shift.start_us, shift.end_us), (None, None));
}

#[test]
fn shift_windows_arrive_as_microseconds() {
    let s = setup();
    let start: DateTime<Utc> = "2030-01-01T08:00:00Z".parse().unwrap();
    let end: DateTime<Utc> = "2030-01-01T20:00:00Z".parse().unwrap();
    s.fake.set_oncalls(vec![oncall("a@example.com", "P1", 1)
        .with_window(start, end)
        .with_schedule(None)]);
    let now = "2030-01-01T12:00:00Z"
        .parse::<DateTime<Utc>>()
        .unwrap()
        .timestamp_micros();
    // The fake serves its own clock's window; a raw page keeps this test independent of it.
    s.fake.set_raw_page(Some(
        r#"{"oncalls":[{"user":{"id":"PA","type":"user","email":"a@example.com"},
            "escalation_policy":{"id":"P1"},"escalation_level":1,"schedule":null,
            "start":"2030-01-01T08:00:00Z","end":"2030-01-01T20:00:00+00:00"}],
            "limit":100,"offset":0,"more":false}"#
            .into(),
    ));
    let result = fetch_all(&s.cfg, now, &AtomicBool::new(false)).unwrap();
    assert_eq!(result.shifts[0].start_us, Some(start.timestamp_micros()));
    assert_eq!(result.shifts[0].end_us, Some(end.timestamp_micros()));
    assert_eq!(result.shifts[0].schedule_id, None);
}

#[test]
fn rate_limit_with_reset_waits_then_retries_the_page() {
    let s = setup();
    s.fake.set_oncalls(people(5, "P1"));
    s.fake.push_fault(Fault::RateLimited {
        reset_secs: Some(2),
    });
    let started = Instant::now();
    let result = fetch(&s).unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1800) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert_eq!(
        (result.shifts.len(), result.requests, result.pages),
        (5, 2, 1)
    );
    let requests = s.fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].query, requests[1].query,
        "the same page is retried"
    );
    assert!(requests[1].at - requests[0].at >= Duration::from_millis(1800));
}

#[test]
fn rate_limit_without_headers_backs_off_then_retries() {
    let s = setup();
    s.fake.set_oncalls(people(5, "P1"));
    s.fake.push_fault(Fault::RateLimited { reset_secs: None });
    let started = Instant::now();
    let result = fetch(&s).unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((result.shifts.len(), result.requests), (5, 2));
}

#[test]
fn rate_limit_longer_than_allowed_fails_with_retry_after() {
    let s = setup();
    s.fake.set_persistent_fault(Some(Fault::RateLimited {
        reset_secs: Some(30),
    }));
    let started = Instant::now();
    let error = expect_error(&s);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
    assert!(!error.is_permanent());
    assert_eq!(s.fake.requests().len(), 1);
}

#[test]
fn cancel_during_a_rate_limit_wait_returns_promptly() {
    let s = setup();
    s.fake.set_persistent_fault(Some(Fault::RateLimited {
        reset_secs: Some(8),
    }));
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        flag.store(true, Ordering::SeqCst);
        Instant::now()
    });
    let error = fetch_all(&s.cfg, now_us(), &cancel).unwrap_err();
    let returned = Instant::now();
    let cancelled_at = setter.join().unwrap();
    assert_eq!(error, SyncError::Cancelled);
    assert!(
        returned - cancelled_at < Duration::from_millis(200),
        "{:?}",
        returned - cancelled_at
    );
    assert_displays_safely(&error);
}

#[test]
fn wrong_token_is_permanent_with_a_single_request() {
    let s = setup();
    s.fake.set_token("the-real-token-0000");
    let error = expect_error(&s);
    assert_eq!(error, SyncError::Unauthorized);
    assert_eq!(error.to_string(), "PagerDuty rejected the API token (401)");
    assert!(error.is_permanent());
    assert_eq!(s.fake.requests().len(), 1);
}

#[test]
fn missing_scope_is_permanent() {
    let s = setup();
    s.fake.set_persistent_fault(Some(Fault::Status {
        code: 403,
        body: Some(r#"{"error":{"message":"Access Denied","code":2010}}"#.into()),
        headers: vec![],
    }));
    let error = expect_error(&s);
    assert_eq!(
        error.to_string(),
        "PagerDuty refused: the token lacks scope oncalls.read (403): Access Denied (code 2010)"
    );
    assert!(error.is_permanent());
    assert_eq!(s.fake.requests().len(), 1);
}

#[test]
fn bad_request_surfaces_pagerdutys_message() {
    let s = setup();
    s.fake.push_fault(Fault::Status {
        code: 400,
        body: Some(r#"{"error":{"message":"Invalid Input Provided","code":2001,"errors":["Until must be after since"]}}"#.into()),
        headers: vec![],
    });
    let error = expect_error(&s);
    assert_eq!(
        error.to_string(),
        "PagerDuty rejected the request (400, page at offset 0): Invalid Input Provided (code 2001): Until must be after since"
    );
    assert!(error.is_permanent());
    assert_eq!(s.fake.requests().len(), 1);

    // A real refusal by the fake: a lookahead past PagerDuty's 90 days.
    let long = Setup {
        cfg: SyncConfig {
            lookahead_us: 100 * 86_400 * 1_000_000,
            ..s.cfg.clone()
        },
        fake: s.fake,
    };
    let error = expect_error(&long);
    assert!(
        matches!(
            error,
            SyncError::BadRequest {
                message: Some(_),
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn persistent_server_errors_fail_after_bounded_retries() {
    let s = setup();
    s.fake.set_persistent_fault(Some(Fault::Status {
        code: 503,
        body: None,
        headers: vec![],
    }));
    let started = Instant::now();
    let error = expect_error(&s);
    assert!(
        matches!(
            error,
            SyncError::ServerError {
                status: 503,
                attempts: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "PagerDuty server error 503 after 3 attempts"
    );
    assert!(!error.is_permanent());
    assert_eq!(s.fake.requests().len(), 3);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_single_server_error_is_retried() {
    let s = setup();
    s.fake.set_oncalls(people(3, "P1"));
    s.fake.push_fault(Fault::Status {
        code: 500,
        body: None,
        headers: vec![],
    });
    let result = fetch(&s).unwrap();
    assert_eq!((result.shifts.len(), result.requests), (3, 2));
}

#[test]
fn answer_slower_than_http_timeout_is_a_timeout() {
    let s = setup();
    let cfg = SyncConfig {
        http_timeout: Duration::from_millis(300),
        ..s.cfg.clone()
    };
    let s = Setup { cfg, ..s };
    s.fake
        .set_persistent_fault(Some(Fault::Delay(Duration::from_secs(3))));
    let error = expect_error(&s);
    assert_eq!(
        error,
        SyncError::Timeout {
            attempts: 3,
            timeout: Duration::from_millis(300)
        }
    );
    assert_eq!(
        error.to_string(),
        "PagerDuty did not answer within 300 ms (3 attempts); see pg_oncall.http_timeout"
    );
}

#[test]
fn hanging_server_is_a_timeout() {
    let s = setup();
    let cfg = SyncConfig {
        http_timeout: Duration::from_millis(300),
        ..s.cfg.clone()
    };
    let s = Setup { cfg, ..s };
    s.fake.set_persistent_fault(Some(Fault::Hang));
    let started = Instant::now();
    assert!(matches!(expect_error(&s), SyncError::Timeout { .. }));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn truncated_body_is_retried_then_an_error() {
    let s = setup();
    s.fake.set_oncalls(people(50, "P1"));
    s.fake.push_fault(Fault::Truncated);
    let result = fetch(&s).unwrap();
    assert_eq!((result.shifts.len(), result.requests), (50, 2));

    s.fake.clear_requests();
    s.fake.set_persistent_fault(Some(Fault::Truncated));
    let error = expect_error(&s);
    assert!(
        matches!(error, SyncError::Connection { attempts: 3, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("cut off"), "{error}");
}

#[test]
fn garbage_body_is_an_error_naming_the_page() {
    let s = setup();
    s.fake.push_fault(Fault::Garbage);
    let error = expect_error(&s);
    assert!(
        matches!(
            error,
            SyncError::InvalidResponse {
                offset: Some(0),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("invalid response from PagerDuty (page at offset 0): not valid JSON"),
        "{error}"
    );
    assert_eq!(s.fake.requests().len(), 1);
}

#[test]
fn malformed_page_is_an_error() {
    let s = setup();
    s.fake.set_raw_page(Some(
        r#"{"oncalls":[{"user":{"id":"U","email":"a@x.test"},"escalation_level":1}],"more":false}"#
            .into(),
    ));
    let error = expect_error(&s);
    assert!(
        error
            .to_string()
            .contains("oncalls[0].escalation_policy.id is missing"),
        "{error}"
    );
}

#[test]
fn huge_body_fails_fast_without_buffering() {
    let s = setup();
    s.fake
        .set_persistent_fault(Some(Fault::HugeBody { bytes: 1 << 30 }));
    let started = Instant::now();
    let error = expect_error(&s);
    assert_eq!(
        error,
        SyncError::BodyTooLarge {
            offset: 0,
            limit: 32 * 1024 * 1024
        }
    );
    assert_eq!(
        error.to_string(),
        "PagerDuty response larger than 33554432 bytes (page at offset 0)"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.fake.requests().len(), 1);

    // Just over a small cap: the body is read up to the cap and refused.
    let small = Setup {
        cfg: SyncConfig {
            max_body_bytes: 4096,
            ..s.cfg.clone()
        },
        fake: s.fake,
    };
    small
        .fake
        .set_persistent_fault(Some(Fault::HugeBody { bytes: 4097 }));
    assert!(matches!(
        expect_error(&small),
        SyncError::BodyTooLarge { limit: 4096, .. }
    ));
}

#[test]
fn unreachable_server_is_a_connection_error() {
    let s = setup();
    let url = s.fake.url();
    drop(s.fake);
    let cfg = SyncConfig {
        api_url: url,
        token: TOKEN.into(),
        ..setup().cfg
    };
    let error = fetch_all(&cfg, now_us(), &AtomicBool::new(false)).unwrap_err();
    assert!(
        matches!(error, SyncError::Connection { attempts: 3, .. }),
        "{error:?}"
    );
    assert!(!error.is_permanent());
    assert_displays_safely(&error);
}

#[test]
fn token_never_appears_in_any_error() {
    let faults = vec![
        Fault::Status {
            code: 400,
            body: Some(format!(r#"{{"error":{{"message":"bad token {TOKEN}"}}}}"#)),
            headers: vec![],
        },
        Fault::Status {
            code: 403,
            body: Some(format!(r#"{{"error":["{TOKEN}"]}}"#)),
            headers: vec![],
        },
        Fault::Status {
            code: 404,
            body: Some(format!(r#"{{"message":"no","errors":"{TOKEN}"}}"#)),
            headers: vec![],
        },
        Fault::Status {
            code: 409,
            body: None,
            headers: vec![],
        },
        Fault::Status {
            code: 502,
            body: Some(format!(r#"{{"error":"{TOKEN}"}}"#)),
            headers: vec![],
        },
        Fault::Status {
            code: 301,
            body: None,
            headers: vec![("Location".into(), format!("http://x/{TOKEN}"))],
        },
        Fault::RateLimited {
            reset_secs: Some(60),
        },
        Fault::Garbage,
        Fault::Truncated,
        Fault::HugeBody { bytes: 1 << 30 },
    ];
    let mut seen = Vec::new();
    for fault in faults {
        let s = setup();
        s.fake.set_persistent_fault(Some(fault));
        seen.push(expect_error(&s));
    }
    let s = setup();
    s.fake.set_raw_page(Some(format!(r#"{{"oncalls":[{{"escalation_policy":{{"id":"P"}},"escalation_level":1,"start":"{TOKEN}"}}]}}"#)));
    seen.push(expect_error(&s));
    s.fake.set_token("another-token");
    seen.push(expect_error(&s));
    assert!(seen.iter().any(|e| e.to_string().contains("[redacted]")));
    for error in &seen {
        assert_displays_safely(error);
    }
}

#[test]
fn more_than_10000_oncalls_are_fetched_per_policy() {
    let s = setup();
    // 30 policies x 5 users x 67 consecutive 10-minute shifts = 10,050 rows in the window, plus 4.
    let base = Utc::now() + chrono::Duration::seconds(60);
    let mut oncalls = Vec::with_capacity(10_050);
    for policy in 0..30 {
        for user in 0..5 {
            let template = oncall(
                &format!("u{user}.p{policy}@example.com"),
                &format!("PPOL{policy:02}"),
                1,
            );
            for shift in 0..67 {
                let start = base + chrono::Duration::minutes(10 * shift);
                oncalls.push(
                    template
                        .clone()
                        .with_window(start, start + chrono::Duration::minutes(10)),
                );
            }
        }
    }
    // The fake lists by policy id, so these come after row 10,050: never seen in the first
    // 10,000 rows, found only by the discovery pass.
    for late in ["PZLATE1", "PZLATE2"] {
        oncalls.push(oncall(&format!("oncall@{late}.example.com"), late, 1));
        oncalls.push(oncall(&format!("backup@{late}.example.com"), late, 2));
    }
    s.fake.set_oncalls(oncalls);
    let started = Instant::now();
    let result = fetch(&s).unwrap();
    assert!(result.split_by_policy);
    assert_eq!(result.shifts.len(), 10_054);
    let distinct: std::collections::HashSet<_> = result.shifts.iter().collect();
    assert_eq!(distinct.len(), 10_054);
    let policies: std::collections::HashSet<_> = result
        .shifts
        .iter()
        .map(|s| s.escalation_policy_id.as_str())
        .collect();
    assert_eq!(policies.len(), 32);
    assert!(policies.contains("PZLATE2"));

    let requests = s.fake.requests();
    assert_eq!(requests.len() as u32, result.requests);
    for request in &requests {
        let limit: u32 = request.query_values("limit")[0].parse().unwrap();
        let offset: u32 = request.query_values("offset")[0].parse().unwrap();
        assert!(offset + limit <= 10_000, "offset {offset} + limit {limit}");
    }
    let filtered: std::collections::HashSet<&str> = requests
        .iter()
        .flat_map(|r| r.query_values("escalation_policy_ids[]"))
        .collect();
    assert_eq!(
        filtered.len(),
        32,
        "every policy fetched through a policy filter"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn one_policy_over_10000_is_reported() {
    let s = setup();
    let base = Utc::now() + chrono::Duration::seconds(60);
    let oncalls: Vec<Oncall> = (0..10_001)
        .map(|i| {
            let start = base + chrono::Duration::seconds(3 * i64::from(i));
            oncall(&format!("u{}@example.com", i % 7), "PHUGE", 1)
                .with_window(start, start + chrono::Duration::seconds(3))
        })
        .collect();
    s.fake.set_oncalls(oncalls);
    let error = expect_error(&s);
    assert_eq!(
        error,
        SyncError::PolicyTooLarge {
            escalation_policy_id: "PHUGE".into()
        }
    );
    assert!(
        error.to_string().contains("shorten pg_oncall.lookahead"),
        "{error}"
    );
}
