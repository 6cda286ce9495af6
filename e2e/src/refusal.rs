//! The refusals as DESIGN.md words them: SQLSTATE 42501 from pg_oncall, a message naming the
//! role and the identity, a DETAIL with the reason, a HINT right for the situation; FATAL
//! 28000 for a refused login.

use postgres::error::{DbError, SqlState};
use postgres::Client;

use crate::cluster::error_text;
use crate::session::db_error;

/// The DETAIL of a refusal because the identity is not on call.
pub const NOT_ON_CALL: &str = "not on call";

/// pg_oncall's refusal of `role` to `identity` (guarantee 1): SQLSTATE 42501, a message from
/// pg_oncall naming the role and the identity, a DETAIL containing `detail` (the reason), a
/// non-empty HINT. Returns the error for further checks.
#[track_caller]
pub fn assert_refused_because<T: std::fmt::Debug>(
    result: Result<T, postgres::Error>,
    role: &str,
    identity: &str,
    detail: &str,
    what: &str,
) -> DbError {
    let e = match result {
        Ok(v) => panic!("{what}: expected pg_oncall's refusal, got success: {v:?}"),
        Err(e) => e,
    };
    let db = db_error(&e).clone();
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{what}: SQLSTATE ({})", error_text(&e));
    assert!(db.message().starts_with("pg_oncall: "), "{what}: pg_oncall's refusal, not PostgreSQL's: {}", error_text(&e));
    assert!(db.message().contains(&format!("\"{role}\"")), "{what}: the message names the role {role:?}: {}", error_text(&e));
    assert!(db.message().contains(identity), "{what}: the message names the identity {identity:?}: {}", error_text(&e));
    let got = db.detail().unwrap_or_else(|| panic!("{what}: a DETAIL is present: {}", error_text(&e)));
    assert!(got.contains(detail), "{what}: the DETAIL gives the reason ({detail:?}): {}", error_text(&e));
    assert!(db.hint().is_some_and(|h| !h.is_empty()), "{what}: a HINT is present: {}", error_text(&e));
    db
}

/// [`assert_refused_because`] the identity is not on call.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(result: Result<T, postgres::Error>, role: &str, identity: &str, what: &str) -> DbError {
    assert_refused_because(result, role, identity, NOT_ON_CALL, what)
}

/// A statement refused because access to `role` ended (guarantee 2): "on-call access … has
/// ended", HINT `SET ROLE NONE` (right also when the role came from the startup options).
#[track_caller]
pub fn assert_access_ended_for<T: std::fmt::Debug>(result: Result<T, postgres::Error>, role: &str, identity: &str, what: &str) -> DbError {
    let e = match result {
        Ok(v) => panic!("{what}: expected the statement to be refused, got {v:?}"),
        Err(e) => e,
    };
    let db = db_error(&e).clone();
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{what}: SQLSTATE ({})", error_text(&e));
    assert!(db.message().starts_with("pg_oncall: "), "{what}: pg_oncall's refusal: {}", error_text(&e));
    assert!(db.message().contains("has ended"), "{what}: the message says on-call access ended: {}", error_text(&e));
    assert!(db.message().contains(&format!("\"{role}\"")) && db.message().contains(identity), "{what}: names role and identity: {}", error_text(&e));
    assert!(db.detail().is_some_and(|d| !d.is_empty()), "{what}: a DETAIL: {}", error_text(&e));
    assert!(db.hint().is_some_and(|h| h.contains("SET ROLE NONE")), "{what}: the HINT says SET ROLE NONE: {}", error_text(&e));
    db
}

/// A login refused by the login gate (guarantee 3): FATAL, SQLSTATE 28000, a message naming
/// the role and its identity and saying why, a DETAIL and a HINT.
#[track_caller]
pub fn assert_login_refused(result: Result<Client, postgres::Error>, role: &str, identity: &str, what: &str) -> DbError {
    let e = match result {
        Ok(_) => panic!("{what}: the login as {role} must be refused"),
        Err(e) => e,
    };
    let db = db_error(&e).clone();
    assert_eq!(db.severity(), "FATAL", "{what}: {}", error_text(&e));
    assert_eq!(db.code(), &SqlState::INVALID_AUTHORIZATION_SPECIFICATION, "{what}: {}", error_text(&e));
    assert!(db.message().contains(role) && db.message().contains(identity), "{what}: the message names role and identity: {}", error_text(&e));
    assert!(db.message().contains("not on call"), "{what}: the message says why: {}", error_text(&e));
    assert!(db.detail().is_some() && db.hint().is_some(), "{what}: DETAIL and HINT: {}", error_text(&e));
    db
}

/// Not refused by pg_oncall: success (None), or PostgreSQL's own error (returned).
#[track_caller]
pub fn not_refused_by_gate<T>(result: Result<T, postgres::Error>, what: &str) -> Option<DbError> {
    match result {
        Ok(_) => None,
        Err(e) => {
            let db = db_error(&e).clone();
            assert!(!db.message().contains("pg_oncall"), "{what}: the gate refused: {}", error_text(&e));
            Some(db)
        }
    }
}
