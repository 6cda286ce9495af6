//! The gate after the switch: every statement run with a gated role current — top-level or
//! nested, each cursor fetch or portal run, each fast-path call — is judged by the wall clock
//! when it starts, so access ends when the shift ends even if nothing republishes the snapshot.

use std::cell::RefCell;

use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode};

use oncall_core::decision::{Decision, Reason};

use super::audit;
use super::elevation;
use super::messages;
use super::stats::Route;
use crate::decide;
use crate::elevations::EndReason;
use crate::guc::{self, Enforcement};
use crate::pg::log::raise;
use crate::pg::{roles, time};

/// The verdict on `role` for a statement starting now; raises (after ending the elevation)
/// when it is refused. `false` when the role is not gated: nothing to watch.
fn judge_role(role: pg_sys::Oid, statement: Option<elevation::Statement>) -> bool {
    if guc::enforcement() == Enforcement::Off {
        return false;
    }
    elevation::report_lapse();
    let role_name = || roles::name_of(role).unwrap_or_default();
    if roles::is_superuser(roles::session_user()) {
        if !decide::is_gated(role, &role_name()) {
            return false;
        }
        elevation::statement(role, role_name, &decide::session_identity(), None, statement);
        return true;
    }
    let now = time::now();
    let Some(mut decision) = decide::session_user_may_assume(role, role_name, now) else { return false };
    if decision.allowed && elevation::expired(role, now) {
        decision = Decision::deny(Reason::TimeLimit);
    }
    let identity = decide::session_identity();
    if decision.allowed {
        elevation::statement(role, role_name, &identity, Some(&decision), statement);
        return true;
    }
    let name = role_name();
    if !audit::judge(Route::Statement, &name, &identity, &decision) {
        // `audit`: logged, not refused; the elevation goes on.
        elevation::statement(role, || name.clone(), &identity, Some(&decision), statement);
        return true;
    }
    let (end, hint) = match decision.reason {
        Reason::TimeLimit => (EndReason::MaxDuration, messages::time_limit_hint(&name)),
        Reason::NotOnCall => (EndReason::ShiftEnd, messages::ACCESS_ENDED_HINT.into()),
        Reason::NoIncident => (EndReason::IncidentResolved, messages::ACCESS_ENDED_HINT.into()),
        _ => (EndReason::Refused, messages::ACCESS_ENDED_HINT.into()),
    };
    elevation::refused(role, end);
    raise(
        PgLogLevel::ERROR,
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        messages::access_ended(&name, &identity),
        messages::detail(decision.reason, &name, &identity),
        hint,
    );
    true
}

/// A statement the gate never refuses (SET, RESET, transaction control): counted and logged
/// in the running elevation, if any.
pub fn exempt_statement(statement: elevation::Statement) {
    if let Some(role) = roles::current_role().filter(|_| !in_parallel_worker() && guc::enforcement() != Enforcement::Off) {
        elevation::exempt_statement(role, statement);
    }
}

fn in_parallel_worker() -> bool {
    // SAFETY: reads a backend-local variable.
    unsafe { pg_sys::ParallelWorkerNumber >= 0 }
}

/// Refuses the statement when the current role (set through `role`) is gated and the session
/// user may no longer use it; otherwise counts (and may log) `statement` in the elevation.
/// One variable read when no role is set. Returns the gated role that was current, if any.
pub fn recheck_current_role(statement: Option<elevation::Statement>) -> Option<pg_sys::Oid> {
    let role = roles::current_role()?;
    if in_parallel_worker() {
        return None;
    }
    judge_role(role, statement).then_some(role)
}

thread_local! {
    /// Cursors declared WITH HOLD while a gated role was current (name, role): after their
    /// transaction commits they are read from a stored result, without the executor, so each
    /// FETCH or MOVE is judged here against that role.
    static HELD_CURSORS: RefCell<Vec<(String, pg_sys::Oid)>> = const { RefCell::new(Vec::new()) };
    /// Statements started with a gated role current (the QueryDesc's address, the role): their
    /// later runs (FETCH, a resumed portal) are judged against that role, whoever is current
    /// by then. Emptied at the end of each transaction.
    static STARTED_AS: RefCell<Vec<(usize, pg_sys::Oid)>> = const { RefCell::new(Vec::new()) };
    static XACT_CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// ExecutorStart: the re-check (which counts and logs the statement in the elevation), and a
/// note of the role for the statement's later runs.
///
/// # Safety
/// `query_desc` is the QueryDesc being started.
pub unsafe fn executor_start(query_desc: *mut pg_sys::QueryDesc) {
    if roles::current_role().is_none() {
        return;
    }
    // SAFETY: the caller's QueryDesc.
    let statement = unsafe { planned_statement(query_desc) };
    let text = statement.as_ref().map(|(text, _)| text.as_str()).unwrap_or_default();
    let Some(role) = recheck_current_role(statement.as_ref().map(|&(_, level)| elevation::Statement { text, level })) else {
        return;
    };
    if !XACT_CALLBACK.replace(true) {
        // SAFETY: registers a process-lifetime callback once per backend.
        unsafe { pg_sys::RegisterXactCallback(Some(forget_started), std::ptr::null_mut()) };
    }
    STARTED_AS.with_borrow_mut(|started| started.push((query_desc as usize, role)));
}

/// ExecutorRun: a statement started as a gated role is judged again at each run.
pub fn executor_run(query_desc: *mut pg_sys::QueryDesc) {
    let role = STARTED_AS.with_borrow(|started| started.iter().rev().find(|(q, _)| *q == query_desc as usize).map(|&(_, r)| r));
    match role {
        Some(role) if !in_parallel_worker() => {
            judge_role(role, None);
        }
        _ => {
            recheck_current_role(None);
        }
    }
}

pub fn executor_end(query_desc: *mut pg_sys::QueryDesc) {
    STARTED_AS.with_borrow_mut(|started| {
        if let Some(i) = started.iter().rposition(|(q, _)| *q == query_desc as usize) {
            started.remove(i);
        }
    });
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn forget_started(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PARALLEL_ABORT
    ) {
        STARTED_AS.with_borrow_mut(Vec::clear);
    }
}

/// FETCH or MOVE from the cursor `name` (SQL or PL/pgSQL): one declared WITH HOLD as a gated
/// role is judged against that role.
pub fn fetch_from(name: &str) {
    let role = HELD_CURSORS.with_borrow(|held| held.iter().find(|(n, _)| n == name).map(|&(_, r)| r));
    if let Some(role) = role.filter(|_| !in_parallel_worker()) {
        judge_role(role, None);
    }
}

/// # Safety
/// `name` is NULL or a NUL-terminated string.
unsafe fn cursor_name(name: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: per the contract above.
    (!name.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned())
}

/// DECLARE, FETCH, MOVE and CLOSE of cursors kept past their transaction (WITH HOLD).
///
/// # Safety
/// `stmt` is a valid utility parse node.
pub unsafe fn held_cursors(stmt: *mut pg_sys::Node) {
    use pg_sys::NodeTag::*;
    // SAFETY: each arm casts to the node type its tag names.
    unsafe {
        match (*stmt).type_ {
            T_DeclareCursorStmt => {
                let declare = stmt as *mut pg_sys::DeclareCursorStmt;
                let Some(name) = cursor_name((*declare).portalname) else { return };
                HELD_CURSORS.with_borrow_mut(|held| held.retain(|(n, _)| *n != name));
                let holds = (*declare).options & pg_sys::CURSOR_OPT_HOLD as i32 != 0;
                if let Some(role) = roles::current_role().filter(|_| holds) {
                    HELD_CURSORS.with_borrow_mut(|held| held.push((name, role)));
                }
            }
            T_FetchStmt => {
                if let Some(name) = cursor_name((*(stmt as *mut pg_sys::FetchStmt)).portalname) {
                    fetch_from(&name);
                }
            }
            T_ClosePortalStmt => match cursor_name((*(stmt as *mut pg_sys::ClosePortalStmt)).portalname) {
                Some(name) => HELD_CURSORS.with_borrow_mut(|held| held.retain(|(n, _)| *n != name)),
                None => HELD_CURSORS.with_borrow_mut(Vec::clear),
            },
            _ => {}
        }
    }
}

thread_local! {
    /// The query strings of the utility statements running (innermost last): a planned
    /// statement they run with the same text (CREATE TABLE AS, EXPLAIN ANALYZE, COPY (query),
    /// DECLARE) is part of them, not a statement of its own.
    static UTILITY_TEXTS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

pub fn utility_started(query_string: *const std::ffi::c_char) {
    UTILITY_TEXTS.with_borrow_mut(|texts| texts.push(query_string as usize));
}

pub fn utility_finished() {
    UTILITY_TEXTS.with_borrow_mut(|texts| texts.pop());
}

/// The text of this statement within `source` (a query string may hold several).
///
/// # Safety
/// `source` is NULL or a NUL-terminated string; `location`/`len` come from its parse.
unsafe fn statement_text(source: *const std::ffi::c_char, location: i32, len: i32) -> String {
    if source.is_null() {
        return String::new();
    }
    // SAFETY: per the contract above.
    let all = unsafe { std::ffi::CStr::from_ptr(source) }.to_bytes();
    let start = usize::try_from(location).unwrap_or(0).min(all.len());
    let end = match usize::try_from(len) {
        Ok(len) if len > 0 => (start + len).min(all.len()),
        _ => all.len(),
    };
    String::from_utf8_lossy(&all[start..end]).into_owned()
}

/// A planned statement's own text and its `log_statement` class; `None` when it belongs to the
/// utility statement that runs it.
///
/// # Safety
/// `query_desc` is a valid QueryDesc.
unsafe fn planned_statement(query_desc: *mut pg_sys::QueryDesc) -> Option<(String, pg_sys::LogStmtLevel::Type)> {
    use pg_sys::CmdType::*;
    use pg_sys::LogStmtLevel::*;
    // SAFETY: the caller's QueryDesc and its PlannedStmt.
    unsafe {
        let source = (*query_desc).sourceText;
        if UTILITY_TEXTS.with_borrow(|texts| texts.last() == Some(&(source as usize))) {
            return None;
        }
        let planned = (*query_desc).plannedstmt;
        let level = match (*query_desc).operation {
            CMD_SELECT if planned.is_null() || !(*planned).hasModifyingCTE => LOGSTMT_ALL,
            CMD_SELECT | CMD_INSERT | CMD_UPDATE | CMD_DELETE => LOGSTMT_MOD,
            _ => LOGSTMT_MOD,
        };
        let (location, len) = if planned.is_null() { (0, 0) } else { ((*planned).stmt_location, (*planned).stmt_len) };
        Some((statement_text(source, location, len), level))
    }
}

/// A utility statement's own text and its `log_statement` class.
///
/// # Safety
/// `pstmt` is the PlannedStmt of a utility statement; `query_string` its source.
pub unsafe fn utility_statement(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
) -> (String, pg_sys::LogStmtLevel::Type) {
    // SAFETY: per the contract above.
    unsafe {
        let text = statement_text(query_string, (*pstmt).stmt_location, (*pstmt).stmt_len);
        (text, pg_sys::GetCommandLogLevel((*pstmt).utilityStmt))
    }
}
