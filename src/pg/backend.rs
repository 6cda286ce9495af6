//! What this backend serves, for elevation records: its database, pid, client address and
//! application name.

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
