//! Roles as PostgreSQL sees them: who the session and current users are, names, superuser
//! status, membership and inherited privileges (each major's own rules), and an epoch that
//! moves whenever any session changes a role or a membership, so cached answers die with it.

use std::cell::Cell;
use std::ffi::{c_int, CStr, CString};

use pgrx::pg_sys::{self, Oid};

/// Backend variables read without pgrx's FFI guard: they cannot raise, and the gate reads
/// them on every statement.
mod unguarded {
    use pgrx::pg_sys::Oid;

    unsafe extern "C" {
        pub fn GetSessionUserId() -> Oid;
        pub fn GetCurrentRoleId() -> Oid;
        pub fn GetUserId() -> Oid;
    }
}

/// The session user: the login role (or SET SESSION AUTHORIZATION's), whose identity is judged.
pub fn session_user() -> Oid {
    // SAFETY: reads a backend-local variable set at login; cannot raise.
    unsafe { unguarded::GetSessionUserId() }
}

/// The role made current with SET ROLE (or `-c role=`, a function's SET clause...), if any.
pub fn current_role() -> Option<Oid> {
    // SAFETY: reads a backend-local variable; cannot raise.
    let oid = unsafe { unguarded::GetCurrentRoleId() };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// The user whose privileges apply now (the current role, or a SECURITY DEFINER function's owner).
pub fn current_user() -> Oid {
    // SAFETY: reads a backend-local variable; cannot raise.
    unsafe { unguarded::GetUserId() }
}

/// The role's name, `None` for a role that does not exist (any more). Needs a transaction.
pub fn name_of(oid: Oid) -> Option<String> {
    // SAFETY: syscache lookup by OID; with noerr=true it returns NULL for a missing role.
    let name = unsafe { pg_sys::GetUserNameFromId(oid, true) };
    // SAFETY: a non-null result is a palloc'd NUL-terminated string.
    (!name.is_null()).then(|| unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned())
}

/// The role named `name`, `None` if there is none. Needs a transaction.
pub fn oid_of(name: &str) -> Option<Oid> {
    let name = CString::new(name).ok()?;
    // SAFETY: syscache lookup by name; missing_ok returns InvalidOid.
    let oid = unsafe { pg_sys::get_role_oid(name.as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// A role given in a statement (`CURRENT_USER`, `SESSION_USER`, a name...), `None` for PUBLIC or
/// a role that does not exist. Needs a transaction.
///
/// # Safety
/// `spec` is a valid `RoleSpec` node.
pub unsafe fn oid_of_spec(spec: *mut pg_sys::RoleSpec) -> Option<Oid> {
    // SAFETY: the caller passes a RoleSpec; missing_ok returns InvalidOid (also for PUBLIC).
    let oid = unsafe {
        if (*spec).roletype == pg_sys::RoleSpecType::ROLESPEC_PUBLIC {
            return None;
        }
        pg_sys::get_rolespec_oid(spec, true)
    };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// Needs a transaction.
pub fn is_superuser(oid: Oid) -> bool {
    // SAFETY: syscache lookup (with PostgreSQL's own one-entry cache).
    unsafe { pg_sys::superuser_arg(oid) }
}

/// Whether `member` holds the privileges of `role` without SET ROLE (INHERIT, per role and,
/// from PostgreSQL 16, per grant). Needs a transaction.
pub fn has_privileges_of(member: Oid, role: Oid) -> bool {
    // SAFETY: membership lookup through PostgreSQL's caches.
    unsafe { pg_sys::has_privs_of_role(member, role) }
}

/// The roles `member` is a direct member of by a grant it may use to become them (any grant
/// before PostgreSQL 16; WITH SET TRUE from 16). Needs a transaction.
pub fn grants_of(member: Oid) -> Vec<Oid> {
    unsafe extern "C-unwind" {
        fn pg_oncall_role_grants(member: Oid, roles: *mut Oid, max: c_int) -> c_int;
    }
    let mut roles = vec![pg_sys::InvalidOid; 16];
    loop {
        let max = c_int::try_from(roles.len()).unwrap_or(c_int::MAX);
        // SAFETY: `roles` has room for `max` OIDs; a catalog error is turned into a Rust
        // panic at the FFI boundary instead of a longjmp across our frames.
        let n = unsafe { pgrx::pg_sys::ffi::pg_guard_ffi_boundary(|| pg_oncall_role_grants(member, roles.as_mut_ptr(), max)) };
        let n = usize::try_from(n).unwrap_or(0);
        if n <= roles.len() {
            roles.truncate(n);
            return roles;
        }
        roles.resize(n, pg_sys::InvalidOid);
    }
}

/// Whether `member` may SET ROLE to `role` (PostgreSQL 16 added the per-grant SET option).
/// Needs a transaction.
pub fn can_set_role(member: Oid, role: Oid) -> bool {
    #[cfg(feature = "pg15")]
    // SAFETY: membership lookup through PostgreSQL's caches.
    let can = unsafe { pg_sys::is_member_of_role(member, role) };
    #[cfg(not(feature = "pg15"))]
    // SAFETY: membership lookup through PostgreSQL's caches.
    let can = unsafe { pg_sys::member_can_set_role(member, role) };
    can
}

thread_local! {
    static CATALOG_EPOCH: Cell<u64> = const { Cell::new(0) };
    static WATCHING: Cell<bool> = const { Cell::new(false) };
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn roles_changed(_arg: pg_sys::Datum, _cache: c_int, _hash: u32) {
    CATALOG_EPOCH.set(CATALOG_EPOCH.get() + 1);
}

/// Moves whenever a role (flags such as INHERIT, LOGIN, SUPERUSER; its name; its existence)
/// or a membership (grants and their options) changes, in any session: the invalidation
/// reaches this backend when it next reads the catalog, at the latest at its next statement.
pub fn catalog_epoch() -> u64 {
    if !WATCHING.replace(true) {
        // SAFETY: registers process-lifetime invalidation callbacks once per backend; they
        // only bump a counter.
        unsafe {
            for cache in [
                pg_sys::SysCacheIdentifier::AUTHOID,
                pg_sys::SysCacheIdentifier::AUTHNAME,
                pg_sys::SysCacheIdentifier::AUTHMEMMEMROLE,
                pg_sys::SysCacheIdentifier::AUTHMEMROLEMEM,
            ] {
                pg_sys::CacheRegisterSyscacheCallback(cache as i32, Some(roles_changed), pg_sys::Datum::from(0));
            }
        }
    }
    CATALOG_EPOCH.get()
}

/// A function as `regprocedure` prints it (`lo_export(oid,text)`). Needs a transaction.
pub fn function_name(function: Oid) -> String {
    // SAFETY: format_procedure looks the function up; an unknown OID prints as a number.
    let name = unsafe { pg_sys::format_procedure(function) };
    // SAFETY: a palloc'd NUL-terminated string.
    unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
}
