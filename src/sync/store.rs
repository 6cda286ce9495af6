//! What a sync writes: the PagerDuty rows of `oncall.shifts`, replaced in one transaction, and
//! the sync's health in `oncall.sync_state`. Manual rows are never touched.

use std::time::Duration;

use oncall_core::pagerduty::SyncResult;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::guc;
use crate::pg::time::pg_from_unix;
use crate::pg::xact;

fn timestamptz(us: Option<i64>) -> Option<TimestampWithTimeZone> {
    us.and_then(|us| TimestampWithTimeZone::try_from(pg_from_unix(us)).ok())
}

/// `now + after`, for `next_attempt_at`.
fn after(after: Duration) -> Option<TimestampWithTimeZone> {
    timestamptz(Some(crate::pg::time::now().saturating_add(after.as_micros() as i64)))
}

// Every name is schema-qualified and every operator spelled OPERATOR(pg_catalog.x), whatever
// the worker's search_path (DESIGN.md, guarantee 8).
const ACTIVE_MANUAL_SHIFTS: &str = "\
    SELECT pg_catalog.count(*) FROM oncall.shifts AS s
     WHERE s.source OPERATOR(pg_catalog.=) 'manual'::pg_catalog.text
       AND (s.ends_at IS NULL OR s.ends_at OPERATOR(pg_catalog.>) pg_catalog.now())";
const DELETE_PAGERDUTY_SHIFTS: &str =
    "DELETE FROM oncall.shifts AS s WHERE s.source OPERATOR(pg_catalog.=) 'pagerduty'::pg_catalog.text";
const INSERT_PAGERDUTY_SHIFTS: &str = "\
    INSERT INTO oncall.shifts (source, email, pagerduty_user_id, escalation_policy_id, escalation_level,
                               schedule_id, starts_at, ends_at, synced_at)
    SELECT 'pagerduty', t.e, t.u, t.p, t.l, t.s, t.st, t.en, $8
      FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[]),
                      pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.int4[]),
                      pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.timestamptz[]),
                      pg_catalog.unnest($7::pg_catalog.timestamptz[])) AS t(e, u, p, l, s, st, en)";
const RECORD_SUCCESS: &str = "\
    UPDATE oncall.sync_state SET token_configured = true, last_attempt_at = $1, last_success_at = $1,
           last_error = NULL, shifts = $2, pages = $3, requests = $4, duration_ms = $5, next_attempt_at = $6,
           syncs_ok = syncs_ok OPERATOR(pg_catalog.+) 1::pg_catalog.int8";
const RECORD_FAILURE: &str = "\
    UPDATE oncall.sync_state SET token_configured = $1, last_attempt_at = $2, last_error = $3,
           duration_ms = $4, next_attempt_at = $5, syncs_failed = syncs_failed OPERATOR(pg_catalog.+) 1::pg_catalog.int8";

/// Refuses, before anything is replaced, a sync whose rows the snapshot could not hold.
pub fn fits_snapshot(pagerduty_shifts: usize) -> Result<(), String> {
    let manual = xact::run(|| {
        Spi::connect(|client| client.select(ACTIVE_MANUAL_SHIFTS, None, &[])?.first().get_one::<i64>()).map_err(|e| e.to_string())
    })?
    .unwrap_or(0) as usize;
    let capacity = guc::MAX_SHIFTS.get() as usize;
    if pagerduty_shifts + manual > capacity {
        return Err(format!(
            "the snapshot does not fit: PagerDuty returned {pagerduty_shifts} shifts and {manual} manual ones are active, \
             more than pg_oncall.max_shifts = {capacity} (raise it and restart); the previous shifts are kept"
        ));
    }
    Ok(())
}

/// Replaces the PagerDuty rows and records the success, in one transaction.
pub fn store_shifts(
    result: &SyncResult,
    started_at: pg_sys::TimestampTz,
    duration_ms: f64,
    interval: Duration,
) -> Result<(), String> {
    let n = result.shifts.len();
    let mut emails = Vec::with_capacity(n);
    let mut user_ids = Vec::with_capacity(n);
    let mut policies = Vec::with_capacity(n);
    let mut levels = Vec::with_capacity(n);
    let mut schedules = Vec::with_capacity(n);
    let mut starts = Vec::with_capacity(n);
    let mut ends = Vec::with_capacity(n);
    for s in &result.shifts {
        emails.push(s.email.clone());
        user_ids.push(s.user_id.clone());
        policies.push(s.escalation_policy_id.clone());
        levels.push(s.escalation_level);
        schedules.push(s.schedule_id.clone());
        starts.push(timestamptz(s.start_us));
        ends.push(timestamptz(s.end_us));
    }
    let started = TimestampWithTimeZone::try_from(started_at).ok();
    let next = after(interval);
    xact::run(|| {
        Spi::connect_mut(|client| -> Result<(), pgrx::spi::Error> {
            client.update(DELETE_PAGERDUTY_SHIFTS, None, &[])?;
            client.update(
                INSERT_PAGERDUTY_SHIFTS,
                None,
                &[
                    emails.clone().into(),
                    user_ids.clone().into(),
                    policies.clone().into(),
                    levels.clone().into(),
                    schedules.clone().into(),
                    starts.clone().into(),
                    ends.clone().into(),
                    started.into(),
                ],
            )?;
            client.update(
                RECORD_SUCCESS,
                None,
                &[
                    started.into(),
                    (n as i32).into(),
                    (result.pages as i32).into(),
                    (result.requests as i32).into(),
                    duration_ms.into(),
                    next.into(),
                ],
            )?;
            Ok(())
        })
        .map_err(|e| e.to_string())
    })
    .map_err(|e| format!("storing the synced shifts failed: {e}"))
}

/// Records a failed sync (logged once per distinct message by the caller's choice of `log`).
pub fn record_failure(message: &str, started_at: pg_sys::TimestampTz, duration_ms: f64, retry: Duration, log: bool) {
    if log {
        warning!("pg_oncall: PagerDuty sync failed: {message}");
    }
    let token_ok = super::http::read_token().is_ok();
    let started = TimestampWithTimeZone::try_from(started_at).ok();
    let message = message.to_owned();
    let next = after(retry);
    let recorded = xact::run(|| {
        Spi::run_with_args(
            RECORD_FAILURE,
            &[token_ok.into(), started.into(), message.clone().into(), duration_ms.into(), next.into()],
        )
        .map_err(|e| e.to_string())
    });
    if let Err(e) = recorded {
        warning!("pg_oncall: could not record the sync failure: {e}");
    }
}
