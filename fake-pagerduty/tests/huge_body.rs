//! `Fault::HugeBody` streams without the fake buffering it: its own test binary so the
//! process's resident memory is not disturbed by other tests.

mod common;

use common::*;
use fake_pagerduty::{FakePagerDuty, Fault};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_quarter_gigabyte_streams_in_constant_memory() {
    let fake = FakePagerDuty::start(TOKEN).unwrap();
    let n: u64 = 256 * 1024 * 1024;
    fake.push_fault(Fault::HugeBody { bytes: n });

    let mut s = TcpStream::connect(("127.0.0.1", fake.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET /oncalls HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
        auth_headers()
    )
    .unwrap();

    let before = rss_bytes();
    let mut peak = before;
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let mut body_bytes: u64 = 0;
    let mut since_sample: u64 = 0;
    loop {
        let k = s.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        if body_bytes == 0 && !head.ends_with(b"\r\n\r\n") {
            // Still in the head: find its end.
            head.extend_from_slice(&buf[..k]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                body_bytes = (head.len() - (i + 4)) as u64;
                head.truncate(i + 4);
            }
        } else {
            body_bytes += k as u64;
        }
        since_sample += k as u64;
        if since_sample > 8 * 1024 * 1024 {
            since_sample = 0;
            peak = peak.max(rss_bytes());
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains(&format!("content-length: {n}\r\n")), "{head}");
    assert_eq!(body_bytes, n);
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 48 * 1024 * 1024,
        "resident memory grew by {growth} bytes while streaming {n}"
    );
}
