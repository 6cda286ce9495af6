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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicBool;

use super::client::{percent_encode, rfc3339_seconds, Client, PageInfo, Paged, RetryPolicy};
use super::error::SyncError;
use super::parse::parse_page;
use super::transport::{Transport, UreqTransport};
use super::{Shift, SyncConfig, SyncResult};

pub use super::limits::{MAX_PAGE_LIMIT, OFFSET_LIMIT_CAP};

/// Rows one sync may hold (all queries together), so a runaway account cannot exhaust memory.
pub const MAX_TOTAL_ROWS: usize = 1_000_000;

const MAX_POLICIES_PER_BATCH: usize = 25;
const TARGET_ROWS_PER_BATCH: usize = 5_000;

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
    result.map_err(|error| error.redacted(&cfg.token))
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

struct Fetcher<'a> {
    client: Client<'a>,
    window_query: String,
    rows_seen: usize,
}

impl<'a> Fetcher<'a> {
    fn new(
        transport: &'a dyn Transport,
        cfg: &'a SyncConfig,
        now_us: i64,
        cancel: &'a AtomicBool,
        retry: &'a RetryPolicy,
    ) -> Result<Self, SyncError> {
        let client =
            Client::new(transport, &cfg.settings("oncalls.read"), now_us as u64, cancel, retry).map_err(SyncError::Config)?;
        if cfg.lookahead_us < 0 {
            return Err(SyncError::Config("the lookahead must not be negative".into()));
        }
        let until_us =
            now_us.checked_add(cfg.lookahead_us).ok_or_else(|| SyncError::Config("now + lookahead is out of range".into()))?;
        let since = rfc3339_seconds(now_us.div_euclid(1_000_000))
            .ok_or_else(|| SyncError::Config("the current time is out of range".into()))?;
        let until_seconds = until_us.div_euclid(1_000_000) + i64::from(until_us.rem_euclid(1_000_000) != 0);
        let until = rfc3339_seconds(until_seconds).ok_or_else(|| SyncError::Config("now + lookahead is out of range".into()))?;
        Ok(Fetcher { client, window_query: format!("since={since}&until={until}"), rows_seen: 0 })
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
            pages: self.client.pages,
            requests: self.client.requests,
            skipped_without_email: collected.skipped_without_email,
            split_by_policy,
        }
    }

    fn query(&mut self, filter: Filter<'_>) -> Result<Outcome, SyncError> {
        let mut collected = Collected::default();
        let rows_seen = &mut self.rows_seen;
        let prefix = format!("{}/oncalls?{}&include[]=users{}", self.client.base_url(), self.window_query, filter.query());
        let paged = self.client.paginate(
            |offset, limit| format!("{prefix}&limit={limit}&offset={offset}"),
            |body| {
                let parsed = parse_page(&body)?;
                let rows = parsed.row_policies.len();
                *rows_seen = rows_seen.saturating_add(rows);
                if *rows_seen > MAX_TOTAL_ROWS {
                    return Err(SyncError::TooManyOncalls {
                        detail: format!("more than {MAX_TOTAL_ROWS} on-call rows in one sync; shorten pg_oncall.lookahead"),
                    });
                }
                for policy in &parsed.row_policies {
                    collected.policies.add(policy, 1);
                }
                collected.shifts.extend(parsed.page.shifts);
                collected.skipped_without_email += parsed.page.skipped_without_email;
                Ok(PageInfo {
                    rows,
                    more: parsed.more_present.then_some(parsed.page.more),
                    limit: Some(parsed.page.limit),
                    offset: parsed.echoed_offset,
                })
            },
        )?;
        Ok(match paged {
            Paged::Complete => Outcome::Complete(collected),
            Paged::CapReached => Outcome::CapReached(collected),
        })
    }
}

impl Filter<'_> {
    /// The query parameters this filter adds.
    fn query(&self) -> String {
        match self {
            Filter::All => String::new(),
            Filter::Earliest => "&earliest=true".into(),
            Filter::Policies(ids) => ids.iter().map(|id| format!("&escalation_policy_ids[]={}", percent_encode(id))).collect(),
        }
    }
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

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
