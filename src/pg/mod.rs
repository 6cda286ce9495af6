//! PostgreSQL's C interface where more than one stage needs it, one module per concern:
//! the hooks (a C shim), time, roles, log lines and errors, shared-memory segments, and the
//! worker's helper threads.
//! Differences between PostgreSQL majors live here, not in the logic that uses them.

pub mod backend;
pub mod hooks;
pub mod log;
pub mod roles;
pub mod shmem;
pub mod thread;
pub mod time;
pub mod xact;
