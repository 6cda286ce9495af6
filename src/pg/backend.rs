//! What this backend serves: the login's user name (for the login gate), and for elevation
//! records and notes its database, pid, client address, application name, and the cluster's
//! name.

use std::ffi::CStr;

use pgrx::pg_sys;

pub fn pid() -> i32 {
    // SAFETY: reads this process's pid, set at start.
    unsafe { pg_sys::MyProcPid }
}

/// The current database's name. Needs a transaction.
pub fn database() -> Option<String> {
    // SAFETY: syscache lookup of this backend's database; NULL if it is gone.
    let name = unsafe { pg_sys::get_database_name(pg_sys::MyDatabaseId) };
    // SAFETY: a non-null result is a palloc'd NUL-terminated string.
    (!name.is_null()).then(|| unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned())
}

/// The role a connection asks to log in as (its startup packet's user name).
///
/// # Safety
/// `port` is a connection's live Port.
pub unsafe fn login_user(port: *mut pg_sys::Port) -> Option<String> {
    unsafe extern "C" {
        /// port.c: the server's own Port definition, per major; cannot raise.
        fn pg_oncall_port_user_name(port: *const pg_sys::Port) -> *const std::ffi::c_char;
    }
    // SAFETY: the caller's live Port; user_name is a palloc'd C string or NULL.
    unsafe {
        let name = pg_oncall_port_user_name(port);
        (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned())
    }
}

/// The client's IP address as the server saw it; `None` over a Unix socket.
pub fn client_addr() -> Option<String> {
    unsafe extern "C" {
        /// port.c; cannot raise.
        fn pg_oncall_client_host() -> *const std::ffi::c_char;
    }
    // SAFETY: NULL or this connection's remote host, a NUL-terminated string.
    let host = unsafe {
        let host = pg_oncall_client_host();
        if host.is_null() {
            return None;
        }
        CStr::from_ptr(host).to_string_lossy().into_owned()
    };
    host.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_string())
}

/// The `application_name` setting.
pub fn application_name() -> Option<String> {
    // SAFETY: the GUC's current value, a NUL-terminated string or NULL.
    let name = unsafe { pg_sys::application_name };
    // SAFETY: as above.
    (!name.is_null()).then(|| unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()).filter(|n| !n.is_empty())
}

/// What names this cluster in a note on an incident: `cluster_name`, else `host:port`.
pub fn cluster_name() -> String {
    // SAFETY: reads a core setting's current value (NULL if missing), copied at once.
    let name = unsafe {
        let value = pg_sys::GetConfigOption(c"cluster_name".as_ptr(), true, false);
        (!value.is_null()).then(|| CStr::from_ptr(value).to_string_lossy().into_owned())
    };
    if let Some(name) = name.filter(|n| !n.trim().is_empty()) {
        return name;
    }
    let mut host = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let ok = unsafe { libc::gethostname(host.as_mut_ptr().cast(), host.len() - 1) } == 0;
    let host =
        CStr::from_bytes_until_nul(&host).ok().filter(|_| ok).map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    // SAFETY: reads the postmaster's port setting, fixed at start.
    let port = unsafe { pg_sys::PostPortNumber };
    format!("{}:{port}", if host.is_empty() { "localhost" } else { &host })
}
