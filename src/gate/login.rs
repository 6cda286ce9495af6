//! The login gate: logging in *as* a role whose rule has `gate_login` needs that role's own
//! identity on call. Decided from shared memory only: no database is selected yet.

use std::ffi::c_int;

use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode};

use super::audit;
use super::messages;
use super::stats::Route;
use crate::decide;
use crate::guc::{self, Enforcement};
use crate::pg::log::raise;
use crate::pg::time;
use crate::snapshot;

const STATUS_OK: c_int = 0;

/// # Safety
/// `port` is this connection's live Port (or null).
pub unsafe fn check(port: *mut pg_sys::Port, status: c_int) {
    if status != STATUS_OK || port.is_null() || guc::enforcement() == Enforcement::Off {
        return;
    }
    let Some(user) = crate::pg::backend::login_user(port) else { return };
    // Most logins are not of a gate_login role: they cost one lookup, and no identity.
    let gates_login = snapshot::read(|view| view.gated_role_by_name(&user).is_some_and(|role| role.gate_login));
    if gates_login != Some(true) {
        return;
    }
    let identity = decide::identity_of(&user);
    let now = time::now();
    let decision = snapshot::read(|view| {
        view.gated_role_by_name(&user)
            .filter(|role| role.gate_login)
            .map(|role| decide::decide_for_role(view, role, identity.email.as_deref(), now))
    })
    .flatten();
    let Some(decision) = decision else { return };
    if audit::judge(Route::Login, &user, &identity, &decision) {
        raise(
            PgLogLevel::FATAL,
            PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
            messages::login_refused(&user, &identity),
            messages::detail(decision.reason, &user, &identity),
            messages::login_hint(&user),
        );
    }
}
