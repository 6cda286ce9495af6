//! This session's elevations: each stretch with a gated role current, from the allowed switch
//! to the role changing again, the session ending, or the refusal that ends it. Its start and
//! end go to the worker's queue (never the user's transaction), with the open incidents it is
//! about, and its start to a note on each of them (`pg_oncall.annotate_incidents`); each
//! statement it runs is counted and logged; its time limit is enforced and its end announced.
//!
//! The role's own assign hook tells us when the current role changes (also on transaction
//! abort, at the end of SET LOCAL and when a function's SET clause returns). A function with
//! `SET role` called once per row would otherwise make one elevation per call: an elevation
//! that ends and restarts for the same role within one statement is resumed instead, and ends
//! are queued once the statement is over.

use std::cell::{Cell, RefCell};

use oncall_core::audit::{incident_note, line, truncate};
use oncall_core::decision::{Decision, Reason, Until};
use pgrx::{pg_sys, PgSqlErrorCode};

use super::audit;
use super::messages;
use super::stats::Route;
use crate::decide::Identity;
use crate::elevations::queue::{self, Event, INCIDENTS_LEN};
use crate::elevations::EndReason;
use crate::guc::{self, LogStatements};
use crate::notes::queue::{self as notes, Note};
use crate::pg::shmem::FixedStr;
use crate::pg::{backend, hooks, roles, time};

/// What identifies "the same statement" for resuming an elevation.
#[derive(Clone, Copy, PartialEq, Eq)]
struct StatementKey {
    transaction_start: pg_sys::TimestampTz,
    statement_start: pg_sys::TimestampTz,
}

impl StatementKey {
    fn current() -> StatementKey {
        // SAFETY: reads backend-local timestamps; cannot raise.
        unsafe {
            StatementKey {
                transaction_start: pg_sys::GetCurrentTransactionStartTimestamp(),
                statement_start: time::statement_start_pg(),
            }
        }
    }
}

struct Elevation {
    id: u64,
    /// When the timeout that ends its access is armed for.
    armed: Option<i64>,
    role: pg_sys::Oid,
    role_name: String,
    route: Route,
    identity: Identity,
    /// When the rule's max_duration ends it.
    deadline: Option<i64>,
    /// The open incidents it is about; `None` when no incident data is fresh.
    incidents: Option<Vec<String>>,
    statements: u64,
    warned: bool,
}

/// An allowed switch whose assignment comes next (the check hook runs before the assign hook).
struct Pending {
    elevation: Elevation,
    start: Event,
    notes: Vec<Note>,
}

struct Ended {
    elevation: Elevation,
    at: i64,
    reason: EndReason,
    key: StatementKey,
}

thread_local! {
    static CURRENT: RefCell<Option<Elevation>> = const { RefCell::new(None) };
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
    /// Ended by a role change, not queued yet: resumable within the same statement.
    static ENDED: RefCell<Vec<Ended>> = const { RefCell::new(Vec::new()) };
    /// The role whose elevation reached its time limit: refused until the role changes.
    static EXPIRED: Cell<Option<pg_sys::Oid>> = const { Cell::new(None) };
    /// The route of the last elevation of each role, for an elevation that starts without a
    /// switch (the role restored when a function or SET LOCAL returns, or allowed again).
    static LAST_ROUTE: RefCell<Vec<(pg_sys::Oid, Route)>> = const { RefCell::new(Vec::new()) };
    static CALLBACKS: Cell<bool> = const { Cell::new(false) };
}

fn in_recovery() -> bool {
    // SAFETY: reads shared recovery state.
    unsafe { pg_sys::RecoveryInProgress() }
}

/// Queues an event for the worker, and wakes it; on a hot standby elevations are logged and
/// counted, not recorded.
fn record(event: &Event) {
    if !in_recovery() && queue::push(event) {
        crate::sync::signal::wake_worker();
    }
}

/// When and why an elevation that ends `now` for `reason` really ended: at its time limit or
/// when its access lapsed, if that came first (the timeout stopped it, nothing refused yet).
fn ending(elevation: &Elevation, now: i64, reason: EndReason) -> (i64, EndReason) {
    match elevation.armed {
        Some(at) if at <= now && elevation.deadline == Some(at) => (at, EndReason::MaxDuration),
        Some(at) if at <= now => (at, EndReason::ShiftEnd),
        _ => (now, reason),
    }
}

fn end_event(elevation: &Elevation, at: i64, reason: EndReason) -> Event {
    Event::end(elevation.id, at, reason, elevation.statements, backend::pid())
}

fn register_callbacks() {
    if CALLBACKS.replace(true) {
        return;
    }
    // SAFETY: process-lifetime callbacks registered once per backend; they only queue events.
    unsafe {
        pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut());
        pg_sys::before_shmem_exit(Some(at_session_end), pg_sys::Datum::from(0));
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    if event == XACT_EVENT_ABORT {
        report_lapse();
    }
    if matches!(event, XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE) {
        queue_ended();
        PENDING.set(None);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_session_end(_code: i32, _arg: pg_sys::Datum) {
    if let Some(elevation) = CURRENT.take() {
        hooks::disarm_access_end();
        let (at, reason) = ending(&elevation, time::now(), EndReason::SessionEnd);
        record(&end_event(&elevation, at, reason));
    }
    queue_ended();
}

/// Queues the ends kept for resuming.
fn queue_ended() {
    for ended in ENDED.take() {
        record(&end_event(&ended.elevation, ended.at, ended.reason));
    }
}

/// A new statement began: ends kept from the previous one are final.
fn queue_ended_of_other_statements() {
    let key = StatementKey::current();
    let done: Vec<Ended> = ENDED.with_borrow_mut(|ended| {
        let (done, kept) = std::mem::take(ended).into_iter().partition(|e| e.key != key);
        *ended = kept;
        done
    });
    for ended in done {
        record(&end_event(&ended.elevation, ended.at, ended.reason));
    }
}

/// As many whole ids as fit in `max` bytes, comma-separated (a cut id would name another).
fn joined_ids(ids: &[String], max: usize) -> String {
    let mut out = String::new();
    for id in ids.iter().filter(|id| !id.contains(',')) {
        if out.len() + usize::from(!out.is_empty()) + id.len() > max {
            break;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(id);
    }
    out
}

/// The notes a new elevation puts on its incidents (none unless `annotate_incidents` is on).
/// Needs a transaction.
fn incident_notes(elevation: &Elevation, started_at: i64, reason: Option<&str>) -> Vec<Note> {
    let (Some(email), Some(ids)) = (&elevation.identity.email, &elevation.incidents) else { return Vec::new() };
    if !guc::ANNOTATE_INCIDENTS.get() || ids.is_empty() {
        return Vec::new();
    }
    let database = backend::database().unwrap_or_default();
    let content = incident_note(email, &elevation.role_name, &backend::cluster_name(), &database, started_at, reason);
    let content = FixedStr::truncated(Some(&content));
    ids.iter().map(|id| Note { elevation: elevation.id, incident_id: FixedStr::truncated(Some(id)), content }).collect()
}

fn start_event(elevation: &Elevation, started_at: i64) -> Event {
    let mut event = Event::start(elevation.id, started_at, backend::pid());
    event.session_user = FixedStr::truncated(Some(&elevation.identity.role_name));
    event.identity = FixedStr::truncated(elevation.identity.email.as_deref());
    event.role = FixedStr::truncated(Some(&elevation.role_name));
    event.route = FixedStr::truncated(Some(elevation.route.name()));
    event.database = FixedStr::truncated(backend::database().as_deref());
    event.client_addr = FixedStr::truncated(backend::client_addr().as_deref());
    event.application_name = FixedStr::truncated(backend::application_name().as_deref());
    event.reason = FixedStr::truncated(guc::reason().as_deref());
    event.incident_ids = FixedStr::truncated(elevation.incidents.as_deref().map(|ids| joined_ids(ids, INCIDENTS_LEN)).as_deref());
    event
}

/// An allowed switch into a gated role (its assignment follows): the new elevation's id, for
/// the allow line. Needs a transaction.
pub fn switch_allowed(role: pg_sys::Oid, role_name: &str, route: Route, identity: &Identity, max_duration: Option<i64>) -> u64 {
    register_callbacks();
    let now = time::now();
    let elevation = Elevation {
        id: queue::next_id(),
        armed: None,
        role,
        role_name: role_name.to_owned(),
        route,
        identity: identity.clone(),
        deadline: max_duration.map(|d| now.saturating_add(d)),
        incidents: crate::decide::elevation_incidents(role, identity.email.as_deref(), now),
        statements: 0,
        warned: false,
    };
    let start = start_event(&elevation, now);
    let notes = incident_notes(&elevation, now, guc::reason().as_deref());
    let id = elevation.id;
    PENDING.set(Some(Pending { elevation, start, notes }));
    id
}

/// The `role` setting changed (any way, including restores at transaction or function end).
/// Runs where no error may be raised and the catalog may not be read: bookkeeping only.
pub fn role_assigned() {
    // SAFETY: reads a backend-local flag.
    if unsafe { pg_sys::InitializingParallelWorker } {
        return;
    }
    let new_role = roles::current_role();
    let pending = PENDING.take().filter(|p| Some(p.elevation.role) == new_role);
    // A time limit holds until the role changes or a new switch into it.
    if EXPIRED.get() != new_role || pending.is_some() {
        EXPIRED.set(None);
    }
    let unchanged = CURRENT.with_borrow(|c| c.as_ref().map(|e| e.role)) == new_role;
    if unchanged && pending.is_none() {
        return;
    }
    let now = time::now();
    let key = StatementKey::current();
    if let Some(mut elevation) = CURRENT.take() {
        hooks::disarm_access_end();
        let (at, reason) = ending(&elevation, now, if new_role.is_none() { EndReason::Reset } else { EndReason::Switch });
        elevation.armed = None;
        ENDED.with_borrow_mut(|ended| ended.push(Ended { elevation, at, reason, key }));
    }
    let Some(role) = new_role else { return };
    // A SET clause re-entered, or a role restored, within one statement: the same elevation.
    let resumable = pending.as_ref().is_none_or(|p| p.elevation.route == Route::FunctionSet);
    if resumable {
        let resumed = ENDED.with_borrow_mut(|ended| {
            let i = ended.iter().rposition(|e| e.elevation.role == role && e.key == key)?;
            Some(ended.remove(i).elevation)
        });
        if let Some(elevation) = resumed {
            CURRENT.set(Some(elevation));
            return;
        }
    }
    if let Some(Pending { elevation, start, notes: incident_notes }) = pending {
        LAST_ROUTE.with_borrow_mut(|routes| {
            routes.retain(|(r, _)| *r != role);
            routes.push((role, elevation.route));
        });
        record(&start);
        notes::push(&incident_notes);
        crate::sync::signal::wake_worker();
        CURRENT.set(Some(elevation));
    }
    // Otherwise the next statement starts an elevation, once it can read the catalog.
}

/// A statement was stopped by the end of the elevation's access (the timeout): its refusal is
/// logged and counted, and the elevation ends, as when a statement is refused at its start.
pub fn report_lapse() {
    if !hooks::take_access_end_reported() {
        return;
    }
    let lapsed = CURRENT.with_borrow(|c| {
        c.as_ref().map(|e| (e.role, e.role_name.clone(), e.identity.clone(), e.deadline.is_some() && e.deadline == e.armed))
    });
    let Some((role, role_name, identity, time_limit)) = lapsed else { return };
    let (reason, end) = if time_limit { (Reason::TimeLimit, EndReason::MaxDuration) } else { (Reason::NotOnCall, EndReason::ShiftEnd) };
    audit::judge(Route::Statement, &role_name, &identity, &Decision::deny(reason));
    refused(role, end);
}

/// Whether the elevation of `role` reached its time limit (it stays refused until the role
/// changes).
pub fn expired(role: pg_sys::Oid, now: i64) -> bool {
    if EXPIRED.get() == Some(role) {
        return true;
    }
    let deadline = CURRENT.with_borrow(|c| c.as_ref().filter(|e| e.role == role).and_then(|e| e.deadline));
    deadline.is_some_and(|d| now >= d)
}

/// A refusal ends the current elevation of `role`.
pub fn refused(role: pg_sys::Oid, reason: EndReason) {
    if reason == EndReason::MaxDuration {
        EXPIRED.set(Some(role));
    }
    let elevation = CURRENT.with_borrow_mut(|c| c.take_if(|e| e.role == role));
    if let Some(elevation) = elevation {
        hooks::disarm_access_end();
        record(&end_event(&elevation, time::now(), reason));
    }
}

/// A statement of this session's kind, to count and (per `pg_oncall.log_statements`) log.
pub struct Statement<'a> {
    pub text: &'a str,
    pub level: pg_sys::LogStmtLevel::Type,
}

fn logged(level: pg_sys::LogStmtLevel::Type) -> bool {
    use pg_sys::LogStmtLevel::*;
    match guc::log_statements() {
        LogStatements::None => false,
        LogStatements::Ddl => level == LOGSTMT_DDL,
        LogStatements::Mod => level == LOGSTMT_DDL || level == LOGSTMT_MOD,
        LogStatements::All => true,
    }
}

/// A statement starts with `role` current, allowed (`decision`; `None` for a superuser):
/// the elevation starts if none is running, counts and logs the statement, and warns once
/// when its end is near.
pub fn statement(
    role: pg_sys::Oid,
    role_name: impl FnOnce() -> String,
    identity: &Identity,
    decision: Option<&Decision>,
    statement: Option<Statement>,
) {
    register_callbacks();
    queue_ended_of_other_statements();
    let now = time::now();
    let running = CURRENT.with_borrow(|c| c.as_ref().is_some_and(|e| e.role == role));
    if !running {
        let route = LAST_ROUTE.with_borrow(|routes| routes.iter().find(|(r, _)| *r == role).map(|&(_, route)| route));
        let max_duration = crate::decide::limits(role).max_duration;
        let elevation = Elevation {
            id: queue::next_id(),
            armed: None,
            role,
            role_name: role_name(),
            route: route.unwrap_or(Route::SetRole),
            identity: identity.clone(),
            deadline: max_duration.map(|d| now.saturating_add(d)),
            incidents: crate::decide::elevation_incidents(role, identity.email.as_deref(), now),
            statements: 0,
            warned: false,
        };
        record(&start_event(&elevation, now));
        notes::push(&incident_notes(&elevation, now, guc::reason().as_deref()));
        crate::sync::signal::wake_worker();
        CURRENT.set(Some(elevation));
    }
    let warning = CURRENT.with_borrow_mut(|current| {
        let elevation = current.as_mut()?;
        if let Some(statement) = &statement {
            elevation.statements += 1;
            if logged(statement.level) {
                log_statement(elevation, statement.text);
            }
        }
        let enforced = crate::guc::enforcement() == crate::guc::Enforcement::Enforce;
        let ends = decision.filter(|_| enforced).map(|d| earliest(d.lapses_at, elevation.deadline));
        if let Some(Some(at)) = ends.filter(|&at| at != elevation.armed) {
            elevation.armed = Some(at);
            arm(elevation, at);
        }
        if elevation.warned {
            return None;
        }
        let shift_end = decision.and_then(|d| match d.until {
            Some(Until::At(t)) => Some(t),
            _ => None,
        });
        let (at, what) = match (shift_end, elevation.deadline) {
            (Some(s), Some(d)) if d < s => (d, "its time limit (max_duration) is reached"),
            (Some(s), _) => (s, "your on-call shift ends"),
            (None, Some(d)) => (d, "its time limit (max_duration) is reached"),
            (None, None) => return None,
        };
        if at.saturating_sub(now) >= guc::warn_before_end_us() {
            return None;
        }
        elevation.warned = true;
        Some(messages::ends_soon(&elevation.role_name, &time::format(at), what))
    });
    if let Some(message) = warning {
        crate::pg::log::notice(PgSqlErrorCode::ERRCODE_WARNING, message);
    }
}

/// A statement the gate never refuses: counted and logged only in a running elevation of `role`.
pub fn exempt_statement(role: pg_sys::Oid, statement: Statement) {
    queue_ended_of_other_statements();
    CURRENT.with_borrow_mut(|current| {
        if let Some(elevation) = current.as_mut().filter(|e| e.role == role) {
            elevation.statements += 1;
            if logged(statement.level) {
                log_statement(elevation, statement.text);
            }
        }
    });
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// The timeout that stops whatever runs when the elevation's access ends.
fn arm(elevation: &Elevation, at: i64) {
    let time_limit = elevation.deadline == Some(at);
    let detail = if time_limit {
        messages::detail(oncall_core::decision::Reason::TimeLimit, &elevation.role_name, &elevation.identity)
    } else {
        format!(
            "{} It ended while this statement ran (the shift ended, or the on-call or incident data went stale).",
            messages::detail(Reason::NotOnCall, &elevation.role_name, &elevation.identity)
        )
    };
    let hint = if time_limit { messages::time_limit_hint(&elevation.role_name) } else { messages::ACCESS_ENDED_HINT.to_owned() };
    hooks::arm_access_end(at, &messages::access_ended(&elevation.role_name, &elevation.identity), &detail, &hint);
}

fn log_statement(elevation: &Elevation, text: &str) {
    let max = usize::try_from(guc::LOG_STATEMENT_MAX_LENGTH.get()).unwrap_or(0);
    let (text, _) = truncate(text.trim(), max);
    hooks::audit_line(&line(
        "statement",
        &[
            ("elevation", &elevation.id.to_string()),
            ("role", &elevation.role_name),
            ("session_user", &elevation.identity.role_name),
            ("identity", elevation.identity.email.as_deref().unwrap_or("-")),
            ("statement", text),
        ],
    ));
}
