//! PagerDuty client for the sync worker: turns `GET /oncalls` answers into [`Shift`] rows.
//! `parse` owns the JSON shapes (pages and error bodies), `fetch` owns pagination, retries and the
//! 10,000-row split, `transport` owns HTTP (ureq, capped bodies), `error` owns what a DBA reads.
//!
//! Everything is blocking, keeps no global state and never panics on what the network sends;
//! times are `i64` microseconds since the Unix epoch.

mod backoff;
mod error;
mod fetch;
mod parse;
mod transport;

use std::fmt;
use std::time::Duration;

pub use backoff::backoff_delay;
pub use error::SyncError;
pub use fetch::{fetch_all, fetch_all_with, MAX_PAGE_LIMIT, MAX_TOTAL_ROWS, OFFSET_LIMIT_CAP};
pub use parse::{parse_error_body, parse_oncalls_page};
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
