//! The `/_admin/*` endpoints (no auth) that let the binary be driven over HTTP, and the
//! JSON formats they use for schedules, faults and recorded requests.

use crate::api::{fmt_time, parse_time};
use crate::error_body::error_body;
use crate::http::{Reply, Request};
use crate::model::{Endpoint, Fault, Incident, Note, Oncall, User};
use crate::Shared;
use serde_json::{json, Map, Value};
use std::time::Duration;

fn bad_request(detail: String) -> Reply {
    Reply::json(400, error_body("Invalid Input Provided", 2001, &[detail]))
}

fn ok(value: Value) -> Reply {
    Reply::json(200, value.to_string())
}

fn body_text(req: &Request) -> Result<&str, Reply> {
    std::str::from_utf8(&req.body).map_err(|_| bad_request("body is not UTF-8".into()))
}

pub(crate) fn handle(shared: &Shared, req: &Request) -> Reply {
    let route = (req.method.as_str(), req.path.trim_end_matches('/'));
    if let Some(rest) = route.1.strip_prefix("/_admin/incidents/") {
        return incident_action(shared, req, rest);
    }
    match route {
        ("GET", "/_admin/incidents") => ok(incidents_to_json(&shared.lock().incidents)),
        ("PUT" | "POST", "/_admin/incidents") => {
            let text = match body_text(req) {
                Ok(t) => t,
                Err(r) => return r,
            };
            // PUT replaces every incident; POST adds one (an object) or several (an array).
            let text =
                if req.method == "POST" && text.trim_start().starts_with('{') { format!("[{text}]") } else { text.to_string() };
            match incidents_from_json(&text) {
                Ok(list) => {
                    let mut st = shared.lock();
                    if req.method == "PUT" {
                        st.incidents.clear();
                    }
                    let ids: Vec<String> = list.into_iter().map(|i| st.upsert_incident(i)).collect();
                    let numbers: Vec<Value> = ids
                        .iter()
                        .filter_map(|id| st.incidents.iter().find(|i| &i.id == id))
                        .map(|i| json!({"id": i.id, "incident_number": i.incident_number}))
                        .collect();
                    ok(json!({ "incidents": numbers }))
                }
                Err(e) => bad_request(e),
            }
        }
        ("GET", "/_admin/notes") => ok(notes_to_json(&shared.lock().notes)),
        ("DELETE", "/_admin/notes") => {
            shared.lock().notes.clear();
            ok(json!({ "notes": 0 }))
        }
        ("GET", "/_admin/users") => ok(users_to_json(&shared.lock().known_users())),
        ("POST", "/_admin/users") => {
            let text = match body_text(req) {
                Ok(t) => t,
                Err(r) => return r,
            };
            match users_from_json(text) {
                Ok(users) => {
                    let mut st = shared.lock();
                    st.users.extend(users);
                    ok(json!({ "users": st.users.len() }))
                }
                Err(e) => bad_request(e),
            }
        }
        ("PUT", "/_admin/write_token") => {
            let token = match body_text(req) {
                Ok(t) => t.trim().to_string(),
                Err(r) => return r,
            };
            if token.is_empty() {
                return bad_request("the write token must not be empty".into());
            }
            shared.lock().write_token = Some(token);
            ok(json!({ "write_token": true }))
        }
        ("DELETE", "/_admin/write_token") => {
            shared.lock().write_token = None;
            ok(json!({ "write_token": false }))
        }
        ("GET", "/_admin/oncalls") => ok(oncalls_to_json(&shared.lock().oncalls)),
        ("PUT", "/_admin/oncalls") => {
            let text = match body_text(req) {
                Ok(t) => t,
                Err(r) => return r,
            };
            match oncalls_from_json(text) {
                Ok(list) => {
                    let n = list.len();
                    shared.lock().oncalls = list;
                    ok(json!({ "oncalls": n }))
                }
                Err(e) => bad_request(e),
            }
        }
        ("POST", "/_admin/faults") => {
            let text = match body_text(req) {
                Ok(t) => t,
                Err(r) => return r,
            };
            let value: Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(e) => return bad_request(format!("body is not JSON: {e}")),
            };
            let items = match value {
                Value::Array(items) => items,
                other => vec![other],
            };
            let mut parsed = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match fault_spec_from_json(item) {
                    Ok(spec) => parsed.push(spec),
                    Err(e) => return bad_request(format!("fault {i}: {e}")),
                }
            }
            let mut st = shared.lock();
            for spec in parsed {
                match (spec.persistent, spec.endpoint) {
                    (true, None) => st.persistent = Some(spec.fault),
                    (true, Some(endpoint)) => {
                        st.persistent_by_endpoint.insert(endpoint, spec.fault);
                    }
                    (false, endpoint) => {
                        for _ in 0..spec.times {
                            st.faults.push_back((endpoint, spec.fault.clone()));
                        }
                    }
                }
            }
            ok(json!({
                "queued": st.faults.len(),
                "persistent": st.persistent.as_ref().map(fault_to_json),
            }))
        }
        ("GET", "/_admin/faults") => {
            let st = shared.lock();
            let by_endpoint: Map<String, Value> =
                st.persistent_by_endpoint.iter().map(|(e, f)| (e.name().to_string(), fault_to_json(f))).collect();
            ok(json!({
                "queued": st.faults.iter().map(|(e, f)| with_endpoint(fault_to_json(f), *e)).collect::<Vec<_>>(),
                "persistent": st.persistent.as_ref().map(fault_to_json),
                "persistent_by_endpoint": by_endpoint,
            }))
        }
        ("DELETE", "/_admin/faults") => {
            let mut st = shared.lock();
            st.faults.clear();
            st.persistent = None;
            st.persistent_by_endpoint.clear();
            ok(json!({ "queued": 0, "persistent": null }))
        }
        ("GET", "/_admin/requests") => {
            let started = shared.started;
            let list: Vec<Value> = shared
                .lock()
                .requests
                .iter()
                .map(|r| {
                    json!({
                        "method": r.method,
                        "path": r.path,
                        "query": r.query,
                        "headers": r.headers,
                        "body": String::from_utf8_lossy(&r.body),
                        "at_ms": r.at.saturating_duration_since(started).as_secs_f64() * 1000.0,
                    })
                })
                .collect();
            ok(Value::Array(list))
        }
        ("DELETE", "/_admin/requests") => {
            shared.lock().requests.clear();
            ok(json!({ "requests": 0 }))
        }
        ("PUT", "/_admin/raw_page") => {
            let text = match body_text(req) {
                Ok(t) => t.to_string(),
                Err(r) => return r,
            };
            shared.lock().raw_page = Some(text);
            ok(json!({ "raw_page": true }))
        }
        ("DELETE", "/_admin/raw_page") => {
            shared.lock().raw_page = None;
            ok(json!({ "raw_page": false }))
        }
        _ => crate::api::not_found(),
    }
}

/// Parses a schedule: a JSON array of
/// `{"email", "name"?, "user_id"?, "escalation_policy_id", "escalation_level",
///   "schedule_id"?: string|null, "start"?: time|null, "end"?: time|null}`.
/// A missing `schedule_id` means `"SCHED-" + escalation_policy_id` (like [`crate::oncall`]);
/// `null` means a direct escalation target. Missing/null `start`/`end` mean open-ended.
pub fn oncalls_from_json(text: &str) -> Result<Vec<Oncall>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err("expected a JSON array of on-call entries".into());
    };
    items.iter().enumerate().map(|(i, item)| oncall_from_json(item).map_err(|e| format!("entry {i}: {e}"))).collect()
}

fn oncall_from_json(item: &Value) -> Result<Oncall, String> {
    let Value::Object(m) = item else {
        return Err("expected an object".into());
    };
    const KNOWN: [&str; 8] =
        ["email", "name", "user_id", "escalation_policy_id", "escalation_level", "schedule_id", "start", "end"];
    if let Some(k) = m.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!("unknown field {k:?}"));
    }
    let email = req_str(m, "email")?;
    if email.is_empty() {
        return Err("email must not be empty".into());
    }
    let policy = req_str(m, "escalation_policy_id")?;
    let level = m
        .get("escalation_level")
        .and_then(Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
        .ok_or("escalation_level must be an integer")?;
    let mut user = User::from_email(&email);
    if let Some(name) = opt_str(m, "name")? {
        user.name = name;
    }
    if let Some(id) = opt_str(m, "user_id")? {
        user.id = id;
    }
    let schedule_id = match m.get("schedule_id") {
        None => Some(format!("SCHED-{policy}")),
        Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("schedule_id must be a string or null".into()),
    };
    let time = |key: &str| -> Result<_, String> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_time(s).map(Some).ok_or_else(|| format!("{key} is not an ISO 8601 date-time: {s:?}")),
            Some(_) => Err(format!("{key} must be a string or null")),
        }
    };
    let start = time("start")?;
    let end = time("end")?;
    if let (Some(s), Some(e)) = (start, end) {
        if e <= s {
            return Err("end must be after start".into());
        }
    }
    Ok(Oncall { user, escalation_policy_id: policy, escalation_level: level, schedule_id, start, end })
}

fn req_str(m: &Map<String, Value>, key: &str) -> Result<String, String> {
    match m.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(format!("{key} must be a string")),
    }
}

fn opt_str(m: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

/// The schedule in the format [`oncalls_from_json`] reads (every field explicit).
pub fn oncalls_to_json(list: &[Oncall]) -> Value {
    Value::Array(
        list.iter()
            .map(|o| {
                json!({
                    "email": o.user.email,
                    "name": o.user.name,
                    "user_id": o.user.id,
                    "escalation_policy_id": o.escalation_policy_id,
                    "escalation_level": o.escalation_level,
                    "schedule_id": o.schedule_id,
                    "start": o.start.map(fmt_time),
                    "end": o.end.map(fmt_time),
                })
            })
            .collect(),
    )
}

struct FaultSpec {
    fault: Fault,
    persistent: bool,
    times: u32,
    /// `None`: any endpoint.
    endpoint: Option<Endpoint>,
}

/// Parses one fault description (see README): exactly one of `status`, `rate_limited`,
/// `delay_ms`, `truncated`, `garbage`, `huge_bytes`, `hang`, plus optional `persistent`
/// and `times`.
fn fault_spec_from_json(v: &Value) -> Result<FaultSpec, String> {
    let Value::Object(m) = v else {
        return Err("expected a JSON object".into());
    };
    const KINDS: [&str; 7] = ["status", "rate_limited", "delay_ms", "truncated", "garbage", "huge_bytes", "hang"];
    const EXTRA: [&str; 5] = ["body", "headers", "persistent", "times", "endpoint"];
    if let Some(k) = m.keys().find(|k| !KINDS.contains(&k.as_str()) && !EXTRA.contains(&k.as_str())) {
        return Err(format!("unknown field {k:?}"));
    }
    let kinds: Vec<&str> = KINDS.iter().copied().filter(|k| m.contains_key(*k)).collect();
    if kinds.len() != 1 {
        return Err(format!("expected exactly one of {KINDS:?}, got {kinds:?}"));
    }
    if kinds[0] != "status" && (m.contains_key("body") || m.contains_key("headers")) {
        return Err("body/headers only go with status".into());
    }
    let uint = |key: &str| m.get(key).and_then(Value::as_u64).ok_or_else(|| format!("{key} must be a non-negative integer"));
    let must_be_true = |key: &str| match m.get(key) {
        Some(Value::Bool(true)) => Ok(()),
        _ => Err(format!("{key} must be true")),
    };
    let fault = match kinds[0] {
        "status" => {
            let code = u16::try_from(uint("status")?)
                .ok()
                .filter(|c| (100..=999).contains(c))
                .ok_or("status must be an HTTP status code")?;
            let body = match m.get("body") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()), // a JSON value is sent serialized
            };
            let headers = match m.get("headers") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Object(h)) => h
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => Ok((k.clone(), s.clone())),
                        Value::Number(n) => Ok((k.clone(), n.to_string())),
                        _ => Err(format!("header {k:?} must be a string or number")),
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err("headers must be an object".into()),
            };
            Fault::Status { code, body, headers }
        }
        "rate_limited" => Fault::RateLimited {
            reset_secs: match m.get("rate_limited") {
                Some(Value::Null) => None,
                _ => Some(uint("rate_limited")?),
            },
        },
        "delay_ms" => Fault::Delay(Duration::from_millis(uint("delay_ms")?)),
        "truncated" => {
            must_be_true("truncated")?;
            Fault::Truncated
        }
        "garbage" => {
            must_be_true("garbage")?;
            Fault::Garbage
        }
        "huge_bytes" => Fault::HugeBody { bytes: uint("huge_bytes")? },
        "hang" => {
            must_be_true("hang")?;
            Fault::Hang
        }
        _ => unreachable!("kinds only holds KINDS"),
    };
    let persistent = match m.get("persistent") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("persistent must be a boolean".into()),
    };
    let times = match m.get("times") {
        None | Some(Value::Null) => 1,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=10_000).contains(n))
            .ok_or("times must be an integer from 1 to 10000")?,
    };
    if persistent && times != 1 {
        return Err("times does not go with persistent".into());
    }
    let endpoint = match m.get("endpoint") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(
            Endpoint::from_name(name).ok_or_else(|| format!("endpoint must be oncalls, incidents or notes (got {name:?})"))?,
        ),
        Some(_) => return Err("endpoint must be a string".into()),
    };
    Ok(FaultSpec { fault, persistent, times, endpoint })
}

fn with_endpoint(mut fault: Value, endpoint: Option<Endpoint>) -> Value {
    if let (Some(endpoint), Value::Object(m)) = (endpoint, &mut fault) {
        m.insert("endpoint".into(), json!(endpoint.name()));
    }
    fault
}

/// `POST /_admin/incidents/{id}/resolve` or `PATCH /_admin/incidents/{id}`.
fn incident_action(shared: &Shared, req: &Request, rest: &str) -> Reply {
    let (id, action) = match rest.split_once('/') {
        Some((id, action)) => (id, Some(action)),
        None => (rest, None),
    };
    let id = crate::http::percent_decode_path(id);
    let mut st = shared.lock();
    let Some(index) = st.incidents.iter().position(|i| i.id == id) else {
        return crate::api::not_found();
    };
    match (req.method.as_str(), action) {
        ("POST", Some("resolve")) => {
            let incident = &mut st.incidents[index];
            incident.status = "resolved".into();
            incident.assignees.clear();
        }
        ("PATCH", None) => {
            let value: Value = match std::str::from_utf8(&req.body).ok().and_then(|t| serde_json::from_str(t).ok()) {
                Some(v) => v,
                None => return bad_request("body is not JSON".into()),
            };
            let Value::Object(m) = value else {
                return bad_request("expected a JSON object".into());
            };
            if let Some(k) = m.keys().find(|k| !["status", "urgency", "title", "assignees"].contains(&k.as_str())) {
                return bad_request(format!("unknown field {k:?}"));
            }
            let mut incident = st.incidents[index].clone();
            if let Err(e) = apply_incident_fields(&mut incident, &m) {
                return bad_request(e);
            }
            st.upsert_incident(incident);
        }
        _ => return crate::api::not_found(),
    }
    let incident = st.incidents.iter().find(|i| i.id == id).expect("still there");
    ok(incidents_to_json(std::slice::from_ref(incident))[0].clone())
}

/// Parses incidents: a JSON array of `{"id", "service_id", "escalation_policy_id",
/// "incident_number"?, "title"?, "status"?, "urgency"?, "team_ids"?, "assignees"?: [email],
/// "created_at"?, "incident_key"?}`. Defaults: the next number, `Incident {id}`, `triggered`,
/// `high`, no teams, nobody assigned, created now. A resolved incident has no assignees.
pub fn incidents_from_json(text: &str) -> Result<Vec<Incident>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err("expected a JSON array of incidents".into());
    };
    items.iter().enumerate().map(|(i, item)| incident_from_json(item).map_err(|e| format!("incident {i}: {e}"))).collect()
}

fn incident_from_json(item: &Value) -> Result<Incident, String> {
    let Value::Object(m) = item else {
        return Err("expected an object".into());
    };
    const KNOWN: [&str; 11] = [
        "id",
        "service_id",
        "escalation_policy_id",
        "incident_number",
        "title",
        "status",
        "urgency",
        "team_ids",
        "assignees",
        "created_at",
        "incident_key",
    ];
    if let Some(k) = m.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!("unknown field {k:?}"));
    }
    let id = req_str(m, "id")?;
    if id.is_empty() || id.contains('/') {
        return Err("id must be non-empty and without '/'".into());
    }
    let mut incident = crate::model::incident(&id, &req_str(m, "service_id")?, &req_str(m, "escalation_policy_id")?);
    incident.title = format!("Incident {id}");
    if let Some(n) = m.get("incident_number") {
        incident.incident_number = n.as_u64().filter(|n| *n > 0).ok_or("incident_number must be a positive integer")?;
    }
    if let Some(created) = opt_str(m, "created_at")? {
        incident.created_at =
            parse_time(&created).ok_or_else(|| format!("created_at is not an ISO 8601 date-time: {created:?}"))?;
    }
    incident.incident_key = opt_str(m, "incident_key")?;
    if let Some(Value::Array(teams)) = m.get("team_ids") {
        incident.team_ids =
            teams.iter().map(|t| t.as_str().map(str::to_string).ok_or("team_ids must hold strings")).collect::<Result<_, _>>()?;
    } else if m.get("team_ids").is_some_and(|t| !t.is_null()) {
        return Err("team_ids must be an array".into());
    }
    apply_incident_fields(&mut incident, m)?;
    Ok(incident)
}

/// `status`, `urgency`, `title`, `assignees` (emails) where present.
fn apply_incident_fields(incident: &mut Incident, m: &Map<String, Value>) -> Result<(), String> {
    if let Some(title) = opt_str(m, "title")? {
        incident.title = title;
    }
    if let Some(urgency) = opt_str(m, "urgency")? {
        if !["high", "low"].contains(&urgency.as_str()) {
            return Err("urgency must be high or low".into());
        }
        incident.urgency = urgency;
    }
    match m.get("assignees") {
        None | Some(Value::Null) => {}
        Some(Value::Array(emails)) => {
            incident.assignees = emails
                .iter()
                .map(|e| match e.as_str() {
                    Some(email) if !email.trim().is_empty() => Ok(User::from_email(email.trim())),
                    _ => Err("assignees must hold emails".to_string()),
                })
                .collect::<Result<_, _>>()?;
        }
        Some(_) => return Err("assignees must be an array of emails".into()),
    }
    if let Some(status) = opt_str(m, "status")? {
        if !["triggered", "acknowledged", "resolved"].contains(&status.as_str()) {
            return Err("status must be triggered, acknowledged or resolved".into());
        }
        incident.status = status;
    }
    if incident.status == "resolved" {
        incident.assignees.clear();
    }
    Ok(())
}

/// Incidents in the format [`incidents_from_json`] reads (every field explicit).
pub fn incidents_to_json(list: &[Incident]) -> Value {
    Value::Array(
        list.iter()
            .map(|i| {
                json!({
                    "id": i.id,
                    "incident_number": i.incident_number,
                    "title": i.title,
                    "status": i.status,
                    "urgency": i.urgency,
                    "service_id": i.service_id,
                    "escalation_policy_id": i.escalation_policy_id,
                    "team_ids": i.team_ids,
                    "assignees": i.assignees.iter().map(|u| u.email.clone()).collect::<Vec<_>>(),
                    "created_at": fmt_time(i.created_at),
                    "incident_key": i.incident_key,
                })
            })
            .collect(),
    )
}

fn notes_to_json(notes: &[Note]) -> Value {
    Value::Array(
        notes
            .iter()
            .map(|n| {
                json!({
                    "id": n.id,
                    "incident_id": n.incident_id,
                    "from": n.from,
                    "user_id": n.user.id,
                    "content": n.content,
                    "created_at": fmt_time(n.created_at),
                })
            })
            .collect(),
    )
}

/// Parses users: a JSON array of `{"email", "name"?, "user_id"?}` (name and id derived from
/// the email when absent).
pub fn users_from_json(text: &str) -> Result<Vec<User>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err("expected a JSON array of users".into());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(m) = item else {
                return Err(format!("user {i}: expected an object"));
            };
            if let Some(k) = m.keys().find(|k| !["email", "name", "user_id"].contains(&k.as_str())) {
                return Err(format!("user {i}: unknown field {k:?}"));
            }
            let email = req_str(m, "email").map_err(|e| format!("user {i}: {e}"))?;
            if email.trim().is_empty() {
                return Err(format!("user {i}: email must not be empty"));
            }
            let mut user = User::from_email(email.trim());
            if let Some(name) = opt_str(m, "name").map_err(|e| format!("user {i}: {e}"))? {
                user.name = name;
            }
            if let Some(id) = opt_str(m, "user_id").map_err(|e| format!("user {i}: {e}"))? {
                user.id = id;
            }
            Ok(user)
        })
        .collect()
}

fn users_to_json(users: &[User]) -> Value {
    Value::Array(users.iter().map(|u| json!({"email": u.email, "name": u.name, "user_id": u.id})).collect())
}

/// A fault in the same format [`fault_spec_from_json`] reads.
fn fault_to_json(f: &Fault) -> Value {
    match f {
        Fault::Status { code, body, headers } => json!({
            "status": code,
            "body": body,
            "headers": headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>(),
        }),
        Fault::RateLimited { reset_secs } => json!({ "rate_limited": reset_secs }),
        Fault::Delay(d) => json!({ "delay_ms": d.as_millis() as u64 }),
        Fault::Truncated => json!({ "truncated": true }),
        Fault::Garbage => json!({ "garbage": true }),
        Fault::HugeBody { bytes } => json!({ "huge_bytes": bytes }),
        Fault::Hang => json!({ "hang": true }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<FaultSpec, String> {
        fault_spec_from_json(&serde_json::from_str(s).unwrap())
    }

    #[test]
    fn fault_formats_round_trip() {
        for s in [
            r#"{"status":503,"body":"{\"x\":1}","headers":{"Retry-After":"3"}}"#,
            r#"{"rate_limited":2}"#,
            r#"{"rate_limited":null}"#,
            r#"{"delay_ms":5000}"#,
            r#"{"truncated":true}"#,
            r#"{"garbage":true}"#,
            r#"{"huge_bytes":1073741824}"#,
            r#"{"hang":true}"#,
        ] {
            let spec = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            let back = fault_to_json(&spec.fault);
            assert_eq!(parse(&back.to_string()).unwrap().fault, spec.fault, "{s}");
        }
        assert_eq!(parse(r#"{"rate_limited":null}"#).unwrap().fault, Fault::RateLimited { reset_secs: None });
    }

    #[test]
    fn fault_format_rejects_ambiguity_and_typos() {
        assert!(parse(r#"{"status":503,"hang":true}"#).is_err());
        assert!(parse(r#"{}"#).is_err());
        assert!(parse(r#"{"stauts":503}"#).is_err());
        assert!(parse(r#"{"hang":false}"#).is_err());
        assert!(parse(r#"{"status":42}"#).is_err());
        assert!(parse(r#"{"garbage":true,"body":"x"}"#).is_err());
        assert!(parse(r#"{"hang":true,"persistent":true,"times":3}"#).is_err());
        assert_eq!(parse(r#"{"garbage":true,"times":3}"#).unwrap().times, 3);
    }

    #[test]
    fn schedule_format_defaults_and_nulls() {
        let list = oncalls_from_json(
            r#"[{"email":"a.b@x.io","escalation_policy_id":"EP1","escalation_level":1},
                {"email":"c@x.io","name":"Cee","user_id":"PC","escalation_policy_id":"EP2",
                 "escalation_level":2,"schedule_id":null,"start":"2024-01-01T00:00:00Z","end":null}]"#,
        )
        .unwrap();
        assert_eq!(list[0].schedule_id.as_deref(), Some("SCHED-EP1"));
        assert_eq!(list[0].user.name, "A B");
        assert_eq!(list[1].schedule_id, None);
        assert_eq!(list[1].user.id, "PC");
        assert!(list[1].start.is_some() && list[1].end.is_none());
        let again = oncalls_from_json(&oncalls_to_json(&list).to_string()).unwrap();
        assert_eq!(again, list);
        assert!(oncalls_from_json(r#"[{"email":"a@x.io","escalation_policy_id":"EP","escalation_level":"1"}]"#).is_err());
        assert!(oncalls_from_json(r#"[{"email":"a@x.io","escalation_policy_id":"EP","escalation_level":1,"start":"2024-01-02T00:00:00Z","end":"2024-01-01T00:00:00Z"}]"#).is_err());
        assert!(oncalls_from_json(r#"{"email":"a@x.io"}"#).is_err());
    }
}
