//! A minimal HTTP/1.1 server on std::net: one thread per connection (bounded),
//! keep-alive, Content-Length and chunked request bodies, and the byte-level
//! replies the faults need (truncated, streamed, never-answered).

use crate::Shared;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often blocked reads/writes wake up to check whether the fake is being dropped.
const POLL: Duration = Duration::from_millis(100);
/// A keep-alive connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A write making no progress this long is abandoned.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// `Fault::Hang` gives up after this long.
pub(crate) const HANG_LIMIT: Duration = Duration::from_secs(120);
/// At most this many connections are served at once; more get a 503 and are closed.
pub(crate) const MAX_CONNECTIONS: usize = 256;
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 32 * 1024 * 1024;

/// A parsed request.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What to send back.
pub(crate) enum Reply {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// 200 with `Content-Length: body.len()`, but only the first half is sent, then close.
    Truncated {
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// 200 streaming `bytes` bytes of an unterminated JSON string.
    Stream {
        bytes: u64,
    },
    /// Never answer.
    Hang,
    /// Close without answering (the fake is stopping).
    Close,
}

impl Reply {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Full {
            status,
            headers: vec![("Content-Type".to_string(), "application/json; charset=utf-8".to_string())],
            body: body.into(),
        }
    }
}

/// Accepts connections until `shared.stop` is set (the owner then connects once to wake us).
pub(crate) fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if shared.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.set_write_timeout(Some(POLL));
            let body = crate::error_body::error_body(
                "Service Unavailable",
                2000,
                &["fake-pagerduty: too many open connections".to_string()],
            );
            let mut s = &stream;
            let _ = s.write_all(&head(503, &json_headers(), body.len() as u64, false));
            let _ = s.write_all(body.as_bytes());
            continue;
        }
        let shared2 = Arc::clone(&shared);
        let spawned = std::thread::Builder::new().name("fake-pagerduty-conn".to_string()).spawn(move || {
            let _guard = ActiveGuard(Arc::clone(&shared2));
            serve(stream, &shared2);
        });
        if spawned.is_err() {
            shared.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn json_headers() -> Vec<(String, String)> {
    vec![("Content-Type".to_string(), "application/json; charset=utf-8".to_string())]
}

enum ReadError {
    /// Peer closed, idle timeout, or the fake is stopping: just close.
    Closed,
    /// Malformed request: answer with this status and message, then close.
    Bad(u16, String),
}

struct Conn<'a> {
    stream: TcpStream,
    buf: Vec<u8>,
    shared: &'a Shared,
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(POLL));
    let _ = stream.set_write_timeout(Some(POLL));
    let _ = stream.set_nodelay(true);
    let mut conn = Conn { stream, buf: Vec::new(), shared };
    loop {
        let req = match conn.read_request() {
            Ok(r) => r,
            Err(ReadError::Closed) => return,
            Err(ReadError::Bad(status, msg)) => {
                let message = if status == 400 { "Bad Request" } else { reason(status) };
                let body = crate::error_body::error_body(message, 2001, &[msg]);
                let reply = Reply::json(status, body);
                let _ = conn.send(reply, false);
                return;
            }
        };
        let keep_alive = req.keep_alive;
        let reply = crate::dispatch(shared, &req);
        match conn.send(reply, keep_alive) {
            Ok(true) => continue,
            _ => {
                let _ = conn.stream.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

impl Conn<'_> {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    /// Reads more bytes into `buf`. EOF, errors, stop and `deadline` all end the connection.
    fn fill(&mut self, deadline: Instant) -> Result<(), ReadError> {
        let mut tmp = [0u8; 16 * 1024];
        loop {
            if self.stopping() {
                return Err(ReadError::Closed);
            }
            match self.stream.read(&mut tmp) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(());
                }
                Err(e) if is_timeout(&e) => {
                    if Instant::now() >= deadline {
                        return Err(ReadError::Closed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(ReadError::Closed),
            }
        }
    }

    fn read_request(&mut self) -> Result<Request, ReadError> {
        let deadline = Instant::now() + IDLE_TIMEOUT;
        let head_end = loop {
            // RFC 9112: ignore empty lines before the request line.
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ReadError::Bad(431, "request head too large".into()));
            }
            self.fill(deadline)?;
        };
        let head_bytes: Vec<u8> = self.buf.drain(..head_end + 4).collect();
        let head = String::from_utf8_lossy(&head_bytes[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        let mut parts = request_line.split(' ').filter(|p| !p.is_empty());
        let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(m), Some(t), Some(v), None) if v.starts_with("HTTP/1.") => (m, t, v),
            _ => return Err(ReadError::Bad(400, format!("malformed request line {request_line:?}"))),
        };
        let mut headers = Vec::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                return Err(ReadError::Bad(400, format!("malformed header line {line:?}")));
            };
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let connection = header("connection").unwrap_or_default().to_ascii_lowercase();
        let keep_alive = if version == "HTTP/1.0" { connection.contains("keep-alive") } else { !connection.contains("close") };

        // Strip an absolute-form target down to origin-form.
        let mut target = target;
        if let Some(rest) = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://")) {
            target = rest.find('/').map_or("/", |i| &rest[i..]);
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, parse_query(q)),
            None => (target, Vec::new()),
        };

        let chunked = header("transfer-encoding").map(|v| v.to_ascii_lowercase().contains("chunked")).unwrap_or(false);
        let content_length = match header("content-length") {
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) => Some(n),
                Err(_) => return Err(ReadError::Bad(400, format!("bad Content-Length {v:?}"))),
            },
            None => None,
        };
        let has_body = chunked || content_length.unwrap_or(0) > 0;
        if has_body && header("expect").map(|v| v.eq_ignore_ascii_case("100-continue")).unwrap_or(false) {
            let _ = self.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let body = if chunked {
            self.read_chunked(deadline)?
        } else if let Some(n) = content_length {
            if n > MAX_BODY {
                return Err(ReadError::Bad(413, "request body too large".into()));
            }
            while self.buf.len() < n {
                self.fill(deadline)?;
            }
            self.buf.drain(..n).collect()
        } else {
            Vec::new()
        };

        Ok(Request { method: method.to_string(), path: path.to_string(), query, headers, body, keep_alive })
    }

    fn read_line(&mut self, deadline: Instant) -> Result<String, ReadError> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ReadError::Bad(400, "chunk line too long".into()));
            }
            self.fill(deadline)?;
        }
    }

    fn read_chunked(&mut self, deadline: Instant) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line(deadline)?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_text, 16).map_err(|_| ReadError::Bad(400, format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line(deadline)?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(ReadError::Bad(413, "request body too large".into()));
            }
            while self.buf.len() < size + 2 {
                self.fill(deadline)?;
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// Writes everything, waking every POLL to check for stop; gives up after a long stall.
    fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        let mut last_progress = Instant::now();
        while !data.is_empty() {
            if self.stopping() {
                return Err(io::Error::other("fake stopping"));
            }
            match self.stream.write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    data = &data[n..];
                    last_progress = Instant::now();
                }
                Err(e) if is_timeout(&e) => {
                    if last_progress.elapsed() > WRITE_STALL_TIMEOUT {
                        return Err(e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends a reply; `Ok(true)` when the connection may be reused.
    fn send(&mut self, reply: Reply, keep_alive: bool) -> io::Result<bool> {
        match reply {
            Reply::Full { status, headers, body } => {
                // Caller-supplied framing headers (Fault::Status) win; we then close after.
                let custom_framing = headers.iter().any(|(n, _)| {
                    let n = n.to_ascii_lowercase();
                    n == "content-length" || n == "transfer-encoding" || n == "connection"
                });
                let keep = keep_alive && !custom_framing;
                let mut out = if custom_framing {
                    head_without_framing(status, &headers)
                } else {
                    head(status, &headers, body.len() as u64, keep)
                };
                out.extend_from_slice(&body);
                self.write_all(&out)?;
                let _ = self.stream.flush();
                Ok(keep)
            }
            Reply::Truncated { headers, body } => {
                let mut out = head(200, &headers, body.len() as u64, false);
                out.extend_from_slice(&body[..body.len() / 2]);
                self.write_all(&out)?;
                let _ = self.stream.flush();
                let _ = self.stream.shutdown(Shutdown::Both);
                Ok(false)
            }
            Reply::Stream { bytes } => {
                self.write_all(&head(200, &json_headers(), bytes, keep_alive))?;
                let prefix: &[u8] = b"{\"oncalls\":[{\"user\":{\"id\":\"";
                let filler = vec![b'x'; 64 * 1024];
                let mut left = bytes;
                let p = prefix.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                self.write_all(&prefix[..p])?;
                left -= p as u64;
                while left > 0 {
                    let n = filler.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.write_all(&filler[..n])?;
                    left -= n as u64;
                }
                let _ = self.stream.flush();
                Ok(keep_alive)
            }
            Reply::Hang => {
                let started = Instant::now();
                let mut tmp = [0u8; 4096];
                while !self.stopping() && started.elapsed() < HANG_LIMIT {
                    match self.stream.read(&mut tmp) {
                        Ok(0) => break, // the client gave up
                        Ok(_) => {}     // ignore anything else it sends
                        Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                Ok(false)
            }
            Reply::Close => Ok(false),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn head(status: u16, headers: &[(String, String)], content_length: u64, keep_alive: bool) -> Vec<u8> {
    let mut out = head_without_framing(status, headers);
    out.truncate(out.len() - 2); // reopen the header block
    out.extend_from_slice(format!("Content-Length: {content_length}\r\n").as_bytes());
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n".as_slice()
    } else {
        b"Connection: close\r\n\r\n".as_slice()
    });
    out
}

fn head_without_framing(status: u16, headers: &[(String, String)]) -> Vec<u8> {
    let mut s = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    s.push_str(&format!("Date: {}\r\n", chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT")));
    for (name, value) in headers {
        s.push_str(&format!("{name}: {value}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Splits a query string into percent-decoded pairs (`+` is a space), keeping order and repeats.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(pair), String::new()),
        })
        .collect()
}

/// A percent-decoded path segment (`+` stays `+`).
pub(crate) fn percent_decode_path(s: &str) -> String {
    decode(s, false)
}

fn percent_decode(s: &str) -> String {
    decode(s, true)
}

fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_bracketed_keys_plus_and_bad_escapes() {
        let q = parse_query("include%5B%5D=users&user_ids[]=A&since=2024-01-01T00%3A00%3A00%2B02%3A00&x=a+b&y=%zz&z=%4");
        assert_eq!(q[0], ("include[]".into(), "users".into()));
        assert_eq!(q[1], ("user_ids[]".into(), "A".into()));
        assert_eq!(q[2], ("since".into(), "2024-01-01T00:00:00+02:00".into()));
        assert_eq!(q[3], ("x".into(), "a b".into()));
        assert_eq!(q[4], ("y".into(), "%zz".into()));
        assert_eq!(q[5], ("z".into(), "%4".into()));
    }
}
