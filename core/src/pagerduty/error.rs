//! Why a sync failed, worded for a DBA reading `oncall.status().last_error`.
//! Display is one line, never holds the token (it is never stored here) and never dumps a body:
//! text that came from the network is stripped of control characters and shortened.

use std::fmt;
use std::time::Duration;

use super::fetch::OFFSET_LIMIT_CAP;
use super::parse::clean_text;

/// Longest piece of server-provided or detail text kept in an error.
pub(crate) const MAX_MESSAGE_CHARS: usize = 200;

/// A failed sync. Whatever the variant, the sync produced no rows: the caller keeps the previous
/// ones.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncError {
    /// The settings cannot make a valid request (URL, token, time window). Permanent.
    Config(String),
    /// 401. Permanent.
    Unauthorized,
    /// 403: the token lacks the `oncalls.read` scope. Permanent.
    Forbidden { message: Option<String> },
    /// 400: PagerDuty refused the arguments. Permanent.
    BadRequest { offset: u32, message: Option<String> },
    /// Any other unexpected status (3xx, 4xx other than 400/401/403/408/429). Permanent for 4xx.
    HttpStatus { status: u16, offset: u32, message: Option<String> },
    /// 5xx (or 408) still failing after the in-sync retries.
    ServerError { status: u16, attempts: u32, message: Option<String>, retry_after: Option<Duration> },
    /// 429 still in force after the in-sync retries, or a reset longer than `max_rate_limit_wait`
    /// (`max_wait_exceeded`); `retry_after` is PagerDuty's reset when it sent one.
    RateLimited { attempts: u32, retry_after: Option<Duration>, max_wait_exceeded: bool },
    /// No complete answer within `http_timeout`, every attempt.
    Timeout { attempts: u32, timeout: Duration },
    /// Connecting or reading failed (DNS, refused, TLS, connection cut mid-body), every attempt.
    Connection { attempts: u32, detail: String },
    /// A page's body exceeded `max_body_bytes`.
    BodyTooLarge { offset: u32, limit: u64 },
    /// A body that is not a well-formed `/oncalls` page (or an inconsistent pagination answer).
    /// `offset` is `None` when the error comes from [`super::parse_oncalls_page`] directly.
    InvalidResponse { offset: Option<u32>, detail: String },
    /// One escalation policy alone has more rows in the window than PagerDuty can page through.
    /// Permanent until `lookahead` shrinks.
    PolicyTooLarge { escalation_policy_id: String },
    /// The account is too large to fetch completely (see `detail`). Permanent until the lookahead
    /// shrinks or the account does.
    TooManyOncalls { detail: String },
    /// The cancel flag was set.
    Cancelled,
}

impl SyncError {
    /// How long PagerDuty asked us to wait, when it said so (429 `ratelimit-reset`, 5xx
    /// `retry-after`). The caller should not retry sooner.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SyncError::RateLimited { retry_after, .. } | SyncError::ServerError { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Retrying without a configuration change (token, scope, URL, lookahead) will not help.
    pub fn is_permanent(&self) -> bool {
        match self {
            SyncError::Config(_)
            | SyncError::Unauthorized
            | SyncError::Forbidden { .. }
            | SyncError::BadRequest { .. }
            | SyncError::PolicyTooLarge { .. }
            | SyncError::TooManyOncalls { .. } => true,
            SyncError::HttpStatus { status, .. } => (400..500).contains(status),
            SyncError::ServerError { .. }
            | SyncError::RateLimited { .. }
            | SyncError::Timeout { .. }
            | SyncError::Connection { .. }
            | SyncError::BodyTooLarge { .. }
            | SyncError::InvalidResponse { .. }
            | SyncError::Cancelled => false,
        }
    }

    pub(crate) fn with_offset(self, offset: u32) -> SyncError {
        match self {
            SyncError::InvalidResponse { offset: None, detail } => SyncError::InvalidResponse { offset: Some(offset), detail },
            other => other,
        }
    }
}

struct Message<'a>(&'a Option<String>);

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(m) => write!(f, ": {}", clean_text(m, MAX_MESSAGE_CHARS)),
            None => Ok(()),
        }
    }
}

pub(crate) struct Seconds(pub Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d < Duration::from_secs(1) {
            write!(f, "{} ms", d.as_millis())
        } else if d.subsec_millis() == 0 {
            write!(f, "{} s", d.as_secs())
        } else {
            write!(f, "{:.1} s", d.as_secs_f64())
        }
    }
}

fn attempts(n: u32) -> &'static str {
    if n == 1 {
        "attempt"
    } else {
        "attempts"
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Config(detail) => {
                write!(f, "PagerDuty sync misconfigured: {}", clean_text(detail, MAX_MESSAGE_CHARS))
            }
            SyncError::Unauthorized => write!(f, "PagerDuty rejected the API token (401)"),
            SyncError::Forbidden { message } => {
                write!(f, "PagerDuty refused: the token lacks scope oncalls.read (403){}", Message(message))
            }
            SyncError::BadRequest { offset, message } => {
                write!(f, "PagerDuty rejected the request (400, page at offset {offset})")?;
                match message {
                    Some(_) => write!(f, "{}", Message(message)),
                    None => write!(f, " without an explanation"),
                }
            }
            SyncError::HttpStatus { status, offset, message } => {
                write!(f, "PagerDuty answered HTTP {status} (page at offset {offset}){}", Message(message))
            }
            SyncError::ServerError { status, attempts: n, message, retry_after } => {
                write!(f, "PagerDuty server error {status} after {n} {}{}", attempts(*n), Message(message))?;
                if let Some(wait) = retry_after {
                    write!(f, "; retry after {}", Seconds(*wait))?;
                }
                Ok(())
            }
            SyncError::RateLimited { attempts: n, retry_after, max_wait_exceeded } => {
                if *max_wait_exceeded {
                    write!(f, "PagerDuty rate limit (429): its reset is longer than this sync may wait")?;
                } else {
                    write!(f, "PagerDuty rate limit (429) still in force after {n} {}", attempts(*n))?;
                }
                if let Some(wait) = retry_after {
                    write!(f, "; retry after {}", Seconds(*wait))?;
                }
                Ok(())
            }
            SyncError::Timeout { attempts: n, timeout } => write!(
                f,
                "PagerDuty did not answer within {} ({n} {}); see pg_oncall.http_timeout",
                Seconds(*timeout),
                attempts(*n)
            ),
            SyncError::Connection { attempts: n, detail } => {
                write!(f, "PagerDuty connection failed: {} ({n} {})", clean_text(detail, MAX_MESSAGE_CHARS), attempts(*n))
            }
            SyncError::BodyTooLarge { offset, limit } => {
                write!(f, "PagerDuty response larger than {limit} bytes (page at offset {offset})")
            }
            SyncError::InvalidResponse { offset, detail } => {
                write!(f, "invalid response from PagerDuty")?;
                if let Some(offset) = offset {
                    write!(f, " (page at offset {offset})")?;
                }
                write!(f, ": {}", clean_text(detail, MAX_MESSAGE_CHARS))
            }
            SyncError::PolicyTooLarge { escalation_policy_id } => write!(
                f,
                "escalation policy {} alone has more than {OFFSET_LIMIT_CAP} on-call entries in the \
                 lookahead window, more than PagerDuty can page through; shorten pg_oncall.lookahead",
                clean_text(escalation_policy_id, 64)
            ),
            SyncError::TooManyOncalls { detail } => {
                // Our own wording, never server text: room for the whole explanation.
                write!(f, "PagerDuty account too large to sync completely: {}", clean_text(detail, 400))
            }
            SyncError::Cancelled => write!(f, "PagerDuty sync cancelled"),
        }
    }
}

impl std::error::Error for SyncError {}
