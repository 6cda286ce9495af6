//! PagerDuty's error object, the one shape every error answer of the spec shares.

use serde::Serialize;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorInner<'a>,
}

#[derive(Serialize)]
struct ErrorInner<'a> {
    message: &'a str,
    code: u32,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    errors: &'a [String],
}

/// `{"error":{"message":..,"code":..}}`, plus `"errors":[..]` when there are details.
pub(crate) fn error_body(message: &str, code: u32, errors: &[String]) -> String {
    serde_json::to_string(&ErrorBody { error: ErrorInner { message, code, errors } }).expect("error body serializes")
}
