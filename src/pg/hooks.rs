//! The Rust face of `hooks.c`, the C shim that installs pg_oncall's hooks and passes
//! PostgreSQL's own errors through them untouched. The functions the shim calls back are the
//! gate's (`crate::gate::hooks`).

use std::ffi::{c_char, CString};

unsafe extern "C-unwind" {
    fn pg_oncall_install_hooks() -> bool;
    fn pg_oncall_audit_line(message: *const c_char);
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
