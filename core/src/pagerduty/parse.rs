//! The JSON shapes PagerDuty answers with: `/oncalls` pages (strict on the fields a shift needs,
//! tolerant of extra ones) and error bodies (documented and quirky shapes alike).
//! Works on `serde_json::Value` so every failure can name the field, never the body.

use chrono::DateTime;
use serde_json::{Map, Value};

use super::error::{clean_text, SyncError, MAX_MESSAGE_CHARS};
use super::{Page, Shift};

/// A page plus what pagination needs beyond the public [`Page`].
#[derive(Debug)]
pub(crate) struct ParsedPage {
    pub page: Page,
    /// `more` was present (a missing `more` is only trusted on a short page).
    pub more_present: bool,
    /// The echoed `offset`, when present.
    pub echoed_offset: Option<u32>,
    /// Every row's escalation policy id, rows without email included.
    pub row_policies: Vec<String>,
}

/// Parses one `GET /oncalls` body.
///
/// Fails (never panics) on anything that is not a JSON object with an `oncalls` array whose rows
/// each carry an `escalation_policy.id`, an integer `escalation_level`, a null or referenced
/// `schedule` and null or RFC 3339 `start`/`end`. Rows whose user has no email are counted in
/// `skipped_without_email`. Unknown fields are ignored.
pub fn parse_oncalls_page(body: &[u8]) -> Result<Page, SyncError> {
    parse_page(body).map(|parsed| parsed.page)
}

pub(crate) fn parse_page(body: &[u8]) -> Result<ParsedPage, SyncError> {
    let value = json_body(body)?;
    let (rows, list) = list_page(&value, "oncalls")?;
    let (more, limit, echoed_offset) = (list.more, list.limit, list.offset);

    let mut shifts = Vec::with_capacity(rows.len());
    let mut row_policies = Vec::with_capacity(rows.len());
    let mut skipped_without_email = 0;
    for (index, row) in rows.iter().enumerate() {
        let parsed = parse_row(index, row)?;
        row_policies.push(parsed.escalation_policy_id.clone());
        match parsed.user {
            Some((email, user_id)) => shifts.push(Shift {
                email,
                user_id,
                escalation_policy_id: parsed.escalation_policy_id,
                escalation_level: parsed.escalation_level,
                schedule_id: parsed.schedule_id,
                start_us: parsed.start_us,
                end_us: parsed.end_us,
            }),
            None => skipped_without_email += 1,
        }
    }
    Ok(ParsedPage {
        page: Page {
            shifts,
            skipped_without_email,
            more: more.unwrap_or(false),
            limit: limit.unwrap_or(0),
            offset: echoed_offset.unwrap_or(0),
        },
        more_present: more.is_some(),
        echoed_offset,
        row_policies,
    })
}

/// The JSON of a body, or why it is none (empty, not JSON).
pub(crate) fn json_body(body: &[u8]) -> Result<Value, SyncError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("empty body"));
    }
    serde_json::from_slice(body).map_err(|e| invalid(format!("not valid JSON ({e})")))
}

/// The pagination fields of a list answer; `None` when absent or null.
pub(crate) struct ListFields {
    pub more: Option<bool>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

/// The `key` array of a paginated list answer (`{"<key>": [...], "more", "limit", "offset"}`).
pub(crate) fn list_page<'v>(value: &'v Value, key: &str) -> Result<(&'v [Value], ListFields), SyncError> {
    let top = value.as_object().ok_or_else(|| invalid(format!("expected a JSON object with an `{key}` array")))?;
    let rows = match top.get(key) {
        Some(Value::Array(rows)) => rows,
        Some(_) => return Err(invalid(format!("`{key}` is not an array"))),
        None => return Err(invalid(format!("`{key}` is missing"))),
    };
    let more = match top.get("more") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(more)) => Some(*more),
        Some(_) => return Err(invalid("`more` is not a boolean")),
    };
    Ok((rows, ListFields { more, limit: optional_u32(top, "limit")?, offset: optional_u32(top, "offset")? }))
}

struct Row {
    user: Option<(String, String)>,
    escalation_policy_id: String,
    escalation_level: i32,
    schedule_id: Option<String>,
    start_us: Option<i64>,
    end_us: Option<i64>,
}

fn parse_row(index: usize, row: &Value) -> Result<Row, SyncError> {
    let row = row.as_object().ok_or_else(|| invalid(format!("oncalls[{index}] is not an object")))?;
    let escalation_policy_id = match row.get("escalation_policy") {
        Some(Value::Object(policy)) => non_empty_str(policy.get("id")),
        _ => None,
    }
    .ok_or_else(|| invalid(format!("oncalls[{index}].escalation_policy.id is missing or not a string")))?;
    let escalation_level = row
        .get("escalation_level")
        .and_then(Value::as_i64)
        .and_then(|level| i32::try_from(level).ok())
        .ok_or_else(|| invalid(format!("oncalls[{index}].escalation_level is missing or not an integer")))?;
    let schedule_id = match row.get("schedule") {
        None | Some(Value::Null) => None,
        Some(Value::Object(schedule)) => Some(
            non_empty_str(schedule.get("id"))
                .ok_or_else(|| invalid(format!("oncalls[{index}].schedule.id is missing or not a string")))?,
        ),
        Some(_) => return Err(invalid(format!("oncalls[{index}].schedule is neither null nor an object"))),
    };
    let start_us = timestamp(&format!("oncalls[{index}].start"), row.get("start"))?;
    let end_us = timestamp(&format!("oncalls[{index}].end"), row.get("end"))?;
    let user = match row.get("user") {
        None | Some(Value::Null) => None,
        Some(Value::Object(user)) => user_with_email(index, user)?,
        Some(_) => return Err(invalid(format!("oncalls[{index}].user is neither null nor an object"))),
    };
    Ok(Row { user, escalation_policy_id, escalation_level, schedule_id, start_us, end_us })
}

/// `(email, id)` for a full user object; `None` for a reference or a deleted user (no email).
fn user_with_email(index: usize, user: &Map<String, Value>) -> Result<Option<(String, String)>, SyncError> {
    let email = match user.get("email") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(email)) if email.trim().is_empty() => return Ok(None),
        Some(Value::String(email)) => email.clone(),
        Some(_) => return Err(invalid(format!("oncalls[{index}].user.email is not a string"))),
    };
    let id =
        non_empty_str(user.get("id")).ok_or_else(|| invalid(format!("oncalls[{index}].user.id is missing or not a string")))?;
    Ok(Some((email, id)))
}

/// A null/absent or RFC 3339 timestamp (µs); `what` names the field in errors.
pub(crate) fn timestamp(what: &str, value: Option<&Value>) -> Result<Option<i64>, SyncError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.timestamp_micros()))
            .map_err(|_| invalid(format!("{what} is not an RFC 3339 timestamp: \"{}\"", clean_text(text, 40)))),
        Some(_) => Err(invalid(format!("{what} is neither null nor a string"))),
    }
}

pub(crate) fn non_empty_str(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

pub(crate) fn optional_u32(object: &Map<String, Value>, key: &str) -> Result<Option<u32>, SyncError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| invalid(format!("`{key}` is not a non-negative integer"))),
    }
}

pub(crate) fn invalid(detail: impl Into<String>) -> SyncError {
    SyncError::InvalidResponse { offset: None, detail: detail.into() }
}

/// A readable one-line message from a PagerDuty error body, or `None` when there is none.
///
/// Understands the documented `{"error":{"message","code","errors":[..]}}` and the shapes seen in
/// the wild: `errors` as a string, `error` as an array or a string, the error fields at top
/// level. Example: `Invalid Input Provided (code 2001): a, b`. Control characters are removed and
/// the text is cut to about 200 characters.
pub fn parse_error_body(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let text = match &value {
        Value::Object(top) => match top.get("error") {
            Some(Value::Object(error)) => describe_error_object(error),
            Some(Value::Array(items)) => join_items(items),
            Some(Value::String(message)) => piece(message),
            _ => describe_error_object(top),
        },
        Value::Array(items) => join_items(items),
        _ => None,
    }?;
    let text = clean_text(&text, MAX_MESSAGE_CHARS);
    (!text.is_empty()).then_some(text)
}

fn describe_error_object(error: &Map<String, Value>) -> Option<String> {
    let message = match error.get("message") {
        Some(Value::String(m)) => piece(m),
        _ => None,
    };
    let code = match error.get("code") {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) if s.len() <= 20 => piece(s),
        _ => None,
    };
    let details = match error.get("errors") {
        Some(Value::Array(items)) => join_items(items),
        Some(Value::String(s)) => piece(s),
        _ => None,
    };
    if message.is_none() && details.is_none() {
        return None;
    }
    let mut text = message.unwrap_or_else(|| "error".to_string());
    if let Some(code) = code {
        text.push_str(&format!(" (code {code})"));
    }
    if let Some(details) = details {
        text.push_str(": ");
        text.push_str(&details);
    }
    Some(text)
}

fn join_items(items: &[Value]) -> Option<String> {
    let parts: Vec<String> = items
        .iter()
        .take(20)
        .filter_map(|item| match item {
            Value::String(s) => piece(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A cleaned, non-empty fragment of an error message (cut later, as a whole).
fn piece(text: &str) -> Option<String> {
    let text = clean_text(text, MAX_MESSAGE_CHARS + 1);
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_more_is_reported_as_absent() {
        let parsed = parse_page(br#"{"oncalls":[]}"#).unwrap();
        assert!(!parsed.more_present);
        assert!(!parsed.page.more);
        assert_eq!(parsed.echoed_offset, None);
    }
}
