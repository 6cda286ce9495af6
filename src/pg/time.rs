//! Clocks and timestamps: PostgreSQL counts microseconds from 2000-01-01, the snapshot and the
//! pure decisions count them from 1970-01-01.

use std::ffi::CStr;

use pgrx::pg_sys;

const PG_EPOCH_OFFSET_US: i64 = 946_684_800 * 1_000_000;

pub fn unix_from_pg(ts: pg_sys::TimestampTz) -> i64 {
    ts.saturating_add(PG_EPOCH_OFFSET_US)
}

pub fn pg_from_unix(us: i64) -> pg_sys::TimestampTz {
    us.saturating_sub(PG_EPOCH_OFFSET_US)
}

/// Accessors that only read a backend variable or the clock and cannot raise, declared
/// without pgrx's FFI guard: its `sigsetjmp` per call would cost more than the rest of the
/// per-row and per-statement paths together (measured in bench/rls).
mod unguarded {
    use pgrx::pg_sys::TimestampTz;

    unsafe extern "C" {
        pub fn GetCurrentStatementStartTimestamp() -> TimestampTz;
        pub fn GetCurrentTimestamp() -> TimestampTz;
    }
}

/// The wall clock: a switch, a statement, a login is judged when it happens.
pub fn now() -> i64 {
    // SAFETY: a clock read; cannot raise.
    unix_from_pg(unsafe { unguarded::GetCurrentTimestamp() })
}

/// The current statement's start, in PostgreSQL's epoch: what a STABLE function's answer may
/// depend on (it must not change within a statement).
pub fn statement_start_pg() -> pg_sys::TimestampTz {
    // SAFETY: reads a backend-local variable; cannot raise.
    unsafe { unguarded::GetCurrentStatementStartTimestamp() }
}

/// A timestamp as PostgreSQL prints it (with the session's time zone).
pub fn format(us: i64) -> String {
    // SAFETY: timestamptz_to_str formats into a static buffer, copied at once.
    unsafe { CStr::from_ptr(pg_sys::timestamptz_to_str(pg_from_unix(us))) }.to_string_lossy().into_owned()
}
