//! The `/_admin/*` endpoints and the `fake-pagerduty` binary.

mod common;

use common::*;
use fake_pagerduty::FakePagerDuty;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCHEDULE: &str = r#"[
  {"email": "alice@example.com", "escalation_policy_id": "EP1", "escalation_level": 1,
   "start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"},
  {"email": "bob@example.com", "name": "Bobby", "user_id": "PBOB", "escalation_policy_id": "EP2",
   "escalation_level": 2, "schedule_id": null, "start": null, "end": null}
]"#;

#[test]
fn put_oncalls_replaces_the_schedule() {
    let fake = FakePagerDuty::start(TOKEN).unwrap();
    let r = admin(&fake, "PUT", "/_admin/oncalls", Some(SCHEDULE));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["oncalls"], 2);
    let page = get_ok(&fake, "/oncalls?include[]=users");
    let list = page["oncalls"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["user"]["email"], "alice@example.com");
    assert_eq!(list[0]["schedule"]["id"], "SCHED-EP1");
    assert_eq!(list[0]["start"], "2000-01-01T00:00:00Z");
    assert_eq!(list[1]["user"]["id"], "PBOB");
    assert_eq!(list[1]["user"]["name"], "Bobby");
    assert_eq!(list[1]["schedule"], Value::Null);

    let read_back = admin(&fake, "GET", "/_admin/oncalls", None).json();
    assert_eq!(read_back[1]["user_id"], "PBOB");
    assert_eq!(read_back[0]["end"], "2100-01-01T00:00:00Z");

    let bad = admin(
        &fake,
        "PUT",
        "/_admin/oncalls",
        Some(r#"[{"email":"x@y.z"}]"#),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"]["errors"][0]
        .as_str()
        .unwrap()
        .contains("entry 0"));
    // A rejected PUT leaves the schedule alone.
    assert_eq!(
        get_ok(&fake, "/oncalls")["oncalls"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    admin(&fake, "PUT", "/_admin/oncalls", Some("[]"));
    assert_eq!(get_ok(&fake, "/oncalls")["oncalls"], json!([]));
}

#[test]
fn post_faults_queues_each_format_and_delete_clears() {
    let fake = FakePagerDuty::start(TOKEN).unwrap();
    let post = |body: &str| {
        let r = admin(&fake, "POST", "/_admin/faults", Some(body));
        assert_eq!(r.status, 200, "{body}: {}", r.body);
    };

    post(
        r#"{"status":503,"body":{"error":{"message":"down","code":2000}},"headers":{"Retry-After":"1"}}"#,
    );
    let r = get(&fake, "/oncalls");
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
    assert_eq!(r.json()["error"]["message"], "down");

    post(r#"{"rate_limited":2}"#);
    let r = get(&fake, "/oncalls");
    assert_eq!((r.status, r.header("ratelimit-reset")), (429, Some("2")));

    post(r#"{"rate_limited":null}"#);
    let r = get(&fake, "/oncalls");
    assert_eq!(
        (r.status, r.header("ratelimit-reset"), r.body.as_str()),
        (429, None, "")
    );

    post(r#"{"delay_ms":300}"#);
    let started = Instant::now();
    assert_eq!(get(&fake, "/oncalls").status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    post(r#"{"garbage":true}"#);
    let r = get(&fake, "/oncalls");
    assert!(r.status == 200 && serde_json::from_str::<Value>(&r.body).is_err());

    post(r#"{"huge_bytes":100000}"#);
    let r = get(&fake, "/oncalls");
    assert_eq!(r.body.len(), 100_000);

    post(r#"{"truncated":true}"#);
    let (bytes, _) = raw(
        fake.port(),
        &format!("GET /oncalls HTTP/1.1\r\nHost: x\r\n{}\r\n", auth_headers()),
        Duration::from_secs(5),
    );
    let (status, headers, body) = split_response(&bytes);
    assert_eq!(status, 200);
    assert!(
        body.len()
            < hdr(&headers, "content-length")
                .unwrap()
                .parse::<usize>()
                .unwrap()
    );

    post(r#"{"hang":true}"#);
    let listed = admin(&fake, "GET", "/_admin/faults", None).json();
    assert_eq!(listed["queued"], json!([{"hang": true}]));

    // Arrays, times and persistent.
    post(r#"[{"status":500,"times":2},{"status":502,"persistent":true}]"#);
    let listed = admin(&fake, "GET", "/_admin/faults", None).json();
    assert_eq!(listed["queued"].as_array().unwrap().len(), 3);
    assert_eq!(listed["persistent"]["status"], 502);

    let cleared = admin(&fake, "DELETE", "/_admin/faults", None);
    assert_eq!(cleared.status, 200);
    assert_eq!(
        get(&fake, "/oncalls").status,
        200,
        "queue and persistent fault cleared"
    );

    for bad in [
        r#"{"status":503,"hang":true}"#,
        r#"{"nope":1}"#,
        "not json",
        r#"{"delay_ms":-1}"#,
    ] {
        let r = admin(&fake, "POST", "/_admin/faults", Some(bad));
        assert_eq!(r.status, 400, "{bad}");
    }
    assert_eq!(
        get(&fake, "/oncalls").status,
        200,
        "rejected faults are not queued"
    );
}

#[test]
fn admin_requests_lists_and_clears_recorded_requests() {
    let fake = FakePagerDuty::start(TOKEN).unwrap();
    get(&fake, "/oncalls?user_ids%5B%5D=P1");
    send("GET", &format!("{}/oncalls", fake.url()), &[], None);
    let list = admin(&fake, "GET", "/_admin/requests", None).json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["method"], "GET");
    assert_eq!(list[0]["path"], "/oncalls");
    assert_eq!(list[0]["query"], json!([["user_ids[]", "P1"]]));
    assert!(list[0]["headers"]
        .as_array()
        .unwrap()
        .contains(&json!(["accept", ACCEPT])));
    assert!(list[1]["at_ms"].as_f64().unwrap() >= list[0]["at_ms"].as_f64().unwrap());
    assert_eq!(admin(&fake, "DELETE", "/_admin/requests", None).status, 200);
    assert_eq!(
        admin(&fake, "GET", "/_admin/requests", None).json(),
        json!([])
    );
    assert!(fake.requests().is_empty());
}

#[test]
fn admin_raw_page_and_unknown_admin_paths() {
    let fake = FakePagerDuty::start(TOKEN).unwrap();
    let body = fixture("oncalls_list.json");
    assert_eq!(
        admin(&fake, "PUT", "/_admin/raw_page", Some(&body)).status,
        200
    );
    assert_eq!(get(&fake, "/oncalls").body, body);
    assert_eq!(admin(&fake, "DELETE", "/_admin/raw_page", None).status, 200);
    assert_eq!(get_ok(&fake, "/oncalls")["oncalls"], json!([]));
    assert_eq!(admin(&fake, "GET", "/_admin/nothing", None).status, 404);
    assert_eq!(
        admin(&fake, "PATCH", "/_admin/oncalls", Some("[]")).status,
        404
    );
}

#[test]
fn admin_accepts_chunked_and_expect_continue_bodies() {
    let fake = FakePagerDuty::start(TOKEN).unwrap();
    let body = r#"[{"email":"c@x.io","escalation_policy_id":"EP9","escalation_level":1}]"#;
    let (first, second) = body.split_at(20);
    let req = format!(
        "PUT /_admin/oncalls HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len()
    );
    let (bytes, _) = raw(fake.port(), &req, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"),
        "{text}"
    );
    assert_eq!(
        get_ok(&fake, "/oncalls")["oncalls"][0]["escalation_policy"]["id"],
        "EP9"
    );
}

#[test]
fn malformed_requests_get_400_not_a_hang() {
    let fake = FakePagerDuty::start(TOKEN).unwrap();
    let (bytes, closed) = raw(fake.port(), "NONSENSE\r\n\r\n", Duration::from_secs(5));
    assert!(closed);
    assert_eq!(split_response(&bytes).0, 400);
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn binary_prints_ready_line_and_serves_the_schedule_file() {
    let dir = std::env::temp_dir().join(format!("fake-pd-bin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "from-file-token\n").unwrap();
    let schedule = dir.join("schedule.json");
    std::fs::write(&schedule, SCHEDULE).unwrap();

    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_fake-pagerduty"))
            .args(["--port", "0", "--token-file"])
            .arg(&token_file)
            .arg("--schedule")
            .arg(&schedule)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim_end()
        .strip_prefix("fake-pagerduty listening on ")
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
        .to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with('/'),
        "{url}"
    );

    let r = send(
        "GET",
        &format!("{url}/oncalls?include[]=users"),
        &[
            ("Authorization", "Token token=from-file-token"),
            ("Accept", ACCEPT),
        ],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let emails: Vec<_> = r.json()["oncalls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["user"]["email"].clone())
        .collect();
    assert_eq!(
        emails,
        [json!("alice@example.com"), json!("bob@example.com")]
    );
    let wrong = send(
        "GET",
        &format!("{url}/oncalls"),
        &[
            ("Authorization", &format!("Token token={TOKEN}")),
            ("Accept", ACCEPT),
        ],
        None,
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(
        send("GET", &format!("{url}/_admin/requests"), &[], None)
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn binary_rejects_bad_arguments() {
    let out = Command::new(env!("CARGO_BIN_EXE_fake-pagerduty"))
        .args(["--port", "0", "--token-file", "/nonexistent/token"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token file"));
    let out = Command::new(env!("CARGO_BIN_EXE_fake-pagerduty"))
        .args(["--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}
