//! What every PagerDuty call shares, written once: settings validation, the headers, one HTTP
//! exchange classified into a body or a [`Failure`], the in-sync retry loop (429 waits, 5xx /
//! timeout / connection retries with jittered backoff, cancellation), offset pagination with
//! its consistency checks, and the small URL helpers.
//!
//! The on-call sync (`fetch`), the incident sync (`incidents`) and the notes calls (`notes`)
//! are built on it; none of them talks to the [`Transport`] directly.

use std::cell::Cell;
use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::backoff::{exponential, jittered, splitmix64};
use super::error::SyncError;
use super::limits::{MAX_PAGE_LIMIT, OFFSET_LIMIT_CAP};
use super::parse::parse_error_body;
use super::transport::{HttpResponse, Transport, TransportError};

const ERROR_BODY_CAP: u64 = 64 * 1024;
const READ_CHUNK: usize = 64 * 1024;
pub(crate) const ACCEPT: &str = "application/vnd.pagerduty+json;version=2";

/// How hard one page is retried inside a sync.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    /// Retries of a page answered 429 (so at most this + 1 attempts).
    pub rate_limit_retries: u32,
    /// First wait after a 429 without a `ratelimit-reset`; doubles per retry.
    pub rate_limit_backoff: Duration,
    /// Shortest wait after a 429, so `ratelimit-reset: 0` cannot spin.
    pub rate_limit_min_wait: Duration,
    /// Retries of a page after 5xx, 408, timeouts and connection failures.
    pub transient_retries: u32,
    /// First wait after such a failure; doubles per retry.
    pub transient_backoff: Duration,
    /// How often waits look at the cancel flag.
    pub cancel_poll: Duration,
}

impl RetryPolicy {
    pub(crate) const DEFAULT: RetryPolicy = RetryPolicy {
        rate_limit_retries: 4,
        rate_limit_backoff: Duration::from_secs(1),
        rate_limit_min_wait: Duration::from_millis(100),
        transient_retries: 2,
        transient_backoff: Duration::from_millis(500),
        cancel_poll: Duration::from_millis(50),
    };
}

/// The settings every call needs (borrowed from a `SyncConfig` or a `NoteConfig`).
pub(crate) struct Settings<'a> {
    pub api_url: &'a str,
    pub token: &'a str,
    pub http_timeout: Duration,
    pub max_body_bytes: u64,
    pub max_rate_limit_wait: Duration,
    /// The scope a 403 from these endpoints means is missing, e.g. `oncalls.read`.
    pub scope: &'static str,
}

/// One request to send.
pub(crate) enum Method<'b> {
    Get,
    /// A JSON body, sent with `Content-Type: application/json`, plus extra headers (`From`).
    PostJson {
        body: &'b [u8],
        headers: &'b [(&'b str, &'b str)],
    },
}

/// Why one exchange yielded no usable 2xx body.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The URL cannot be requested at all.
    InvalidUrl(String),
    Cancelled,
    /// No complete answer within the HTTP timeout (the request may have been processed).
    Timeout,
    /// Connecting or reading failed (the request may have been processed).
    Connection(String),
    /// A 2xx body over `max_body_bytes`.
    BodyTooLarge,
    /// 429, with PagerDuty's reset when it sent one.
    RateLimited {
        reset: Option<Duration>,
    },
    /// Any other non-2xx status, with PagerDuty's explanation and `retry-after` if any.
    Status {
        status: u16,
        message: Option<String>,
        retry_after: Option<Duration>,
    },
}

/// How a paginated query ended.
pub(crate) enum Paged {
    /// `more` was false: every row of the query was handed over.
    Complete,
    /// `more` was still true when the next page would pass [`OFFSET_LIMIT_CAP`].
    CapReached,
}

/// What pagination needs to know about one parsed page.
pub(crate) struct PageInfo {
    pub rows: usize,
    /// `None` when the field was absent (only trusted on a short page).
    pub more: Option<bool>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

enum Transient {
    Timeout,
    Connection(String),
    Server { status: u16, message: Option<String>, retry_after: Option<Duration> },
}

pub(crate) struct Client<'a> {
    transport: &'a dyn Transport,
    cancel: &'a AtomicBool,
    retry: &'a RetryPolicy,
    base_url: String,
    authorization: String,
    user_agent: String,
    http_timeout: Duration,
    max_body_bytes: u64,
    max_rate_limit_wait: Duration,
    scope: &'static str,
    /// HTTP requests sent, retries included.
    pub requests: u32,
    /// Pages successfully received by [`Client::paginate`].
    pub pages: u32,
    jitter_seed: Cell<u64>,
}

impl<'a> Client<'a> {
    /// Validates the settings; `Err` is a sentence for a configuration error (never the token).
    pub(crate) fn new(
        transport: &'a dyn Transport,
        settings: &Settings<'_>,
        jitter_seed: u64,
        cancel: &'a AtomicBool,
        retry: &'a RetryPolicy,
    ) -> Result<Self, String> {
        let token = settings.token;
        if token.is_empty() {
            return Err("no PagerDuty API token configured".into());
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the PagerDuty API token contains spaces, control or non-ASCII characters".into());
        }
        let base_url = validate_api_url(settings.api_url)?;
        if settings.http_timeout.is_zero() {
            return Err("the HTTP timeout must be positive".into());
        }
        if settings.max_body_bytes == 0 {
            return Err("the maximum body size must be positive".into());
        }
        Ok(Client {
            transport,
            cancel,
            retry,
            base_url,
            authorization: format!("Token token={token}"),
            user_agent: format!("pg_oncall/{}", env!("CARGO_PKG_VERSION")),
            http_timeout: settings.http_timeout,
            max_body_bytes: settings.max_body_bytes,
            max_rate_limit_wait: settings.max_rate_limit_wait,
            scope: settings.scope,
            requests: 0,
            pages: 0,
            jitter_seed: Cell::new(splitmix64(jitter_seed)),
        })
    }

    /// The API URL without trailing slashes, e.g. `https://api.pagerduty.com`.
    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(crate) fn http_timeout(&self) -> Duration {
        self.http_timeout
    }

    /// The scope a 403 from these endpoints means is missing.
    pub(crate) fn scope(&self) -> &'static str {
        self.scope
    }

    /// One exchange, no retry: the 2xx body (read under the cap), or why there is none.
    pub(crate) fn attempt(&mut self, url: &str, method: &Method<'_>) -> Result<Vec<u8>, Failure> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Failure::Cancelled);
        }
        self.requests = self.requests.saturating_add(1);
        let mut headers =
            vec![("Authorization", self.authorization.as_str()), ("Accept", ACCEPT), ("User-Agent", self.user_agent.as_str())];
        let sent = match method {
            Method::Get => self.transport.get(url, &headers),
            Method::PostJson { body, headers: extra } => {
                headers.push(("Content-Type", "application/json"));
                headers.extend_from_slice(extra);
                self.transport.post(url, &headers, body)
            }
        };
        let response = match sent {
            Err(TransportError::InvalidUrl(detail)) => return Err(Failure::InvalidUrl(detail)),
            Err(TransportError::Timeout) => return Err(Failure::Timeout),
            Err(TransportError::Connection(detail)) => return Err(Failure::Connection(detail)),
            Ok(response) => response,
        };
        match response.status {
            200..=299 => self.read_body(response),
            429 => Err(Failure::RateLimited { reset: rate_limit_reset(&response) }),
            status => {
                let retry_after = header_seconds(&response, "retry-after");
                Err(Failure::Status { status, message: error_message(response), retry_after })
            }
        }
    }

    /// The body of a 2xx answer to a GET of `url`, after the retries the failure calls for.
    /// `offset` only names the page in errors.
    pub(crate) fn get_with_retries(&mut self, url: &str, offset: u32) -> Result<Vec<u8>, SyncError> {
        let mut rate_limited: u32 = 0;
        let mut transient: u32 = 0;
        let first_request = self.requests;
        loop {
            let result = self.attempt(url, &Method::Get);
            let attempts = self.requests - first_request;
            let failure = match result {
                Ok(body) => return Ok(body),
                Err(Failure::InvalidUrl(detail)) => {
                    return Err(SyncError::Config(format!("the PagerDuty API URL cannot be requested: {detail}")))
                }
                Err(Failure::Cancelled) => return Err(SyncError::Cancelled),
                Err(Failure::BodyTooLarge) => return Err(SyncError::BodyTooLarge { offset, limit: self.max_body_bytes }),
                Err(Failure::Timeout) => Transient::Timeout,
                Err(Failure::Connection(detail)) => Transient::Connection(detail),
                Err(Failure::RateLimited { reset }) => {
                    rate_limited += 1;
                    if reset.is_some_and(|reset| reset > self.max_rate_limit_wait) {
                        return Err(SyncError::RateLimited { attempts, retry_after: reset, max_wait_exceeded: true });
                    }
                    if rate_limited > self.retry.rate_limit_retries {
                        return Err(SyncError::RateLimited { attempts, retry_after: reset, max_wait_exceeded: false });
                    }
                    let wait = reset
                        .unwrap_or_else(|| {
                            self.jitter(exponential(self.retry.rate_limit_backoff, rate_limited, self.max_rate_limit_wait))
                        })
                        .min(self.max_rate_limit_wait)
                        .max(self.retry.rate_limit_min_wait);
                    self.sleep(wait)?;
                    continue;
                }
                Err(Failure::Status { status, message, retry_after }) => match status {
                    401 => return Err(SyncError::Unauthorized),
                    403 => return Err(SyncError::Forbidden { scope: self.scope(), message }),
                    400 => return Err(SyncError::BadRequest { offset, message }),
                    408 | 500..=599 => Transient::Server { status, message, retry_after },
                    _ => return Err(SyncError::HttpStatus { status, offset, message }),
                },
            };
            transient += 1;
            if transient > self.retry.transient_retries {
                return Err(match failure {
                    Transient::Timeout => SyncError::Timeout { attempts, timeout: self.http_timeout },
                    Transient::Connection(detail) => SyncError::Connection { attempts, detail },
                    Transient::Server { status, message, retry_after } => {
                        SyncError::ServerError { status, attempts, message, retry_after }
                    }
                });
            }
            let mut wait = self.jitter(exponential(self.retry.transient_backoff, transient, Duration::from_secs(30)));
            if let Transient::Server { retry_after: Some(asked), .. } = failure {
                wait = wait.max(asked.min(self.max_rate_limit_wait));
            }
            self.sleep(wait)?;
        }
    }

    /// Pages through one query from offset 0: `url(offset, limit)` names each page, `take`
    /// parses a body and keeps its rows. Stops when `more` is false, or before a page that
    /// would pass [`OFFSET_LIMIT_CAP`] ([`Paged::CapReached`]). An inconsistent answer (wrong
    /// offset echoed, a full page without `more`, `more` on an empty page) is an error.
    pub(crate) fn paginate(
        &mut self,
        url: impl Fn(u32, u32) -> String,
        mut take: impl FnMut(Vec<u8>) -> Result<PageInfo, SyncError>,
    ) -> Result<Paged, SyncError> {
        let mut offset: u32 = 0;
        loop {
            if offset >= OFFSET_LIMIT_CAP {
                return Ok(Paged::CapReached);
            }
            let limit = MAX_PAGE_LIMIT.min(OFFSET_LIMIT_CAP - offset);
            let body = self.get_with_retries(&url(offset, limit), offset)?;
            let page = take(body).map_err(|e| e.with_offset(offset))?;
            self.pages = self.pages.saturating_add(1);
            if let Some(echoed) = page.offset {
                if echoed != offset {
                    return Err(inconsistent(offset, format!("PagerDuty answered offset {echoed}")));
                }
            }
            // PagerDuty may serve fewer rows than asked (it echoes the limit it used): only a
            // page shorter than both is known to be the last when `more` is missing.
            let page_size = match page.limit {
                None | Some(0) => limit,
                Some(echoed) => echoed.min(limit),
            };
            let more = match page.more {
                Some(more) => more,
                None if page.rows < page_size as usize => false,
                None => return Err(inconsistent(offset, "a full page without `more`: cannot tell whether rows follow".into())),
            };
            if !more {
                return Ok(Paged::Complete);
            }
            if page.rows == 0 {
                return Err(inconsistent(offset, "`more` is true but the page is empty".into()));
            }
            offset = offset.saturating_add(u32::try_from(page.rows).unwrap_or(u32::MAX));
        }
    }

    /// Reads at most `max_body_bytes`; one byte more is an error, never a truncation.
    fn read_body(&self, response: HttpResponse) -> Result<Vec<u8>, Failure> {
        let max = self.max_body_bytes;
        let declared = header_u64(&response, "content-length");
        if declared.is_some_and(|length| length > max) {
            return Err(Failure::BodyTooLarge);
        }
        let capacity = declared.unwrap_or(0).min(max).min(8 * 1024 * 1024);
        let mut body = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        let mut reader = response.body.take(max.saturating_add(1));
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Failure::Cancelled);
            }
            match reader.read(&mut chunk) {
                Ok(0) => return Ok(body),
                Ok(n) => {
                    if body.len() as u64 + n as u64 > max {
                        return Err(Failure::BodyTooLarge);
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => return Err(Failure::Timeout),
                Err(e) => return Err(Failure::Connection(format!("the response was cut off ({e})"))),
            }
        }
    }

    fn check_cancel(&self) -> Result<(), SyncError> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(SyncError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Sleeps `wait`, returning early with [`SyncError::Cancelled`] once the flag is set.
    fn sleep(&self, wait: Duration) -> Result<(), SyncError> {
        let started = Instant::now();
        loop {
            self.check_cancel()?;
            let elapsed = started.elapsed();
            if elapsed >= wait {
                return Ok(());
            }
            thread::sleep((wait - elapsed).min(self.retry.cancel_poll));
        }
    }

    fn jitter(&self, nominal: Duration) -> Duration {
        self.jitter_seed.set(splitmix64(self.jitter_seed.get()));
        jittered(nominal, self.jitter_seed.get())
    }
}

/// PagerDuty's explanation from an error answer, if it sent a readable one.
fn error_message(response: HttpResponse) -> Option<String> {
    let mut body = Vec::new();
    let mut reader = response.body.take(ERROR_BODY_CAP);
    // A cut-off error body still often parses; a broken one just yields no message.
    let _ = reader.read_to_end(&mut body);
    parse_error_body(&body)
}

pub(crate) fn inconsistent(offset: u32, detail: String) -> SyncError {
    SyncError::InvalidResponse { offset: Some(offset), detail }
}

/// The API URL without trailing slashes, or why it cannot be used.
fn validate_api_url(api_url: &str) -> Result<String, String> {
    let url = api_url.trim();
    let lower = url.to_ascii_lowercase();
    let scheme_len = ["https://", "http://"]
        .iter()
        .find(|scheme| lower.starts_with(*scheme))
        .map(|scheme| scheme.len())
        .ok_or_else(|| "the PagerDuty API URL must start with https:// or http://".to_string())?;
    let url = url.trim_end_matches('/');
    if url.len() <= scheme_len || url[scheme_len..].starts_with('/') {
        return Err("the PagerDuty API URL has no host".into());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
        return Err("the PagerDuty API URL must be a plain base URL (no spaces, query or fragment)".into());
    }
    Ok(url.to_string())
}

/// `2023-11-14T22:13:20Z`, or `None` outside years 0..=9999.
pub(crate) fn rfc3339_seconds(seconds: i64) -> Option<String> {
    let time: DateTime<Utc> = DateTime::from_timestamp(seconds, 0)?;
    if !(0..=9999).contains(&chrono::Datelike::year(&time)) {
        return None;
    }
    Some(time.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// RFC 3986 unreserved characters kept, every other byte `%XX`: safe in a query value and in a
/// path segment.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `ratelimit-reset` (seconds), else `retry-after` (seconds).
fn rate_limit_reset(response: &HttpResponse) -> Option<Duration> {
    header_seconds(response, "ratelimit-reset").or_else(|| header_seconds(response, "retry-after"))
}

fn header_seconds(response: &HttpResponse, name: &str) -> Option<Duration> {
    let seconds: f64 = response.header(name)?.trim().parse().ok()?;
    (seconds.is_finite() && (0.0..=86_400.0 * 365.0).contains(&seconds)).then(|| Duration::from_secs_f64(seconds))
}

fn header_u64(response: &HttpResponse, name: &str) -> Option<u64> {
    response.header(name)?.trim().parse().ok()
}
