//! The worker's side of elevation records: drain the queue into `oncall.elevation_records`,
//! close the records a server restart interrupted, and apply `pg_oncall.elevations_retention`.

use std::time::{Duration, Instant};

use pgrx::prelude::*;

use super::queue::{self, Event};
use crate::guc;
use crate::pg::time::pg_from_unix;
use crate::pg::xact;

const BATCH: usize = 1000;
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

// Every name is schema-qualified and every operator spelled OPERATOR(pg_catalog.x) (DESIGN.md,
// guarantee 8).
const TABLE_EXISTS: &str = "SELECT pg_catalog.to_regclass('oncall.elevation_records') IS NOT NULL";
const INSERT_STARTS: &str = "\
    INSERT INTO oncall.elevation_records AS r (id, \"session_user\", identity, role, route, database, backend_pid,
                                              client_addr, application_name, reason, incident_ids, started_at)
    SELECT t.id, t.su, t.ident, t.role, t.route, t.db, t.pid, t.addr::pg_catalog.inet, t.app, t.reason,
           pg_catalog.string_to_array(t.incidents, ','), t.at
      FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), pg_catalog.unnest($2::pg_catalog.name[]),
                      pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.name[]),
                      pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.name[]),
                      pg_catalog.unnest($7::pg_catalog.int4[]), pg_catalog.unnest($8::pg_catalog.text[]),
                      pg_catalog.unnest($9::pg_catalog.text[]), pg_catalog.unnest($10::pg_catalog.text[]),
                      pg_catalog.unnest($11::pg_catalog.text[]), pg_catalog.unnest($12::pg_catalog.timestamptz[]))
           AS t(id, su, ident, role, route, db, pid, addr, app, reason, incidents, at)
    ON CONFLICT (id) DO NOTHING";
const RECORD_ENDS: &str = "\
    UPDATE oncall.elevation_records AS r SET ended_at = t.at, end_reason = t.why, statements = t.n
      FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), pg_catalog.unnest($2::pg_catalog.timestamptz[]),
                      pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.int8[]))
           AS t(id, at, why, n)
     WHERE r.id OPERATOR(pg_catalog.=) t.id AND r.ended_at IS NULL";
const CLOSE_INTERRUPTED: &str = "\
    UPDATE oncall.elevation_records AS r SET ended_at = pg_catalog.pg_postmaster_start_time(), end_reason = 'session_end'
     WHERE r.ended_at IS NULL AND r.started_at OPERATOR(pg_catalog.<) pg_catalog.pg_postmaster_start_time()";
const APPLY_RETENTION: &str = "\
    DELETE FROM oncall.elevation_records AS r
     WHERE COALESCE(r.ended_at, r.started_at) OPERATOR(pg_catalog.<) $1";

/// Runs `write` in a transaction of its own; a failure comes back as a message.
fn in_transaction(
    what: &str,
    write: impl FnOnce() -> Result<(), pgrx::spi::Error> + std::panic::UnwindSafe + std::panic::RefUnwindSafe,
) -> Result<(), String> {
    xact::run(|| write().map_err(|e| e.to_string())).map_err(|e| format!("{what}: {e}"))
}

fn table_exists() -> bool {
    xact::run(|| {
        Spi::connect(|client| client.select(TABLE_EXISTS, None, &[])?.first().get_one::<bool>()).map_err(|e| e.to_string())
    })
    .ok()
    .flatten()
    .unwrap_or(false)
}

fn timestamp(us: i64) -> Option<TimestampWithTimeZone> {
    TimestampWithTimeZone::try_from(pg_from_unix(us)).ok()
}

fn text(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

fn write(events: &[Event]) -> Result<(), String> {
    let starts: Vec<&Event> = events.iter().filter(|e| e.end_reason.is_none()).collect();
    let ends: Vec<&Event> = events.iter().filter(|e| e.end_reason.is_some()).collect();
    let ids: Vec<i64> = starts.iter().map(|e| e.id as i64).collect();
    let session_users: Vec<Option<String>> = starts.iter().map(|e| text(e.session_user.get())).collect();
    let identities: Vec<Option<String>> = starts.iter().map(|e| text(e.identity.get())).collect();
    let roles: Vec<Option<String>> = starts.iter().map(|e| text(e.role.get())).collect();
    let routes: Vec<Option<String>> = starts.iter().map(|e| text(e.route.get())).collect();
    let databases: Vec<Option<String>> = starts.iter().map(|e| text(e.database.get())).collect();
    let pids: Vec<i32> = starts.iter().map(|e| e.backend_pid).collect();
    let addrs: Vec<Option<String>> = starts.iter().map(|e| text(e.client_addr.get())).collect();
    let apps: Vec<Option<String>> = starts.iter().map(|e| text(e.application_name.get())).collect();
    let reasons: Vec<Option<String>> = starts.iter().map(|e| text(e.reason.get())).collect();
    let incidents: Vec<Option<String>> = starts.iter().map(|e| text(e.incident_ids.get())).collect();
    let started: Vec<Option<TimestampWithTimeZone>> = starts.iter().map(|e| timestamp(e.at)).collect();
    let end_ids: Vec<i64> = ends.iter().map(|e| e.id as i64).collect();
    let ended: Vec<Option<TimestampWithTimeZone>> = ends.iter().map(|e| timestamp(e.at)).collect();
    let why: Vec<Option<String>> = ends.iter().map(|e| e.end_reason.map(|r| r.name().to_owned())).collect();
    let counts: Vec<i64> = ends.iter().map(|e| e.statements as i64).collect();
    in_transaction("recording elevations", || {
        Spi::connect_mut(|client| {
            if !ids.is_empty() {
                client.update(
                    INSERT_STARTS,
                    None,
                    &[
                        ids.clone().into(),
                        session_users.clone().into(),
                        identities.clone().into(),
                        roles.clone().into(),
                        routes.clone().into(),
                        databases.clone().into(),
                        pids.clone().into(),
                        addrs.clone().into(),
                        apps.clone().into(),
                        reasons.clone().into(),
                        incidents.clone().into(),
                        started.clone().into(),
                    ],
                )?;
            }
            if !end_ids.is_empty() {
                client.update(
                    RECORD_ENDS,
                    None,
                    &[end_ids.clone().into(), ended.clone().into(), why.clone().into(), counts.clone().into()],
                )?;
            }
            Ok(())
        })
    })
}

/// The worker's bookkeeping of elevation records, between its other work.
pub struct Recorder {
    closed_interrupted: bool,
    next_retention: Instant,
    last_error: Option<String>,
    said_no_table: bool,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder { closed_interrupted: false, next_retention: Instant::now(), last_error: None, said_no_table: false }
    }

    /// Records whatever is queued (a primary's worker, extension installed).
    pub fn drain(&mut self) {
        if queue::is_empty() && self.closed_interrupted && Instant::now() < self.next_retention {
            return;
        }
        if !table_exists() {
            let lost = queue::take(usize::MAX).len() as u64;
            queue::count_lost(lost);
            if !self.said_no_table {
                log!("pg_oncall: elevations are logged but not recorded until ALTER EXTENSION pg_oncall UPDATE creates oncall.elevation_records");
                self.said_no_table = true;
            }
            return;
        }
        self.said_no_table = false;
        if !self.closed_interrupted {
            self.closed_interrupted =
                self.report(in_transaction("closing elevations a restart interrupted", || Spi::run(CLOSE_INTERRUPTED)));
        }
        loop {
            let events = queue::take(BATCH);
            if events.is_empty() {
                break;
            }
            if !self.report(write(&events)) {
                // Not retried: the next events may depend on these; the loss is counted.
                queue::count_lost(events.len() as u64);
            }
        }
        if Instant::now() >= self.next_retention {
            self.next_retention = Instant::now() + RETENTION_EVERY;
            let keep_us = i64::from(guc::ELEVATIONS_RETENTION_S.get()) * 1_000_000;
            let cutoff = timestamp(crate::pg::time::now().saturating_sub(keep_us));
            self.report(in_transaction("applying pg_oncall.elevations_retention", || {
                Spi::run_with_args(APPLY_RETENTION, &[cutoff.into()])
            }));
        }
    }

    /// Logs a failure once per distinct message; true on success.
    fn report(&mut self, result: Result<(), String>) -> bool {
        match result {
            Ok(()) => {
                self.last_error = None;
                true
            }
            Err(message) => {
                if self.last_error.as_deref() != Some(message.as_str()) {
                    warning!("pg_oncall: {message}");
                }
                self.last_error = Some(message);
                false
            }
        }
    }
}
