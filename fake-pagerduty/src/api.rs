//! `GET /oncalls` as the PagerDuty REST API v2 spec describes it: auth and Accept
//! checks, query validation, window/filter/earliest/pagination logic, and the
//! response and error bodies in the spec's shapes.

use crate::error_body::error_body;
use crate::http::{Reply, Request};
use crate::model::{Oncall, User};
use crate::{Shared, State};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::Serialize;

pub(crate) const API_BASE: &str = "https://api.pagerduty.com";
pub(crate) const WEB_BASE: &str = "https://fake.pagerduty.com";
/// PagerDuty: `limit` max 100. Larger values are clamped (and the clamped value echoed), not refused.
const MAX_LIMIT: i64 = 100;
pub(crate) const DEFAULT_LIMIT: i64 = 25;
/// PagerDuty: `offset + limit` may not exceed 10,000 (400 past it).
const MAX_OFFSET_PLUS_LIMIT: i64 = 10_000;
/// PagerDuty: on-call windows are limited to 90 days.
const MAX_WINDOW_DAYS: i64 = 90;

/// An error answer in PagerDuty's documented shape `{"error":{"message","code","errors"?}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: u16,
    pub message: &'static str,
    pub code: u32,
    pub errors: Vec<String>,
}

impl ApiError {
    pub(crate) fn invalid(detail: String) -> ApiError {
        ApiError { status: 400, message: "Invalid Input Provided", code: 2001, errors: vec![detail] }
    }

    pub fn reply(&self) -> Reply {
        Reply::json(self.status, error_body(self.message, self.code, &self.errors))
    }
}

pub(crate) fn not_found() -> Reply {
    // The example the spec gives for its generic error schema.
    Reply::json(404, error_body("Not Found", 2100, &[]))
}

/// Not covered by the spec; 405 with the generic error shape and an `Allow` header.
pub(crate) fn method_not_allowed(allow: &str) -> Reply {
    Reply::Full {
        status: 405,
        headers: vec![
            ("Content-Type".to_string(), "application/json; charset=utf-8".to_string()),
            ("Allow".to_string(), allow.to_string()),
        ],
        body: error_body("Method Not Allowed", 2100, &[]).into_bytes(),
    }
}

pub(crate) fn unauthorized() -> Reply {
    Reply::json(401, error_body("Unauthorized", 2006, &[]))
}

/// The spec only lists 400/401/403/429 for `GET /oncalls` and says nothing about a wrong
/// `Accept`; we answer 400 (a documented status for this operation, ArgumentError shape)
/// rather than 406.
pub(crate) fn bad_accept(got: Option<&str>) -> Reply {
    ApiError::invalid(format!("Accept header must be application/vnd.pagerduty+json;version=2 (got {got:?})")).reply()
}

/// Normal handling of a request to `/oncalls` (faults already dealt with).
pub(crate) fn answer(shared: &Shared, req: &Request) -> Reply {
    if req.method != "GET" {
        return method_not_allowed("GET");
    }
    let (authorized, raw_page, oncalls) = {
        let st = shared.lock();
        let ok = access(req, &st).is_some();
        if ok {
            (true, st.raw_page.clone(), st.oncalls.clone())
        } else {
            (false, None, Vec::new())
        }
    };
    if !authorized {
        return unauthorized();
    }
    if !accept_ok(req) {
        return bad_accept(req.header("accept"));
    }
    if let Some(raw) = raw_page {
        return Reply::json(200, raw);
    }
    match render(&oncalls, &req.query, Utc::now()) {
        Ok(body) => Reply::json(200, body),
        Err(e) => e.reply(),
    }
}

/// The body a successful answer to this request would have (auth not checked); for `Fault::Truncated`.
pub(crate) fn success_body(shared: &Shared, req: &Request) -> Vec<u8> {
    let (raw_page, oncalls) = {
        let st = shared.lock();
        (st.raw_page.clone(), st.oncalls.clone())
    };
    if let Some(raw) = raw_page {
        return raw.into_bytes();
    }
    match render(&oncalls, &req.query, Utc::now()) {
        Ok(body) => body.into_bytes(),
        Err(e) => error_body(e.message, e.code, &e.errors).into_bytes(),
    }
}

/// What a valid token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// The main token: read scopes only (`oncalls.read`, `incidents.read`, ...).
    Read,
    /// The write token: full access, `incidents.write` included.
    Write,
}

/// `Authorization: Token token=<token>` (scheme case-insensitive, token may be quoted)
/// or `Authorization: Bearer <token>`, matched against the read and the write token.
pub(crate) fn access(req: &Request, st: &State) -> Option<Access> {
    let value = req.header("authorization")?;
    let presented = if let Some(rest) = strip_prefix_ci(value.trim(), "token ") {
        strip_prefix_ci(rest.trim_start(), "token=")?.trim().trim_matches('"')
    } else if let Some(rest) = strip_prefix_ci(value.trim(), "bearer ") {
        rest.trim()
    } else {
        return None;
    };
    if presented.is_empty() {
        None
    } else if st.write_token.as_deref() == Some(presented) {
        Some(Access::Write)
    } else if presented == st.token {
        Some(Access::Read)
    } else {
        None
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len() && s.is_char_boundary(prefix.len()) && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

/// Some media range in `Accept` must be `application/vnd.pagerduty+json` with `version=2`
/// (case and spaces around `;` / `=` tolerated; other ranges in a list are ignored).
pub(crate) fn accept_ok(req: &Request) -> bool {
    req.headers.iter().filter(|(n, _)| n == "accept").flat_map(|(_, v)| v.split(',')).any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        media.eq_ignore_ascii_case("application/vnd.pagerduty+json")
            && parts.any(|p| match p.split_once('=') {
                Some((k, v)) => k.trim().eq_ignore_ascii_case("version") && v.trim().trim_matches('"') == "2",
                None => false,
            })
    })
}

/// A validated `GET /oncalls` query.
#[derive(Debug)]
struct Query {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    include_users: bool,
    include_escalation_policies: bool,
    include_schedules: bool,
    user_ids: Vec<String>,
    escalation_policy_ids: Vec<String>,
    schedule_ids: Vec<String>,
    earliest: bool,
    limit: usize,
    offset: usize,
    total: bool,
}

fn parse_query(pairs: &[(String, String)], now: DateTime<Utc>) -> Result<Query, ApiError> {
    let mut since = None;
    let mut until = None;
    let mut q = Query {
        since: now,
        until: now,
        include_users: false,
        include_escalation_policies: false,
        include_schedules: false,
        user_ids: Vec::new(),
        escalation_policy_ids: Vec::new(),
        schedule_ids: Vec::new(),
        earliest: false,
        limit: 0,
        offset: 0,
        total: false,
    };
    let mut limit = DEFAULT_LIMIT;
    let mut offset = 0i64;
    for (key, value) in pairs {
        match key.as_str() {
            "since" => since = Some(parse_time_param("since", value)?),
            "until" => until = Some(parse_time_param("until", value)?),
            "include[]" => match value.as_str() {
                "users" => q.include_users = true,
                "escalation_policies" => q.include_escalation_policies = true,
                "schedules" => q.include_schedules = true,
                other => {
                    return Err(ApiError::invalid(format!(
                        "include[] must be one of escalation_policies, users, schedules (got {other:?})"
                    )))
                }
            },
            "user_ids[]" => q.user_ids.push(value.clone()),
            "escalation_policy_ids[]" => q.escalation_policy_ids.push(value.clone()),
            // The literal value `null` selects on-calls with no schedule (direct escalation targets).
            "schedule_ids[]" => q.schedule_ids.push(value.clone()),
            "time_zone" => {} // accepted, ignored: times are always rendered in UTC
            "earliest" => q.earliest = parse_bool("earliest", value)?,
            "total" => q.total = parse_bool("total", value)?,
            "limit" => limit = parse_int("limit", value)?,
            "offset" => offset = parse_int("offset", value)?,
            _ => {} // like PagerDuty, unknown parameters are ignored
        }
    }
    (q.limit, q.offset) = page_bounds(limit, offset)?;

    // The spec: both default to the current time; until may not be before since.
    q.since = since.unwrap_or(now);
    q.until = until.unwrap_or(now);
    if q.until < q.since {
        return Err(ApiError::invalid(format!("until ({}) cannot be before since ({})", fmt_time(q.until), fmt_time(q.since))));
    }
    if q.until - q.since > chrono::Duration::days(MAX_WINDOW_DAYS) {
        return Err(ApiError::invalid(format!("until must be within {MAX_WINDOW_DAYS} days of since")));
    }
    Ok(q)
}

/// `limit` (at least 1, clamped to 100) and `offset` (not negative), with `offset + limit` at
/// most 10,000, as every offset-paginated PagerDuty listing requires.
pub(crate) fn page_bounds(limit: i64, offset: i64) -> Result<(usize, usize), ApiError> {
    if limit < 1 {
        return Err(ApiError::invalid(format!("limit must be a positive integer (got {limit})")));
    }
    let limit = limit.min(MAX_LIMIT);
    if offset < 0 {
        return Err(ApiError::invalid(format!("offset must not be negative (got {offset})")));
    }
    if offset.saturating_add(limit) > MAX_OFFSET_PLUS_LIMIT {
        return Err(ApiError::invalid(format!(
            "offset + limit must not exceed {MAX_OFFSET_PLUS_LIMIT} (got offset {offset} + limit {limit}); narrow the query with filters"
        )));
    }
    Ok((limit as usize, offset as usize))
}

pub(crate) fn parse_bool(name: &str, value: &str) -> Result<bool, ApiError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::invalid(format!("{name} must be true or false (got {value:?})"))),
    }
}

pub(crate) fn parse_int(name: &str, value: &str) -> Result<i64, ApiError> {
    value.trim().parse::<i64>().map_err(|_| ApiError::invalid(format!("{name} must be an integer (got {value:?})")))
}

pub(crate) fn parse_time_param(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    parse_time(value).ok_or_else(|| {
        ApiError::invalid(format!("{name} must be an ISO 8601 date-time (got {value:?}; a '+' in an offset must be sent as %2B)"))
    })
}

/// ISO 8601 as PagerDuty accepts it: RFC 3339 (`Z` or `±hh:mm`), `±hhmm` offsets, and
/// offset-less date-times or bare dates (taken as UTC here; PagerDuty would use `time_zone`).
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

pub(crate) fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Does the shift overlap the window? Null start/end are open. A zero-width window
/// (the default "now") is a point: start <= t < end. Otherwise half-open overlap.
fn overlaps(o: &Oncall, since: DateTime<Utc>, until: DateTime<Utc>) -> bool {
    if since == until {
        o.start.is_none_or(|s| s <= since) && o.end.is_none_or(|e| e > since)
    } else {
        o.start.is_none_or(|s| s < until) && o.end.is_none_or(|e| e > since)
    }
}

fn matches_filters(o: &Oncall, q: &Query) -> bool {
    (q.user_ids.is_empty() || q.user_ids.contains(&o.user.id))
        && (q.escalation_policy_ids.is_empty() || q.escalation_policy_ids.contains(&o.escalation_policy_id))
        && (q.schedule_ids.is_empty()
            || match &o.schedule_id {
                Some(id) => q.schedule_ids.contains(id),
                None => q.schedule_ids.iter().any(|s| s == "null"),
            })
}

/// Deterministic order: policy, level, user id, start (null first), end (null last), schedule.
fn sort_key(o: &Oncall) -> impl Ord + '_ {
    (
        o.escalation_policy_id.as_str(),
        o.escalation_level,
        o.user.id.as_str(),
        o.start,
        o.end.is_none(),
        o.end,
        o.schedule_id.as_deref(),
    )
}

fn render(all: &[Oncall], pairs: &[(String, String)], now: DateTime<Utc>) -> Result<String, ApiError> {
    let q = parse_query(pairs, now)?;
    let mut selected: Vec<&Oncall> = all.iter().filter(|o| overlaps(o, q.since, q.until) && matches_filters(o, &q)).collect();
    selected.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    if q.earliest {
        // Sorted by (policy, level, user, start...): the first of each run is the earliest.
        selected.dedup_by(|b, a| {
            a.escalation_policy_id == b.escalation_policy_id && a.escalation_level == b.escalation_level && a.user.id == b.user.id
        });
    }
    let total = selected.len();
    let page: Vec<OncallOut> = selected.iter().skip(q.offset).take(q.limit).map(|o| oncall_out(o, &q)).collect();
    let body = PageOut {
        oncalls: page,
        limit: q.limit,
        offset: q.offset,
        more: q.offset + q.limit < total,
        total: q.total.then_some(total),
    };
    Ok(serde_json::to_string(&body).expect("page serializes"))
}

#[derive(Serialize)]
struct PageOut<'a> {
    oncalls: Vec<OncallOut<'a>>,
    limit: usize,
    offset: usize,
    more: bool,
    total: Option<usize>,
}

#[derive(Serialize)]
struct OncallOut<'a> {
    escalation_policy: Entity<'a>,
    escalation_level: i32,
    schedule: Option<Entity<'a>>,
    user: Entity<'a>,
    start: Option<String>,
    end: Option<String>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Entity<'a> {
    Reference(Reference<'a>),
    User(FullUser<'a>),
    Named(NamedObject<'a>),
}

/// The spec's `*Reference` schemas.
#[derive(Serialize)]
struct Reference<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    summary: String,
    #[serde(rename = "self")]
    self_url: String,
    html_url: String,
}

/// The spec's `User` schema (what `include[]=users` expands to).
#[derive(Serialize)]
struct FullUser<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    summary: &'a str,
    #[serde(rename = "self")]
    self_url: String,
    html_url: String,
    name: &'a str,
    email: &'a str,
    time_zone: &'static str,
    color: &'static str,
    role: &'static str,
    avatar_url: &'static str,
    description: Option<&'static str>,
    invitation_sent: bool,
    job_title: &'static str,
    teams: Vec<()>,
    contact_methods: Vec<()>,
    notification_rules: Vec<()>,
}

/// A minimal full escalation policy / schedule (for `include[]=escalation_policies|schedules`).
#[derive(Serialize)]
struct NamedObject<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    summary: String,
    #[serde(rename = "self")]
    self_url: String,
    html_url: String,
    name: String,
}

fn oncall_out<'a>(o: &'a Oncall, q: &Query) -> OncallOut<'a> {
    let ep_id = o.escalation_policy_id.as_str();
    let ep_name = format!("Escalation Policy {ep_id}");
    let escalation_policy = if q.include_escalation_policies {
        Entity::Named(NamedObject {
            id: ep_id,
            kind: "escalation_policy",
            summary: ep_name.clone(),
            self_url: format!("{API_BASE}/escalation_policies/{ep_id}"),
            html_url: format!("{WEB_BASE}/escalation_policies/{ep_id}"),
            name: ep_name,
        })
    } else {
        Entity::Reference(Reference {
            id: ep_id,
            kind: "escalation_policy_reference",
            summary: ep_name,
            self_url: format!("{API_BASE}/escalation_policies/{ep_id}"),
            html_url: format!("{WEB_BASE}/escalation_policies/{ep_id}"),
        })
    };
    let schedule = o.schedule_id.as_deref().map(|id| {
        let name = format!("Schedule {id}");
        if q.include_schedules {
            Entity::Named(NamedObject {
                id,
                kind: "schedule",
                summary: name.clone(),
                self_url: format!("{API_BASE}/schedules/{id}"),
                html_url: format!("{WEB_BASE}/schedules/{id}"),
                name,
            })
        } else {
            Entity::Reference(Reference {
                id,
                kind: "schedule_reference",
                summary: name,
                self_url: format!("{API_BASE}/schedules/{id}"),
                html_url: format!("{WEB_BASE}/schedules/{id}"),
            })
        }
    });
    OncallOut {
        escalation_policy,
        escalation_level: o.escalation_level,
        schedule,
        user: user_entity(&o.user, q.include_users),
        start: o.start.map(fmt_time),
        end: o.end.map(fmt_time),
    }
}

/// A user as the spec renders it: the full `User` (with `email`) or a `user_reference`.
pub(crate) fn user_json(u: &User, full: bool) -> serde_json::Value {
    serde_json::to_value(user_entity(u, full)).expect("user serializes")
}

fn user_entity(u: &User, full: bool) -> Entity<'_> {
    if full {
        Entity::User(FullUser {
            id: &u.id,
            kind: "user",
            summary: &u.name,
            self_url: format!("{API_BASE}/users/{}", u.id),
            html_url: format!("{WEB_BASE}/users/{}", u.id),
            name: &u.name,
            email: &u.email,
            time_zone: "Etc/UTC",
            color: "purple",
            role: "user",
            avatar_url: "https://pd-static-assets.pagerduty.com/users/blank-avatar.png",
            description: None,
            invitation_sent: false,
            job_title: "",
            teams: Vec::new(),
            contact_methods: Vec::new(),
            notification_rules: Vec::new(),
        })
    } else {
        Entity::Reference(Reference {
            id: &u.id,
            kind: "user_reference",
            summary: u.name.clone(),
            self_url: format!("{API_BASE}/users/{}", u.id),
            html_url: format!("{WEB_BASE}/users/{}", u.id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_iso8601_forms_pagerduty_accepts() {
        let want = DateTime::parse_from_rfc3339("2024-03-01T10:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_time("2024-03-01T10:00:00Z"), Some(want));
        assert_eq!(parse_time("2024-03-01T12:00:00+02:00"), Some(want));
        assert_eq!(parse_time("2024-03-01T12:00:00+0200"), Some(want));
        assert_eq!(parse_time("2024-03-01T10:00:00"), Some(want));
        assert_eq!(parse_time("2024-03-01T10:00"), Some(want));
        assert_eq!(parse_time("2024-03-01").map(fmt_time).as_deref(), Some("2024-03-01T00:00:00Z"));
        // An unencoded '+' arrives as a space: refused, like a real server would.
        assert_eq!(parse_time("2024-03-01T12:00:00 02:00"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn accept_tolerates_spaces_and_lists() {
        let req = |v: &str| Request {
            method: "GET".into(),
            path: "/oncalls".into(),
            query: vec![],
            headers: vec![("accept".into(), v.into())],
            body: vec![],
            keep_alive: true,
        };
        assert!(accept_ok(&req("application/vnd.pagerduty+json;version=2")));
        assert!(accept_ok(&req("application/vnd.pagerduty+json ; version = 2")));
        assert!(accept_ok(&req("application/json, application/vnd.pagerduty+json;version=2")));
        assert!(!accept_ok(&req("application/vnd.pagerduty+json;version=1")));
        assert!(!accept_ok(&req("application/vnd.pagerduty+json")));
        assert!(!accept_ok(&req("application/json")));
    }
}
