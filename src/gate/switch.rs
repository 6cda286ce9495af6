//! Switches into a role through the `role` setting: which route a check-hook call is (SET
//! ROLE, set_config, a function's SET clause, startup options, role defaults), and the verdict.

use std::cell::Cell;
use std::ffi::{c_char, CStr, CString};

use oncall_core::decision::{Decision, Reason};
use pgrx::{pg_sys, PgSqlErrorCode};

use super::audit;
use super::elevation;
use super::messages;
use super::stats::{Route, Verdict};
use crate::decide;
use crate::guc::{self, Enforcement};
use crate::pg::{roles, time};

thread_local! {
    /// Set while ProcessUtility runs `SET ROLE` / `RESET ROLE`, to name the route.
    static IN_SET_ROLE: Cell<bool> = const { Cell::new(false) };
}

/// Marks the `SET ROLE` statement being run (or not); returns the previous mark to restore.
pub fn mark_set_role(on: bool) -> bool {
    IN_SET_ROLE.replace(on)
}

/// Where a switch came from; a session-level one is told apart only when it gets logged.
#[derive(Clone, Copy)]
enum Source {
    Known(Route),
    Session,
}

impl Source {
    fn of(source: pg_sys::GucSource::Type) -> Option<Source> {
        use pg_sys::GucSource::*;
        match source {
            PGC_S_CLIENT => Some(Source::Known(Route::StartupOption)),
            PGC_S_GLOBAL | PGC_S_DATABASE | PGC_S_USER | PGC_S_DATABASE_USER => Some(Source::Known(Route::RoleDefault)),
            PGC_S_SESSION if IN_SET_ROLE.get() => Some(Source::Known(Route::SetRole)),
            PGC_S_SESSION => Some(Source::Session),
            // Defaults, files, validation of ALTER ROLE/FUNCTION ... SET (PGC_S_TEST): not a switch.
            _ => None,
        }
    }

    fn route(self) -> Route {
        match self {
            Source::Known(route) => route,
            Source::Session if in_function_set_clause() => Route::FunctionSet,
            Source::Session => Route::SetConfig,
        }
    }
}

/// A function's `SET` clause opens a GUC nesting level without a subtransaction; set_config()
/// does not. (set_config() run inside a function that has a SET clause of its own is therefore
/// counted as function_set: the label, not the decision, is approximate there.)
fn in_function_set_clause() -> bool {
    // SAFETY: opening and at once closing an empty GUC nesting level changes no setting; it
    // only reveals the current level, which guc.c keeps private.
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::AtEOXact_GUC(true, level);
        level - 1 > pg_sys::GetCurrentTransactionNestLevel()
    }
}

/// Why a switch is refused: message, DETAIL, HINT.
type Refusal = (String, String, String);

/// The verdict on a switch to `role` (already checked by PostgreSQL); an allowed one (or one
/// `audit` lets through) is the start of an elevation.
fn decide_switch(role_oid: pg_sys::Oid, role: &str, route: impl FnOnce() -> Route) -> Result<(), Refusal> {
    if guc::enforcement() == Enforcement::Off {
        return Ok(());
    }
    if roles::is_superuser(roles::session_user()) {
        if decide::is_gated(role_oid, role) {
            let route = route();
            let identity = decide::session_identity();
            let id = elevation::switch_allowed(role_oid, role, route, &identity, decide::limits(role_oid).max_duration);
            audit::superuser_allowed(route, role, &identity, &audit::Elevation { id: Some(id), justification: guc::reason() });
        }
        return Ok(());
    }
    let Some(mut decision): Option<Decision> = decide::session_user_may_assume(role_oid, || role.to_owned(), time::now()) else {
        return Ok(());
    };
    let limits = decide::limits(role_oid);
    let justification = guc::reason();
    if decision.allowed && limits.require_reason && justification.is_none() {
        decision = Decision::deny(Reason::NoReasonGiven);
    }
    let route = route();
    let identity = decide::session_identity();
    let id = (audit::verdict(&decision) != Verdict::Deny)
        .then(|| elevation::switch_allowed(role_oid, role, route, &identity, limits.max_duration));
    if !audit::judge_switch(route, role, &identity, &decision, &audit::Elevation { id, justification }) {
        return Ok(());
    }
    let hint = match decision.reason {
        Reason::NoReasonGiven => messages::reason_hint(role),
        Reason::NoIncident | Reason::IncidentsStale => messages::INCIDENT_HINT.into(),
        _ => messages::SWITCH_HINT.into(),
    };
    Err((messages::switch_refused(role, &identity), messages::detail(decision.reason, role, &identity), hint))
}

fn pstrdup(text: &str) -> *mut c_char {
    let c = CString::new(text.replace('\0', "")).unwrap_or_default();
    // SAFETY: copies into the current memory context, which outlives the check hook's report.
    unsafe { pg_sys::pstrdup(c.as_ptr()) }
}

/// After PostgreSQL's own check of a new `role` value passed: the gate's verdict. Backend
/// start (`none`, outside a transaction), parallel workers restoring the leader's role and
/// `none` itself are not switches anyone makes.
///
/// # Safety
/// `newval` points to the candidate value, as the GUC machinery passes it to check hooks.
pub unsafe fn check_role(newval: *mut *mut c_char, source: pg_sys::GucSource::Type) -> bool {
    // SAFETY: reads backend-local state and the candidate value, a NUL-terminated string.
    let name = unsafe {
        if pg_sys::InitializingParallelWorker || !pg_sys::IsTransactionState() || newval.is_null() || (*newval).is_null() {
            return true;
        }
        CStr::from_ptr(*newval).to_string_lossy().into_owned()
    };
    if name == "none" {
        return true;
    }
    let Some(source) = Source::of(source) else { return true };
    let Some(role_oid) = roles::oid_of(&name) else { return true };
    match decide_switch(role_oid, &name, || source.route()) {
        Ok(()) => true,
        Err((message, detail, hint)) => {
            // SAFETY: the GUC machinery reports these after the hook returns false; pstrdup'd
            // into the current context, which lives until then.
            unsafe {
                pg_sys::GUC_check_errcode(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE as i32);
                pg_sys::GUC_check_errmsg_string = pstrdup(&message);
                pg_sys::GUC_check_errdetail_string = pstrdup(&detail);
                pg_sys::GUC_check_errhint_string = pstrdup(&hint);
            }
            false
        }
    }
}
