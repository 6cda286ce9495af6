//! The worker's transactions: each unit of work in a transaction of its own, whose errors
//! (SQL or Rust) abort it and come back as values, so the worker carries on.

use std::panic::{RefUnwindSafe, UnwindSafe};

use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::{pg_sys, PgTryBuilder};

/// The message of an error caught with `PgTryBuilder` (for our own logs and status).
pub fn caught_message(e: &CaughtError) -> String {
    match e {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => report.message().to_owned(),
        CaughtError::RustPanic { ereport, .. } => ereport.message().to_owned(),
    }
}

/// Runs `work` in a new transaction, committed when it returns Ok; an error it returns, or
/// raises, rolls the transaction back.
pub fn run<T>(work: impl FnOnce() -> Result<T, String> + UnwindSafe + RefUnwindSafe) -> Result<T, String> {
    let result = PgTryBuilder::new(|| {
        BackgroundWorker::transaction(|| match work() {
            Ok(value) => Ok(value),
            // Turn it into an ERROR so that the transaction is rolled back below.
            Err(message) => pgrx::error!("{message}"),
        })
    })
    .catch_others(|e| Err(caught_message(&e)))
    .execute();
    if result.is_err() {
        // SAFETY: the error was caught and its state flushed; this ends the failed
        // transaction the way a background worker's error handler does.
        unsafe { pg_sys::AbortCurrentTransaction() };
    }
    result
}
