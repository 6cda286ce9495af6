//! Why a sync failed, worded for a DBA reading `oncall.status().last_error`.
//! Display is one line, never holds the token (it is never stored here) and never dumps a body:
//! text that came from the network is stripped of control characters and shortened.

use std::fmt;
use std::time::Duration;

use super::limits::OFFSET_LIMIT_CAP;

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
    /// 403: the token lacks `scope` (`oncalls.read` for the on-call sync, `incidents.read` for
    /// the incident sync). Permanent.
    Forbidden { scope: &'static str, message: Option<String> },
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
    /// More open incidents created within one second than PagerDuty can page through (the
    /// incident sync walks past 10,000 by creation time, see `fetch_open_incidents`). Permanent
    /// while those incidents stay open.
    TooManyIncidents { detail: String },
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
            | SyncError::TooManyOncalls { .. }
            | SyncError::TooManyIncidents { .. } => true,
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

    /// Defence in depth: should PagerDuty or a proxy ever echo the token, it leaves no trace.
    pub(crate) fn redacted(self, token: &str) -> SyncError {
        let scrub = |text: String| redact(text, token);
        let scrub_option = |text: Option<String>| text.map(scrub);
        match self {
            SyncError::Config(detail) => SyncError::Config(scrub(detail)),
            SyncError::Forbidden { scope, message } => SyncError::Forbidden { scope, message: scrub_option(message) },
            SyncError::BadRequest { offset, message } => SyncError::BadRequest { offset, message: scrub_option(message) },
            SyncError::HttpStatus { status, offset, message } => {
                SyncError::HttpStatus { status, offset, message: scrub_option(message) }
            }
            SyncError::ServerError { status, attempts, message, retry_after } => {
                SyncError::ServerError { status, attempts, message: scrub_option(message), retry_after }
            }
            SyncError::Connection { attempts, detail } => SyncError::Connection { attempts, detail: scrub(detail) },
            SyncError::InvalidResponse { offset, detail } => SyncError::InvalidResponse { offset, detail: scrub(detail) },
            SyncError::PolicyTooLarge { escalation_policy_id } => {
                SyncError::PolicyTooLarge { escalation_policy_id: scrub(escalation_policy_id) }
            }
            SyncError::TooManyOncalls { detail } => SyncError::TooManyOncalls { detail: scrub(detail) },
            SyncError::TooManyIncidents { detail } => SyncError::TooManyIncidents { detail: scrub(detail) },
            other => other,
        }
    }
}

/// `text` with every occurrence of `token` replaced by `[redacted]`.
pub(crate) fn redact(text: String, token: &str) -> String {
    if !token.is_empty() && text.contains(token) {
        text.replace(token, "[redacted]")
    } else {
        text
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
            SyncError::Forbidden { scope, message } => {
                write!(f, "PagerDuty refused: the token lacks scope {scope} (403){}", Message(message))
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
            SyncError::TooManyIncidents { detail } => {
                write!(f, "too many open PagerDuty incidents to sync completely: {}", clean_text(detail, 400))
            }
            SyncError::Cancelled => write!(f, "PagerDuty sync cancelled"),
        }
    }
}

impl std::error::Error for SyncError {}

/// A notes call (`post_note`, `list_notes`) that did not succeed. These calls make one attempt
/// and never wait: the caller (the worker's notes queue) owns retries and their backoff.
///
/// - [`NoteError::is_permanent`]: retrying cannot help until the configuration changes (token,
///   scope, `From` user) or never will (unknown incident); drop the note and report it.
/// - otherwise retry, not sooner than [`NoteError::retry_after`] when it says so.
/// - [`NoteError::may_have_posted`]: PagerDuty may have stored the note although no success came
///   back (a timeout, a cut connection, a 5xx, a 2xx whose body was unreadable): look for it with
///   `list_notes` before posting it again, so one elevation never yields two notes.
///
/// Display is one line, starts with the HTTP status when there was one, and never holds the
/// token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoteError {
    /// The settings or arguments cannot make a valid request (URL, token, `From`, empty
    /// content or incident id). Permanent.
    Config(String),
    /// 401: the token is not valid. Permanent.
    Unauthorized,
    /// 403: the token lacks `scope` (`incidents.write` to post, `incidents.read` to list).
    /// Permanent.
    Forbidden { scope: &'static str, message: Option<String> },
    /// 404: no such incident in the account. Permanent.
    NotFound { incident_id: String, message: Option<String> },
    /// 400 and every other status that is neither success nor retryable (e.g. a `From` that is
    /// not a user of the account, or an incident at its 2,000-note limit). Permanent.
    Rejected { status: u16, message: Option<String> },
    /// 429: not processed. Retryable, after `retry_after` when PagerDuty sent a reset.
    RateLimited { retry_after: Option<Duration> },
    /// 5xx or 408. Retryable; may have been processed.
    ServerError { status: u16, message: Option<String>, retry_after: Option<Duration> },
    /// No complete answer within the HTTP timeout. Retryable; may have been processed.
    Timeout { timeout: Duration },
    /// Connecting or reading failed. Retryable; may have been processed.
    Connection { detail: String },
    /// A 2xx answer whose body is not the expected JSON (or is too large). Retryable; the
    /// request was most likely processed.
    InvalidResponse { detail: String },
}

impl NoteError {
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            NoteError::Config(_)
                | NoteError::Unauthorized
                | NoteError::Forbidden { .. }
                | NoteError::NotFound { .. }
                | NoteError::Rejected { .. }
        )
    }

    /// How long PagerDuty asked us to wait (429 `ratelimit-reset`, 5xx `retry-after`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            NoteError::RateLimited { retry_after } | NoteError::ServerError { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The request may have been processed although it did not visibly succeed.
    pub fn may_have_posted(&self) -> bool {
        matches!(
            self,
            NoteError::ServerError { .. }
                | NoteError::Timeout { .. }
                | NoteError::Connection { .. }
                | NoteError::InvalidResponse { .. }
        )
    }

    /// Defence in depth: should PagerDuty or a proxy ever echo the token, it leaves no trace.
    pub(crate) fn redacted(self, token: &str) -> NoteError {
        let scrub = |text: String| redact(text, token);
        let scrub_option = |text: Option<String>| text.map(scrub);
        match self {
            NoteError::Config(detail) => NoteError::Config(scrub(detail)),
            NoteError::Forbidden { scope, message } => NoteError::Forbidden { scope, message: scrub_option(message) },
            NoteError::NotFound { incident_id, message } => {
                NoteError::NotFound { incident_id: scrub(incident_id), message: scrub_option(message) }
            }
            NoteError::Rejected { status, message } => NoteError::Rejected { status, message: scrub_option(message) },
            NoteError::ServerError { status, message, retry_after } => {
                NoteError::ServerError { status, message: scrub_option(message), retry_after }
            }
            NoteError::Connection { detail } => NoteError::Connection { detail: scrub(detail) },
            NoteError::InvalidResponse { detail } => NoteError::InvalidResponse { detail: scrub(detail) },
            other => other,
        }
    }
}

impl fmt::Display for NoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoteError::Config(detail) => {
                write!(f, "PagerDuty notes misconfigured: {}", clean_text(detail, MAX_MESSAGE_CHARS))
            }
            NoteError::Unauthorized => write!(f, "401: PagerDuty rejected the write token"),
            NoteError::Forbidden { scope, message } => {
                write!(f, "403: the write token lacks {scope}{}", Message(message))
            }
            NoteError::NotFound { incident_id, message } => {
                write!(f, "404: PagerDuty has no incident {}{}", clean_text(incident_id, 64), Message(message))
            }
            NoteError::Rejected { status, message } => {
                write!(f, "{status}: PagerDuty refused the request{}", Message(message))
            }
            NoteError::RateLimited { retry_after } => {
                write!(f, "429: PagerDuty rate limit")?;
                if let Some(wait) = retry_after {
                    write!(f, "; retry after {}", Seconds(*wait))?;
                }
                Ok(())
            }
            NoteError::ServerError { status, message, retry_after } => {
                write!(f, "{status}: PagerDuty server error{}", Message(message))?;
                if let Some(wait) = retry_after {
                    write!(f, "; retry after {}", Seconds(*wait))?;
                }
                Ok(())
            }
            NoteError::Timeout { timeout } => {
                write!(f, "PagerDuty did not answer within {}; see pg_oncall.http_timeout", Seconds(*timeout))
            }
            NoteError::Connection { detail } => {
                write!(f, "PagerDuty connection failed: {}", clean_text(detail, MAX_MESSAGE_CHARS))
            }
            NoteError::InvalidResponse { detail } => {
                write!(f, "invalid response from PagerDuty: {}", clean_text(detail, MAX_MESSAGE_CHARS))
            }
        }
    }
}

impl std::error::Error for NoteError {}

/// One line of at most `max_chars` characters: control and bidi-formatting characters become
/// spaces, runs of whitespace collapse, and a cut is marked with `…`.
pub(crate) fn clean_text(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut chars = 0;
    let mut pending_space = false;
    for c in text.chars() {
        let c = if c.is_control() || is_invisible_format(c) { ' ' } else { c };
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        let needed = if pending_space { 2 } else { 1 };
        if chars + needed > max_chars {
            out.push('…');
            return out;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
        chars += needed;
    }
    out
}

fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_strips_controls_and_cuts() {
        assert_eq!(clean_text("a\nb\t\tc\u{1b}[31m", 100), "a b c [31m");
        assert_eq!(clean_text("  padded  ", 100), "padded");
        assert_eq!(clean_text("abcdef", 3), "abc…");
        assert_eq!(clean_text("ab cdef", 4), "ab c…");
        assert_eq!(clean_text("évidemment", 3), "évi…");
        assert_eq!(clean_text("x\u{202E}y", 10), "x y");
    }
}
