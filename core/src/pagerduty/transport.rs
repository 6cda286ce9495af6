//! HTTP for the client: the [`Transport`] seam (so tests can inject answers) and the production
//! [`UreqTransport`] (ureq 2 + rustls, a whole-request deadline, no redirects, no env proxy).
//! Reading bodies under a byte cap is done by the caller, from [`HttpResponse::body`].

use std::error::Error as _;
use std::fmt;
use std::io::{self, Read};
use std::time::Duration;

/// One HTTP answer. Any status is a response, not an error; the body is read lazily so the
/// caller can stop after its byte cap.
pub struct HttpResponse {
    pub status: u16,
    /// Header names as sent; look them up with [`HttpResponse::header`] (case-insensitive).
    pub headers: Vec<(String, String)>,
    pub body: Box<dyn Read + Send>,
}

impl HttpResponse {
    /// A response whose body is already in memory (for tests and fakes).
    pub fn from_bytes(status: u16, headers: Vec<(String, String)>, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse { status, headers, body: Box::new(io::Cursor::new(body.into())) }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse").field("status", &self.status).field("headers", &self.headers).finish()
    }
}

/// Why no response arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The deadline passed (connecting, sending or waiting for the headers).
    Timeout,
    /// DNS, refused, reset, TLS, malformed HTTP: worth a retry.
    Connection(String),
    /// The URL cannot be requested at all: not worth a retry.
    InvalidUrl(String),
}

/// Sends requests. Implementations must not panic and must bound their own waiting.
pub trait Transport {
    /// `headers` are `(name, value)` pairs; the value of `Authorization` is secret and must not
    /// appear in any error.
    fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<HttpResponse, TransportError>;

    /// A POST with `body` (its `Content-Type` among `headers`); same rules as [`Transport::get`].
    fn post(&self, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<HttpResponse, TransportError>;
}

/// Production transport: one agent (so one connection pool) per sync.
pub struct UreqTransport {
    agent: ureq::Agent,
}

impl UreqTransport {
    /// `timeout` bounds each request as a whole, body reading included.
    pub fn new(timeout: Duration) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout(timeout)
            // PagerDuty's API does not redirect; a redirect means a wrong URL, reported as such.
            .redirects(0)
            .build();
        UreqTransport { agent }
    }
}

impl Transport for UreqTransport {
    fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<HttpResponse, TransportError> {
        answer(with_headers(self.agent.get(url), headers).call())
    }

    fn post(&self, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<HttpResponse, TransportError> {
        answer(with_headers(self.agent.post(url), headers).send_bytes(body))
    }
}

fn with_headers(mut request: ureq::Request, headers: &[(&str, &str)]) -> ureq::Request {
    for (name, value) in headers {
        request = request.set(name, value);
    }
    request
}

/// Any status is an answer; only a missing answer is an error.
fn answer(result: Result<ureq::Response, ureq::Error>) -> Result<HttpResponse, TransportError> {
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(transport)) => return Err(classify(&transport)),
    };
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|name| {
            let value = response.header(&name)?.to_string();
            Some((name, value))
        })
        .collect();
    Ok(HttpResponse { status: response.status(), headers, body: Box::new(response.into_reader()) })
}

fn classify(transport: &ureq::Transport) -> TransportError {
    let mut source = transport.source();
    let mut root_cause = None;
    while let Some(error) = source {
        if let Some(io_error) = error.downcast_ref::<io::Error>() {
            if matches!(io_error.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) {
                return TransportError::Timeout;
            }
        }
        root_cause = Some(error.to_string());
        source = error.source();
    }
    // ureq's own Display starts with the full URL; say what failed without it.
    let mut detail = transport.kind().to_string();
    if let Some(message) = transport.message() {
        detail = format!("{detail}: {message}");
    }
    if let Some(cause) = root_cause {
        if !detail.contains(&cause) {
            detail = format!("{detail}: {cause}");
        }
    }
    match transport.kind() {
        ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => TransportError::InvalidUrl(detail),
        _ => TransportError::Connection(detail),
    }
}
