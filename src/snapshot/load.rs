//! Filling the snapshot: from the tables (the worker, whenever they change) and from the
//! on-disk copy (the postmaster, at start, so the gate holds before the worker's first load).

use oncall_core::decision::{normalize_email, Source};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::{file, segment, FixedStr, GatedRoleRow, ShiftEntry, Snapshot};
use crate::pg::time::unix_from_pg;
use crate::pg::xact;

/// Reads the tables and `sync_state` into a private snapshot and publishes it whole; on any
/// error the published snapshot stays. In the worker, outside a transaction.
pub fn from_tables() -> Result<(), String> {
    let loaded = xact::run(read_tables).map_err(|e| format!("reading the pg_oncall tables failed: {e}"))?;
    let (roles, identities, shifts, incidents) = loaded.counts();
    super::publish(loaded).map_err(|o| o.to_string())?;
    debug1!(
        "pg_oncall: snapshot loaded: {roles} gated roles, {identities} identities, {shifts} shifts, {incidents} incident assignments"
    );
    Ok(())
}

/// A timestamptz column as microseconds since 1970; infinite values as open ends (`None`).
fn instant(ts: Option<TimestampWithTimeZone>) -> Option<i64> {
    let ts = ts?;
    if !ts.is_finite() {
        return None;
    }
    Some(unix_from_pg(ts.into()))
}

// Every name is schema-qualified and every operator spelled OPERATOR(pg_catalog.x), whatever
// the worker's search_path: objects a user planted in `public` are never called (DESIGN.md,
// guarantee 8).
// Columns added after 0.1.0 are read through to_jsonb, so that a catalog still at 0.1.0 (before
// ALTER EXTENSION pg_oncall UPDATE) loads too: no incidents, and none ever synced.
const SYNC_STATE_QUERY: &str = "\
    SELECT s.last_success_at,
           (pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'incidents_last_success_at')::pg_catalog.timestamptz
      FROM oncall.sync_state AS s";
const INCIDENTS_EXIST: &str = "SELECT pg_catalog.to_regclass('oncall.incidents') IS NOT NULL";
// One row per (open incident, assignee); rows a DBA wrote without an open status grant nothing.
const INCIDENTS_QUERY: &str = "\
    SELECT a.email, i.id, i.escalation_policy_id
      FROM oncall.incidents AS i, pg_catalog.unnest(i.assignee_emails) AS a(email)
     WHERE i.status OPERATOR(pg_catalog.=) ANY ('{triggered,acknowledged}'::pg_catalog.text[]) AND a.email IS NOT NULL
     ORDER BY a.email, i.id";
// The rule's elevation limits are read through to_jsonb so that a catalog still at 0.1.0
// (before ALTER EXTENSION pg_oncall UPDATE) loads too, with no limits.
const ROLES_QUERY: &str = "\
    SELECT g.role_name::pg_catalog.text, r.oid, g.escalation_policy_ids, g.schedule_ids,
           g.min_escalation_level, g.max_escalation_level, g.gate_login,
           (pg_catalog.to_jsonb(g) OPERATOR(pg_catalog.->>) 'require_reason')::pg_catalog.bool,
           (pg_catalog.to_jsonb(g) OPERATOR(pg_catalog.->>) 'max_duration')::pg_catalog.interval,
           (pg_catalog.to_jsonb(g) OPERATOR(pg_catalog.->>) 'require_incident')::pg_catalog.bool
      FROM oncall.gated_roles AS g
      LEFT JOIN pg_catalog.pg_roles AS r ON r.rolname OPERATOR(pg_catalog.=) g.role_name
     ORDER BY g.role_name";
const IDENTITIES_QUERY: &str = "\
    SELECT i.role_name::pg_catalog.text, i.email FROM oncall.identities AS i ORDER BY i.role_name";
// Rows that can never grant again are left out; an unchanged table then publishes nothing new
// because the order is deterministic.
const SHIFTS_QUERY: &str = "\
    SELECT s.source, s.email, s.escalation_policy_id, s.schedule_id, s.escalation_level, s.starts_at, s.ends_at
      FROM oncall.shifts AS s
     WHERE (s.ends_at IS NULL OR s.ends_at OPERATOR(pg_catalog.>) pg_catalog.now())
       AND (s.starts_at IS NULL OR s.starts_at OPERATOR(pg_catalog.<) 'infinity'::pg_catalog.timestamptz)
     ORDER BY s.email, s.starts_at, s.ends_at, s.escalation_policy_id, s.schedule_id, s.escalation_level, s.source";

/// An interval's length, with PostgreSQL's own conventions (a month is 30 days).
fn microseconds(interval: Interval) -> i64 {
    const DAY: i64 = 86_400_000_000;
    i64::from(interval.months()) * 30 * DAY + i64::from(interval.days()) * DAY + interval.micros()
}

fn read_tables() -> Result<Snapshot, String> {
    Spi::connect(|client| -> Result<Snapshot, String> {
        let spi = |e: pgrx::spi::Error| e.to_string();
        let (last_sync_success, incidents_last_success) =
            client.select(SYNC_STATE_QUERY, None, &[]).map_err(spi)?.first().get_two().map_err(spi)?;
        let mut snap = Snapshot {
            last_sync_success: instant(last_sync_success),
            incidents_last_success: instant(incidents_last_success),
            ..Snapshot::default()
        };
        for row in client.select(ROLES_QUERY, None, &[]).map_err(spi)? {
            let row = GatedRoleRow {
                name: row.get::<String>(1).map_err(spi)?.unwrap_or_default(),
                oid: row.get::<pg_sys::Oid>(2).map_err(spi)?.unwrap_or(pg_sys::InvalidOid),
                escalation_policy_ids: row.get::<Vec<String>>(3).map_err(spi)?,
                schedule_ids: row.get::<Vec<String>>(4).map_err(spi)?,
                min_escalation_level: row.get::<i32>(5).map_err(spi)?,
                max_escalation_level: row.get::<i32>(6).map_err(spi)?,
                gate_login: row.get::<bool>(7).map_err(spi)?.unwrap_or(false),
                require_reason: row.get::<bool>(8).map_err(spi)?.unwrap_or(false),
                max_duration: row.get::<Interval>(9).map_err(spi)?.map(microseconds),
                require_incident: row.get::<bool>(10).map_err(spi)?.unwrap_or(false),
            };
            snap.add_role(row).map_err(|t| format!("a gated role's {} is too long", t.0))?;
        }
        for row in client.select(IDENTITIES_QUERY, None, &[]).map_err(spi)? {
            let role: String = row.get(1).map_err(spi)?.unwrap_or_default();
            let email: String = row.get(2).map_err(spi)?.unwrap_or_default();
            snap.add_identity(&role, &normalize_email(&email))
                .map_err(|t| format!("identity of role {role}: {} too long", t.0))?;
        }
        for row in client.select(SHIFTS_QUERY, None, &[]).map_err(spi)? {
            let source: String = row.get(1).map_err(spi)?.unwrap_or_default();
            let email: String = row.get(2).map_err(spi)?.unwrap_or_default();
            let policy: Option<String> = row.get(3).map_err(spi)?;
            let schedule: Option<String> = row.get(4).map_err(spi)?;
            let too_long = |what: &str| format!("a shift's {what} is too long");
            snap.add_shift(ShiftEntry {
                email: FixedStr::new(Some(&normalize_email(&email))).ok_or_else(|| too_long("email"))?,
                escalation_policy_id: FixedStr::new(policy.as_deref()).ok_or_else(|| too_long("escalation_policy_id"))?,
                schedule_id: FixedStr::new(schedule.as_deref()).ok_or_else(|| too_long("schedule_id"))?,
                escalation_level: row.get::<i32>(5).map_err(spi)?,
                starts_at: instant(row.get::<TimestampWithTimeZone>(6).map_err(spi)?),
                ends_at: instant(row.get::<TimestampWithTimeZone>(7).map_err(spi)?),
                // The table's CHECK admits only the two; were it bypassed, the stricter kind applies.
                source: Source::from_name(&source).unwrap_or(Source::PagerDuty),
            });
        }
        if client.select(INCIDENTS_EXIST, None, &[]).map_err(spi)?.first().get_one::<bool>().map_err(spi)? == Some(true) {
            for row in client.select(INCIDENTS_QUERY, None, &[]).map_err(spi)? {
                let email: String = row.get(1).map_err(spi)?.unwrap_or_default();
                let id: String = row.get(2).map_err(spi)?.unwrap_or_default();
                let policy: Option<String> = row.get(3).map_err(spi)?;
                // An id, policy or email longer than any PagerDuty sends cannot be matched by a
                // rule or an identity either: left out, not a reason to refuse the whole snapshot.
                if snap.add_incident(&normalize_email(&email), &id, policy.as_deref()).is_err() {
                    debug1!("pg_oncall: incident {id}: a field is too long for the snapshot; left out");
                }
            }
        }
        Ok(snap)
    })
}

/// In the postmaster at shared-memory creation: enforce the last published snapshot from the
/// first connection on, until the worker loads the tables.
pub(super) fn from_disk() {
    let mut snap = match file::load() {
        Ok(Some(snap)) => snap,
        Ok(None) => return,
        Err(e) => {
            pgrx::log!("pg_oncall: ignoring {}: {e}", file::PATH);
            return;
        }
    };
    let Some(shared) = segment::shared() else { return };
    if let Err(o) = segment::check_capacity(&snap, shared) {
        pgrx::log!("pg_oncall: ignoring {}: {o}", file::PATH);
        return;
    }
    snap.sort();
    segment::write_before_backends(&snap);
}
