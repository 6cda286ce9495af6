//! The JSON shapes of `GET /incidents` pages and of the notes endpoints (`{"note": {..}}`,
//! `{"notes": [..]}`), per the spec's `Incident` and `IncidentNote` schemas: strict on what a
//! decision needs (id, number, status, creation time), tolerant of extra fields and of the
//! optional ones being absent. Failures name the field, never dump the body.

use serde_json::{Map, Value};

use super::error::SyncError;
use super::parse::{invalid, json_body, list_page, non_empty_str, timestamp};
use super::{Incident, IncidentNote, IncidentPage, IncidentStatus};

/// A page plus what pagination and the creation-time split need beyond [`IncidentPage`].
#[derive(Debug)]
pub(crate) struct ParsedIncidents {
    pub page: IncidentPage,
    pub rows: usize,
    pub more_present: bool,
    pub echoed_offset: Option<u32>,
    /// The latest `created_at` among all rows, open or not.
    pub max_created_at_us: Option<i64>,
}

/// Parses one `GET /incidents` body.
///
/// Fails (never panics) on anything that is not a JSON object with an `incidents` array whose
/// rows each carry a non-empty string `id`, an integer `incident_number`, a string `status` and
/// an RFC 3339 `created_at`; `title`, `urgency`, `service`, `escalation_policy` and
/// `assignments` may be absent or null but not of another type. Only `triggered` and
/// `acknowledged` incidents are returned (others are counted in `skipped_not_open`); assignees
/// without an email are counted in `assignees_without_email`. Unknown fields are ignored.
pub fn parse_incidents_page(body: &[u8]) -> Result<IncidentPage, SyncError> {
    parse_incidents(body).map(|parsed| parsed.page)
}

pub(crate) fn parse_incidents(body: &[u8]) -> Result<ParsedIncidents, SyncError> {
    let value = json_body(body)?;
    let (rows, list) = list_page(&value, "incidents")?;
    let mut incidents = Vec::with_capacity(rows.len());
    let mut skipped_not_open = 0;
    let mut assignees_without_email = 0;
    let mut max_created_at_us: Option<i64> = None;
    for (index, row) in rows.iter().enumerate() {
        let (incident, without_email) = parse_incident(index, row)?;
        max_created_at_us = max_created_at_us.max(Some(incident.created_at_us));
        match incident.status {
            Some(status) => {
                assignees_without_email += without_email;
                incidents.push(Incident {
                    id: incident.id,
                    incident_number: incident.incident_number,
                    title: incident.title,
                    status,
                    urgency: incident.urgency,
                    service_id: incident.service_id,
                    escalation_policy_id: incident.escalation_policy_id,
                    assignee_emails: incident.assignee_emails,
                    created_at_us: incident.created_at_us,
                })
            }
            None => skipped_not_open += 1,
        }
    }
    Ok(ParsedIncidents {
        page: IncidentPage {
            incidents,
            skipped_not_open,
            assignees_without_email,
            more: list.more.unwrap_or(false),
            limit: list.limit.unwrap_or(0),
            offset: list.offset.unwrap_or(0),
        },
        rows: rows.len(),
        more_present: list.more.is_some(),
        echoed_offset: list.offset,
        max_created_at_us,
    })
}

struct Row {
    id: String,
    incident_number: i64,
    title: String,
    /// `None`: not open.
    status: Option<IncidentStatus>,
    urgency: Option<String>,
    service_id: Option<String>,
    escalation_policy_id: Option<String>,
    assignee_emails: Vec<String>,
    created_at_us: i64,
}

fn parse_incident(index: usize, row: &Value) -> Result<(Row, usize), SyncError> {
    let at = |field: &str| format!("incidents[{index}].{field}");
    let row = row.as_object().ok_or_else(|| invalid(format!("incidents[{index}] is not an object")))?;
    let id = non_empty_str(row.get("id")).ok_or_else(|| invalid(format!("{} is missing or not a string", at("id"))))?;
    let incident_number = row
        .get("incident_number")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid(format!("{} is missing or not an integer", at("incident_number"))))?;
    let status = match row.get("status") {
        Some(Value::String(status)) => match status.as_str() {
            "triggered" => Some(IncidentStatus::Triggered),
            "acknowledged" => Some(IncidentStatus::Acknowledged),
            // `resolved`, or a status PagerDuty adds later ("more status codes may be
            // introduced"): not known to be open, so it grants nothing.
            _ => None,
        },
        _ => return Err(invalid(format!("{} is missing or not a string", at("status")))),
    };
    let created_at_us = timestamp(&at("created_at"), row.get("created_at"))?
        .ok_or_else(|| invalid(format!("{} is missing", at("created_at"))))?;
    let title = optional_string(row, "title", &at("title"))?.unwrap_or_default();
    let urgency = optional_string(row, "urgency", &at("urgency"))?;
    let service_id = reference_id(row, "service", &at("service"))?;
    let escalation_policy_id = reference_id(row, "escalation_policy", &at("escalation_policy"))?;
    let (assignee_emails, without_email) = assignees(index, row.get("assignments"))?;
    Ok((
        Row { id, incident_number, title, status, urgency, service_id, escalation_policy_id, assignee_emails, created_at_us },
        without_email,
    ))
}

fn optional_string(object: &Map<String, Value>, key: &str, what: &str) -> Result<Option<String>, SyncError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(invalid(format!("{what} is neither null nor a string"))),
    }
}

/// The `id` of a reference or full object; `None` when the field is absent or null.
fn reference_id(object: &Map<String, Value>, key: &str, what: &str) -> Result<Option<String>, SyncError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(reference)) => {
            non_empty_str(reference.get("id")).map(Some).ok_or_else(|| invalid(format!("{what}.id is missing or not a string")))
        }
        Some(_) => Err(invalid(format!("{what} is neither null nor an object"))),
    }
}

/// Normalized assignee emails and the number of assignees without one.
fn assignees(index: usize, value: Option<&Value>) -> Result<(Vec<String>, usize), SyncError> {
    let assignments = match value {
        None | Some(Value::Null) => return Ok((Vec::new(), 0)),
        Some(Value::Array(assignments)) => assignments,
        Some(_) => return Err(invalid(format!("incidents[{index}].assignments is not an array"))),
    };
    let mut emails = Vec::with_capacity(assignments.len());
    let mut without_email = 0;
    for (i, assignment) in assignments.iter().enumerate() {
        let at = format!("incidents[{index}].assignments[{i}]");
        let assignee = match assignment.as_object().map(|a| a.get("assignee")) {
            Some(Some(Value::Object(assignee))) => assignee,
            Some(None | Some(Value::Null)) => {
                without_email += 1;
                continue;
            }
            Some(Some(_)) => return Err(invalid(format!("{at}.assignee is neither null nor an object"))),
            None => return Err(invalid(format!("{at} is not an object"))),
        };
        match assignee.get("email") {
            None | Some(Value::Null) => without_email += 1,
            Some(Value::String(email)) => match normalize_email(email) {
                Some(email) => emails.push(email),
                None => without_email += 1,
            },
            Some(_) => return Err(invalid(format!("{at}.assignee.email is not a string"))),
        }
    }
    emails.sort();
    emails.dedup();
    Ok((emails, without_email))
}

/// Trimmed and lower-cased (emails are compared case-insensitively); `None` when empty.
pub(crate) fn normalize_email(email: &str) -> Option<String> {
    let email = email.trim();
    (!email.is_empty()).then(|| email.to_lowercase())
}

/// Parses the answer to `POST /incidents/{id}/notes`: `{"note": {...}}`.
pub fn parse_note_body(body: &[u8]) -> Result<IncidentNote, SyncError> {
    let value = json_body(body)?;
    match value.as_object().and_then(|top| top.get("note")) {
        Some(note) => parse_note("note", note),
        None => Err(invalid("expected a JSON object with a `note` object")),
    }
}

/// Parses the answer to `GET /incidents/{id}/notes`: `{"notes": [...]}`.
pub fn parse_notes_body(body: &[u8]) -> Result<Vec<IncidentNote>, SyncError> {
    let value = json_body(body)?;
    let notes = match value.as_object().and_then(|top| top.get("notes")) {
        Some(Value::Array(notes)) => notes,
        Some(_) => return Err(invalid("`notes` is not an array")),
        None => return Err(invalid("expected a JSON object with a `notes` array")),
    };
    notes.iter().enumerate().map(|(i, note)| parse_note(&format!("notes[{i}]"), note)).collect()
}

fn parse_note(what: &str, note: &Value) -> Result<IncidentNote, SyncError> {
    let note = note.as_object().ok_or_else(|| invalid(format!("{what} is not an object")))?;
    let content = match note.get("content") {
        Some(Value::String(content)) => content.clone(),
        _ => return Err(invalid(format!("{what}.content is missing or not a string"))),
    };
    let id = optional_string(note, "id", &format!("{what}.id"))?;
    let user_id = match note.get("user") {
        Some(Value::Object(user)) => non_empty_str(user.get("id")),
        _ => None,
    };
    let created_at_us = timestamp(&format!("{what}.created_at"), note.get("created_at"))?;
    Ok(IncidentNote { id, content, user_id, created_at_us })
}
