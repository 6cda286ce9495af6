//! What a sync writes: the PagerDuty rows of `oncall.shifts` and, when they were fetched, the
//! open incidents of `oncall.incidents`, replaced in one transaction, and the sync's health in
//! `oncall.sync_state`. Manual rows are never touched.

use std::time::Duration;

use oncall_core::pagerduty::{IncidentSyncResult, SyncResult};
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
// A sync whose on-call part succeeded; `$7` is the error of its incident part, if that failed
// (the shifts are fresh all the same, but the sync as a whole did not succeed).
const RECORD_SUCCESS: &str = "\
    UPDATE oncall.sync_state SET token_configured = true, last_attempt_at = $1, last_success_at = $1,
           last_error = $7, shifts = $2, pages = $3, requests = $4, duration_ms = $5, next_attempt_at = $6,
           incident_requests = $8,
           syncs_ok = syncs_ok OPERATOR(pg_catalog.+) (CASE WHEN $7::pg_catalog.text IS NULL THEN 1 ELSE 0 END)::pg_catalog.int8,
           syncs_failed = syncs_failed OPERATOR(pg_catalog.+) (CASE WHEN $7::pg_catalog.text IS NULL THEN 0 ELSE 1 END)::pg_catalog.int8";
const DELETE_INCIDENTS: &str = "DELETE FROM oncall.incidents AS i";
// Assignee lists travel as newline-joined text: a two-dimensional array cannot be ragged.
const INSERT_INCIDENTS: &str = "\
    INSERT INTO oncall.incidents (id, incident_number, title, status, urgency, service_id, escalation_policy_id,
                                  assignee_emails, created_at, synced_at)
    SELECT t.id, t.n, t.title, t.status, t.urgency, t.svc, t.ep, pg_catalog.string_to_array(t.emails, E'\\n'), t.created, $10
      FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.int4[]),
                      pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]),
                      pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.text[]),
                      pg_catalog.unnest($7::pg_catalog.text[]), pg_catalog.unnest($8::pg_catalog.text[]),
                      pg_catalog.unnest($9::pg_catalog.timestamptz[])) AS t(id, n, title, status, urgency, svc, ep, emails, created)";
const RECORD_INCIDENTS: &str = "UPDATE oncall.sync_state SET incidents = $1, incidents_last_success_at = $2";
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

/// Refuses, before anything is replaced, incidents whose assignments the snapshot could not hold.
pub fn incidents_fit_snapshot(result: &IncidentSyncResult) -> Result<(), String> {
    let assignments: usize = result.incidents.iter().map(|i| i.assignee_emails.len()).sum();
    let capacity = guc::MAX_INCIDENT_ASSIGNMENTS.get() as usize;
    if assignments > capacity {
        return Err(format!(
            "the snapshot does not fit: PagerDuty returned {assignments} incident assignments (open incidents times their \
             assignees), more than pg_oncall.max_incident_assignments = {capacity} (raise it and restart); the previous \
             incidents are kept"
        ));
    }
    Ok(())
}

/// What a sync stores besides the shifts: the open incidents it fetched, or why that failed.
pub enum IncidentsOutcome<'a> {
    /// Not wanted this time (`pg_oncall.sync_incidents`): `oncall.incidents` stays as it is.
    NotSynced,
    Synced(&'a IncidentSyncResult),
    Failed(&'a str),
}

/// Replaces the PagerDuty rows (and the incidents, when synced) and records the sync, in one
/// transaction. `next` is when the next sync is due.
pub fn store_sync(
    result: &SyncResult,
    incidents: IncidentsOutcome,
    started_at: pg_sys::TimestampTz,
    duration_ms: f64,
    next: Duration,
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
    let next = after(next);
    let (incident_requests, incident_error, incident_rows) = match incidents {
        IncidentsOutcome::NotSynced => (0, None, None),
        IncidentsOutcome::Synced(r) => (r.requests, None, Some(IncidentRows::of(r))),
        IncidentsOutcome::Failed(message) => (0, Some(message.to_owned()), None),
    };
    let requests = result.requests.saturating_add(incident_requests);
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
                    (requests as i32).into(),
                    duration_ms.into(),
                    next.into(),
                    incident_error.clone().into(),
                    (incident_requests as i32).into(),
                ],
            )?;
            if let Some(rows) = &incident_rows {
                client.update(DELETE_INCIDENTS, None, &[])?;
                client.update(
                    INSERT_INCIDENTS,
                    None,
                    &[
                        rows.ids.clone().into(),
                        rows.numbers.clone().into(),
                        rows.titles.clone().into(),
                        rows.statuses.clone().into(),
                        rows.urgencies.clone().into(),
                        rows.services.clone().into(),
                        rows.policies.clone().into(),
                        rows.assignees.clone().into(),
                        rows.created.clone().into(),
                        started.into(),
                    ],
                )?;
                client.update(RECORD_INCIDENTS, None, &[(rows.ids.len() as i32).into(), started.into()])?;
            }
            Ok(())
        })
        .map_err(|e| e.to_string())
    })
    .map_err(|e| format!("storing the synced shifts failed: {e}"))
}

/// The columns of `oncall.incidents`, one array each.
struct IncidentRows {
    ids: Vec<String>,
    numbers: Vec<Option<i32>>,
    titles: Vec<String>,
    statuses: Vec<String>,
    urgencies: Vec<Option<String>>,
    services: Vec<Option<String>>,
    policies: Vec<Option<String>>,
    assignees: Vec<String>,
    created: Vec<Option<TimestampWithTimeZone>>,
}

impl IncidentRows {
    fn of(result: &IncidentSyncResult) -> IncidentRows {
        let all = &result.incidents;
        IncidentRows {
            ids: all.iter().map(|i| i.id.clone()).collect(),
            numbers: all.iter().map(|i| i32::try_from(i.incident_number).ok()).collect(),
            titles: all.iter().map(|i| i.title.clone()).collect(),
            statuses: all.iter().map(|i| i.status.as_str().to_owned()).collect(),
            urgencies: all.iter().map(|i| i.urgency.clone()).collect(),
            services: all.iter().map(|i| i.service_id.clone()).collect(),
            policies: all.iter().map(|i| i.escalation_policy_id.clone()).collect(),
            assignees: all.iter().map(|i| i.assignee_emails.join("\n")).collect(),
            created: all.iter().map(|i| timestamptz(Some(i.created_at_us))).collect(),
        }
    }
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
