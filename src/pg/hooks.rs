//! The Rust face of `hooks.c`, the C shim that installs pg_oncall's hooks and passes
//! PostgreSQL's own errors through them untouched. The functions the shim calls back are the
//! gate's (`crate::gate::hooks`).

use std::ffi::{c_char, CString};

unsafe extern "C-unwind" {
    fn pg_oncall_install_hooks() -> bool;
    fn pg_oncall_audit_line(message: *const c_char);
    fn pg_oncall_arm_access_end(at: pgrx::pg_sys::TimestampTz, message: *const c_char, detail: *const c_char, hint: *const c_char);
    fn pg_oncall_disarm_access_end();
    fn pg_oncall_take_access_end_reported() -> bool;
}

/// Installs every hook; false when the `role` setting, which the gate wraps, was not found.
/// From `_PG_init`, in the postmaster, before any backend exists.
pub fn install() -> bool {
    // SAFETY: the postmaster is single-threaded while it loads preload libraries; the shim
    // saves each previous hook and chains to it.
    unsafe { pg_oncall_install_hooks() }
}

/// Emits `message` as one audit line: LOG with SQLSTATE OC000 (which only these lines carry),
/// without the STATEMENT and CONTEXT lines PostgreSQL would add.
pub fn audit_line(message: &str) {
    let Ok(text) = CString::new(message) else { return };
    // SAFETY: a NUL-terminated string the shim copies into the error data before returning;
    // the FFI boundary turns an error raised meanwhile (out of memory) into a Rust panic
    // instead of a longjmp across our frames.
    unsafe { pgrx::pg_sys::ffi::pg_guard_ffi_boundary(|| pg_oncall_audit_line(text.as_ptr())) }
}

/// Cancels whatever this backend runs at `at` (µs since 1970), reported as the refusal
/// `message`/`detail`/`hint`: the end of an elevation's access also stops work that starts no
/// new statement. Replaces any earlier time.
pub fn arm_access_end(at: i64, message: &str, detail: &str, hint: &str) {
    let text = |s: &str| CString::new(s.replace('\0', "")).unwrap_or_default();
    let (message, detail, hint) = (text(message), text(detail), text(hint));
    // SAFETY: the shim copies the strings into TopMemoryContext; registering and enabling a
    // timeout can raise (out of timeouts), which the FFI boundary turns into a Rust panic.
    unsafe {
        pgrx::pg_sys::ffi::pg_guard_ffi_boundary(|| {
            pg_oncall_arm_access_end(crate::pg::time::pg_from_unix(at), message.as_ptr(), detail.as_ptr(), hint.as_ptr())
        })
    }
}

/// No more cancellation at the end of access (the elevation is over). Cannot raise.
pub fn disarm_access_end() {
    // SAFETY: disabling a timeout (or none) only updates the backend's timer.
    unsafe { pg_oncall_disarm_access_end() }
}

/// Whether a statement was stopped at the end of access since the last call. Cannot raise.
pub fn take_access_end_reported() -> bool {
    // SAFETY: reads and clears a backend-local flag.
    unsafe { pg_oncall_take_access_end_reported() }
}
