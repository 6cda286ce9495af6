//! The gate's decision counters, per route and verdict, cluster-wide since the server started
//! (`oncall.stats()`): relaxed atomic adds in a small shared segment.

use std::ptr::null_mut;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pg::shmem::Segment;

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

static mut COUNTS: *mut [AtomicU64; COUNTERS] = null_mut();

fn size() -> usize {
    std::mem::size_of::<[AtomicU64; COUNTERS]>()
}

fn attach(base: *mut u8, created: bool) {
    // SAFETY: the segment is `size()` bytes; zeroed atomics are zero counts.
    unsafe {
        if created {
            std::ptr::write_bytes(base, 0, size());
        }
        COUNTS = base.cast();
    }
}

fn counts() -> Option<&'static [AtomicU64; COUNTERS]> {
    // SAFETY: set once per process at shmem startup; the counters are atomics.
    unsafe { COUNTS.as_ref() }
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
