//! The data the fake serves and records: users, on-call shifts, faults and
//! recorded requests, plus the small builders tests use to make them.

use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

/// A PagerDuty user as the fake knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
}

impl User {
    /// A user whose id and name are derived from the email (see [`user_id_for_email`]).
    pub fn from_email(email: &str) -> User {
        User { id: user_id_for_email(email), name: name_for_email(email), email: email.to_string() }
    }
}

/// One on-call entry: `user` is on call for `escalation_policy_id` at `escalation_level`
/// from `start` to `end` (`None` = open-ended, i.e. permanent on that side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Oncall {
    pub user: User,
    pub escalation_policy_id: String,
    pub escalation_level: i32,
    /// `None` => `"schedule": null` (the user is a direct escalation target).
    pub schedule_id: Option<String>,
    /// `None` => `"start": null` (permanent).
    pub start: Option<DateTime<Utc>>,
    /// `None` => `"end": null` (never goes off call).
    pub end: Option<DateTime<Utc>>,
}

/// A permanent on-call entry for `email` on `policy` at `level`, through schedule
/// `"SCHED-" + policy`. User id and name are derived from the email.
pub fn oncall(email: &str, policy: &str, level: i32) -> Oncall {
    Oncall {
        user: User::from_email(email),
        escalation_policy_id: policy.to_string(),
        escalation_level: level,
        schedule_id: Some(format!("SCHED-{policy}")),
        start: None,
        end: None,
    }
}

impl Oncall {
    /// Sets the shift window. Takes a `DateTime<Utc>` or an `Option<DateTime<Utc>>`
    /// for each side (`None` = open on that side).
    pub fn with_window(mut self, start: impl Into<Option<DateTime<Utc>>>, end: impl Into<Option<DateTime<Utc>>>) -> Oncall {
        self.start = start.into();
        self.end = end.into();
        self
    }

    /// Sets the schedule; `None` makes the entry a direct escalation target (`"schedule": null`).
    pub fn with_schedule(mut self, schedule_id: Option<&str>) -> Oncall {
        self.schedule_id = schedule_id.map(str::to_string);
        self
    }

    /// Overrides the derived user name.
    pub fn with_name(mut self, name: &str) -> Oncall {
        self.user.name = name.to_string();
        self
    }

    /// Overrides the derived user id.
    pub fn with_user_id(mut self, id: &str) -> Oncall {
        self.user.id = id.to_string();
        self
    }
}

/// A PagerDuty incident as the fake knows it. `assignees` is empty once resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incident {
    pub id: String,
    /// 0 = "give it the next number" when added to the fake.
    pub incident_number: u64,
    pub title: String,
    /// `triggered`, `acknowledged` or `resolved`.
    pub status: String,
    /// `high` or `low`.
    pub urgency: String,
    pub service_id: String,
    /// The escalation policy of the incident's service.
    pub escalation_policy_id: String,
    pub team_ids: Vec<String>,
    pub assignees: Vec<User>,
    pub created_at: DateTime<Utc>,
    pub incident_key: Option<String>,
}

/// A triggered, high-urgency incident `id` on `service_id`, whose service escalates through
/// `escalation_policy_id`, created now, unassigned, numbered when added to the fake.
pub fn incident(id: &str, service_id: &str, escalation_policy_id: &str) -> Incident {
    Incident {
        id: id.to_string(),
        incident_number: 0,
        title: format!("Incident {id}"),
        status: "triggered".to_string(),
        urgency: "high".to_string(),
        service_id: service_id.to_string(),
        escalation_policy_id: escalation_policy_id.to_string(),
        team_ids: Vec::new(),
        assignees: Vec::new(),
        created_at: Utc::now(),
        incident_key: None,
    }
}

impl Incident {
    /// Adds an assignee (id and name derived from the email unless the fake knows the user).
    pub fn assigned_to(mut self, email: &str) -> Incident {
        self.assignees.push(User::from_email(email));
        self
    }

    pub fn with_status(mut self, status: &str) -> Incident {
        self.status = status.to_string();
        if status == "resolved" {
            self.assignees.clear();
        }
        self
    }

    pub fn with_urgency(mut self, urgency: &str) -> Incident {
        self.urgency = urgency.to_string();
        self
    }

    pub fn with_title(mut self, title: &str) -> Incident {
        self.title = title.to_string();
        self
    }

    pub fn with_number(mut self, number: u64) -> Incident {
        self.incident_number = number;
        self
    }

    pub fn created_at(mut self, at: DateTime<Utc>) -> Incident {
        self.created_at = at;
        self
    }

    pub fn with_team(mut self, team_id: &str) -> Incident {
        self.team_ids.push(team_id.to_string());
        self
    }
}

/// A note the fake received through `POST /incidents/{id}/notes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub id: String,
    pub incident_id: String,
    /// The `From` header exactly as sent.
    pub from: String,
    /// The user `From` named (the note's `user`).
    pub user: User,
    pub content: String,
    pub created_at: DateTime<Utc>,
}

/// Which API endpoint a fault is for (`None` where a fault is accepted = any of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /oncalls`
    Oncalls,
    /// `GET /incidents`
    Incidents,
    /// `GET` and `POST /incidents/{id}/notes`
    Notes,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Oncalls => "oncalls",
            Endpoint::Incidents => "incidents",
            Endpoint::Notes => "notes",
        }
    }

    pub fn from_name(name: &str) -> Option<Endpoint> {
        [Endpoint::Oncalls, Endpoint::Incidents, Endpoint::Notes].into_iter().find(|e| e.name() == name)
    }
}

/// Something going wrong on purpose, applied to a request to an API endpoint before normal
/// handling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status, body (none: empty) and extra headers. A
    /// `Content-Type: application/json` is added when there is a body and no content-type header.
    Status { code: u16, body: Option<String>, headers: Vec<(String, String)> },
    /// `Some(n)`: 429 with `{"error":{"message":"Rate Limit Exceeded","code":2020}}` and
    /// `ratelimit-limit: 960`, `ratelimit-remaining: 0`, `ratelimit-reset: n`.
    /// `None`: bare 429, empty body, no content-type and no ratelimit headers.
    RateLimited { reset_secs: Option<u64> },
    /// Sleep this long, then answer normally.
    Delay(Duration),
    /// 200 headers announcing the full body, then only half of it, then close.
    Truncated,
    /// 200 `application/json` whose body is not JSON (an HTML proxy error page).
    Garbage,
    /// 200 with `Content-Length: bytes`, streaming a JSON string that never ends.
    HugeBody { bytes: u64 },
    /// Read the request, never answer. Ends when the client closes, the fake is dropped, or after 120 s.
    Hang,
}

/// One request the fake received (admin requests excluded).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Path without the query string, as sent (not percent-decoded).
    pub path: String,
    /// Percent-decoded query pairs in order, e.g. `("include[]", "users")`.
    pub query: Vec<(String, String)>,
    /// Header names lower-cased, values as sent, in order.
    pub headers: Vec<(String, String)>,
    /// The request body (empty for GET).
    pub body: Vec<u8>,
    pub at: Instant,
}

impl RecordedRequest {
    /// First value of a header, name compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of a (decoded) query parameter, e.g. `query_values("user_ids[]")`.
    pub fn query_values(&self, name: &str) -> Vec<&str> {
        self.query.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// A stable PagerDuty-looking id (`P` + 6 base-36 characters) from the lower-cased email.
pub fn user_id_for_email(email: &str) -> String {
    // FNV-1a, 64 bit: stable across runs and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in email.trim().to_ascii_lowercase().bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut id = String::from("P");
    for _ in 0..6 {
        id.push(char::from(DIGITS[(hash % 36) as usize]));
        hash /= 36;
    }
    id
}

/// "alice.smith@example.com" => "Alice Smith".
pub fn name_for_email(email: &str) -> String {
    let local = email.split('@').next().unwrap_or(email);
    let words: Vec<String> = local
        .split(['.', '_', '-', '+'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect();
    if words.is_empty() {
        email.to_string()
    } else {
        words.join(" ")
    }
}
