//! What this backend serves, for elevation records and notes: its database, pid, client
//! address, application name, and the cluster's name.

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

/// The client's IP address as the server saw it; `None` over a Unix socket.
pub fn client_addr() -> Option<String> {
    // SAFETY: MyProcPort is this connection's Port (NULL in background workers);
    // remote_host is a NUL-terminated string PostgreSQL filled in at connection.
    let host = unsafe {
        let port = pg_sys::libpq::be::MyProcPort;
        if port.is_null() || (*port).remote_host.is_null() {
            return None;
        }
        CStr::from_ptr((*port).remote_host).to_string_lossy().into_owned()
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
