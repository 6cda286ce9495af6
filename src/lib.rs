//! pg_oncall: privileged PostgreSQL roles only while you are on call in PagerDuty.
//! This file wires the pieces together; the data flow is PagerDuty → `worker` → tables →
//! `snapshot` (shared memory) → `access` decisions → the SQL functions in `api`.

use pgrx::prelude::*;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{function_name, pg_sys, PgLogLevel, PgSqlErrorCode};

mod access;
mod api;
mod gate;
mod guc;
mod snapshot;
mod worker;

::pgrx::pg_module_magic!();

pgrx::extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);
pgrx::extension_sql_file!("../sql/api.sql", name = "api", finalize);
pgrx::extension_sql_file!("../sql/doctor.sql", name = "doctor", requires = ["api"]);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: reads a postmaster-set flag; _PG_init runs single-threaded.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        raise(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pg_oncall must be loaded via shared_preload_libraries".into(),
            "Loaded later, it could not gate anything: its hooks and shared memory exist only when preloaded.".into(),
            "Add pg_oncall to shared_preload_libraries in postgresql.conf and restart the server.".into(),
        );
    }
    // pgrx re-raises errors that cross our hooks with a captured Rust backtrace in DETAIL when
    // RUST_BACKTRACE is set in the server's environment: never show clients our internals.
    // SAFETY: the postmaster is single-threaded while it loads preload libraries.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    guc::register();
    snapshot::install_hooks();
    gate::install();
    worker::register_launcher();
}

/// Raises (or, below ERROR, reports) with DETAIL and HINT, which `ereport!` cannot both carry.
pub(crate) fn raise(level: PgLogLevel, code: PgSqlErrorCode, message: String, detail: String, hint: String) {
    ErrorReport::new(code, message, function_name!()).set_detail(detail).set_hint(hint).report(level);
}
