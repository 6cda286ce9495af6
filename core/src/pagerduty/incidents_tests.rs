//! The incident sync against an in-process PagerDuty stand-in behind the [`Transport`] seam:
//! the query, pagination, normalization, the creation-time split past 10,000, and that errors
//! are the on-call sync's (same client).

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chrono::DateTime;
use serde_json::json;

use super::super::test_support::*;
use super::super::transport::{HttpResponse, Transport, TransportError};
use super::super::{IncidentStatus, SyncError};
use super::*;

fn run(transport: &dyn Transport) -> Result<IncidentSyncResult, SyncError> {
    fetch_incidents_with_policy(transport, &sync_config(), NOW_US, &AtomicBool::new(false), &FAST)
}

const NOW_S: i64 = NOW_US / 1_000_000;

/// One incident of the stand-in's data.
#[derive(Clone)]
struct Row {
    id: String,
    status: &'static str,
    created_s: i64,
    emails: Vec<&'static str>,
}

fn open(id: &str, created_s: i64) -> Row {
    Row { id: id.into(), status: "triggered", created_s, emails: vec!["Alice@Example.com"] }
}

fn rfc3339(seconds: i64) -> String {
    DateTime::from_timestamp(seconds, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn incident_json(row: &Row, number: usize) -> serde_json::Value {
    let assignments: Vec<_> = row
        .emails
        .iter()
        .map(|email| json!({"at": rfc3339(row.created_s), "assignee": {"id": "PU", "type": "user", "email": email}}))
        .collect();
    json!({
        "id": row.id,
        "type": "incident",
        "incident_number": number,
        "title": format!("incident {}", row.id),
        "status": row.status,
        "urgency": "high",
        "created_at": rfc3339(row.created_s),
        "service": {"id": "PSVC", "type": "service_reference"},
        "escalation_policy": {"id": "PEP", "type": "escalation_policy_reference"},
        "assignments": assignments,
    })
}

/// Honours `date_range=all`, `since`/`until` (on created_at, `since` inclusive), the 6-month
/// limit, `statuses[]`, sorting by creation, `limit`, `offset` and the 10,000 cap.
fn mini_pagerduty(rows: &[Row], url: &str) -> Result<HttpResponse, TransportError> {
    let limit: usize = param(url, "limit").unwrap().parse().unwrap();
    let offset: usize = param(url, "offset").unwrap().parse().unwrap();
    if offset + limit > 10_000 {
        return status(
            400,
            &[],
            r#"{"error":{"message":"Invalid Input Provided","code":2001,"errors":["Offset must be less than 10000"]}}"#,
        );
    }
    let all = param(url, "date_range").as_deref() == Some("all");
    let parse = |key| param(url, key).map(|t| DateTime::parse_from_rfc3339(&t).unwrap().timestamp());
    let (since, until) = (parse("since"), parse("until"));
    if !all {
        let (since, until) = (since.expect("since"), until.expect("until"));
        assert!(until - since <= 180 * 86_400, "window too long: {url}");
    }
    let statuses = params(url, "statuses[]");
    let mut selected: Vec<(usize, &Row)> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| statuses.is_empty() || statuses.iter().any(|s| s == r.status))
        .filter(|(_, r)| all || (since.unwrap() <= r.created_s && r.created_s < until.unwrap()))
        .collect();
    selected.sort_by_key(|(i, r)| (r.created_s, *i));
    let page: Vec<_> = selected.iter().skip(offset).take(limit).map(|(i, r)| incident_json(r, i + 1)).collect();
    ok_json(json!({"incidents": page, "limit": limit, "offset": offset, "more": offset + limit < selected.len(), "total": null}))
}

fn assert_no_request_past_cap(urls: &[String]) {
    for url in urls {
        let limit: u32 = param(url, "limit").unwrap().parse().unwrap();
        let offset: u32 = param(url, "offset").unwrap().parse().unwrap();
        assert!(offset + limit <= 10_000, "{url}");
    }
}

#[test]
fn first_request_has_documented_shape() {
    let transport = Scripted::new(|_| ok_json(json!({"incidents": [], "more": false, "limit": 100, "offset": 0})));
    let result = run(&transport).unwrap();
    assert_eq!(
        transport.urls(),
        vec![
            "http://pd.test/incidents?statuses[]=triggered&statuses[]=acknowledged&include[]=assignees\
              &sort_by=created_at:asc&date_range=all&limit=100&offset=0"
        ]
    );
    let sent = transport.sent.borrow()[0].clone();
    assert_eq!(sent.method, "GET");
    assert_eq!(sent.header("Authorization"), Some(format!("Token token={TOKEN}").as_str()));
    assert_eq!(sent.header("Accept"), Some("application/vnd.pagerduty+json;version=2"));
    assert!(sent.header("User-Agent").unwrap().starts_with("pg_oncall/"));
    assert_eq!((result.pages, result.requests, result.incidents.len(), result.split_by_time), (1, 1, 0, false));
}

#[test]
fn pages_through_and_keeps_only_open_incidents() {
    let mut rows: Vec<Row> = (0..250).map(|i| open(&format!("P{i:04}"), NOW_S - 10_000 + i)).collect();
    rows[7].status = "acknowledged";
    rows[8].status = "resolved"; // a stand-in ignoring statuses[] would still be safe
    rows[9].emails = vec!["  BOB@example.com ", "bob@example.com", "carol@example.com"];
    let transport = Scripted::new(|url| {
        let mut url = url.to_string();
        url = url.replace("statuses[]=triggered&statuses[]=acknowledged&", "");
        mini_pagerduty(&rows, &url)
    });
    let result = run(&transport).unwrap();
    assert_eq!((result.pages, result.requests), (3, 3));
    assert_eq!((result.incidents.len(), result.skipped_not_open), (249, 1));
    let offsets: Vec<String> = transport.urls().iter().map(|u| param(u, "offset").unwrap()).collect();
    assert_eq!(offsets, ["0", "100", "200"]);
    let by_id = |id: &str| result.incidents.iter().find(|i| i.id == id).unwrap().clone();
    assert_eq!(by_id("P0007").status, IncidentStatus::Acknowledged);
    assert!(result.incidents.iter().all(|i| i.id != "P0008"));
    assert_eq!(by_id("P0009").assignee_emails, ["bob@example.com", "carol@example.com"]);
    let first = by_id("P0000");
    assert_eq!(
        first,
        Incident {
            id: "P0000".into(),
            incident_number: 1,
            title: "incident P0000".into(),
            status: IncidentStatus::Triggered,
            urgency: Some("high".into()),
            service_id: Some("PSVC".into()),
            escalation_policy_id: Some("PEP".into()),
            assignee_emails: vec!["alice@example.com".into()],
            created_at_us: (NOW_S - 10_000) * 1_000_000,
        }
    );
}

#[test]
fn duplicates_keep_the_copy_received_last() {
    let mut calls = 0;
    let transport = Scripted::new(|_| {
        calls += 1;
        let mut row = open("PDUP", NOW_S - 60);
        if calls == 1 {
            let page: Vec<_> = (0..99).map(|i| incident_json(&open(&format!("P{i}"), NOW_S - 100), i)).collect();
            let mut page = page;
            page.push(incident_json(&row, 100));
            ok_json(json!({"incidents": page, "more": true, "limit": 100, "offset": 0}))
        } else {
            row.status = "acknowledged";
            ok_json(json!({"incidents": [incident_json(&row, 100)], "more": false, "limit": 100, "offset": 100}))
        }
    });
    let result = run(&transport).unwrap();
    assert_eq!(result.incidents.len(), 100);
    let dup: Vec<_> = result.incidents.iter().filter(|i| i.id == "PDUP").collect();
    assert_eq!(dup.len(), 1);
    assert_eq!(dup[0].status, IncidentStatus::Acknowledged);
}

#[test]
fn past_10000_the_listing_goes_on_by_creation_time() {
    // 12,500 open incidents over the last ~400 days, several per second at places.
    let rows: Vec<Row> = (0..12_500).map(|i| open(&format!("P{i:05}"), NOW_S - 400 * 86_400 + (i as i64 / 3) * 2_700)).collect();
    let transport = Scripted::new(|url| mini_pagerduty(&rows, url));
    let result = run(&transport).unwrap();
    assert!(result.split_by_time);
    assert_eq!(result.incidents.len(), 12_500);
    let ids: HashSet<&str> = result.incidents.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids.len(), 12_500);
    assert!(result.incidents.windows(2).all(|w| w[0].created_at_us <= w[1].created_at_us), "oldest first");
    let urls = transport.urls();
    assert_no_request_past_cap(&urls);
    assert_eq!(result.requests as usize, urls.len());
    let windows: Vec<&String> = urls.iter().filter(|u| u.contains("since=")).collect();
    assert!(!windows.is_empty());
    for url in &windows {
        assert!(!url.contains("date_range"), "{url}");
        assert!(url.contains("sort_by=created_at:asc"), "{url}");
    }
    // The last window reaches past now.
    let last_until = windows.iter().filter_map(|u| param(u, "until")).max().unwrap();
    assert!(DateTime::parse_from_rfc3339(&last_until).unwrap().timestamp() > NOW_S);
}

#[test]
fn a_window_that_reaches_the_cap_continues_from_its_latest_incident() {
    // 10,050 in the first listing, then a dense window of 10,200 within one day.
    let mut rows: Vec<Row> = (0..10_050).map(|i| open(&format!("A{i:05}"), NOW_S - 300 * 86_400 + i as i64)).collect();
    rows.extend((0..10_200).map(|i| open(&format!("B{i:05}"), NOW_S - 100 * 86_400 + i as i64 * 5)));
    let transport = Scripted::new(|url| mini_pagerduty(&rows, url));
    let result = run(&transport).unwrap();
    assert_eq!(result.incidents.len(), 20_250);
    assert_no_request_past_cap(&transport.urls());
}

#[test]
fn more_than_10000_in_one_second_is_an_error_not_a_truncation() {
    let rows: Vec<Row> = (0..10_050).map(|i| open(&format!("P{i:05}"), NOW_S - 3_600)).collect();
    let transport = Scripted::new(|url| mini_pagerduty(&rows, url));
    let error = run(&transport).unwrap_err();
    assert!(matches!(error, SyncError::TooManyIncidents { .. }), "{error}");
    assert!(error.is_permanent());
    assert_eq!(
        error.to_string(),
        "too many open PagerDuty incidents to sync completely: more than 10000 open incidents created within one \
         second, more than PagerDuty can page through"
    );
    assert_no_request_past_cap(&transport.urls());
}

#[test]
fn errors_are_the_on_call_syncs_with_the_incidents_scope() {
    let transport = Scripted::new(|_| status(403, &[], r#"{"error":{"message":"Access Denied","code":2010}}"#));
    let error = run(&transport).unwrap_err();
    assert_eq!(error.to_string(), "PagerDuty refused: the token lacks scope incidents.read (403): Access Denied (code 2010)");
    assert!(error.is_permanent());

    let transport = Scripted::new(|_| status(503, &[], ""));
    let error = run(&transport).unwrap_err();
    assert_eq!(transport.urls().len(), 3, "5xx retried like the on-call sync");
    assert_eq!(error.to_string(), "PagerDuty server error 503 after 3 attempts");

    let transport = Scripted::new(|_| status(429, &[("ratelimit-reset", "120")], ""));
    let error = run(&transport).unwrap_err();
    assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(transport.urls().len(), 1);

    let mut calls = 0;
    let transport = Scripted::new(|_| {
        calls += 1;
        if calls == 1 {
            Err(TransportError::Timeout)
        } else {
            ok_json(json!({"incidents": [], "more": false}))
        }
    });
    assert_eq!(run(&transport).unwrap().requests, 2);

    let transport = Scripted::new(|_| Ok(HttpResponse::from_bytes(200, vec![], "<html>502</html>")));
    let error = run(&transport).unwrap_err();
    assert!(error.to_string().starts_with("invalid response from PagerDuty (page at offset 0): not valid JSON"), "{error}");
}

#[test]
fn a_full_page_without_more_is_an_error() {
    let page: Vec<_> = (0..100).map(|i| incident_json(&open(&format!("P{i}"), NOW_S), i)).collect();
    let transport = Scripted::new(|_| ok_json(json!({"incidents": page.clone()})));
    let error = run(&transport).unwrap_err().to_string();
    assert!(error.contains("a full page without `more`"), "{error}");
}

#[test]
fn the_token_never_shows() {
    let body = format!(r#"{{"error":{{"message":"bad token {TOKEN}","code":1}}}}"#);
    for code in [400u16, 403, 500] {
        let transport = Scripted::new(|_| status(code, &[], &body));
        let error = run(&transport).unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(!text.contains(TOKEN) && text.contains("[redacted]"), "{text}");
    }
    let cfg = SyncConfig { token: String::new(), ..sync_config() };
    let transport = Scripted::new(|_| panic!("no request expected"));
    let error = fetch_incidents_with_policy(&transport, &cfg, NOW_US, &AtomicBool::new(false), &FAST).unwrap_err();
    assert_eq!(error.to_string(), "PagerDuty sync misconfigured: no PagerDuty API token configured");
}

#[test]
fn cancel_before_the_first_request() {
    let transport = Scripted::new(|_| panic!("no request expected"));
    let error = fetch_incidents_with_policy(&transport, &sync_config(), NOW_US, &AtomicBool::new(true), &FAST).unwrap_err();
    assert_eq!(error, SyncError::Cancelled);
}
