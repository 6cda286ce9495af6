//! The gate after the switch: every statement run with a gated role current — top-level or
//! nested, each cursor fetch or portal run, each fast-path call — is judged by the wall clock
//! when it starts, so access ends when the shift ends even if nothing republishes the snapshot.

use std::cell::RefCell;

use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode};

use super::audit;
use super::messages;
use super::stats::Route;
use crate::decide;
use crate::guc::{self, Enforcement};
use crate::pg::log::raise;
use crate::pg::{roles, time};

/// Refuses the statement unless the session user may still use `role_oid`; `false` when the
/// role is not gated (nothing to watch).
fn judge_role(role_oid: pg_sys::Oid) -> bool {
    if guc::enforcement() == Enforcement::Off || roles::is_superuser(roles::session_user()) {
        return false;
    }
    let role_name = || roles::name_of(role_oid).unwrap_or_default();
    let Some(decision) = decide::session_user_may_assume(role_oid, role_name, time::now()) else { return false };
    if decision.allowed {
        return true;
    }
    let role = role_name();
    let identity = decide::session_identity();
    if audit::judge(Route::Statement, &role, &identity, &decision) {
        raise(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            messages::access_ended(&role, &identity),
            messages::detail(decision.reason, &role, &identity),
            messages::ACCESS_ENDED_HINT.into(),
        );
    }
    true
}

fn in_parallel_worker() -> bool {
    // SAFETY: reads a backend-local variable.
    unsafe { pg_sys::ParallelWorkerNumber >= 0 }
}

/// Refuses the statement when the current role (set through `role`) is gated and the session
/// user may no longer use it. One variable read when no role is set. Returns the gated role
/// that was current, if any.
pub fn recheck_current_role() -> Option<pg_sys::Oid> {
    let role = roles::current_role()?;
    if in_parallel_worker() {
        return None;
    }
    judge_role(role).then_some(role)
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

/// ExecutorStart: the re-check, and a note of the role for the statement's later runs.
pub fn executor_start(query_desc: *mut pg_sys::QueryDesc) {
    let Some(role) = recheck_current_role() else { return };
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
            judge_role(role);
        }
        _ => {
            recheck_current_role();
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
                let Some(name) = cursor_name((*(stmt as *mut pg_sys::FetchStmt)).portalname) else { return };
                let role = HELD_CURSORS.with_borrow(|held| held.iter().find(|(n, _)| *n == name).map(|&(_, r)| r));
                if let Some(role) = role {
                    judge_role(role);
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
