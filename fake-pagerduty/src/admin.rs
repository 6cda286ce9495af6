//! The `/_admin/*` endpoints (no auth) that let the binary be driven over HTTP, and the
//! JSON formats they use for schedules, faults and recorded requests.

use crate::api::{error_body, fmt_time, parse_time};
use crate::http::{Reply, Request};
use crate::model::{Fault, Oncall, User};
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
    match route {
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
                if spec.persistent {
                    st.persistent = Some(spec.fault);
                } else {
                    for _ in 0..spec.times {
                        st.faults.push_back(spec.fault.clone());
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
            ok(json!({
                "queued": st.faults.iter().map(fault_to_json).collect::<Vec<_>>(),
                "persistent": st.persistent.as_ref().map(fault_to_json),
            }))
        }
        ("DELETE", "/_admin/faults") => {
            let mut st = shared.lock();
            st.faults.clear();
            st.persistent = None;
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
}

/// Parses one fault description (see README): exactly one of `status`, `rate_limited`,
/// `delay_ms`, `truncated`, `garbage`, `huge_bytes`, `hang`, plus optional `persistent`
/// and `times`.
fn fault_spec_from_json(v: &Value) -> Result<FaultSpec, String> {
    let Value::Object(m) = v else {
        return Err("expected a JSON object".into());
    };
    const KINDS: [&str; 7] = ["status", "rate_limited", "delay_ms", "truncated", "garbage", "huge_bytes", "hang"];
    const EXTRA: [&str; 4] = ["body", "headers", "persistent", "times"];
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
    Ok(FaultSpec { fault, persistent, times })
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
