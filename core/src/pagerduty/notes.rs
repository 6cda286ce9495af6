//! Notes on incidents: `POST /incidents/{id}/notes` (scope `incidents.write`, with the required
//! `From` header) and `GET /incidents/{id}/notes` (to check whether an uncertain post landed).
//!
//! Each call is one HTTP exchange through the shared client, no retry and no wait: a POST is
//! not idempotent (a retry after a timeout can post the note twice), so the caller decides,
//! using [`NoteError::may_have_posted`] and [`list_notes`].

use std::sync::atomic::AtomicBool;

use super::client::{percent_encode, Client, Failure, Method, RetryPolicy};
use super::error::{NoteError, SyncError};
use super::parse_incidents::{parse_note_body, parse_notes_body};
use super::transport::{Transport, UreqTransport};
use super::{IncidentNote, NoteConfig};

/// Posts `content` as a note on incident `incident_id`, attributed to the PagerDuty user whose
/// email is `from_email` (the `From` header the spec requires). Sends exactly
/// `{"note":{"content":…}}`. One attempt, bounded by `cfg.http_timeout`.
pub fn post_note(cfg: &NoteConfig, incident_id: &str, from_email: &str, content: &str) -> Result<IncidentNote, NoteError> {
    post_note_with(&UreqTransport::new(cfg.http_timeout), cfg, incident_id, from_email, content)
}

/// [`post_note`] over any [`Transport`].
pub fn post_note_with(
    transport: &dyn Transport,
    cfg: &NoteConfig,
    incident_id: &str,
    from_email: &str,
    content: &str,
) -> Result<IncidentNote, NoteError> {
    let result = (|| {
        let from = validate_from(from_email)?;
        if content.trim().is_empty() {
            return Err(NoteError::Config("the note is empty".into()));
        }
        let never = AtomicBool::new(false);
        let mut client = note_client(transport, cfg, "incidents.write", &never)?;
        let url = notes_url(&client, incident_id)?;
        let body = serde_json::json!({ "note": { "content": content } }).to_string();
        let answer = client.attempt(&url, &Method::PostJson { body: body.as_bytes(), headers: &[("From", from)] });
        let body = answer.map_err(|failure| note_error(failure, incident_id, &client))?;
        parse_note_body(&body).map_err(invalid_response)
    })();
    result.map_err(|error| error.redacted(&cfg.token))
}

/// Every note on incident `incident_id` (the spec's listing is not paginated; at most 2,000).
/// One attempt, bounded by `cfg.http_timeout`.
pub fn list_notes(cfg: &NoteConfig, incident_id: &str) -> Result<Vec<IncidentNote>, NoteError> {
    list_notes_with(&UreqTransport::new(cfg.http_timeout), cfg, incident_id)
}

/// [`list_notes`] over any [`Transport`].
pub fn list_notes_with(transport: &dyn Transport, cfg: &NoteConfig, incident_id: &str) -> Result<Vec<IncidentNote>, NoteError> {
    let result = (|| {
        let never = AtomicBool::new(false);
        let mut client = note_client(transport, cfg, "incidents.read", &never)?;
        let url = notes_url(&client, incident_id)?;
        let answer = client.attempt(&url, &Method::Get);
        let body = answer.map_err(|failure| note_error(failure, incident_id, &client))?;
        parse_notes_body(&body).map_err(invalid_response)
    })();
    result.map_err(|error| error.redacted(&cfg.token))
}

fn note_client<'a>(
    transport: &'a dyn Transport,
    cfg: &NoteConfig,
    scope: &'static str,
    never: &'a AtomicBool,
) -> Result<Client<'a>, NoteError> {
    // No retry happens here; the policy is only there to satisfy the client.
    Client::new(transport, &cfg.settings(scope), 0, never, &RetryPolicy::DEFAULT).map_err(NoteError::Config)
}

fn notes_url(client: &Client<'_>, incident_id: &str) -> Result<String, NoteError> {
    if incident_id.trim().is_empty() {
        return Err(NoteError::Config("no incident id".into()));
    }
    Ok(format!("{}/incidents/{}/notes", client.base_url(), percent_encode(incident_id)))
}

/// The `From` value: one email-looking token, nothing a header could be split with.
fn validate_from(from_email: &str) -> Result<&str, NoteError> {
    let from = from_email.trim();
    if from.is_empty() {
        return Err(NoteError::Config("no From email configured (pg_oncall.pagerduty_from_email)".into()));
    }
    let looks_like_email = from.bytes().all(|b| b.is_ascii_graphic())
        && from.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if !looks_like_email {
        return Err(NoteError::Config(
            "the From email must be one address (local@domain, ASCII, no spaces), the email of a PagerDuty user".into(),
        ));
    }
    Ok(from)
}

fn note_error(failure: Failure, incident_id: &str, client: &Client<'_>) -> NoteError {
    match failure {
        Failure::InvalidUrl(detail) => NoteError::Config(format!("the PagerDuty API URL cannot be requested: {detail}")),
        // Nothing sets the flag: treated as an interrupted exchange.
        Failure::Cancelled => NoteError::Connection { detail: "cancelled".into() },
        Failure::Timeout => NoteError::Timeout { timeout: client.http_timeout() },
        Failure::Connection(detail) => NoteError::Connection { detail },
        Failure::BodyTooLarge => {
            NoteError::InvalidResponse { detail: format!("answer larger than {} bytes", NoteConfig::MAX_BODY_BYTES) }
        }
        Failure::RateLimited { reset } => NoteError::RateLimited { retry_after: reset },
        Failure::Status { status, message, retry_after } => match status {
            401 => NoteError::Unauthorized,
            403 => NoteError::Forbidden { scope: client.scope(), message },
            404 => NoteError::NotFound { incident_id: incident_id.to_string(), message },
            408 | 500..=599 => NoteError::ServerError { status, message, retry_after },
            _ => NoteError::Rejected { status, message },
        },
    }
}

fn invalid_response(error: SyncError) -> NoteError {
    match error {
        SyncError::InvalidResponse { detail, .. } => NoteError::InvalidResponse { detail },
        other => NoteError::InvalidResponse { detail: other.to_string() },
    }
}

#[cfg(test)]
#[path = "notes_tests.rs"]
mod tests;
