//! The C entry points behind the SQL functions of `sql/api.sql`: decisions for everyone,
//! sync control and statistics for superusers, and the commit hook that wakes the worker.
//! Their SQL declarations are written by hand there, so that types and privileges are exact.

use std::ffi::CStr;
use std::time::{Duration, Instant};

use oncall_core::decision::{self, Until};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode};

use crate::access::{self, pg_from_unix, unix_from_pg};
use crate::{guc, snapshot};

fn is_superuser(oid: pg_sys::Oid) -> bool {
    // SAFETY: superuser_arg consults a syscache (with its own one-entry cache); we are in a
    // transaction whenever SQL calls us.
    unsafe { pg_sys::superuser_arg(oid) }
}

/// One statement's answer to `check_oncall_access()`. An RLS policy calls the function once
/// per row: within a statement the answer is fixed (STABLE, "now" is the statement's start),
/// so all calls after the first cost two plain calls and two comparisons.
#[derive(Clone, Copy)]
struct StatementMemo {
    statement_start: pg_sys::TimestampTz,
    session_user: pg_sys::Oid,
    allowed: bool,
}

static mut STATEMENT_MEMO: StatementMemo =
    StatementMemo { statement_start: i64::MIN, session_user: pg_sys::InvalidOid, allowed: false };

#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_check_oncall_access_fast() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `oncall.check_oncall_access()`: a bare C-ABI function rather than a pgrx wrapper, because
/// its per-row cost is the product (see bench/). Its own frame holds nothing to drop, and
/// everything that can raise runs inside the guarded `session_user_on_call_now`.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn check_oncall_access_fast(_fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: backend-local state, touched only on the backend's one thread; the two
    // accessors read plain variables and cannot raise.
    unsafe {
        let statement_start = access::unguarded::GetCurrentStatementStartTimestamp();
        let session_user = access::unguarded::GetSessionUserId();
        let memo = *std::ptr::addr_of!(STATEMENT_MEMO);
        if memo.statement_start == statement_start && memo.session_user == session_user {
            return pg_sys::Datum::from(memo.allowed);
        }
        let allowed = session_user_on_call_now();
        STATEMENT_MEMO = StatementMemo { statement_start, session_user, allowed };
        pg_sys::Datum::from(allowed)
    }
}

#[pg_guard]
extern "C-unwind" fn session_user_on_call_now() -> bool {
    access::session_user_on_call(access::statement_now()).allowed
}

#[pg_extern(sql = false)]
fn check_role_access(role_name: &CStr) -> bool {
    let name = role_name.to_string_lossy();
    let session_user = access::session_user_oid();
    if is_superuser(session_user) {
        return true;
    }
    // SAFETY: syscache lookup by name; missing_ok returns InvalidOid for an unknown role.
    let oid = unsafe { pg_sys::get_role_oid(role_name.as_ptr(), true) };
    access::session_user_may_assume(oid, || name.into_owned(), access::statement_now()).is_none_or(|d| d.allowed)
}

#[pg_extern(sql = false)]
fn is_on_call(email: Option<&str>, min_escalation_level: Option<i32>, escalation_policy_ids: Option<Vec<String>>) -> Option<bool> {
    let email = email?;
    if email.trim().is_empty() {
        return Some(false);
    }
    Some(access::email_on_call(email, min_escalation_level, escalation_policy_ids.as_deref(), access::statement_now()))
}

fn timestamptz(us: i64) -> Option<TimestampWithTimeZone> {
    TimestampWithTimeZone::try_from(pg_from_unix(us)).ok()
}

#[pg_extern(sql = false)]
fn whoami() -> TableIterator<
    'static,
    (
        name!(session_user, String),
        name!(identity, Option<String>),
        name!(on_call, bool),
        name!(on_call_until, Option<TimestampWithTimeZone>),
        name!(assumable_roles, Vec<String>),
    ),
> {
    let now = access::statement_now();
    let identity = access::session_identity();
    let on_call = access::session_user_on_call(now);
    let until = match on_call.until {
        Some(Until::At(t)) => timestamptz(t),
        _ => None,
    };
    let session_user = access::session_user_oid();
    let gated: Vec<(pg_sys::Oid, String, bool)> = snapshot::read(|view| {
        view.roles()
            .iter()
            .map(|role| {
                let d = access::decide_for_role(view, role, identity.email.as_deref(), now);
                (role.oid, role.name.text().to_owned(), d.allowed)
            })
            .collect()
    })
    .unwrap_or_default();
    let superuser = is_superuser(session_user);
    let assumable = gated
        .into_iter()
        .filter(|(oid, _, allowed)| {
            // SAFETY: membership check through the syscache, in a transaction.
            *oid != pg_sys::InvalidOid && (superuser || (*allowed && unsafe { pg_sys::is_member_of_role(session_user, *oid) }))
        })
        .map(|(_, name, _)| name)
        .collect();
    TableIterator::once((identity.role_name, identity.email, on_call.allowed, until, assumable))
}

#[pg_extern(sql = false)]
fn is_stale(last_success_at: Option<TimestampWithTimeZone>) -> bool {
    let last = last_success_at.map(|t| unix_from_pg(t.into()));
    decision::stale_at(last, guc::max_staleness_us()).is_none_or(|t| access::now() >= t)
}

#[pg_extern(sql = false)]
fn snapshot_overflowed() -> bool {
    snapshot::overflowed()
}

#[pg_extern(sql = false)]
fn stats() -> TableIterator<'static, (name!(route, String), name!(decision, String), name!(count, i64))> {
    TableIterator::new(
        snapshot::decision_counts()
            .into_iter()
            .map(|(route, decision, count)| (route.to_owned(), decision.to_owned(), count as i64)),
    )
}

fn last_sync_error() -> String {
    Spi::get_one::<String>("SELECT last_error FROM oncall.sync_state")
        .ok()
        .flatten()
        .unwrap_or_else(|| "unknown error".into())
}

#[pg_extern(sql = false)]
fn refresh(wait: bool, timeout_ms: i64) {
    // SAFETY: reads shared recovery state.
    if unsafe { pg_sys::RecoveryInProgress() } {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            "pg_oncall: this server is a standby; PagerDuty is synced on the primary",
            "The standby enforces what the primary synced, from the replicated oncall.shifts."
        );
    }
    if snapshot::worker_pid().is_none() {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pg_oncall: the sync worker is not running",
            format!(
                "It runs in database \"{}\" (pg_oncall.database) once the extension is created there, and needs pg_oncall in shared_preload_libraries.",
                guc::database()
            )
        );
    }
    let Some(ticket) = snapshot::request_sync() else { return };
    if !wait {
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(timeout_ms.max(0) as u64);
    loop {
        match snapshot::sync_result(ticket) {
            Some(true) => return,
            Some(false) => {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
                    format!("pg_oncall: PagerDuty sync failed: {}", last_sync_error()),
                    "The previous shifts are kept; see oncall.status()."
                );
            }
            None => {}
        }
        if Instant::now() >= deadline {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
                format!("pg_oncall: the PagerDuty sync did not finish within {timeout_ms} ms"),
                "It goes on in the background (it may be waiting out a rate limit); see oncall.status()."
            );
        }
        // SAFETY: waiting on our own latch with a timeout, then honouring interrupts, as any
        // backend wait loop does.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                20,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pgrx::check_for_interrupts!();
    }
}

/// Called by the tables' triggers: wake the worker once this transaction commits (waking it
/// earlier would let it load the old rows).
#[pg_extern(sql = false)]
fn reload_after_commit() {
    snapshot::at_commit(snapshot::CommitAction::Reload);
}
