//! One complete sync: paginate `GET /oncalls`, retry what is worth retrying, and get past
//! PagerDuty's 10,000-row pagination cap by splitting the fetch per escalation policy.
//! Either every row of the window comes back, or an error does; never a partial result.
//!
//! # Past 10,000 rows
//! PagerDuty refuses `offset + limit > 10000`. When the unfiltered listing reaches that point
//! with `more: true`, the rows fetched so far are discarded and the sync restarts per policy:
//! 1. Discovery: the unfiltered listing again with `earliest=true`, which returns one row per
//!    (escalation policy, level, user) instead of one per shift. Its policies, together with the
//!    ones seen in the first 10,000 rows, are every policy with an on-call in the window, including
//!    policies PagerDuty happened to list after row 10,000. If even that listing passes 10,000
//!    rows the policies cannot be enumerated and the sync fails with
//!    [`SyncError::TooManyOncalls`] (reported, never truncated).
//! 2. Policies are packed into `escalation_policy_ids[]` batches by the row counts seen so far.
//!    A batch that itself hits the cap is split in halves and fetched again; a single policy that
//!    hits it fails the sync with [`SyncError::PolicyTooLarge`].
//!
//! Exact duplicate rows (possible when rows move between pages while we paginate) are dropped,
//! in the unsplit case too.

use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::backoff::{exponential, jittered, splitmix64};
use super::error::SyncError;
use super::parse::{parse_error_body, parse_page};
use super::transport::{HttpResponse, Transport, TransportError, UreqTransport};
use super::{Shift, SyncConfig, SyncResult};

/// PagerDuty's largest page.
pub const MAX_PAGE_LIMIT: u32 = 100;
/// PagerDuty answers 400 when `offset + limit` exceeds this.
pub const OFFSET_LIMIT_CAP: u32 = 10_000;
/// Rows one sync may hold (all queries together), so a runaway account cannot exhaust memory.
pub const MAX_TOTAL_ROWS: usize = 1_000_000;

const MAX_POLICIES_PER_BATCH: usize = 25;
const TARGET_ROWS_PER_BATCH: usize = 5_000;
const ERROR_BODY_CAP: u64 = 64 * 1024;
const READ_CHUNK: usize = 64 * 1024;

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

/// Fetches every on-call row from `now_us` to `now_us + lookahead_us` over HTTP (ureq, rustls).
///
/// Blocking; waits (429, retries) look at `cancel` every 50 ms and an HTTP request in flight
/// lasts at most `http_timeout`. Any error means no rows at all.
pub fn fetch_all(cfg: &SyncConfig, now_us: i64, cancel: &AtomicBool) -> Result<SyncResult, SyncError> {
    let transport = UreqTransport::new(cfg.http_timeout);
    fetch_all_with(&transport, cfg, now_us, cancel)
}

/// [`fetch_all`] over any [`Transport`] (tests inject canned answers here).
pub fn fetch_all_with(
    transport: &dyn Transport,
    cfg: &SyncConfig,
    now_us: i64,
    cancel: &AtomicBool,
) -> Result<SyncResult, SyncError> {
    fetch_with_policy(transport, cfg, now_us, cancel, &RetryPolicy::DEFAULT)
}

pub(crate) fn fetch_with_policy(
    transport: &dyn Transport,
    cfg: &SyncConfig,
    now_us: i64,
    cancel: &AtomicBool,
    retry: &RetryPolicy,
) -> Result<SyncResult, SyncError> {
    let result = Fetcher::new(transport, cfg, now_us, cancel, retry).and_then(|mut fetcher| fetcher.run());
    result.map_err(|error| redact_error(error, &cfg.token))
}

#[derive(Clone, Copy)]
enum Filter<'a> {
    All,
    /// One row per (policy, level, user): enough to learn every policy in the window.
    Earliest,
    Policies(&'a [String]),
}

/// Rows of one query, in PagerDuty's order.
#[derive(Default)]
struct Collected {
    shifts: Vec<Shift>,
    skipped_without_email: usize,
    policies: PolicyTally,
}

enum Outcome {
    Complete(Collected),
    /// `more` was still true when the next page would pass [`OFFSET_LIMIT_CAP`].
    CapReached(Collected),
}

/// Rows per escalation policy, in first-seen order.
#[derive(Default)]
struct PolicyTally {
    order: Vec<String>,
    rows: HashMap<String, usize>,
}

impl PolicyTally {
    fn add(&mut self, policy: &str, rows: usize) {
        match self.rows.get_mut(policy) {
            Some(count) => *count += rows,
            None => {
                self.order.push(policy.to_string());
                self.rows.insert(policy.to_string(), rows);
            }
        }
    }

    fn merge(&mut self, other: &PolicyTally) {
        for policy in &other.order {
            let theirs = other.rows.get(policy).copied().unwrap_or(0);
            match self.rows.get_mut(policy) {
                Some(ours) => *ours = (*ours).max(theirs),
                None => self.add(policy, theirs),
            }
        }
    }

    fn estimates(&self) -> Vec<(String, usize)> {
        self.order.iter().map(|policy| (policy.clone(), self.rows.get(policy).copied().unwrap_or(0))).collect()
    }
}

enum Transient {
    Timeout,
    Connection(String),
    Server { status: u16, message: Option<String>, retry_after: Option<Duration> },
}

enum BodyError {
    Fatal(SyncError),
    Timeout,
    Broken(String),
}

struct Fetcher<'a> {
    transport: &'a dyn Transport,
    cfg: &'a SyncConfig,
    cancel: &'a AtomicBool,
    retry: &'a RetryPolicy,
    base_url: String,
    window_query: String,
    authorization: String,
    user_agent: String,
    requests: u32,
    pages: u32,
    rows_seen: usize,
    jitter_seed: Cell<u64>,
}

impl<'a> Fetcher<'a> {
    fn new(
        transport: &'a dyn Transport,
        cfg: &'a SyncConfig,
        now_us: i64,
        cancel: &'a AtomicBool,
        retry: &'a RetryPolicy,
    ) -> Result<Self, SyncError> {
        let token = cfg.token.as_str();
        if token.is_empty() {
            return Err(SyncError::Config("no PagerDuty API token configured".into()));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SyncError::Config("the PagerDuty API token contains spaces, control or non-ASCII characters".into()));
        }
        let base_url = validate_api_url(&cfg.api_url)?;
        if cfg.http_timeout.is_zero() {
            return Err(SyncError::Config("the HTTP timeout must be positive".into()));
        }
        if cfg.max_body_bytes == 0 {
            return Err(SyncError::Config("the maximum body size must be positive".into()));
        }
        if cfg.lookahead_us < 0 {
            return Err(SyncError::Config("the lookahead must not be negative".into()));
        }
        let until_us =
            now_us.checked_add(cfg.lookahead_us).ok_or_else(|| SyncError::Config("now + lookahead is out of range".into()))?;
        let since = rfc3339_seconds(now_us.div_euclid(1_000_000))
            .ok_or_else(|| SyncError::Config("the current time is out of range".into()))?;
        let until_seconds = until_us.div_euclid(1_000_000) + i64::from(until_us.rem_euclid(1_000_000) != 0);
        let until = rfc3339_seconds(until_seconds).ok_or_else(|| SyncError::Config("now + lookahead is out of range".into()))?;
        Ok(Fetcher {
            transport,
            cfg,
            cancel,
            retry,
            base_url,
            window_query: format!("since={since}&until={until}"),
            authorization: format!("Token token={token}"),
            user_agent: format!("pg_oncall/{}", env!("CARGO_PKG_VERSION")),
            requests: 0,
            pages: 0,
            rows_seen: 0,
            jitter_seed: Cell::new(splitmix64(now_us as u64)),
        })
    }

    fn run(&mut self) -> Result<SyncResult, SyncError> {
        match self.query(Filter::All)? {
            Outcome::Complete(all) => Ok(self.result(all, false)),
            Outcome::CapReached(first_rows) => {
                let mut policies = first_rows.policies;
                drop(first_rows.shifts);
                match self.query(Filter::Earliest)? {
                    Outcome::Complete(discovered) => policies.merge(&discovered.policies),
                    Outcome::CapReached(_) => {
                        return Err(SyncError::TooManyOncalls {
                            detail: format!(
                                "more than {OFFSET_LIMIT_CAP} on-call entries, and more than \
                                 {OFFSET_LIMIT_CAP} distinct (escalation policy, level, user) \
                                 combinations, so the escalation policies cannot all be listed; \
                                 shorten pg_oncall.lookahead"
                            ),
                        })
                    }
                }
                let merged = self.query_per_policy(&policies.estimates())?;
                Ok(self.result(merged, true))
            }
        }
    }

    fn query_per_policy(&mut self, policies: &[(String, usize)]) -> Result<Collected, SyncError> {
        let mut pending = pack_batches(policies);
        let mut merged = Collected::default();
        while let Some(batch) = pending.pop_front() {
            match self.query(Filter::Policies(&batch))? {
                Outcome::Complete(rows) => {
                    merged.shifts.extend(rows.shifts);
                    merged.skipped_without_email += rows.skipped_without_email;
                }
                Outcome::CapReached(_) if batch.len() == 1 => {
                    return Err(SyncError::PolicyTooLarge { escalation_policy_id: batch[0].clone() });
                }
                Outcome::CapReached(_) => {
                    let (first, second) = batch.split_at(batch.len() / 2);
                    pending.push_front(second.to_vec());
                    pending.push_front(first.to_vec());
                }
            }
        }
        Ok(merged)
    }

    fn result(&self, collected: Collected, split_by_policy: bool) -> SyncResult {
        SyncResult {
            shifts: without_duplicates(collected.shifts),
            pages: self.pages,
            requests: self.requests,
            skipped_without_email: collected.skipped_without_email,
            split_by_policy,
        }
    }

    fn query(&mut self, filter: Filter<'_>) -> Result<Outcome, SyncError> {
        let mut collected = Collected::default();
        let mut offset: u32 = 0;
        loop {
            if offset >= OFFSET_LIMIT_CAP {
                return Ok(Outcome::CapReached(collected));
            }
            let limit = MAX_PAGE_LIMIT.min(OFFSET_LIMIT_CAP - offset);
            let url = self.url(filter, offset, limit);
            let body = self.get_page(&url, offset)?;
            let parsed = parse_page(&body).map_err(|e| e.with_offset(offset))?;
            drop(body);
            self.pages = self.pages.saturating_add(1);
            if let Some(echoed) = parsed.echoed_offset {
                if echoed != offset {
                    return Err(inconsistent(offset, format!("PagerDuty answered offset {echoed}")));
                }
            }
            let rows = parsed.row_policies.len();
            self.rows_seen = self.rows_seen.saturating_add(rows);
            if self.rows_seen > MAX_TOTAL_ROWS {
                return Err(SyncError::TooManyOncalls {
                    detail: format!("more than {MAX_TOTAL_ROWS} on-call rows in one sync; shorten pg_oncall.lookahead"),
                });
            }
            for policy in &parsed.row_policies {
                collected.policies.add(policy, 1);
            }
            collected.shifts.extend(parsed.page.shifts);
            collected.skipped_without_email += parsed.page.skipped_without_email;
            // PagerDuty may serve fewer rows than asked (it echoes the limit it used): only a
            // page shorter than both is known to be the last when `more` is missing.
            let page_size = match parsed.page.limit {
                0 => limit,
                echoed => echoed.min(limit),
            };
            let more = if parsed.more_present {
                parsed.page.more
            } else if rows < page_size as usize {
                false
            } else {
                return Err(inconsistent(offset, "a full page without `more`: cannot tell whether rows follow".into()));
            };
            if !more {
                return Ok(Outcome::Complete(collected));
            }
            if rows == 0 {
                return Err(inconsistent(offset, "`more` is true but the page is empty".into()));
            }
            offset = offset.saturating_add(u32::try_from(rows).unwrap_or(u32::MAX));
        }
    }

    fn url(&self, filter: Filter<'_>, offset: u32, limit: u32) -> String {
        let mut url = format!("{}/oncalls?{}&include[]=users", self.base_url, self.window_query);
        match filter {
            Filter::All => {}
            Filter::Earliest => url.push_str("&earliest=true"),
            Filter::Policies(ids) => {
                for id in ids {
                    url.push_str("&escalation_policy_ids[]=");
                    url.push_str(&percent_encode(id));
                }
            }
        }
        url.push_str(&format!("&limit={limit}&offset={offset}"));
        url
    }

    /// The body of a 2xx answer to `url`, after the retries the failure calls for.
    fn get_page(&mut self, url: &str, offset: u32) -> Result<Vec<u8>, SyncError> {
        let headers = [
            ("Authorization", self.authorization.as_str()),
            ("Accept", "application/vnd.pagerduty+json;version=2"),
            ("User-Agent", self.user_agent.as_str()),
        ];
        let mut attempts: u32 = 0;
        let mut rate_limited: u32 = 0;
        let mut transient: u32 = 0;
        loop {
            self.check_cancel()?;
            attempts += 1;
            self.requests = self.requests.saturating_add(1);
            let failure = match self.transport.get(url, &headers) {
                Err(TransportError::InvalidUrl(detail)) => {
                    return Err(SyncError::Config(format!("the PagerDuty API URL cannot be requested: {detail}")))
                }
                Err(TransportError::Timeout) => Transient::Timeout,
                Err(TransportError::Connection(detail)) => Transient::Connection(detail),
                Ok(response) if (200..300).contains(&response.status) => match self.read_body(response, offset) {
                    Ok(body) => return Ok(body),
                    Err(BodyError::Fatal(error)) => return Err(error),
                    Err(BodyError::Timeout) => Transient::Timeout,
                    Err(BodyError::Broken(detail)) => Transient::Connection(detail),
                },
                Ok(response) if response.status == 429 => {
                    rate_limited += 1;
                    let reset = rate_limit_reset(&response);
                    drop(response);
                    if reset.is_some_and(|reset| reset > self.cfg.max_rate_limit_wait) {
                        return Err(SyncError::RateLimited { attempts, retry_after: reset, max_wait_exceeded: true });
                    }
                    if rate_limited > self.retry.rate_limit_retries {
                        return Err(SyncError::RateLimited { attempts, retry_after: reset, max_wait_exceeded: false });
                    }
                    let wait = reset
                        .unwrap_or_else(|| {
                            self.jitter(exponential(self.retry.rate_limit_backoff, rate_limited, self.cfg.max_rate_limit_wait))
                        })
                        .min(self.cfg.max_rate_limit_wait)
                        .max(self.retry.rate_limit_min_wait);
                    self.sleep(wait)?;
                    continue;
                }
                Ok(response) => {
                    let status = response.status;
                    let retry_after = header_seconds(&response, "retry-after");
                    let message = self.error_message(response);
                    match status {
                        401 => return Err(SyncError::Unauthorized),
                        403 => return Err(SyncError::Forbidden { message }),
                        400 => return Err(SyncError::BadRequest { offset, message }),
                        408 | 500..=599 => Transient::Server { status, message, retry_after },
                        _ => return Err(SyncError::HttpStatus { status, offset, message }),
                    }
                }
            };
            transient += 1;
            if transient > self.retry.transient_retries {
                return Err(match failure {
                    Transient::Timeout => SyncError::Timeout { attempts, timeout: self.cfg.http_timeout },
                    Transient::Connection(detail) => SyncError::Connection { attempts, detail },
                    Transient::Server { status, message, retry_after } => {
                        SyncError::ServerError { status, attempts, message, retry_after }
                    }
                });
            }
            let mut wait = self.jitter(exponential(self.retry.transient_backoff, transient, Duration::from_secs(30)));
            if let Transient::Server { retry_after: Some(asked), .. } = failure {
                wait = wait.max(asked.min(self.cfg.max_rate_limit_wait));
            }
            self.sleep(wait)?;
        }
    }

    /// Reads at most `max_body_bytes`; one byte more is an error, never a truncation.
    fn read_body(&self, response: HttpResponse, offset: u32) -> Result<Vec<u8>, BodyError> {
        let max = self.cfg.max_body_bytes;
        let too_large = || BodyError::Fatal(SyncError::BodyTooLarge { offset, limit: max });
        let declared = header_u64(&response, "content-length");
        if declared.is_some_and(|length| length > max) {
            return Err(too_large());
        }
        let capacity = declared.unwrap_or(0).min(max).min(8 * 1024 * 1024);
        let mut body = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        let mut reader = response.body.take(max.saturating_add(1));
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(BodyError::Fatal(SyncError::Cancelled));
            }
            match reader.read(&mut chunk) {
                Ok(0) => return Ok(body),
                Ok(n) => {
                    if body.len() as u64 + n as u64 > max {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => return Err(BodyError::Timeout),
                Err(e) => return Err(BodyError::Broken(format!("the response was cut off ({e})"))),
            }
        }
    }

    /// PagerDuty's explanation from an error answer, if it sent a readable one.
    fn error_message(&self, response: HttpResponse) -> Option<String> {
        let mut body = Vec::new();
        let mut reader = response.body.take(ERROR_BODY_CAP);
        // A cut-off error body still often parses; a broken one just yields no message.
        let _ = reader.read_to_end(&mut body);
        parse_error_body(&body)
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

fn inconsistent(offset: u32, detail: String) -> SyncError {
    SyncError::InvalidResponse { offset: Some(offset), detail }
}

/// The API URL without trailing slashes, or why it cannot be used.
fn validate_api_url(api_url: &str) -> Result<String, SyncError> {
    let url = api_url.trim();
    let lower = url.to_ascii_lowercase();
    let scheme_len = ["https://", "http://"]
        .iter()
        .find(|scheme| lower.starts_with(*scheme))
        .map(|scheme| scheme.len())
        .ok_or_else(|| SyncError::Config("the PagerDuty API URL must start with https:// or http://".into()))?;
    let url = url.trim_end_matches('/');
    if url.len() <= scheme_len || url[scheme_len..].starts_with('/') {
        return Err(SyncError::Config("the PagerDuty API URL has no host".into()));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
        return Err(SyncError::Config("the PagerDuty API URL must be a plain base URL (no spaces, query or fragment)".into()));
    }
    Ok(url.to_string())
}

fn rfc3339_seconds(seconds: i64) -> Option<String> {
    let time: DateTime<Utc> = DateTime::from_timestamp(seconds, 0)?;
    if !(0..=9999).contains(&chrono::Datelike::year(&time)) {
        return None;
    }
    Some(time.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn percent_encode(text: &str) -> String {
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

/// Policies grouped so each query should stay well under the cap (estimates are lower bounds;
/// a batch that overflows anyway is split).
fn pack_batches(policies: &[(String, usize)]) -> VecDeque<Vec<String>> {
    let mut batches = VecDeque::new();
    let mut current: Vec<String> = Vec::new();
    let mut current_rows = 0usize;
    for (policy, estimate) in policies {
        if !current.is_empty() && (current_rows + estimate > TARGET_ROWS_PER_BATCH || current.len() >= MAX_POLICIES_PER_BATCH) {
            batches.push_back(std::mem::take(&mut current));
            current_rows = 0;
        }
        current.push(policy.clone());
        current_rows += estimate;
    }
    if !current.is_empty() {
        batches.push_back(current);
    }
    batches
}

fn without_duplicates(shifts: Vec<Shift>) -> Vec<Shift> {
    let mut seen = HashSet::with_capacity(shifts.len());
    let mut unique = Vec::with_capacity(shifts.len());
    for shift in shifts {
        if !seen.contains(&shift) {
            seen.insert(shift.clone());
            unique.push(shift);
        }
    }
    unique
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

/// Defence in depth: should PagerDuty or a proxy ever echo the token, it leaves no trace.
fn redact_error(error: SyncError, token: &str) -> SyncError {
    if token.is_empty() {
        return error;
    }
    let scrub = |text: String| {
        if text.contains(token) {
            text.replace(token, "[redacted]")
        } else {
            text
        }
    };
    let scrub_option = |text: Option<String>| text.map(scrub);
    match error {
        SyncError::Config(detail) => SyncError::Config(scrub(detail)),
        SyncError::Forbidden { message } => SyncError::Forbidden { message: scrub_option(message) },
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
        other => other,
    }
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
