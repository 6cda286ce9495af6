//! Each `Fault` variant, queue/persistent semantics, and the server staying responsive
//! (and not leaking connection threads) while delays and hangs are being served.

mod common;

use common::*;
use fake_pagerduty::{oncall, FakePagerDuty, Fault};
use serde_json::{json, Value};
use std::io::Read;
use std::time::{Duration, Instant};

fn fake() -> FakePagerDuty {
    let fake = FakePagerDuty::start(TOKEN).unwrap();
    fake.set_oncalls(
        (0..40)
            .map(|i| oncall(&format!("u{i:02}@x.io"), "EP1", 1))
            .collect(),
    );
    fake
}

fn raw_get(fake: &FakePagerDuty, path: &str) -> (Vec<u8>, bool) {
    raw(
        fake.port(),
        &format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
            auth_headers()
        ),
        Duration::from_secs(10),
    )
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn status_faults_are_consumed_fifo_then_normal_answers_resume() {
    let fake = fake();
    fake.push_fault(Fault::Status {
        code: 503,
        body: Some(r#"{"error":{"message":"Service Unavailable","code":2000}}"#.into()),
        headers: vec![("Retry-After".into(), "7".into())],
    });
    fake.push_fault(Fault::Status {
        code: 500,
        body: None,
        headers: vec![],
    });
    // Faults are not consumed by other paths.
    assert_eq!(get(&fake, "/users").status, 404);

    let first = get(&fake, "/oncalls");
    assert_eq!(first.status, 503);
    assert_eq!(first.header("retry-after"), Some("7"));
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.json()["error"]["code"], 2000);
    let second = get(&fake, "/oncalls");
    assert_eq!(second.status, 500);
    assert_eq!(second.body, "");
    assert_eq!(get(&fake, "/oncalls").status, 200);
    // Faulted requests are recorded too.
    let paths: Vec<_> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/users", "/oncalls", "/oncalls", "/oncalls"]);
}

#[test]
fn faults_apply_before_auth() {
    let fake = fake();
    fake.push_fault(Fault::Status {
        code: 502,
        body: None,
        headers: vec![],
    });
    let r = send("GET", &format!("{}/oncalls", fake.url()), &[], None);
    assert_eq!(r.status, 502);
    let r = send("GET", &format!("{}/oncalls", fake.url()), &[], None);
    assert_eq!(r.status, 401);
}

#[test]
fn persistent_fault_applies_after_the_queue_until_cleared() {
    let fake = fake();
    fake.set_persistent_fault(Some(Fault::Status {
        code: 503,
        body: None,
        headers: vec![],
    }));
    fake.push_fault(Fault::Status {
        code: 418,
        body: None,
        headers: vec![],
    });
    assert_eq!(get(&fake, "/oncalls").status, 418);
    for _ in 0..3 {
        assert_eq!(get(&fake, "/oncalls").status, 503);
    }
    fake.set_persistent_fault(None);
    assert_eq!(get(&fake, "/oncalls").status, 200);
}

#[test]
fn rate_limited_with_reset_has_documented_body_and_headers() {
    let fake = fake();
    fake.push_fault(Fault::RateLimited {
        reset_secs: Some(3),
    });
    let r = get(&fake, "/oncalls");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("ratelimit-reset"), Some("3"));
    assert_eq!(r.header("ratelimit-limit"), Some("960"));
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    let documented: Value = serde_json::from_str(&fixture("error_429.json")).unwrap();
    assert_eq!(r.json(), documented);
}

#[test]
fn bare_rate_limit_has_no_headers_and_no_body() {
    let fake = fake();
    fake.push_fault(Fault::RateLimited { reset_secs: None });
    let (bytes, _) = raw_get(&fake, "/oncalls");
    let (status, headers, body) = split_response(&bytes);
    assert_eq!(status, 429);
    assert!(body.is_empty());
    assert_eq!(hdr(&headers, "content-length"), Some("0"));
    assert_eq!(hdr(&headers, "content-type"), None);
    assert!(
        !headers.iter().any(|(n, _)| n.starts_with("ratelimit")),
        "{headers:?}"
    );
}

#[test]
fn delay_answers_late_while_other_clients_are_served() {
    let fake = fake();
    fake.push_fault(Fault::Delay(Duration::from_millis(800)));
    let url = fake.url();
    let slow = std::thread::spawn(move || {
        let started = Instant::now();
        let auth = format!("Token token={TOKEN}");
        let r = send(
            "GET",
            &format!("{url}/oncalls"),
            &[("Authorization", &auth), ("Accept", ACCEPT)],
            None,
        );
        (
            r.status,
            r.json()["oncalls"].as_array().map(Vec::len),
            started.elapsed(),
        )
    });
    wait_until(
        "the delayed request to arrive",
        Duration::from_secs(5),
        || fake.requests().len() == 1,
    );
    let started = Instant::now();
    assert_eq!(get(&fake, "/oncalls").status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "blocked behind the delay"
    );
    let (status, count, elapsed) = slow.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(count, Some(25), "normal answer after the delay");
    assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}");
}

#[test]
fn truncated_body_is_really_cut_short() {
    let fake = fake();
    fake.push_fault(Fault::Truncated);
    let (bytes, closed) = raw_get(&fake, "/oncalls?limit=40");
    assert!(closed, "server must close after the partial body");
    let (status, headers, body) = split_response(&bytes);
    assert_eq!(status, 200);
    let announced: usize = hdr(&headers, "content-length").unwrap().parse().unwrap();
    assert!(announced > 1000, "announces the full page ({announced})");
    assert_eq!(body.len(), announced / 2);
    assert!(body.starts_with(b"{\"oncalls\":["));
    assert!(serde_json::from_slice::<Value>(&body).is_err());

    // A real client sees an error reading the body.
    fake.push_fault(Fault::Truncated);
    let auth = format!("Token token={TOKEN}");
    let resp = agent()
        .get(&format!("{}/oncalls", fake.url()))
        .set("Authorization", &auth)
        .set("Accept", ACCEPT)
        .call()
        .unwrap();
    assert!(resp.into_string().is_err());
}

#[test]
fn garbage_is_200_but_not_json() {
    let fake = fake();
    fake.push_fault(Fault::Garbage);
    let r = get(&fake, "/oncalls");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().contains("json"));
    assert!(!r.body.is_empty());
    assert!(serde_json::from_str::<Value>(&r.body).is_err());
}

#[test]
fn huge_body_streams_exactly_n_bytes_of_an_unterminated_string() {
    let fake = fake();
    let n: u64 = 3 * 1024 * 1024 + 17;
    fake.push_fault(Fault::HugeBody { bytes: n });
    let auth = format!("Token token={TOKEN}");
    let resp = agent()
        .get(&format!("{}/oncalls", fake.url()))
        .set("Authorization", &auth)
        .set("Accept", ACCEPT)
        .call()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.header("content-length"), Some(n.to_string().as_str()));
    let mut reader = resp.into_reader();
    let mut head = [0u8; 27];
    reader.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"{\"oncalls\":[{\"user\":{\"id\":\"");
    let rest = std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
    assert_eq!(rest + 27, n);

    // Tiny sizes are honoured exactly, too.
    fake.push_fault(Fault::HugeBody { bytes: 5 });
    let (bytes, _) = raw_get(&fake, "/oncalls");
    let (_, _, body) = split_response(&bytes);
    assert_eq!(body, b"{\"onc");
}

#[test]
fn hang_never_answers_but_the_server_stays_responsive_and_frees_the_thread() {
    let fake = fake();
    fake.push_fault(Fault::Hang);
    let patient = ureq::AgentBuilder::new()
        .timeout_read(Duration::from_millis(400))
        .build();
    let auth = format!("Token token={TOKEN}");
    let started = Instant::now();
    let r = patient
        .get(&format!("{}/oncalls", fake.url()))
        .set("Authorization", &auth)
        .set("Accept", ACCEPT)
        .call();
    assert!(r.is_err(), "a hung request must not get an answer");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(fake.requests().len(), 1, "the hung request is recorded");
    drop(patient); // closes the connection
    assert_eq!(get(&fake, "/oncalls").status, 200);
    wait_until(
        "the hung connection to be released",
        Duration::from_secs(5),
        || fake.active_connections() == 0,
    );
}

#[test]
fn dropping_the_fake_releases_hung_connections() {
    let fake = fake();
    fake.push_fault(Fault::Hang);
    let port = fake.port();
    let client = std::thread::spawn(move || {
        raw(
            port,
            &format!("GET /oncalls HTTP/1.1\r\nHost: x\r\n{}\r\n", auth_headers()),
            Duration::from_secs(10),
        )
    });
    wait_until("the hung request", Duration::from_secs(5), || {
        fake.requests().len() == 1
    });
    let started = Instant::now();
    drop(fake);
    let (bytes, closed) = client.join().unwrap();
    assert!(closed, "client sees the connection closed");
    assert!(bytes.is_empty(), "and no answer");
    assert!(started.elapsed() < Duration::from_secs(5));
    // And the port no longer answers.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn many_concurrent_slow_requests_are_served_in_parallel() {
    let fake = fake();
    for _ in 0..8 {
        fake.push_fault(Fault::Delay(Duration::from_millis(500)));
    }
    let url = fake.url();
    let started = Instant::now();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let auth = format!("Token token={TOKEN}");
                send(
                    "GET",
                    &format!("{url}/oncalls"),
                    &[("Authorization", &auth), ("Accept", ACCEPT)],
                    None,
                )
                .status
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(json!(fake.requests().len()), json!(8));
}
