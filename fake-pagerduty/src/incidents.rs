//! `GET /incidents` and `GET|POST /incidents/{id}/notes` as the PagerDuty REST API v2 spec
//! describes them: the same auth, Accept, error shapes and offset pagination as `/oncalls`,
//! the incident filters, `include[]` expansions, and notes with the required `From` header
//! and the `incidents.write` scope.

use crate::api::{
    accept_ok, access, bad_accept, fmt_time, method_not_allowed, page_bounds, parse_bool, parse_int, parse_time_param,
    unauthorized, user_json, Access, ApiError, API_BASE, DEFAULT_LIMIT, WEB_BASE,
};
use crate::error_body::error_body;
use crate::http::{Reply, Request};
use crate::model::{Incident, Note, User};
use crate::Shared;
use chrono::{DateTime, Months, SecondsFormat, Utc};
use serde_json::{json, Value};

/// PagerDuty: at most 2,000 notes per incident.
const MAX_NOTES_PER_INCIDENT: usize = 2_000;
/// PagerDuty: `since`..`until` spans at most 6 months; it defaults to the last month.
const MAX_RANGE_MONTHS: u32 = 6;
const DEFAULT_RANGE_MONTHS: u32 = 1;

const INCLUDES: [&str; 10] = [
    "acknowledgers",
    "agents",
    "assignees",
    "conference_bridge",
    "escalation_policies",
    "first_trigger_log_entries",
    "priorities",
    "services",
    "teams",
    "users",
];
const SORT_FIELDS: [&str; 4] = ["incident_number", "created_at", "resolved_at", "urgency"];

/// Normal handling of `GET /incidents` (faults already dealt with).
pub(crate) fn list(shared: &Shared, req: &Request) -> Reply {
    if req.method != "GET" {
        return method_not_allowed("GET");
    }
    let incidents = {
        let st = shared.lock();
        if access(req, &st).is_none() {
            return unauthorized();
        }
        st.incidents.clone()
    };
    if !accept_ok(req) {
        return bad_accept(req.header("accept"));
    }
    match render(&incidents, &req.query, Utc::now()) {
        Ok(body) => Reply::json(200, body),
        Err(e) => e.reply(),
    }
}

/// The body a successful `GET /incidents` would have (auth not checked); for `Fault::Truncated`.
pub(crate) fn list_success_body(shared: &Shared, req: &Request) -> Vec<u8> {
    let incidents = shared.lock().incidents.clone();
    match render(&incidents, &req.query, Utc::now()) {
        Ok(body) => body.into_bytes(),
        Err(e) => error_body(e.message, e.code, &e.errors).into_bytes(),
    }
}

/// A validated `GET /incidents` query.
struct Query {
    /// `None` with `date_range=all`.
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    statuses: Vec<String>,
    user_ids: Vec<String>,
    service_ids: Vec<String>,
    team_ids: Vec<String>,
    urgencies: Vec<String>,
    incident_key: Option<String>,
    /// (field, descending)
    sort_by: Vec<(String, bool)>,
    include: Vec<String>,
    limit: usize,
    offset: usize,
    total: bool,
}

fn parse_query(pairs: &[(String, String)], now: DateTime<Utc>) -> Result<Query, ApiError> {
    let mut q = Query {
        range: None,
        statuses: Vec::new(),
        user_ids: Vec::new(),
        service_ids: Vec::new(),
        team_ids: Vec::new(),
        urgencies: Vec::new(),
        incident_key: None,
        sort_by: Vec::new(),
        include: Vec::new(),
        limit: 0,
        offset: 0,
        total: false,
    };
    let (mut since, mut until, mut all) = (None, None, false);
    let (mut limit, mut offset) = (DEFAULT_LIMIT, 0i64);
    for (key, value) in pairs {
        match key.as_str() {
            "statuses[]" => q.statuses.push(one_of("statuses[]", value, &["triggered", "acknowledged", "resolved"])?),
            "user_ids[]" => q.user_ids.push(value.clone()),
            "service_ids[]" => q.service_ids.push(value.clone()),
            "team_ids[]" => q.team_ids.push(value.clone()),
            "urgencies[]" => q.urgencies.push(one_of("urgencies[]", value, &["high", "low"])?),
            "incident_key" => q.incident_key = Some(value.clone()),
            "include[]" => q.include.push(one_of("include[]", value, &INCLUDES)?),
            "sort_by" => {
                // style form, explode false: one comma-separated value, at most two fields.
                for item in value.split(',').filter(|i| !i.is_empty()) {
                    let (field, direction) = item.split_once(':').unwrap_or((item, "asc"));
                    let field = one_of("sort_by", field, &SORT_FIELDS)?;
                    let descending = match direction {
                        "asc" => false,
                        "desc" => true,
                        other => return Err(ApiError::invalid(format!("sort_by direction must be asc or desc (got {other:?})"))),
                    };
                    q.sort_by.push((field, descending));
                }
                if q.sort_by.len() > 2 {
                    return Err(ApiError::invalid("sort_by takes at most two fields".into()));
                }
            }
            "date_range" => {
                if value != "all" {
                    return Err(ApiError::invalid(format!("date_range must be all (got {value:?})")));
                }
                all = true;
            }
            "since" => since = Some(parse_time_param("since", value)?),
            "until" => until = Some(parse_time_param("until", value)?),
            "time_zone" => {} // accepted, ignored: times are always rendered and read in UTC
            "total" => q.total = parse_bool("total", value)?,
            "limit" => limit = parse_int("limit", value)?,
            "offset" => offset = parse_int("offset", value)?,
            _ => {} // like PagerDuty, unknown parameters are ignored
        }
    }
    (q.limit, q.offset) = page_bounds(limit, offset)?;
    if !all {
        // The spec: "Maximum range is 6 months and default is 1 month" (and, with
        // date_range=all, "the since and until parameters and defaults are ignored").
        let until = until.unwrap_or(now);
        let since = match since {
            Some(since) => since,
            None => until.checked_sub_months(Months::new(DEFAULT_RANGE_MONTHS)).unwrap_or(until),
        };
        if until < since {
            return Err(ApiError::invalid(format!("until ({}) cannot be before since ({})", fmt_time(until), fmt_time(since))));
        }
        if since.checked_add_months(Months::new(MAX_RANGE_MONTHS)).is_some_and(|limit| until > limit) {
            return Err(ApiError::invalid(format!("the date range may span at most {MAX_RANGE_MONTHS} months")));
        }
        q.range = Some((since, until));
    }
    Ok(q)
}

fn one_of(name: &str, value: &str, allowed: &[&str]) -> Result<String, ApiError> {
    if allowed.contains(&value) {
        Ok(value.to_string())
    } else {
        Err(ApiError::invalid(format!("{name} must be one of {} (got {value:?})", allowed.join(", "))))
    }
}

fn matches(i: &Incident, q: &Query) -> bool {
    q.range.is_none_or(|(since, until)| since <= i.created_at && i.created_at < until)
        && (q.statuses.is_empty() || q.statuses.contains(&i.status))
        // "only incidents currently assigned to the passed user(s)", so never resolved ones.
        && (q.user_ids.is_empty() || (i.status != "resolved" && i.assignees.iter().any(|u| q.user_ids.contains(&u.id))))
        && (q.service_ids.is_empty() || q.service_ids.contains(&i.service_id))
        && (q.team_ids.is_empty() || i.team_ids.iter().any(|t| q.team_ids.contains(t)))
        && (q.urgencies.is_empty() || q.urgencies.contains(&i.urgency))
        && q.incident_key.as_ref().is_none_or(|key| i.incident_key.as_ref() == Some(key))
}

fn render(all: &[Incident], pairs: &[(String, String)], now: DateTime<Utc>) -> Result<String, ApiError> {
    let q = parse_query(pairs, now)?;
    let mut selected: Vec<&Incident> = all.iter().filter(|i| matches(i, &q)).collect();
    // Default order (the spec names none): creation time, then number.
    let mut keys = q.sort_by.clone();
    keys.push(("created_at".into(), false));
    keys.push(("incident_number".into(), false));
    selected.sort_by(|a, b| {
        keys.iter()
            .map(|(field, descending)| {
                let order = match field.as_str() {
                    "incident_number" => a.incident_number.cmp(&b.incident_number),
                    "urgency" => a.urgency.cmp(&b.urgency),
                    // resolved_at is not modelled: resolved incidents keep their creation order.
                    _ => a.created_at.cmp(&b.created_at),
                };
                if *descending {
                    order.reverse()
                } else {
                    order
                }
            })
            .find(|order| order.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let total = selected.len();
    let page: Vec<Value> = selected.iter().skip(q.offset).take(q.limit).map(|i| incident_json(i, &q.include)).collect();
    let body = json!({
        "incidents": page,
        "limit": q.limit,
        "offset": q.offset,
        "more": q.offset + q.limit < total,
        "total": if q.total { json!(total) } else { Value::Null },
    });
    Ok(body.to_string())
}

/// Incident and note times as PagerDuty renders them: whole seconds, UTC.
fn fmt_secs(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn reference(id: &str, kind: &str, summary: &str, path: &str, web_path: &str) -> Value {
    json!({
        "id": id,
        "type": format!("{kind}_reference"),
        "summary": summary,
        "self": format!("{API_BASE}/{path}/{id}"),
        "html_url": format!("{WEB_BASE}/{web_path}/{id}"),
    })
}

/// A reference, or with `full` the object itself (`type` without `_reference`, plus `name`).
fn entity(id: &str, kind: &str, name: &str, path: &str, web_path: &str, full: bool) -> Value {
    let mut value = reference(id, kind, name, path, web_path);
    if full {
        value["type"] = json!(kind);
        value["name"] = json!(name);
    }
    value
}

fn incident_json(i: &Incident, include: &[String]) -> Value {
    let has = |what: &str| include.iter().any(|x| x == what);
    let created = fmt_secs(i.created_at);
    let ep_name = format!("Escalation Policy {}", i.escalation_policy_id);
    let mut service =
        entity(&i.service_id, "service", &format!("Service {}", i.service_id), "services", "service-directory", has("services"));
    if has("services") {
        service["status"] = json!("active");
        service["escalation_policy"] =
            reference(&i.escalation_policy_id, "escalation_policy", &ep_name, "escalation_policies", "escalation_policies");
    }
    let full_users = has("assignees") || has("users");
    let assignments: Vec<Value> =
        i.assignees.iter().map(|u: &User| json!({"at": created, "assignee": user_json(u, full_users)})).collect();
    let resolved = i.status == "resolved";
    json!({
        "id": i.id,
        "type": "incident",
        "summary": format!("[#{}] {}", i.incident_number, i.title),
        "self": format!("{API_BASE}/incidents/{}", i.id),
        "html_url": format!("{WEB_BASE}/incidents/{}", i.id),
        "incident_number": i.incident_number,
        "title": i.title,
        "created_at": created,
        "updated_at": created,
        "status": i.status,
        "incident_key": i.incident_key,
        "service": service,
        "assignments": if resolved { vec![] } else { assignments },
        "assigned_via": "escalation_policy",
        "last_status_change_at": created,
        "resolved_at": Value::Null,
        "alert_counts": {"all": 0, "triggered": 0, "resolved": 0},
        "is_mergeable": true,
        "incident_type": {"name": "incident_default"},
        "escalation_policy": entity(&i.escalation_policy_id, "escalation_policy", &ep_name, "escalation_policies", "escalation_policies", has("escalation_policies")),
        "teams": i.team_ids.iter().map(|t| entity(t, "team", &format!("Team {t}"), "teams", "teams", has("teams"))).collect::<Vec<_>>(),
        "pending_actions": [],
        "acknowledgements": [],
        "priority": Value::Null,
        "urgency": i.urgency,
    })
}

fn note_json(note: &Note) -> Value {
    json!({
        "id": note.id,
        "user": reference(&note.user.id, "user", &note.user.name, "users", "users"),
        "channel": {"summary": "The PagerDuty website or APIs"},
        "content": note.content,
        "created_at": fmt_secs(note.created_at),
        "updated_at": fmt_secs(note.created_at),
    })
}

fn not_found() -> Reply {
    crate::api::not_found()
}

fn bad_request(message: &'static str, code: u32, detail: Option<String>) -> Reply {
    ApiError { status: 400, message, code, errors: detail.into_iter().collect() }.reply()
}

/// Normal handling of `GET|POST /incidents/{id}/notes` (faults already dealt with).
///
/// Order: method → auth (401) → Accept (400) → for POST the `incidents.write` scope (403) →
/// unknown incident (404) → for POST `From` (400), `Content-Type` (400), body (400), the
/// 2,000-note limit (400) → 200.
pub(crate) fn notes(shared: &Shared, req: &Request, incident_id: &str) -> Reply {
    let post = match req.method.as_str() {
        "GET" => false,
        "POST" => true,
        _ => return method_not_allowed("GET, POST"),
    };
    let mut st = shared.lock();
    let Some(level) = access(req, &st) else {
        return unauthorized();
    };
    if !accept_ok(req) {
        return bad_accept(req.header("accept"));
    }
    if post && level != Access::Write {
        return ApiError {
            status: 403,
            message: "Access Denied",
            code: 2010,
            errors: vec!["This token is read-only: creating a note requires the incidents.write scope".into()],
        }
        .reply();
    }
    if !st.incidents.iter().any(|i| i.id == incident_id) {
        return not_found();
    }
    if !post {
        let notes: Vec<Value> = st.notes.iter().filter(|n| n.incident_id == incident_id).map(note_json).collect();
        return Reply::json(200, json!({ "notes": notes }).to_string());
    }
    // The spec: `From` is required, "the email address of a valid user associated with the
    // account making the request". Messages as PagerDuty sends them where known.
    let from = match req.header("from").map(str::trim) {
        None | Some("") => {
            return bad_request(
                "You must specify a user's email address in the \"From\" header to perform this action",
                2016,
                None,
            )
        }
        Some(from) => from.to_string(),
    };
    let well_formed =
        from.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty()) && !from.contains(char::is_whitespace);
    if !well_formed {
        return bad_request("Malformed \"From\" header", 1028, None);
    }
    let Some(user) = st.user_by_email(&from) else {
        return bad_request(
            "Invalid Input Provided",
            2001,
            Some(format!("The From header {from:?} is not the email of a user of this account")),
        );
    };
    let json_content = req
        .header("content-type")
        .is_some_and(|ct| ct.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json")));
    if !json_content {
        return bad_request("Invalid Input Provided", 2001, Some("Content-Type must be application/json".into()));
    }
    let content = match serde_json::from_slice::<Value>(&req.body) {
        Ok(body) => match body.get("note").and_then(|n| n.get("content")) {
            Some(Value::String(content)) if !content.trim().is_empty() => content.clone(),
            Some(Value::String(_)) => {
                return bad_request("Invalid Input Provided", 2001, Some("Note content cannot be empty".into()))
            }
            _ => return bad_request("Invalid Input Provided", 2001, Some("note.content must be a string".into())),
        },
        Err(_) => return bad_request("Invalid Input Provided", 2001, Some("The body is not JSON".into())),
    };
    if st.notes.iter().filter(|n| n.incident_id == incident_id).count() >= MAX_NOTES_PER_INCIDENT {
        return bad_request(
            "Invalid Input Provided",
            2001,
            Some(format!("An incident can have at most {MAX_NOTES_PER_INCIDENT} notes")),
        );
    }
    st.next_note += 1;
    let note = Note {
        id: format!("N{:06}", st.next_note),
        incident_id: incident_id.to_string(),
        from,
        user,
        content,
        created_at: Utc::now(),
    };
    let body = json!({ "note": note_json(&note) }).to_string();
    st.notes.push(note);
    Reply::json(200, body)
}
