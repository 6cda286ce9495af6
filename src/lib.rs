//! pg_oncall: privileged PostgreSQL roles only while you are on call in PagerDuty.
//! The data flow, one module per stage: PagerDuty → `sync` (worker) → tables → `snapshot`
//! (shared memory) → `decide` (this backend's decisions) → `gate` (hooks) and `api` (SQL
//! functions); `gate` → `elevations` (queue) → worker → `oncall.elevation_records`, and `gate` →
//! `notes` (queue) → worker → notes on PagerDuty incidents. `pg` wraps the PostgreSQL interfaces
//! several stages use; `guc` the settings.

use pgrx::prelude::*;
use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode};

mod api;
mod decide;
mod elevations;
mod gate;
mod guc;
mod notes;
mod pg;
mod snapshot;
mod sync;

::pgrx::pg_module_magic!();

pgrx::extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);
pgrx::extension_sql_file!("../sql/api.sql", name = "api", requires = ["catalog"]);
pgrx::extension_sql_file!("../sql/doctor.sql", name = "doctor", requires = ["api"]);
// Last: its views name api.sql's functions (pgrx places `finalize` after everything, whatever
// `requires` says), in the order the upgrade scripts replay them (scripts/upgrade-scripts.sh).
pgrx::extension_sql_file!("../sql/monitoring.sql", name = "monitoring", finalize);

/// Every shared segment: the snapshot, the worker's wake-ups, the gate's counters, the
/// elevations on their way to the table, the notes on their way to PagerDuty.
static SEGMENTS: [&pg::shmem::Segment; 5] = [
    &snapshot::SEGMENT,
    &sync::signal::SEGMENT,
    &gate::stats::SEGMENT,
    &elevations::queue::SEGMENT,
    &notes::queue::SEGMENT,
];

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: reads a postmaster-set flag; _PG_init runs single-threaded.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        pg::log::raise(
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
    pg::shmem::install(&SEGMENTS);
    if !pg::hooks::install() {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "pg_oncall: the \"role\" setting was not found; refusing to start without a gate"
        );
    }
    sync::launcher::register();
}
