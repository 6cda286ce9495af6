//! The C entry points behind the SQL functions of `sql/api.sql`: decisions for everyone,
//! sync control and statistics for superusers, and the trigger function that wakes the worker.
//! Their SQL declarations are written by hand there, so that types and privileges are exact.

use std::ffi::CStr;
use std::time::{Duration, Instant};

use oncall_core::decision::{self, Until};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode};

use crate::decide;
use crate::gate::stats;
use crate::guc;
use crate::pg::roles::{self, is_superuser};
use crate::pg::time::{self, pg_from_unix, unix_from_pg};
use crate::snapshot;
use crate::sync::signal::{self, CommitAction};

/// One query's answer to `check_oncall_access()`. An RLS policy calls the function once per
/// row: within one run of the executor the answer is fixed (STABLE), decided by the wall clock
/// when the run's first row asked, so all calls after the first cost two plain reads and two
/// comparisons. Each query a loop runs (in a DO block, a procedure) is a new run, decided anew.
#[derive(Clone, Copy)]
struct QueryMemo {
    run: u64,
    session_user: pg_sys::Oid,
    allowed: bool,
}

static mut QUERY_MEMO: QueryMemo = QueryMemo { run: u64::MAX, session_user: pg_sys::InvalidOid, allowed: false };

unsafe extern "C" {
    /// Bumped by the shim at each ExecutorStart and each PL/pgSQL statement (hooks.c).
    static pg_oncall_runs: u64;
}

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
    // SAFETY: backend-local state, touched only on the backend's one thread; the counter and
    // the accessor read plain variables and cannot raise.
    unsafe {
        let run = std::ptr::read_volatile(&raw const pg_oncall_runs);
        let session_user = roles::session_user();
        let memo = *std::ptr::addr_of!(QUERY_MEMO);
        if memo.run == run && memo.session_user == session_user {
            return pg_sys::Datum::from(memo.allowed);
        }
        let allowed = session_user_on_call_now();
        QUERY_MEMO = QueryMemo { run, session_user, allowed };
        pg_sys::Datum::from(allowed)
    }
}

#[pg_guard]
extern "C-unwind" fn session_user_on_call_now() -> bool {
    decide::session_user_on_call(time::now()).allowed
}

#[pg_extern(sql = false)]
fn check_role_access(role_name: &CStr) -> bool {
    let name = role_name.to_string_lossy();
    if is_superuser(roles::session_user()) {
        return true;
    }
    let oid = roles::oid_of(&name).unwrap_or(pg_sys::InvalidOid);
    decide::session_user_may_assume(oid, || name.into_owned(), time::now()).is_none_or(|d| d.allowed)
}

#[pg_extern(sql = false)]
fn is_on_call(
    email: Option<&str>,
    min_escalation_level: Option<i32>,
    escalation_policy_ids: Option<Vec<Option<String>>>,
) -> Option<bool> {
    let email = email?;
    if email.trim().is_empty() {
        return Some(false);
    }
    // A NULL element matches no policy.
    let policies: Option<Vec<String>> = escalation_policy_ids.map(|ids| ids.into_iter().flatten().collect());
    Some(decide::email_on_call(email, min_escalation_level, policies.as_deref(), time::now()))
}

fn timestamptz(us: i64) -> Option<TimestampWithTimeZone> {
    TimestampWithTimeZone::try_from(pg_from_unix(us)).ok()
}

#[pg_extern(sql = false)]
#[allow(clippy::type_complexity)] // pgrx reads the column names from the literal tuple
fn whoami() -> TableIterator<
    'static,
    (
        name!(session_user, String),
        name!(identity, Option<String>),
        name!(on_call, bool),
        name!(on_call_until, Option<TimestampWithTimeZone>),
        name!(assumable_roles, Vec<String>),
        name!(incident_ids, Option<Vec<String>>),
    ),
> {
    let now = time::now();
    let identity = decide::session_identity();
    let on_call = decide::session_user_on_call(now);
    let until = match on_call.until {
        Some(Until::At(t)) => timestamptz(t),
        _ => None,
    };
    let session_user = roles::session_user();
    let gated: Vec<(pg_sys::Oid, String, bool)> = snapshot::read(|view| {
        view.roles()
            .iter()
            .map(|role| {
                let d = decide::decide_for_role(view, role, identity.email.as_deref(), now);
                (role.oid, role.name.text().to_owned(), d.allowed)
            })
            .collect()
    })
    .unwrap_or_default();
    let superuser = is_superuser(session_user);
    let assumable = gated
        .into_iter()
        .filter(|(oid, _, allowed)| {
            *oid != pg_sys::InvalidOid && (superuser || (*allowed && roles::can_set_role(session_user, *oid)))
        })
        .map(|(_, name, _)| name)
        .collect();
    let incidents = decide::session_incidents(identity.email.as_deref(), now);
    TableIterator::once((identity.role_name, identity.email, on_call.allowed, until, assumable, incidents))
}

/// Whether the worker syncs open incidents (`pg_oncall.sync_incidents`, and in `auto` whether a
/// rule needs them), as it decides at each sync.
#[pg_extern(sql = false)]
fn incidents_synced() -> bool {
    snapshot::incidents_wanted()
}

#[pg_extern(sql = false)]
#[allow(clippy::type_complexity)] // pgrx reads the column names from the literal tuple
fn notes_status() -> TableIterator<
    'static,
    (name!(enabled, bool), name!(posted, i64), name!(failed, i64), name!(dropped, i64), name!(last_error, Option<String>)),
> {
    let (enabled, posted, failed, dropped, last_error) = crate::notes::queue::status();
    TableIterator::once((enabled, posted as i64, failed as i64, dropped as i64, last_error))
}

#[pg_extern(sql = false)]
fn is_stale(last_success_at: Option<TimestampWithTimeZone>) -> bool {
    let last = last_success_at.map(|t| unix_from_pg(t.into()));
    decision::stale_at(last, guc::max_staleness_us()).is_none_or(|t| time::now() >= t)
}

#[pg_extern(sql = false)]
fn snapshot_overflowed() -> bool {
    snapshot::overflowed()
}

#[pg_extern(sql = false)]
fn elevation_events_dropped() -> i64 {
    crate::elevations::queue::dropped() as i64
}

#[pg_extern(sql = false)]
fn stats() -> TableIterator<'static, (name!(route, String), name!(decision, String), name!(count, i64))> {
    TableIterator::new(
        stats::all().into_iter().map(|(route, decision, count)| (route.to_owned(), decision.to_owned(), count as i64)),
    )
}

fn last_sync_error() -> String {
    Spi::get_one::<String>("SELECT s.last_error FROM oncall.sync_state AS s")
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
    if signal::worker_pid().is_none() {
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
    let Some(ticket) = signal::request_sync() else { return };
    if !wait {
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(timeout_ms.max(0) as u64);
    loop {
        match signal::sync_result(ticket) {
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
    signal::at_commit(CommitAction::Reload);
}

// ---------------------------------------------------------------- monitoring (sql/monitoring.sql)

/// `oncall.stats_reset()`: zeroes the decision counters; superusers only (also checked here,
/// so a GRANT cannot hand it to others by mistake).
#[pg_extern(sql = false)]
fn stats_reset() -> Option<TimestampWithTimeZone> {
    if !is_superuser(roles::session_user()) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "pg_oncall: only superusers may reset the decision counters",
            "Members of pg_monitor read them through oncall.pg_stat_oncall; a reset changes what every monitor sees."
        );
    }
    stats::reset().and_then(timestamptz)
}

/// When the decision counters were last zeroed (the server's start or `stats_reset()`).
#[pg_extern(sql = false)]
fn stats_reset_at() -> Option<TimestampWithTimeZone> {
    stats::reset_at().and_then(timestamptz)
}

/// The published snapshot's entries against its capacity, one row (no rows when the library
/// is not preloaded).
#[pg_extern(sql = false)]
#[allow(clippy::type_complexity)] // pgrx reads the column names from the literal tuple
fn snapshot_usage() -> TableIterator<
    'static,
    (
        name!(shifts, i64),
        name!(max_shifts, i64),
        name!(gated_roles, i64),
        name!(max_gated_roles, i64),
        name!(identities, i64),
        name!(max_identities, i64),
        name!(ids, i64),
        name!(max_ids, i64),
    ),
> {
    let rows = snapshot::usage().map(|u| {
        let n = |v: usize| v as i64;
        (
            n(u.shifts.0),
            n(u.shifts.1),
            n(u.gated_roles.0),
            n(u.gated_roles.1),
            n(u.identities.0),
            n(u.identities.1),
            n(u.ids.0),
            n(u.ids.1),
        )
    });
    TableIterator::new(rows)
}
