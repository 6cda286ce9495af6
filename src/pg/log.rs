//! pg_oncall's own errors and messages: PostgreSQL's `ereport` with SQLSTATE, DETAIL and HINT
//! (which pgrx's `ereport!` cannot carry together).

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{function_name, PgLogLevel, PgSqlErrorCode};

/// Raises (ERROR, FATAL) or reports (below ERROR) with a DETAIL and a HINT.
pub fn raise(level: PgLogLevel, code: PgSqlErrorCode, message: String, detail: String, hint: String) {
    ErrorReport::new(code, message, function_name!()).set_detail(detail).set_hint(hint).report(level);
}

/// A NOTICE to the client (and the log, per `log_min_messages`).
pub fn notice(code: PgSqlErrorCode, message: String) {
    ErrorReport::new(code, message, function_name!()).report(PgLogLevel::NOTICE);
}
