//! The gate's decision counters, per route and verdict, cluster-wide since the server started
//! or the last `oncall.stats_reset()` (`oncall.stats()`, the view `oncall.pg_stat_oncall`):
//! relaxed atomic adds in a small shared segment, with the time of the last reset.

use std::ptr::null_mut;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::pg::shmem::Segment;
use crate::pg::time;

/// Every way into a gated role, as `oncall.stats()` and the audit lines name it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Route {
    SetRole,
    SetConfig,
    FunctionSet,
    StartupOption,
    RoleDefault,
    Membership,
    Statement,
    Login,
}

impl Route {
    const ALL: [Route; 8] = [
        Route::SetRole,
        Route::SetConfig,
        Route::FunctionSet,
        Route::StartupOption,
        Route::RoleDefault,
        Route::Membership,
        Route::Statement,
        Route::Login,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Route::SetRole => "set_role",
            Route::SetConfig => "set_config",
            Route::FunctionSet => "function_set",
            Route::StartupOption => "startup_option",
            Route::RoleDefault => "role_default",
            Route::Membership => "membership",
            Route::Statement => "statement",
            Route::Login => "login",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Allow,
    Deny,
    AuditDeny,
}

impl Verdict {
    const ALL: [Verdict; 3] = [Verdict::Allow, Verdict::Deny, Verdict::AuditDeny];

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::AuditDeny => "audit_deny",
        }
    }
}

const COUNTERS: usize = Route::ALL.len() * Verdict::ALL.len();

pub static SEGMENT: Segment = Segment { name: c"pg_oncall gate statistics", size, lwlocks: 0, attach };

/// The segment: the counters, then when they were last zeroed (µs since 1970).
struct Stats {
    counts: [AtomicU64; COUNTERS],
    reset_at: AtomicI64,
}

static mut STATS: *mut Stats = null_mut();

fn size() -> usize {
    std::mem::size_of::<Stats>()
}

fn attach(base: *mut u8, created: bool) {
    // SAFETY: the segment is `size()` bytes; zeroed atomics are zero counts; the creator sets
    // the reset time before any backend exists.
    unsafe {
        let stats: *mut Stats = base.cast();
        if created {
            std::ptr::write_bytes(base, 0, size());
            (*stats).reset_at.store(time::now(), Ordering::Relaxed);
        }
        STATS = stats;
    }
}

fn stats() -> Option<&'static Stats> {
    // SAFETY: set once per process at shmem startup; every field is an atomic.
    unsafe { STATS.as_ref() }
}

fn counts() -> Option<&'static [AtomicU64; COUNTERS]> {
    stats().map(|s| &s.counts)
}

fn index(route: Route, verdict: Verdict) -> usize {
    route as usize * Verdict::ALL.len() + verdict as usize
}

pub fn count(route: Route, verdict: Verdict) {
    if let Some(c) = counts() {
        c[index(route, verdict)].fetch_add(1, Ordering::Relaxed);
    }
}

/// Every (route, verdict, count), zeros included.
pub fn all() -> Vec<(&'static str, &'static str, u64)> {
    let Some(c) = counts() else { return Vec::new() };
    Route::ALL
        .iter()
        .flat_map(|&r| Verdict::ALL.iter().map(move |&v| (r.name(), v.name(), c[index(r, v)].load(Ordering::Relaxed))))
        .collect()
}

/// Zeroes every counter (`oncall.stats_reset()`) and returns the reset time (µs since 1970).
/// A decision counted while it runs is zeroed with the rest or kept: never counted twice.
pub fn reset() -> Option<i64> {
    let s = stats()?;
    for c in &s.counts {
        c.store(0, Ordering::Relaxed);
    }
    let now = time::now();
    s.reset_at.store(now, Ordering::Relaxed);
    Some(now)
}

/// When the counters were last zeroed: the server's start or the last `reset` (µs since 1970).
pub fn reset_at() -> Option<i64> {
    stats().map(|s| s.reset_at.load(Ordering::Relaxed))
}
