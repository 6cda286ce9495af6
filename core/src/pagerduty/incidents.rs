//! The incident sync: every open (triggered or acknowledged) incident of the account, with the
//! emails of its assignees, from `GET /incidents`. Either all of them come back, or an error
//! does; never a partial list. Retries, 429 waits, timeouts, body caps and pagination are the
//! shared client's, exactly as for the on-call sync.
//!
//! # The query
//! `statuses[]=triggered&statuses[]=acknowledged&include[]=assignees&sort_by=created_at:asc`
//! plus `date_range=all`: without it PagerDuty only lists incidents created in the last month,
//! and an incident opened five weeks ago and still acknowledged is open. No `user_ids[]` or
//! `service_ids[]` filter: one listing serves every rule and every identity.
//!
//! # Past 10,000 incidents
//! PagerDuty refuses `offset + limit > 10000`. Incidents, unlike on-call entries, partition
//! exactly by creation time, and `since`/`until` filter on it, so no discovery pass is needed:
//! when the listing reaches the cap with `more: true`, it goes on from the latest `created_at`
//! seen (minus one second, as `created_at` has second precision and `since` may be exclusive) in
//! windows of at most [`MAX_WINDOW_DAYS`] days (PagerDuty's limit is 6 months), oldest first, up
//! to a day past `now`. A window that itself reaches the cap continues from its own latest
//! `created_at`. Incidents seen twice (window overlaps, rows shifting while we page) are
//! deduplicated by id (the later copy kept). Only more than 10,000 open incidents created within the same second
//! stop it ([`SyncError::TooManyIncidents`]).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use super::client::{rfc3339_seconds, Client, PageInfo, Paged, RetryPolicy};
use super::error::SyncError;
use super::fetch::MAX_TOTAL_ROWS;
use super::limits::OFFSET_LIMIT_CAP;
use super::parse_incidents::parse_incidents;
use super::transport::{Transport, UreqTransport};
use super::{Incident, IncidentSyncResult, SyncConfig};

/// Longest `since`..`until` window sent (PagerDuty allows at most 6 months).
pub const MAX_WINDOW_DAYS: i64 = 180;
/// How far past `now` the last window reaches (clock skew between us and PagerDuty).
const FUTURE_MARGIN_S: i64 = 86_400;
const DAY_S: i64 = 86_400;

/// Fetches every open incident of the account over HTTP (ureq, rustls). `cfg.lookahead_us` is
/// not used; `now_us` bounds the creation-time windows and seeds the retry jitter.
///
/// Blocking; waits (429, retries) look at `cancel` every 50 ms and an HTTP request in flight
/// lasts at most `http_timeout`. Any error means no incidents at all: keep the previous ones.
pub fn fetch_open_incidents(cfg: &SyncConfig, now_us: i64, cancel: &AtomicBool) -> Result<IncidentSyncResult, SyncError> {
    let transport = UreqTransport::new(cfg.http_timeout);
    fetch_open_incidents_with(&transport, cfg, now_us, cancel)
}

/// [`fetch_open_incidents`] over any [`Transport`].
pub fn fetch_open_incidents_with(
    transport: &dyn Transport,
    cfg: &SyncConfig,
    now_us: i64,
    cancel: &AtomicBool,
) -> Result<IncidentSyncResult, SyncError> {
    fetch_incidents_with_policy(transport, cfg, now_us, cancel, &RetryPolicy::DEFAULT)
}

pub(crate) fn fetch_incidents_with_policy(
    transport: &dyn Transport,
    cfg: &SyncConfig,
    now_us: i64,
    cancel: &AtomicBool,
    retry: &RetryPolicy,
) -> Result<IncidentSyncResult, SyncError> {
    let result = IncidentFetcher::new(transport, cfg, now_us, cancel, retry).and_then(|mut fetcher| fetcher.run());
    result.map_err(|error| error.redacted(&cfg.token))
}

/// Which incidents one listing covers.
#[derive(Clone, Copy)]
enum Range {
    /// `date_range=all`.
    All,
    /// `since` (inclusive or not, we do not rely on it) to `until`, in Unix seconds.
    Window { since_s: i64, until_s: i64 },
}

#[derive(Default)]
struct Collected {
    incidents: Vec<Incident>,
    /// Index in `incidents` by id.
    seen: HashMap<String, usize>,
    skipped_not_open: usize,
    assignees_without_email: usize,
    rows: usize,
}

struct IncidentFetcher<'a> {
    client: Client<'a>,
    now_s: i64,
    collected: Collected,
}

impl<'a> IncidentFetcher<'a> {
    fn new(
        transport: &'a dyn Transport,
        cfg: &'a SyncConfig,
        now_us: i64,
        cancel: &'a AtomicBool,
        retry: &'a RetryPolicy,
    ) -> Result<Self, SyncError> {
        let client =
            Client::new(transport, &cfg.settings("incidents.read"), now_us as u64, cancel, retry).map_err(SyncError::Config)?;
        let now_s = now_us.div_euclid(1_000_000);
        if rfc3339_seconds(now_s.saturating_add(FUTURE_MARGIN_S)).is_none() || rfc3339_seconds(now_s).is_none() {
            return Err(SyncError::Config("the current time is out of range".into()));
        }
        Ok(IncidentFetcher { client, now_s, collected: Collected::default() })
    }

    fn run(&mut self) -> Result<IncidentSyncResult, SyncError> {
        let mut split = false;
        let mut range = Range::All;
        let end_s = self.now_s + FUTURE_MARGIN_S;
        loop {
            let (paged, latest_s) = self.query(range)?;
            let next_since = match (paged, range) {
                (Paged::Complete, Range::All) => break,
                (Paged::Complete, Range::Window { until_s, .. }) if until_s >= end_s => break,
                (Paged::Complete, Range::Window { until_s, .. }) => until_s,
                (Paged::CapReached, range) => {
                    split = true;
                    // Go on from the latest creation second seen; it must move forward.
                    let resume = latest_s.map(|s| s - 1);
                    match (resume, range) {
                        (Some(resume), Range::Window { since_s, .. }) if resume > since_s => resume,
                        (Some(resume), Range::All) => resume,
                        _ => {
                            return Err(SyncError::TooManyIncidents {
                                detail: format!(
                                    "more than {OFFSET_LIMIT_CAP} open incidents created within one second, \
                                     more than PagerDuty can page through"
                                ),
                            })
                        }
                    }
                }
            };
            range = Range::Window { since_s: next_since, until_s: (next_since + MAX_WINDOW_DAYS * DAY_S).min(end_s) };
        }
        let mut incidents = std::mem::take(&mut self.collected.incidents);
        incidents.sort_by_key(|incident| incident.created_at_us);
        Ok(IncidentSyncResult {
            incidents,
            pages: self.client.pages,
            requests: self.client.requests,
            skipped_not_open: self.collected.skipped_not_open,
            assignees_without_email: self.collected.assignees_without_email,
            split_by_time: split,
        })
    }

    /// One paginated listing; also returns the latest `created_at` (seconds) of its rows.
    fn query(&mut self, range: Range) -> Result<(Paged, Option<i64>), SyncError> {
        let range_query = match range {
            Range::All => "date_range=all".to_string(),
            Range::Window { since_s, until_s } => format!(
                "since={}&until={}",
                rfc3339_seconds(since_s).unwrap_or_default(),
                rfc3339_seconds(until_s).unwrap_or_default()
            ),
        };
        let prefix = format!(
            "{}/incidents?statuses[]=triggered&statuses[]=acknowledged&include[]=assignees&sort_by=created_at:asc&{range_query}",
            self.client.base_url()
        );
        let collected = &mut self.collected;
        let mut latest_us: Option<i64> = None;
        let paged = self.client.paginate(
            |offset, limit| format!("{prefix}&limit={limit}&offset={offset}"),
            |body| {
                let parsed = parse_incidents(&body)?;
                collected.rows = collected.rows.saturating_add(parsed.rows);
                if collected.rows > MAX_TOTAL_ROWS {
                    return Err(SyncError::TooManyIncidents {
                        detail: format!("more than {MAX_TOTAL_ROWS} incident rows in one sync"),
                    });
                }
                latest_us = latest_us.max(parsed.max_created_at_us);
                collected.skipped_not_open += parsed.page.skipped_not_open;
                collected.assignees_without_email += parsed.page.assignees_without_email;
                for incident in parsed.page.incidents {
                    // Seen twice: the later copy is the fresher one.
                    match collected.seen.get(&incident.id) {
                        Some(&index) => collected.incidents[index] = incident,
                        None => {
                            collected.seen.insert(incident.id.clone(), collected.incidents.len());
                            collected.incidents.push(incident);
                        }
                    }
                }
                Ok(PageInfo {
                    rows: parsed.rows,
                    more: parsed.more_present.then_some(parsed.page.more),
                    limit: Some(parsed.page.limit),
                    offset: parsed.echoed_offset,
                })
            },
        )?;
        Ok((paged, latest_us.map(|us| us.div_euclid(1_000_000))))
    }
}

#[cfg(test)]
#[path = "incidents_tests.rs"]
mod tests;
