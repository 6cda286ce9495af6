//! Pagination, retries, the 10,000-row split and error mapping, against an in-process PagerDuty
//! stand-in behind the [`Transport`] seam (fast, deterministic, no sockets).

use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::DateTime;
use serde_json::json;

use super::super::client::percent_encode;
use super::super::test_support::*;
use super::super::transport::{HttpResponse, Transport, TransportError};
use super::*;

fn config() -> SyncConfig {
    sync_config()
}

fn run(transport: &dyn Transport) -> Result<SyncResult, SyncError> {
    fetch_with_policy(transport, &config(), NOW_US, &AtomicBool::new(false), &FAST)
}

/// One on-call row of the stand-in's data.
#[derive(Clone)]
struct Row {
    policy: String,
    level: i32,
    email: Option<String>,
    start_s: i64,
}

fn row(policy: &str, level: i32, email: &str, start_s: i64) -> Row {
    Row { policy: policy.into(), level, email: Some(email.into()), start_s }
}

fn row_json(row: &Row) -> serde_json::Value {
    let user = match &row.email {
        Some(email) => json!({"id": format!("U-{email}"), "type": "user", "email": email}),
        None => json!({"id": "PDELETED", "type": "user_reference", "summary": "Deleted"}),
    };
    let start = DateTime::from_timestamp(row.start_s, 0).unwrap().to_rfc3339();
    let end = DateTime::from_timestamp(row.start_s + 3600, 0).unwrap().to_rfc3339();
    json!({
        "user": user,
        "escalation_policy": {"id": row.policy, "type": "escalation_policy_reference"},
        "escalation_level": row.level,
        "schedule": null,
        "start": start,
        "end": end,
    })
}

/// Honours `escalation_policy_ids[]`, `earliest`, `limit`, `offset` and the 10,000 cap.
fn mini_pagerduty(rows: &[Row], honour_earliest: bool, url: &str) -> Result<HttpResponse, TransportError> {
    let params = query_params(url);
    let limit: usize = param(url, "limit").unwrap().parse().unwrap();
    let offset: usize = param(url, "offset").unwrap().parse().unwrap();
    if offset + limit > 10_000 {
        return status(
            400,
            &[],
            r#"{"error":{"message":"Invalid Input Provided","code":2001,"errors":["Offset must be less than 10000"]}}"#,
        );
    }
    let policies: HashSet<&str> =
        params.iter().filter(|(k, _)| k == "escalation_policy_ids[]").map(|(_, v)| v.as_str()).collect();
    let earliest = honour_earliest && param(url, "earliest").as_deref() == Some("true");
    let mut seen = HashSet::new();
    let selected: Vec<&Row> = rows
        .iter()
        .filter(|r| policies.is_empty() || policies.contains(r.policy.as_str()))
        .filter(|r| !earliest || seen.insert((r.policy.clone(), r.level, r.email.clone())))
        .collect();
    let page: Vec<_> = selected.iter().skip(offset).take(limit).map(|r| row_json(r)).collect();
    ok_json(json!({
        "oncalls": page,
        "limit": limit,
        "offset": offset,
        "more": offset + limit < selected.len(),
        "total": null,
    }))
}

fn assert_no_request_past_cap(urls: &[String]) {
    for url in urls {
        let limit: u32 = param(url, "limit").unwrap().parse().unwrap();
        let offset: u32 = param(url, "offset").unwrap().parse().unwrap();
        assert!(offset + limit <= 10_000, "{url}");
    }
}

/// `policies` policies in listing order, each with `levels` x `users` x `shifts` rows.
fn grouped_rows(policies: usize, levels: i32, users: usize, shifts: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for p in 0..policies {
        for level in 1..=levels {
            for u in 0..users {
                for s in 0..shifts {
                    rows.push(row(&format!("P{p:03}"), level, &format!("u{u}@p{p}.test"), 1_700_000_000 + s as i64 * 60));
                }
            }
        }
    }
    rows
}

#[test]
fn first_request_has_documented_shape() {
    let transport = Scripted::new(|_| ok_json(json!({"oncalls": [], "more": false, "limit": 100, "offset": 0})));
    let result = run(&transport).unwrap();
    assert_eq!(
        transport.urls(),
        vec!["http://pd.test/oncalls?since=2023-11-14T22:13:20Z&until=2023-11-15T10:13:21Z&include[]=users&limit=100&offset=0"]
    );
    let headers = transport.headers.borrow()[0].clone();
    assert!(headers.contains(&("Authorization".into(), format!("Token token={TOKEN}"))));
    assert!(headers.contains(&("Accept".into(), "application/vnd.pagerduty+json;version=2".into())));
    assert!(headers.contains(&("User-Agent".into(), format!("pg_oncall/{}", env!("CARGO_PKG_VERSION")))));
    assert_eq!((result.pages, result.requests, result.shifts.len(), result.split_by_policy), (1, 1, 0, false));
}

#[test]
fn api_url_without_trailing_slash_and_with_path() {
    for (api_url, prefix) in [
        ("https://api.eu.pagerduty.com", "https://api.eu.pagerduty.com/oncalls?"),
        ("http://127.0.0.1:8080/pd//", "http://127.0.0.1:8080/pd/oncalls?"),
    ] {
        let transport = Scripted::new(|_| ok_json(json!({"oncalls": [], "more": false})));
        let cfg = SyncConfig { api_url: api_url.into(), ..config() };
        fetch_with_policy(&transport, &cfg, NOW_US, &AtomicBool::new(false), &FAST).unwrap();
        assert!(transport.urls()[0].starts_with(prefix), "{}", transport.urls()[0]);
    }
}

#[test]
fn follows_more_across_pages() {
    let rows: Vec<Row> = (0..250).map(|i| row("PA", 1, &format!("u{i}@x.test"), 1_700_000_000)).collect();
    let transport = Scripted::new(|url| mini_pagerduty(&rows, true, url));
    let result = run(&transport).unwrap();
    assert_eq!((result.shifts.len(), result.pages, result.requests), (250, 3, 3));
    let offsets: Vec<String> = transport.urls().iter().map(|u| param(u, "offset").unwrap()).collect();
    assert_eq!(offsets, ["0", "100", "200"]);
    assert_eq!(result.shifts[249].email, "u249@x.test");
    assert_eq!(result.shifts[0].start_us, Some(1_700_000_000_000_000));
    assert_eq!(result.shifts[0].end_us, Some(1_700_003_600_000_000));
}

#[test]
fn rows_without_email_are_counted_not_returned() {
    let mut rows = vec![row("PA", 1, "a@x.test", 0), row("PA", 2, "b@x.test", 0)];
    rows.push(Row { email: None, ..row("PA", 3, "", 0) });
    let transport = Scripted::new(|url| mini_pagerduty(&rows, true, url));
    let result = run(&transport).unwrap();
    assert_eq!((result.shifts.len(), result.skipped_without_email), (2, 1));
}

#[test]
fn exact_duplicates_are_dropped() {
    let rows = vec![row("PA", 1, "a@x.test", 0), row("PA", 1, "a@x.test", 0), row("PA", 2, "a@x.test", 0)];
    let transport = Scripted::new(|url| mini_pagerduty(&rows, true, url));
    let result = run(&transport).unwrap();
    assert_eq!(result.shifts.len(), 2);
}

#[test]
fn split_finds_policies_listed_only_after_row_10000() {
    // 40 policies x 300 rows = 12,000; policies P034.. start after row 10,000.
    let rows = grouped_rows(40, 3, 2, 50);
    let transport = Scripted::new(|url| mini_pagerduty(&rows, true, url));
    let result = run(&transport).unwrap();
    assert!(result.split_by_policy);
    assert_eq!(result.shifts.len(), 12_000);
    let policies: HashSet<&str> = result.shifts.iter().map(|s| s.escalation_policy_id.as_str()).collect();
    assert_eq!(policies.len(), 40);
    assert!(policies.contains("P039"));
    let urls = transport.urls();
    assert_no_request_past_cap(&urls);
    assert!(urls.iter().any(|u| u.contains("earliest=true")));
    assert!(urls.iter().any(|u| u.contains("escalation_policy_ids[]=P039")));
    assert_eq!(result.requests as usize, urls.len());
}

#[test]
fn split_halves_a_batch_that_overflows() {
    // PA and PB fill the first 10,000 rows; PC (9,500 rows, 1 user) is only known from discovery,
    // where it looks tiny, so it is first batched with PB and that batch overflows.
    let mut rows = Vec::new();
    rows.extend((0..9_000).map(|i| row("PA", 1, "a@x.test", i)));
    rows.extend((0..1_200).map(|i| row("PB", 1, "b@x.test", i)));
    rows.extend((0..9_500).map(|i| row("PC", 1, "c@x.test", i)));
    rows.extend((0..50).map(|i| row("PD", 1, "d@x.test", i)));
    let transport = Scripted::new(|url| mini_pagerduty(&rows, true, url));
    let result = run(&transport).unwrap();
    assert!(result.split_by_policy);
    assert_eq!(result.shifts.len(), rows.len());
    assert_no_request_past_cap(&transport.urls());
    let batches: HashSet<Vec<String>> = transport
        .urls()
        .iter()
        .map(|u| query_params(u).into_iter().filter(|(k, _)| k == "escalation_policy_ids[]").map(|(_, v)| v).collect())
        .collect();
    for expected in [vec!["PA"], vec!["PB", "PC", "PD"], vec!["PB"], vec!["PC", "PD"]] {
        let expected: Vec<String> = expected.into_iter().map(String::from).collect();
        assert!(batches.contains(&expected), "{expected:?} not in {batches:?}");
    }
}

#[test]
fn one_policy_over_the_cap_is_an_error() {
    let rows: Vec<Row> = (0..10_050).map(|i| row("PBIG", 1, "a@x.test", i)).collect();
    let transport = Scripted::new(|url| mini_pagerduty(&rows, true, url));
    let error = run(&transport).unwrap_err();
    assert_eq!(error, SyncError::PolicyTooLarge { escalation_policy_id: "PBIG".into() });
    assert!(error.is_permanent());
    assert!(error.to_string().contains("PBIG"), "{error}");
    assert_no_request_past_cap(&transport.urls());
}

#[test]
fn unlistable_policies_are_an_error_not_a_truncation() {
    let rows = grouped_rows(40, 3, 2, 50);
    let transport = Scripted::new(|url| mini_pagerduty(&rows, false, url));
    let error = run(&transport).unwrap_err();
    assert!(matches!(error, SyncError::TooManyOncalls { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "PagerDuty account too large to sync completely: more than 10000 on-call entries, and \
         more than 10000 distinct (escalation policy, level, user) combinations, so the \
         escalation policies cannot all be listed; shorten pg_oncall.lookahead"
    );
    assert!(error.is_permanent());
    assert_no_request_past_cap(&transport.urls());
}

#[test]
fn rate_limit_retries_the_same_page() {
    let mut calls = 0;
    let transport = Scripted::new(|_| {
        calls += 1;
        match calls {
            1 | 2 => status(429, &[("RateLimit-Reset", "0")], r#"{"error":{"message":"Rate Limit Exceeded","code":2020}}"#),
            _ => ok_json(json!({"oncalls": [], "more": false})),
        }
    });
    let result = run(&transport).unwrap();
    assert_eq!((result.requests, result.pages), (3, 1));
    let urls = transport.urls();
    assert!(urls.iter().all(|u| *u == urls[0]));
}

#[test]
fn rate_limit_gives_up_after_bounded_retries() {
    let transport = Scripted::new(|_| status(429, &[("ratelimit-reset", "0.001")], ""));
    let error = run(&transport).unwrap_err();
    assert_eq!(
        error,
        SyncError::RateLimited { attempts: 5, retry_after: Some(Duration::from_millis(1)), max_wait_exceeded: false }
    );
    assert_eq!(transport.urls().len(), 5);
    assert!(!error.is_permanent());
}

#[test]
fn rate_limit_reset_beyond_max_wait_returns_at_once() {
    let transport = Scripted::new(|_| status(429, &[("ratelimit-reset", "120")], ""));
    let started = Instant::now();
    let error = run(&transport).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(transport.urls().len(), 1);
    assert!(error.to_string().contains("retry after 120 s"), "{error}");
}

#[test]
fn server_errors_are_retried_then_reported() {
    let transport = Scripted::new(|_| status(503, &[], r#"{"error":{"message":"Service Unavailable","code":5000}}"#));
    let error = run(&transport).unwrap_err();
    assert_eq!(transport.urls().len(), 3);
    assert_eq!(error.to_string(), "PagerDuty server error 503 after 3 attempts: Service Unavailable (code 5000)");
    assert!(!error.is_permanent());

    let mut calls = 0;
    let transport = Scripted::new(|_| {
        calls += 1;
        if calls == 1 {
            status(502, &[], "<html>bad gateway</html>")
        } else {
            ok_json(json!({"oncalls": [], "more": false}))
        }
    });
    assert_eq!(run(&transport).unwrap().requests, 2);
}

#[test]
fn timeouts_and_connection_failures_are_retried_then_reported() {
    let transport = Scripted::new(|_| Err(TransportError::Timeout));
    let error = run(&transport).unwrap_err();
    assert_eq!(error, SyncError::Timeout { attempts: 3, timeout: Duration::from_secs(10) });
    assert_eq!(error.to_string(), "PagerDuty did not answer within 10 s (3 attempts); see pg_oncall.http_timeout");

    let transport = Scripted::new(|_| Err(TransportError::Connection("Connection Failed: refused".into())));
    let error = run(&transport).unwrap_err();
    assert_eq!(error.to_string(), "PagerDuty connection failed: Connection Failed: refused (3 attempts)");

    let transport = Scripted::new(|_| Err(TransportError::InvalidUrl("Bad URL".into())));
    let error = run(&transport).unwrap_err();
    assert!(error.is_permanent());
    assert_eq!(transport.urls().len(), 1);
}

#[test]
fn client_errors_are_permanent_and_not_retried() {
    let cases: Vec<(u16, &str, &str)> = vec![
        (401, r#"{"error":{"message":"Unauthorized","code":2006}}"#, "PagerDuty rejected the API token (401)"),
        (403, "", "PagerDuty refused: the token lacks scope oncalls.read (403)"),
        (
            400,
            r#"{"error":{"message":"Invalid Input Provided","code":2001,"errors":["a","b"]}}"#,
            "PagerDuty rejected the request (400, page at offset 0): Invalid Input Provided (code 2001): a, b",
        ),
        (400, "", "PagerDuty rejected the request (400, page at offset 0) without an explanation"),
        (
            404,
            r#"{"error":{"message":"Not Found","code":2100}}"#,
            "PagerDuty answered HTTP 404 (page at offset 0): Not Found (code 2100)",
        ),
    ];
    for (code, body, expected) in cases {
        let transport = Scripted::new(|_| status(code, &[], body));
        let error = run(&transport).unwrap_err();
        assert_eq!(error.to_string(), expected);
        assert!(error.is_permanent(), "{code}");
        assert_eq!(transport.urls().len(), 1, "{code}");
    }
}

#[test]
fn body_over_the_cap_fails_without_buffering() {
    let cfg = SyncConfig { max_body_bytes: 1_000, ..config() };
    let run_with = |response: fn() -> HttpResponse| {
        let transport = Scripted::new(|_| Ok(response()));
        fetch_with_policy(&transport, &cfg, NOW_US, &AtomicBool::new(false), &FAST)
    };
    let declared = run_with(|| HttpResponse::from_bytes(200, vec![("Content-Length".into(), "1073741824".into())], ""));
    assert_eq!(declared.unwrap_err().to_string(), "PagerDuty response larger than 1000 bytes (page at offset 0)");

    // An endless body without Content-Length: reading must stop at the cap.
    let endless = run_with(|| HttpResponse { status: 200, headers: vec![], body: Box::new(std::io::repeat(b' ')) });
    assert!(matches!(endless.unwrap_err(), SyncError::BodyTooLarge { limit: 1_000, .. }));

    let exact = run_with(|| {
        let mut body = br#"{"oncalls":[],"more":false}"#.to_vec();
        body.resize(1_000, b' ');
        HttpResponse::from_bytes(200, vec![], body)
    });
    assert!(exact.is_ok());
}

#[test]
fn broken_pagination_answers_are_errors() {
    let full_page: Vec<_> = (0..100).map(|i| row_json(&row("PA", 1, &format!("u{i}@x.test"), 0))).collect();
    let cases = vec![
        (json!({"oncalls": full_page.clone()}), "a full page without `more`"),
        (json!({"oncalls": full_page[..25].to_vec(), "limit": 25}), "a full page without `more`"),
        (json!({"oncalls": [], "more": true}), "`more` is true but the page is empty"),
        (json!({"oncalls": [], "more": false, "offset": 7}), "PagerDuty answered offset 7"),
    ];
    for (body, expected) in cases {
        let transport = Scripted::new(|_| ok_json(body.clone()));
        let error = run(&transport).unwrap_err().to_string();
        assert!(error.contains(expected) && error.contains("offset 0"), "{error}");
    }
    // A short page without `more` is the end.
    let transport = Scripted::new(|_| ok_json(json!({"oncalls": full_page[..3].to_vec()})));
    assert_eq!(run(&transport).unwrap().shifts.len(), 3);
}

#[test]
fn invalid_page_names_its_offset() {
    let mut calls = 0;
    let transport = Scripted::new(|_| {
        calls += 1;
        if calls == 1 {
            let page: Vec<_> = (0..100).map(|i| row_json(&row("PA", 1, &format!("u{i}@x.test"), 0))).collect();
            ok_json(json!({"oncalls": page, "more": true, "offset": 0, "limit": 100}))
        } else {
            Ok(HttpResponse::from_bytes(
                200,
                vec![],
                br#"{"oncalls":[{"escalation_policy":{"id":"P"},"escalation_level":"#.to_vec(),
            ))
        }
    });
    let error = run(&transport).unwrap_err();
    assert!(matches!(error, SyncError::InvalidResponse { offset: Some(100), .. }), "{error:?}");
    assert!(error.to_string().starts_with("invalid response from PagerDuty (page at offset 100): not valid JSON"), "{error}");
    assert_eq!(transport.urls().len(), 2, "parse errors are not retried");
}

#[test]
fn token_echoed_by_the_server_is_redacted() {
    let body = format!(r#"{{"error":{{"message":"bad token {TOKEN}","code":1}}}}"#);
    for code in [400u16, 403, 404, 500] {
        let transport = Scripted::new(|_| status(code, &[], &body));
        let error = run(&transport).unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(!text.contains(TOKEN), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
}

#[test]
fn bad_settings_fail_before_any_request() {
    let cases: Vec<(SyncConfig, &str)> = vec![
        (SyncConfig { token: String::new(), ..config() }, "no PagerDuty API token"),
        (SyncConfig { token: "abc def".into(), ..config() }, "token contains spaces"),
        (SyncConfig { token: "abc\r\nX-Evil: 1".into(), ..config() }, "token contains spaces"),
        (SyncConfig { api_url: "ftp://pd.test".into(), ..config() }, "must start with https://"),
        (SyncConfig { api_url: "https://".into(), ..config() }, "has no host"),
        (SyncConfig { api_url: "https://pd.test/?x=1".into(), ..config() }, "plain base URL"),
        (SyncConfig { lookahead_us: -1, ..config() }, "lookahead must not be negative"),
        (SyncConfig { lookahead_us: i64::MAX, ..config() }, "out of range"),
        (SyncConfig { http_timeout: Duration::ZERO, ..config() }, "timeout must be positive"),
        (SyncConfig { max_body_bytes: 0, ..config() }, "body size must be positive"),
    ];
    for (cfg, expected) in cases {
        let transport = Scripted::new(|_| panic!("no request expected"));
        let error = fetch_with_policy(&transport, &cfg, NOW_US, &AtomicBool::new(false), &FAST).unwrap_err();
        assert!(error.is_permanent());
        assert!(error.to_string().contains(expected), "{error}");
        assert!(!error.to_string().contains("abc"), "{error}");
    }
    let transport = Scripted::new(|_| panic!("no request expected"));
    let error = fetch_with_policy(&transport, &config(), i64::MIN, &AtomicBool::new(false), &FAST).unwrap_err();
    assert!(matches!(error, SyncError::Config(_)));
}

#[test]
fn cancel_is_noticed_before_requests_and_during_waits() {
    let transport = Scripted::new(|_| panic!("no request expected"));
    let error = fetch_with_policy(&transport, &config(), NOW_US, &AtomicBool::new(true), &FAST).unwrap_err();
    assert_eq!(error, SyncError::Cancelled);

    let cancel = Arc::new(AtomicBool::new(false));
    let setter = {
        let cancel = Arc::clone(&cancel);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            cancel.store(true, Ordering::Relaxed);
        })
    };
    let transport = Scripted::new(|_| status(429, &[("ratelimit-reset", "30")], ""));
    let started = Instant::now();
    let error = fetch_with_policy(&transport, &config(), NOW_US, &cancel, &RetryPolicy::DEFAULT).unwrap_err();
    let elapsed = started.elapsed();
    setter.join().unwrap();
    assert_eq!(error, SyncError::Cancelled);
    assert!(elapsed < Duration::from_millis(400), "{elapsed:?}");
}

#[test]
fn cancel_is_noticed_while_reading_a_body() {
    /// An endless body that sets the cancel flag on its first read.
    struct CancellingBody(Arc<AtomicBool>);
    impl Read for CancellingBody {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.store(true, Ordering::Relaxed);
            buf[0] = b' ';
            Ok(1)
        }
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    let transport = Scripted::new(move |_| {
        Ok(HttpResponse { status: 200, headers: vec![], body: Box::new(CancellingBody(Arc::clone(&flag))) })
    });
    let error = fetch_with_policy(&transport, &config(), NOW_US, &cancel, &FAST).unwrap_err();
    assert_eq!(error, SyncError::Cancelled);
}

#[test]
fn pack_batches_respects_targets() {
    let policies: Vec<(String, usize)> = (0..60).map(|i| (format!("P{i}"), if i == 3 { 7_000 } else { 10 })).collect();
    let batches = pack_batches(&policies);
    assert!(batches.iter().all(|b| b.len() <= MAX_POLICIES_PER_BATCH));
    assert!(batches.iter().any(|b| b == &vec!["P3".to_string()]));
    let flattened: Vec<String> = batches.into_iter().flatten().collect();
    assert_eq!(flattened, policies.into_iter().map(|(p, _)| p).collect::<Vec<_>>());
}

#[test]
fn policy_ids_are_percent_encoded() {
    assert_eq!(percent_encode("PT20YPA"), "PT20YPA");
    assert_eq!(percent_encode("a&b=c d/é"), "a%26b%3Dc%20d%2F%C3%A9");
}

#[test]
fn config_debug_hides_the_token() {
    let text = format!("{:?}", config());
    assert!(!text.contains(TOKEN) && text.contains("<redacted>"), "{text}");
    let built = SyncConfig::new("http://pd.test", TOKEN, 1, Duration::from_secs(1));
    assert_eq!(built.max_body_bytes, 32 * 1024 * 1024);
    assert_eq!(built.max_rate_limit_wait, Duration::from_secs(60));
}
