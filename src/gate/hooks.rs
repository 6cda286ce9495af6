//! What each of pg_oncall's hooks does, called from the C shim (`src/pg/hooks.c`), which
//! installs the hooks and chains PostgreSQL's own code so its errors pass through untouched.
//! These functions raise only pg_oncall's own refusals.

use std::ffi::{c_char, c_int, c_void, CStr};

use pgrx::pg_sys;

use crate::pg::roles;

use super::{catalog, elevation, login, membership, statement, switch};

/// The `role` setting's check hook, after PostgreSQL's own check passed: every route that
/// makes a role current (SET ROLE, set_config, SET clauses, startup options, role defaults).
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pg_oncall_check_role(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: the GUC machinery's arguments, passed through by the shim.
    unsafe { switch::check_role(newval, source) }
}

/// The `role` setting's assign hook: the current role changed, however (SET, RESET, the end
/// of SET LOCAL or of a function's SET clause, transaction abort). Must not raise.
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pg_oncall_role_assigned() {
    elevation::role_assigned();
}

/// What the utility hook remembers between a statement's start and its end.
#[repr(C)]
pub struct UtilityState {
    guc_nest_level: c_int,
    was_in_set_role: bool,
    may_drop_extension: bool,
}

/// Transaction control, `DISCARD` and `SET`/`RESET` of any setting (so `RESET ROLE` always
/// works) cannot use a role's privileges: never refused. `COMMIT PREPARED` can (it makes a
/// gated role's prepared work durable), so it is judged like any statement.
///
/// # Safety
/// `stmt` is a valid utility parse node.
unsafe fn is_exempt(stmt: *mut pg_sys::Node) -> bool {
    // SAFETY: reads the node's tag and, for a TransactionStmt, its kind.
    unsafe {
        match (*stmt).type_ {
            pg_sys::NodeTag::T_VariableSetStmt | pg_sys::NodeTag::T_DiscardStmt => true,
            pg_sys::NodeTag::T_TransactionStmt => {
                (*(stmt as *mut pg_sys::TransactionStmt)).kind != pg_sys::TransactionStmtKind::TRANS_STMT_COMMIT_PREPARED
            }
            _ => false,
        }
    }
}

/// # Safety
/// `stmt` is a valid utility parse node.
unsafe fn sets_role(stmt: *mut pg_sys::Node) -> bool {
    // SAFETY: a VariableSetStmt by its tag; its name is NULL or a NUL-terminated string.
    unsafe {
        (*stmt).type_ == pg_sys::NodeTag::T_VariableSetStmt && {
            let name = (*(stmt as *mut pg_sys::VariableSetStmt)).name;
            !name.is_null() && CStr::from_ptr(name) == c"role"
        }
    }
}

/// Before every utility statement, top-level or nested: re-check an elevated session, judge
/// membership routes, refuse renaming a gated role, and prepare what the statement's end needs.
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pg_oncall_before_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    _context: pg_sys::ProcessUtilityContext::Type,
    state: *mut UtilityState,
) {
    // SAFETY: the shim passes the statement being run, its source and its own zeroed state.
    unsafe {
        let stmt = (*pstmt).utilityStmt;
        let state = &mut *state;
        if roles::current_role().is_some() {
            let (text, level) = statement::utility_statement(pstmt, query_string);
            let this = elevation::Statement { text: &text, level };
            if is_exempt(stmt) {
                statement::exempt_statement(this);
            } else {
                statement::recheck_current_role(Some(this));
            }
        }
        statement::utility_started(query_string);
        statement::held_cursors(stmt);
        membership::judge_statement(stmt);
        catalog::refuse_renaming_a_gated_role(stmt);
        state.may_drop_extension = catalog::may_drop_extension(stmt);
        if catalog::creates_function_setting_gated_role(stmt) {
            state.guc_nest_level = catalog::skip_body_validation();
        }
        state.was_in_set_role = switch::mark_set_role(sets_role(stmt));
    }
}

/// After the statement, whether it succeeded or raised; must not raise.
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pg_oncall_utility_finished(state: *mut UtilityState) {
    // SAFETY: the shim's state for this statement.
    switch::mark_set_role(unsafe { (*state).was_in_set_role });
    statement::utility_finished();
}

/// After the statement succeeded.
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pg_oncall_after_utility(_pstmt: *mut pg_sys::PlannedStmt, state: *mut UtilityState) {
    // SAFETY: the shim's state for this statement.
    let state = unsafe { &*state };
    if state.guc_nest_level > 0 {
        catalog::restore_settings(state.guc_nest_level);
    }
    if state.may_drop_extension {
        catalog::after_drop();
    }
}

/// Every planned statement, nested ones included, as it starts.
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pg_oncall_executor_start(query_desc: *mut pg_sys::QueryDesc) {
    // SAFETY: the QueryDesc being started, passed through by the shim.
    unsafe { statement::executor_start(query_desc) };
}

/// Each run of a started statement (FETCH, a resumed portal).
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pg_oncall_executor_run(query_desc: *mut pg_sys::QueryDesc) {
    statement::executor_run(query_desc);
}

#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pg_oncall_executor_end(query_desc: *mut pg_sys::QueryDesc) {
    statement::executor_end(query_desc);
}

/// A function about to be called while a role is current: through libpq's fast path (PQfn,
/// large objects: no statement runs it, so it is counted and logged as one), or prepared by
/// the executor.
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pg_oncall_function_call(function: pg_sys::Oid, fast_path: bool) {
    if !fast_path {
        statement::recheck_current_role(None);
        return;
    }
    let text = format!("fast-path function call: {}", roles::function_name(function));
    statement::recheck_current_role(Some(elevation::Statement { text: &text, level: pg_sys::LogStmtLevel::LOGSTMT_ALL }));
}

/// Each PL/pgSQL statement while a role is current, also those PL/pgSQL evaluates without the
/// executor (`x := f()`, `PERFORM f()`): judged, not counted (the statements they run are).
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pg_oncall_plpgsql_statement() {
    statement::recheck_current_role(None);
}

/// PL/pgSQL's FETCH or MOVE on the cursor `name`: one kept past its transaction (WITH HOLD)
/// is read without the executor, so it is judged here against the role that declared it.
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pg_oncall_cursor_fetch(name: *const c_char) {
    // SAFETY: a NUL-terminated portal name from the shim.
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    statement::fetch_from(&name);
}

/// A login, once authenticated.
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pg_oncall_client_authentication(port: *mut pg_sys::Port, status: c_int) {
    // SAFETY: the live Port of this connection, passed through by the shim.
    unsafe { login::check(port, status) }
}
