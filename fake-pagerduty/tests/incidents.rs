//! `GET /incidents` and `GET|POST /incidents/{id}/notes` against the spec: shapes, filters,
//! `include[]`, pagination and its cap, scopes, the `From` header, endpoint-targeted faults and
//! the admin API for incidents, users, notes and the write token.

mod common;

use chrono::{Duration as TimeDelta, Utc};
use common::*;
use fake_pagerduty::{incident, oncall, Endpoint, FakePagerDuty, Fault, User};
use serde_json::{json, Value};

const WRITE: &str = "wr1te-token";
const BOT: &str = "pg-oncall@example.com";

fn fake_with_incidents() -> FakePagerDuty {
    let fake = FakePagerDuty::start(TOKEN).unwrap();
    fake.set_write_token(Some(WRITE));
    fake.add_users(vec![User::from_email(BOT)]);
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1).with_user_id("PALICE")]);
    let now = Utc::now();
    fake.set_incidents(vec![
        incident("PINC1", "PSVC1", "EP1")
            .assigned_to("alice@example.com")
            .with_title("Disk full")
            .created_at(now - TimeDelta::hours(2)),
        incident("PINC2", "PSVC2", "EP2")
            .assigned_to("bob@example.com")
            .with_status("acknowledged")
            .with_urgency("low")
            .with_team("PTEAM")
            .created_at(now - TimeDelta::hours(1)),
        incident("PINC3", "PSVC1", "EP1").with_status("resolved").created_at(now - TimeDelta::minutes(30)),
        // Older than the default one-month range, still open.
        incident("POLD", "PSVC1", "EP1").assigned_to("alice@example.com").created_at(now - TimeDelta::days(50)),
    ]);
    fake
}

fn ids(page: &Value) -> Vec<String> {
    page["incidents"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
}

fn post_note(fake: &FakePagerDuty, token: &str, id: &str, from: Option<&str>, body: &str) -> Resp {
    let auth = format!("Token token={token}");
    let mut headers = vec![("Authorization", auth.as_str()), ("Accept", ACCEPT), ("Content-Type", "application/json")];
    if let Some(from) = from {
        headers.push(("From", from));
    }
    send("POST", &format!("{}/incidents/{id}/notes", fake.url()), &headers, Some(body))
}

const NOTE: &str = r#"{"note":{"content":"alice@example.com assumed prod_admin"}}"#;

#[test]
fn lists_incidents_in_the_spec_shape() {
    let fake = fake_with_incidents();
    let page = get_ok(&fake, "/incidents?include%5B%5D=assignees");
    assert_eq!(ids(&page), ["PINC1", "PINC2", "PINC3"], "default range: the last month, oldest first");
    assert_eq!((page["limit"].clone(), page["offset"].clone(), page["more"].clone()), (json!(25), json!(0), json!(false)));
    assert_eq!(page["total"], Value::Null);
    let first = &page["incidents"][0];
    assert_eq!(first["type"], "incident");
    assert_eq!(first["incident_number"], 1);
    assert_eq!(first["title"], "Disk full");
    assert_eq!(first["summary"], "[#1] Disk full");
    assert_eq!(first["status"], "triggered");
    assert_eq!(first["urgency"], "high");
    assert_eq!(first["service"]["id"], "PSVC1");
    assert_eq!(first["service"]["type"], "service_reference");
    assert_eq!(
        first["escalation_policy"],
        json!({
            "id": "EP1", "type": "escalation_policy_reference", "summary": "Escalation Policy EP1",
            "self": "https://api.pagerduty.com/escalation_policies/EP1",
            "html_url": "https://fake.pagerduty.com/escalation_policies/EP1"
        })
    );
    let assignee = &first["assignments"][0]["assignee"];
    assert_eq!((assignee["type"].as_str(), assignee["email"].as_str()), (Some("user"), Some("alice@example.com")));
    assert_eq!(assignee["id"], "PALICE", "the on-call user's id, so user_ids[] agrees with /oncalls");
    assert!(first["assignments"][0]["at"].is_string());
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(page["incidents"][2]["assignments"], json!([]), "a resolved incident has no assignments");

    // Without include[]=assignees: references, no email.
    let page = get_ok(&fake, "/incidents");
    let assignee = &page["incidents"][0]["assignments"][0]["assignee"];
    assert_eq!(assignee["type"], "user_reference");
    assert!(assignee.get("email").is_none());
}

#[test]
fn filters_and_ranges() {
    let fake = fake_with_incidents();
    let open = "statuses%5B%5D=triggered&statuses%5B%5D=acknowledged";
    assert_eq!(ids(&get_ok(&fake, &format!("/incidents?{open}"))), ["PINC1", "PINC2"]);
    assert_eq!(ids(&get_ok(&fake, &format!("/incidents?{open}&date_range=all"))), ["POLD", "PINC1", "PINC2"]);
    assert_eq!(ids(&get_ok(&fake, "/incidents?date_range=all&user_ids[]=PALICE")), ["POLD", "PINC1"]);
    assert_eq!(ids(&get_ok(&fake, "/incidents?service_ids[]=PSVC1")), ["PINC1", "PINC3"]);
    assert_eq!(ids(&get_ok(&fake, "/incidents?team_ids[]=PTEAM")), ["PINC2"]);
    assert_eq!(ids(&get_ok(&fake, "/incidents?urgencies[]=low")), ["PINC2"]);
    let since = (Utc::now() - TimeDelta::minutes(90)).to_rfc3339().replace('+', "%2B");
    assert_eq!(ids(&get_ok(&fake, &format!("/incidents?since={since}"))), ["PINC2", "PINC3"]);
    let since = (Utc::now() - TimeDelta::days(60)).format("%Y-%m-%dT%H:%M:%SZ");
    assert_eq!(ids(&get_ok(&fake, &format!("/incidents?since={since}&{open}"))), ["POLD", "PINC1", "PINC2"]);
    assert_eq!(ids(&get_ok(&fake, "/incidents?sort_by=created_at:desc&date_range=all")), ["PINC3", "PINC2", "PINC1", "POLD"]);
    assert_eq!(ids(&get_ok(&fake, "/incidents?sort_by=incident_number:desc")), ["PINC3", "PINC2", "PINC1"]);
}

#[test]
fn includes_expand_services_policies_and_teams() {
    let fake = fake_with_incidents();
    let page = get_ok(&fake, "/incidents?include[]=services&include[]=escalation_policies&include[]=teams&team_ids[]=PTEAM");
    let i = &page["incidents"][0];
    assert_eq!(i["service"]["type"], "service");
    assert_eq!(i["service"]["name"], "Service PSVC2");
    assert_eq!(i["service"]["escalation_policy"]["id"], "EP2");
    assert_eq!(i["escalation_policy"]["type"], "escalation_policy");
    assert_eq!(i["teams"][0]["type"], "team");
    // Accepted spec values that the fake does not expand.
    assert_eq!(get(&fake, "/incidents?include[]=priorities&include[]=conference_bridge").status, 200);
}

#[test]
fn pagination_total_and_the_10000_cap() {
    let fake = FakePagerDuty::start(TOKEN).unwrap();
    let now = Utc::now();
    fake.set_incidents(
        (0..230).map(|i| incident(&format!("P{i:04}"), "S", "EP").created_at(now - TimeDelta::seconds(1000 - i))).collect(),
    );
    let page = get_ok(&fake, "/incidents?limit=100&offset=200&total=true");
    assert_eq!(ids(&page).len(), 30);
    assert_eq!((page["more"].clone(), page["total"].clone()), (json!(false), json!(230)));
    let page = get_ok(&fake, "/incidents?limit=500");
    assert_eq!((ids(&page).len(), page["limit"].clone(), page["more"].clone()), (100, json!(100), json!(true)));
    let r = get(&fake, "/incidents?limit=100&offset=9901");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], 2001);
    assert_eq!(get(&fake, "/incidents?limit=100&offset=9900").status, 200);
}

#[test]
fn invalid_arguments_are_400() {
    let fake = fake_with_incidents();
    for query in [
        "statuses[]=open",
        "urgencies[]=medium",
        "include[]=bogus",
        "date_range=week",
        "sort_by=title",
        "sort_by=created_at:up",
        "sort_by=created_at,incident_number,urgency",
        "since=2020-01-01T00:00:00Z&until=2020-08-01T00:00:00Z",
        "since=2020-02-01T00:00:00Z&until=2020-01-01T00:00:00Z",
        "since=yesterday",
        "limit=0",
        "offset=-1",
        "total=maybe",
    ] {
        let r = get(&fake, &format!("/incidents?{query}"));
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert_eq!(r.json()["error"]["message"], "Invalid Input Provided", "{query}");
    }
    // Six months exactly is allowed; date_range=all ignores a bad window.
    assert_eq!(get(&fake, "/incidents?since=2020-01-01T00:00:00Z&until=2020-07-01T00:00:00Z").status, 200);
    assert_eq!(get(&fake, "/incidents?date_range=all&since=2020-02-01T00:00:00Z&until=2020-01-01T00:00:00Z").status, 200);
}

#[test]
fn auth_and_accept_as_for_oncalls() {
    let fake = fake_with_incidents();
    let url = format!("{}/incidents", fake.url());
    assert_eq!(send("GET", &url, &[("Accept", ACCEPT)], None).status, 401);
    assert_eq!(send("GET", &url, &[("Authorization", "Token token=nope"), ("Accept", ACCEPT)], None).status, 401);
    let r = send("GET", &url, &[("Authorization", &format!("Token token={TOKEN}"))], None);
    assert_eq!(r.status, 400);
    // The write token reads too (full access).
    let r = send("GET", &url, &[("Authorization", &format!("Token token={WRITE}")), ("Accept", ACCEPT)], None);
    assert_eq!(r.status, 200);
    let r = send("DELETE", &url, &[("Authorization", &format!("Token token={TOKEN}")), ("Accept", ACCEPT)], None);
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
}

#[test]
fn posting_a_note_needs_the_write_scope_and_a_valid_from() {
    let fake = fake_with_incidents();
    let r = post_note(&fake, TOKEN, "PINC1", Some(BOT), NOTE);
    assert_eq!(r.status, 403, "read-only token: {}", r.body);
    assert_eq!(r.json()["error"]["code"], 2010);
    let r = post_note(&fake, "wrong", "PINC1", Some(BOT), NOTE);
    assert_eq!(r.status, 401);
    let r = post_note(&fake, WRITE, "PNOPE", Some(BOT), NOTE);
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), json!({"error": {"message": "Not Found", "code": 2100}}));
    let r = post_note(&fake, WRITE, "PINC1", None, NOTE);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": {"message": "You must specify a user's email address in the \"From\" header to perform this action", "code": 2016}})
    );
    let r = post_note(&fake, WRITE, "PINC1", Some("not an email"), NOTE);
    assert_eq!((r.status, r.json()["error"]["message"].as_str()), (400, Some("Malformed \"From\" header")));
    let r = post_note(&fake, WRITE, "PINC1", Some("stranger@example.com"), NOTE);
    assert_eq!(r.status, 400, "From must be a user of the account");
    for body in ["{}", r#"{"note":{}}"#, r#"{"note":{"content":42}}"#, r#"{"note":{"content":"  "}}"#, "not json"] {
        let r = post_note(&fake, WRITE, "PINC1", Some(BOT), body);
        assert_eq!(r.status, 400, "{body}");
    }
    let auth = format!("Token token={WRITE}");
    let r = send(
        "POST",
        &format!("{}/incidents/PINC1/notes", fake.url()),
        &[("Authorization", &auth), ("Accept", ACCEPT), ("From", BOT), ("Content-Type", "text/plain")],
        Some(NOTE),
    );
    assert_eq!(r.status, 400, "Content-Type must be application/json");
    assert!(fake.notes().is_empty(), "no refused note is kept");
}

#[test]
fn a_posted_note_is_answered_kept_and_listed() {
    let fake = fake_with_incidents();
    // The From user may be any user of the account: here the on-call alice, case-insensitively.
    let r = post_note(&fake, WRITE, "PINC1", Some("Alice@Example.com"), NOTE);
    assert_eq!(r.status, 200, "{}", r.body);
    let note = r.json()["note"].clone();
    assert_eq!(note["content"], "alice@example.com assumed prod_admin");
    assert_eq!(note["user"]["id"], "PALICE");
    assert_eq!(note["user"]["type"], "user_reference");
    assert_eq!(note["channel"]["summary"], "The PagerDuty website or APIs");
    assert!(note["id"].is_string() && note["created_at"].is_string());
    let r = post_note(&fake, WRITE, "PINC1", Some(BOT), r#"{"note":{"content":"second"}}"#);
    assert_eq!(r.status, 200);

    let notes = fake.notes();
    assert_eq!(notes.len(), 2);
    assert_eq!((notes[0].incident_id.as_str(), notes[0].from.as_str()), ("PINC1", "Alice@Example.com"));
    assert_eq!(notes[1].user.email, BOT);

    // Listing needs only the read scope.
    let listed = get_ok(&fake, "/incidents/PINC1/notes");
    let contents: Vec<&str> = listed["notes"].as_array().unwrap().iter().map(|n| n["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["alice@example.com assumed prod_admin", "second"]);
    assert_eq!(get_ok(&fake, "/incidents/PINC2/notes"), json!({"notes": []}));
    assert_eq!(get(&fake, "/incidents/PNOPE/notes").status, 404);

    let admin_notes = admin(&fake, "GET", "/_admin/notes", None).json();
    assert_eq!(admin_notes[0]["incident_id"], "PINC1");
    assert_eq!(admin_notes[0]["from"], "Alice@Example.com");
    assert_eq!(admin_notes[0]["content"], "alice@example.com assumed prod_admin");
    assert_eq!(admin(&fake, "DELETE", "/_admin/notes", None).status, 200);
    assert!(fake.notes().is_empty());
}

#[test]
fn an_incident_takes_at_most_2000_notes() {
    let fake = fake_with_incidents();
    let agent = agent();
    let url = format!("{}/incidents/PINC1/notes", fake.url());
    let auth = format!("Token token={WRITE}");
    let post = || {
        let request = agent
            .post(&url)
            .set("Authorization", &auth)
            .set("Accept", ACCEPT)
            .set("From", BOT)
            .set("Content-Type", "application/json");
        match request.send_string(NOTE) {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{e}"),
        }
    };
    for _ in 0..2_000 {
        assert_eq!(post(), 200);
    }
    assert_eq!(post(), 400);
    assert_eq!(fake.notes().len(), 2_000);
}

#[test]
fn faults_apply_to_the_new_endpoints_and_can_target_one() {
    let fake = fake_with_incidents();
    fake.push_fault_for(Endpoint::Notes, Fault::RateLimited { reset_secs: Some(3) });
    // /oncalls and /incidents do not consume a notes fault.
    assert_eq!(get(&fake, "/oncalls").status, 200);
    assert_eq!(get(&fake, "/incidents").status, 200);
    let r = post_note(&fake, WRITE, "PINC1", Some(BOT), NOTE);
    assert_eq!((r.status, r.header("ratelimit-reset")), (429, Some("3")));
    assert!(fake.notes().is_empty(), "a 429 is not processed");

    // An untargeted fault is taken by the next API request, whatever its endpoint.
    fake.push_fault(Fault::Status { code: 503, body: None, headers: vec![] });
    assert_eq!(get(&fake, "/incidents").status, 503);

    fake.push_fault_for(Endpoint::Incidents, Fault::Garbage);
    let r = get(&fake, "/incidents");
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("<html>"));

    // A truncated answer to a POST: the note was stored, the client cannot know.
    fake.push_fault_for(Endpoint::Notes, Fault::Truncated);
    let (bytes, closed) = raw(
        fake.port(),
        &format!(
            "POST /incidents/PINC1/notes HTTP/1.1\r\nHost: x\r\nAuthorization: Token token={WRITE}\r\nAccept: {ACCEPT}\r\n\
             From: {BOT}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{NOTE}",
            NOTE.len()
        ),
        std::time::Duration::from_secs(5),
    );
    assert!(closed);
    let (status, headers, body) = split_response(&bytes);
    let declared: usize = hdr(&headers, "content-length").unwrap().parse().unwrap();
    assert_eq!(status, 200);
    assert!(body.len() < declared);
    assert_eq!(fake.notes().len(), 1);

    // Per-endpoint persistent faults win over the general one.
    fake.set_persistent_fault(Some(Fault::Status { code: 500, body: None, headers: vec![] }));
    fake.set_persistent_fault_for(Endpoint::Notes, Some(Fault::Status { code: 502, body: None, headers: vec![] }));
    assert_eq!(post_note(&fake, WRITE, "PINC1", Some(BOT), NOTE).status, 502);
    assert_eq!(get(&fake, "/incidents").status, 500);
    fake.set_persistent_fault_for(Endpoint::Notes, None);
    assert_eq!(post_note(&fake, WRITE, "PINC1", Some(BOT), NOTE).status, 500);
    fake.set_persistent_fault(None);
    assert_eq!(get(&fake, "/incidents").status, 200);
    // Unknown paths under /incidents are 404 and consume nothing.
    fake.push_fault(Fault::Status { code: 503, body: None, headers: vec![] });
    assert_eq!(get(&fake, "/incidents/PINC1").status, 404);
    assert_eq!(get(&fake, "/incidents/PINC1/notes").status, 503);
}

#[test]
fn recorded_requests_keep_post_bodies() {
    let fake = fake_with_incidents();
    post_note(&fake, WRITE, "PINC1", Some(BOT), NOTE);
    let requests = fake.requests();
    let last = requests.last().unwrap();
    assert_eq!((last.method.as_str(), last.path.as_str()), ("POST", "/incidents/PINC1/notes"));
    assert_eq!(last.body, NOTE.as_bytes());
    assert_eq!(last.header("from"), Some(BOT));
}

#[test]
fn admin_api_for_incidents_users_and_the_write_token() {
    let fake = FakePagerDuty::start(TOKEN).unwrap();
    let r = admin(
        &fake,
        "POST",
        "/_admin/incidents",
        Some(
            r#"{"id":"PA","service_id":"S1","escalation_policy_id":"EP1","assignees":["alice@example.com"],"title":"Disk full"}"#,
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"incidents": [{"id": "PA", "incident_number": 1}]}));
    let r = admin(
        &fake,
        "POST",
        "/_admin/incidents",
        Some(
            r#"[{"id":"PB","service_id":"S2","escalation_policy_id":"EP2","status":"acknowledged","urgency":"low",
                  "team_ids":["T1"],"created_at":"2030-01-01T00:00:00Z","incident_key":"k"}]"#,
        ),
    );
    assert_eq!(r.json()["incidents"][0]["incident_number"], 2);
    let listed = admin(&fake, "GET", "/_admin/incidents", None).json();
    assert_eq!(listed[0]["assignees"], json!(["alice@example.com"]));
    assert_eq!(listed[1]["status"], "acknowledged");
    assert_eq!(listed[1]["created_at"], "2030-01-01T00:00:00Z");

    let r = admin(&fake, "PATCH", "/_admin/incidents/PA", Some(r#"{"assignees":["bob@example.com"],"status":"acknowledged"}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.json()["assignees"].clone(), r.json()["status"].clone()), (json!(["bob@example.com"]), json!("acknowledged")));
    let r = admin(&fake, "POST", "/_admin/incidents/PA/resolve", None);
    assert_eq!((r.json()["status"].clone(), r.json()["assignees"].clone()), (json!("resolved"), json!([])));
    assert_eq!(admin(&fake, "POST", "/_admin/incidents/PNOPE/resolve", None).status, 404);
    assert_eq!(admin(&fake, "PATCH", "/_admin/incidents/PB", Some(r#"{"status":"closed"}"#)).status, 400);
    assert_eq!(admin(&fake, "PATCH", "/_admin/incidents/PB", Some(r#"{"colour":"red"}"#)).status, 400);
    for bad in [
        r#"{"service_id":"S","escalation_policy_id":"E"}"#,
        r#"{"id":"PX","escalation_policy_id":"E"}"#,
        r#"{"id":"PX","service_id":"S","escalation_policy_id":"E","urgency":"medium"}"#,
        r#"{"id":"PX","service_id":"S","escalation_policy_id":"E","assignees":"a@x"}"#,
        r#"{"id":"PX","service_id":"S","escalation_policy_id":"E","extra":1}"#,
    ] {
        assert_eq!(admin(&fake, "POST", "/_admin/incidents", Some(bad)).status, 400, "{bad}");
    }
    assert_eq!(admin(&fake, "PUT", "/_admin/incidents", Some("[]")).status, 200);
    assert!(fake.incidents().is_empty());

    // Users and the write token, then a note through them.
    fake.add_incident(incident("PC", "S", "EP"));
    assert_eq!(admin(&fake, "POST", "/_admin/users", Some(&format!(r#"[{{"email":"{BOT}","name":"pg_oncall"}}]"#))).status, 200);
    assert!(admin(&fake, "GET", "/_admin/users", None).json().as_array().unwrap().iter().any(|u| u["email"] == BOT));
    assert_eq!(post_note(&fake, WRITE, "PC", Some(BOT), NOTE).status, 401, "no write token yet");
    assert_eq!(admin(&fake, "PUT", "/_admin/write_token", Some(WRITE)).status, 200);
    assert_eq!(post_note(&fake, WRITE, "PC", Some(BOT), NOTE).status, 200);
    assert_eq!(admin(&fake, "DELETE", "/_admin/write_token", None).status, 200);
    assert_eq!(post_note(&fake, WRITE, "PC", Some(BOT), NOTE).status, 401);

    // Endpoint-targeted faults through the admin API.
    let r = admin(
        &fake,
        "POST",
        "/_admin/faults",
        Some(r#"[{"status":500,"endpoint":"notes"},{"garbage":true,"endpoint":"incidents","persistent":true}]"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let faults = admin(&fake, "GET", "/_admin/faults", None).json();
    assert_eq!(faults["queued"], json!([{"status": 500, "body": null, "headers": {}, "endpoint": "notes"}]));
    assert_eq!(faults["persistent_by_endpoint"], json!({"incidents": {"garbage": true}}));
    assert_eq!(admin(&fake, "POST", "/_admin/faults", Some(r#"{"status":500,"endpoint":"users"}"#)).status, 400);
    assert_eq!(admin(&fake, "DELETE", "/_admin/faults", None).status, 200);
    assert_eq!(admin(&fake, "GET", "/_admin/faults", None).json()["persistent_by_endpoint"], json!({}));
}

#[test]
fn library_helpers_update_incidents() {
    let fake = FakePagerDuty::start(TOKEN).unwrap();
    assert_eq!(fake.add_incident(incident("PA", "S", "EP").assigned_to("a@example.com")), 1);
    assert_eq!(fake.add_incident(incident("PB", "S", "EP").with_number(42)), 42);
    assert!(fake.assign_incident("PB", &["b@example.com", "c@example.com"]));
    assert!(fake.set_incident_status("PB", "acknowledged"));
    assert!(fake.resolve_incident("PA"));
    assert!(!fake.resolve_incident("PNOPE"));
    let incidents = fake.incidents();
    assert_eq!(incidents[0].status, "resolved");
    assert!(incidents[0].assignees.is_empty());
    assert_eq!(incidents[1].assignees.len(), 2);
    assert_eq!(incidents[1].status, "acknowledged");
}
