//! PagerDuty client for the sync worker: turns `GET /oncalls` answers into [`Shift`] rows and
//! `GET /incidents` answers into open [`Incident`]s, and posts notes on incidents.
//! `client` owns what every call shares (settings checks, one exchange, retries, pagination),
//! `fetch` the on-call sync and its 10,000-row split by policy, `incidents` the incident sync and
//! its split by creation time, `notes` the single-attempt notes calls; `parse` and
//! `parse_incidents` own the JSON shapes, `transport` owns HTTP (ureq), `error` owns what a DBA
//! reads, `limits` PagerDuty's pagination limits.
//!
//! Everything is blocking, keeps no global state and never panics on what the network sends;
//! times are `i64` microseconds since the Unix epoch.

mod backoff;
mod client;
mod error;
mod fetch;
mod incidents;
mod limits;
mod notes;
mod parse;
mod parse_incidents;
mod transport;

#[cfg(test)]
mod test_support;

use std::fmt;
use std::time::Duration;

pub use backoff::backoff_delay;
pub use error::{NoteError, SyncError};
pub use fetch::{fetch_all, fetch_all_with, MAX_PAGE_LIMIT, MAX_TOTAL_ROWS, OFFSET_LIMIT_CAP};
pub use incidents::{fetch_open_incidents, fetch_open_incidents_with, MAX_WINDOW_DAYS};
pub use notes::{list_notes, list_notes_with, post_note, post_note_with};
pub use parse::{parse_error_body, parse_oncalls_page};
pub use parse_incidents::{parse_incidents_page, parse_note_body, parse_notes_body};
pub use transport::{HttpResponse, Transport, TransportError, UreqTransport};

/// One row of `oncall.shifts` with `source = 'pagerduty'`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shift {
    /// From the included user object, as given (compared case-insensitively later).
    pub email: String,
    pub user_id: String,
    pub escalation_policy_id: String,
    pub escalation_level: i32,
    /// `None` when the rule targets the user directly rather than a schedule.
    pub schedule_id: Option<String>,
    /// `None` means on call since forever (permanent).
    pub start_us: Option<i64>,
    /// `None` means never goes off call.
    pub end_us: Option<i64>,
}

/// One parsed `/oncalls` page.
///
/// `limit` and `offset` echo what PagerDuty answered (0 when absent); `more` is `false` when
/// absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub shifts: Vec<Shift>,
    pub skipped_without_email: usize,
    pub more: bool,
    pub limit: u32,
    pub offset: u32,
}

/// What one sync needs to know. `lookahead_us` is added to `now_us` to form the `until` bound.
/// Its `Debug` output hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// Base URL, e.g. `https://api.pagerduty.com` (a trailing slash is fine).
    pub api_url: String,
    pub token: String,
    pub lookahead_us: i64,
    /// Deadline for each HTTP request as a whole (connect, headers and body).
    pub http_timeout: Duration,
    /// Largest accepted body per page; larger answers fail without being buffered.
    pub max_body_bytes: u64,
    /// Longest a single 429 wait inside one sync may last; a longer `ratelimit-reset` ends the
    /// sync with [`SyncError::RateLimited`] whose `retry_after()` tells the caller when to retry.
    pub max_rate_limit_wait: Duration,
}

impl SyncConfig {
    /// Default per-page body cap: 32 MiB (a full page of 100 rows is ~100 KiB).
    pub const DEFAULT_MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
    /// Default longest 429 wait inside one sync.
    pub const DEFAULT_MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

    /// A configuration with the default body cap and rate-limit wait.
    pub fn new(api_url: &str, token: &str, lookahead_us: i64, http_timeout: Duration) -> Self {
        SyncConfig {
            api_url: api_url.to_string(),
            token: token.to_string(),
            lookahead_us,
            http_timeout,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            max_rate_limit_wait: Self::DEFAULT_MAX_RATE_LIMIT_WAIT,
        }
    }
}

impl SyncConfig {
    pub(crate) fn settings(&self, scope: &'static str) -> client::Settings<'_> {
        client::Settings {
            api_url: &self.api_url,
            token: &self.token,
            http_timeout: self.http_timeout,
            max_body_bytes: self.max_body_bytes,
            max_rate_limit_wait: self.max_rate_limit_wait,
            scope,
        }
    }
}

impl fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncConfig")
            .field("api_url", &self.api_url)
            .field("token", &if self.token.is_empty() { "<empty>" } else { "<redacted>" })
            .field("lookahead_us", &self.lookahead_us)
            .field("http_timeout", &self.http_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_rate_limit_wait", &self.max_rate_limit_wait)
            .finish()
    }
}

/// A complete snapshot of PagerDuty's on-call rows for the window; never partial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    /// Deduplicated (exact duplicates only), in PagerDuty's order.
    pub shifts: Vec<Shift>,
    /// Pages successfully received.
    pub pages: u32,
    /// HTTP requests sent, retries included.
    pub requests: u32,
    /// Rows skipped because their user carried no email (reference only, or deleted user).
    pub skipped_without_email: usize,
    /// The account had more than 10,000 rows and was fetched per escalation policy.
    pub split_by_policy: bool,
}

/// Status of an open incident (the sync keeps only these two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentStatus {
    Triggered,
    Acknowledged,
}

impl IncidentStatus {
    /// As PagerDuty spells it: `triggered`, `acknowledged`.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Triggered => "triggered",
            IncidentStatus::Acknowledged => "acknowledged",
        }
    }
}

/// One open PagerDuty incident: a row of `oncall.incidents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub id: String,
    /// Unique across the account.
    pub incident_number: i64,
    /// Empty when PagerDuty sent none.
    pub title: String,
    pub status: IncidentStatus,
    /// `high` or `low` as sent; `None` when absent.
    pub urgency: Option<String>,
    /// `None` when absent: then no rule that names policies can be satisfied by it.
    pub service_id: Option<String>,
    /// The escalation policy of the incident's service; `None` when absent.
    pub escalation_policy_id: Option<String>,
    /// Emails of the users assigned now: trimmed, lower-cased, deduplicated, sorted.
    pub assignee_emails: Vec<String>,
    pub created_at_us: i64,
}

/// One parsed `GET /incidents` page. `limit` and `offset` echo PagerDuty's answer (0 when
/// absent); `more` is `false` when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentPage {
    /// The open (triggered or acknowledged) incidents of the page, in PagerDuty's order.
    pub incidents: Vec<Incident>,
    /// Rows whose status is not open (resolved, or a status PagerDuty may add later).
    pub skipped_not_open: usize,
    /// Assignments whose user carried no email (a reference without `include[]=assignees`,
    /// or a deleted user); such a user is not counted as assigned.
    pub assignees_without_email: usize,
    pub more: bool,
    pub limit: u32,
    pub offset: u32,
}

/// Every open incident of the account; never partial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentSyncResult {
    /// Deduplicated by id (the copy received last kept), oldest first.
    pub incidents: Vec<Incident>,
    /// Pages successfully received.
    pub pages: u32,
    /// HTTP requests sent, retries included.
    pub requests: u32,
    pub skipped_not_open: usize,
    pub assignees_without_email: usize,
    /// More than 10,000 open incidents: the listing went on in creation-time windows.
    pub split_by_time: bool,
}

/// What the notes calls need: the write token (scope `incidents.write`) and where to send it.
/// Its `Debug` output hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteConfig {
    /// Base URL, e.g. `https://api.pagerduty.com` (a trailing slash is fine).
    pub api_url: String,
    pub token: String,
    /// Deadline for the request as a whole.
    pub http_timeout: Duration,
}

impl NoteConfig {
    /// Largest answer read (`GET /incidents/{id}/notes` holds at most 2,000 notes).
    pub const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;

    pub fn new(api_url: &str, token: &str, http_timeout: Duration) -> Self {
        NoteConfig { api_url: api_url.to_string(), token: token.to_string(), http_timeout }
    }

    pub(crate) fn settings(&self, scope: &'static str) -> client::Settings<'_> {
        client::Settings {
            api_url: &self.api_url,
            token: &self.token,
            http_timeout: self.http_timeout,
            max_body_bytes: Self::MAX_BODY_BYTES,
            // Notes calls make one attempt and never wait: the caller owns retries.
            max_rate_limit_wait: Duration::ZERO,
            scope,
        }
    }
}

impl fmt::Debug for NoteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteConfig")
            .field("api_url", &self.api_url)
            .field("token", &if self.token.is_empty() { "<empty>" } else { "<redacted>" })
            .field("http_timeout", &self.http_timeout)
            .finish()
    }
}

/// A note on an incident, as PagerDuty answers it (`IncidentNote`: only `content` is required).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentNote {
    pub id: Option<String>,
    pub content: String,
    /// The user the note is attributed to (the `From` user for notes posted through the API).
    pub user_id: Option<String>,
    pub created_at_us: Option<i64>,
}
