//! pg_oncall's own errors and messages: PostgreSQL's `ereport` with SQLSTATE, DETAIL and HINT
//! (which pgrx's `ereport!` cannot carry together).

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{function_name, PgLogLevel, PgSqlErrorCode};

/// Raises (ERROR, FATAL) or reports (below ERROR) with a DETAIL and a HINT.
pub fn raise(level: PgLogLevel, code: PgSqlErrorCode, message: String, detail: String, hint: String) {
    ErrorReport::new(code, message, function_name!()).set_detail(detail).set_hint(hint).report(level);
}

/// The message of an error caught with `PgTryBuilder` (for our own logs and status).
pub fn caught_message(e: &pgrx::pg_sys::panic::CaughtError) -> String {
    use pgrx::pg_sys::panic::CaughtError;
    match e {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => report.message().to_owned(),
        CaughtError::RustPanic { ereport, .. } => ereport.message().to_owned(),
    }
}
