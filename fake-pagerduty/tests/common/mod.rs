//! Shared helpers for the integration tests: a blocking ureq client that never turns
//! statuses into errors, and a raw TCP client for byte-level checks.
#![allow(dead_code)]

use fake_pagerduty::FakePagerDuty;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub const TOKEN: &str = "s3cret-token";
pub const ACCEPT: &str = "application/vnd.pagerduty+json;version=2";

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("status {} body is not JSON ({e}): {}", self.status, self.body))
    }
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(20)).build()
}

fn to_resp(r: ureq::Response) -> Resp {
    let status = r.status();
    let headers = r
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = r.header(&n).unwrap_or("").to_string();
            (n, v)
        })
        .collect();
    let body = r.into_string().expect("read body");
    Resp { status, headers, body }
}

/// Sends a request with exactly these extra headers; any status is returned, transport errors panic.
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    let mut req = agent().request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.send_string(b),
        None => req.call(),
    };
    match result {
        Ok(r) => to_resp(r),
        Err(ureq::Error::Status(_, r)) => to_resp(r),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

/// An authorized `GET` of `path_and_query` with the right Accept header.
pub fn get(fake: &FakePagerDuty, path_and_query: &str) -> Resp {
    let auth = format!("Token token={TOKEN}");
    send("GET", &format!("{}{}", fake.url(), path_and_query), &[("Authorization", &auth), ("Accept", ACCEPT)], None)
}

/// GET and return the parsed JSON body, asserting 200.
pub fn get_ok(fake: &FakePagerDuty, path_and_query: &str) -> Value {
    let r = get(fake, path_and_query);
    assert_eq!(r.status, 200, "GET {path_and_query}: {}", r.body);
    r.json()
}

pub fn admin(fake: &FakePagerDuty, method: &str, path: &str, body: Option<&str>) -> Resp {
    send(method, &format!("{}{}", fake.url(), path), &[], body)
}

pub fn auth_headers() -> String {
    format!("Authorization: Token token={TOKEN}\r\nAccept: {ACCEPT}\r\n")
}

/// Writes `request` verbatim on a fresh connection and reads until EOF or `timeout`.
/// Returns the bytes and whether the server closed the connection.
pub fn raw(port: u16, request: &str, timeout: Duration) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(request.as_bytes()).expect("write");
    let deadline = Instant::now() + timeout;
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if Instant::now() >= deadline {
                    return (out, false);
                }
            }
            Err(_) => return (out, true),
        }
    }
}

/// Splits a raw HTTP/1.1 response into status, lower-cased headers and body bytes.
pub fn split_response(bytes: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("complete response head");
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers, bytes[end + 4..].to_vec())
}

pub fn hdr<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

pub fn fixture(name: &str) -> String {
    let path = format!("{}/../fixtures/pagerduty/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
