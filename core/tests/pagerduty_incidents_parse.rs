//! `parse_incidents_page`, `parse_note_body` and `parse_notes_body` against the spec's own
//! examples (tests/fixtures) and against each way an incident can be malformed.

use oncall_core::pagerduty::{
    parse_incidents_page, parse_note_body, parse_notes_body, Incident, IncidentNote, IncidentStatus, SyncError,
};
use serde_json::{json, Value};

fn fixture_json(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn parse_error(body: Value) -> String {
    match parse_incidents_page(body.to_string().as_bytes()) {
        Err(error @ SyncError::InvalidResponse { offset: None, .. }) => error.to_string(),
        other => panic!("expected an invalid-response error for {body}, got {other:?}"),
    }
}

#[test]
fn the_spec_example_is_resolved_so_it_yields_no_incident() {
    let page = parse_incidents_page(fixture_json("incidents_list.json").to_string().as_bytes()).unwrap();
    assert!(page.incidents.is_empty());
    assert_eq!((page.skipped_not_open, page.more, page.limit, page.offset), (1, true, 1, 0));
}

#[test]
fn the_spec_example_open_and_assigned_gives_the_exact_incident() {
    let mut body = fixture_json("incidents_list.json");
    let incident = &mut body["incidents"][0];
    incident["status"] = json!("acknowledged");
    incident["assignments"] = json!([
        {"at": "2015-10-06T21:31:00Z", "assignee": {"id": "PXPGF42", "type": "user", "email": "Earline.Greenholt@Example.com"}},
        {"at": "2015-10-06T21:32:00Z", "assignee": {"id": "PXPGF43", "type": "user_reference", "summary": "no email"}}
    ]);
    let page = parse_incidents_page(body.to_string().as_bytes()).unwrap();
    assert_eq!(
        page.incidents,
        vec![Incident {
            id: "PT4KHLK".into(),
            incident_number: 1234,
            title: "The server is on fire.".into(),
            status: IncidentStatus::Acknowledged,
            urgency: Some("high".into()),
            service_id: Some("PIJ90N7".into()),
            escalation_policy_id: Some("PT20YPA".into()),
            assignee_emails: vec!["earline.greenholt@example.com".into()],
            created_at_us: 1_444_167_042_000_000,
        }]
    );
    assert_eq!(page.assignees_without_email, 1);
}

#[test]
fn optional_fields_may_be_absent_or_null() {
    let body = json!({"incidents": [{"id": "P1", "incident_number": 7, "status": "triggered",
        "created_at": "2030-01-01T00:00:00+02:00", "title": null, "urgency": null, "service": null,
        "escalation_policy": null, "assignments": null}]});
    let page = parse_incidents_page(body.to_string().as_bytes()).unwrap();
    let incident = &page.incidents[0];
    assert_eq!((incident.title.as_str(), incident.urgency.as_deref()), ("", None));
    assert_eq!((incident.service_id.as_deref(), incident.escalation_policy_id.as_deref()), (None, None));
    assert!(incident.assignee_emails.is_empty());
    assert_eq!(incident.created_at_us, 1_893_448_800_000_000);
}

#[test]
fn malformed_incidents_name_the_field() {
    let ok = || json!({"id": "P1", "incident_number": 1, "status": "triggered", "created_at": "2030-01-01T00:00:00Z"});
    let with = |key: &str, value: Value| {
        let mut row = ok();
        row[key] = value;
        json!({"incidents": [row]})
    };
    let without = |key: &str| {
        let mut row = ok();
        row.as_object_mut().unwrap().remove(key);
        json!({"incidents": [row]})
    };
    let cases = vec![
        (json!([]), "expected a JSON object with an `incidents` array"),
        (json!({"incidents": {}}), "`incidents` is not an array"),
        (json!({"oncalls": []}), "`incidents` is missing"),
        (json!({"incidents": [1]}), "incidents[0] is not an object"),
        (without("id"), "incidents[0].id is missing or not a string"),
        (with("id", json!("")), "incidents[0].id is missing or not a string"),
        (with("incident_number", json!("1")), "incidents[0].incident_number is missing or not an integer"),
        (without("status"), "incidents[0].status is missing or not a string"),
        (without("created_at"), "incidents[0].created_at is missing"),
        (with("created_at", json!("yesterday")), "incidents[0].created_at is not an RFC 3339 timestamp: \"yesterday\""),
        (with("title", json!(5)), "incidents[0].title is neither null nor a string"),
        (with("service", json!("PSVC")), "incidents[0].service is neither null nor an object"),
        (with("escalation_policy", json!({"type": "x"})), "incidents[0].escalation_policy.id is missing or not a string"),
        (with("assignments", json!({})), "incidents[0].assignments is not an array"),
        (with("assignments", json!([3])), "incidents[0].assignments[0] is not an object"),
        (with("assignments", json!([{"assignee": "PU"}])), "incidents[0].assignments[0].assignee is neither null nor an object"),
        (with("assignments", json!([{"assignee": {"email": 1}}])), "incidents[0].assignments[0].assignee.email is not a string"),
        (json!({"incidents": [], "more": "yes"}), "`more` is not a boolean"),
    ];
    for (body, expected) in cases {
        assert_eq!(parse_error(body), format!("invalid response from PagerDuty: {expected}"));
    }
}

#[test]
fn unknown_statuses_grant_nothing() {
    let body = json!({"incidents": [{"id": "P1", "incident_number": 1, "status": "snoozed", "created_at": "2030-01-01T00:00:00Z",
        "assignments": [{"assignee": {"id": "PU", "email": "a@x.test"}}]}]});
    let page = parse_incidents_page(body.to_string().as_bytes()).unwrap();
    assert!(page.incidents.is_empty());
    assert_eq!(page.skipped_not_open, 1);
}

#[test]
fn the_spec_note_examples() {
    let note = parse_note_body(fixture_json("incident_note_created.json").to_string().as_bytes()).unwrap();
    assert_eq!(
        note,
        IncidentNote {
            id: Some("PWL7QXS".into()),
            content: "Firefighters are on the scene.".into(),
            user_id: Some("PXPGF42".into()),
            created_at_us: Some(1_362_601_731_000_000),
        }
    );
    let notes = parse_notes_body(fixture_json("incident_notes_list.json").to_string().as_bytes()).unwrap();
    assert_eq!(notes.len(), 2);
    assert_eq!(notes[1].content, "Initial alert information indicates a 1-alarm fire");
    assert_eq!(
        parse_note_body(br#"{"note":{"id":"P"}}"#).unwrap_err().to_string(),
        "invalid response from PagerDuty: note.content is missing or not a string"
    );
    assert_eq!(
        parse_notes_body(br#"{"notes":[{"content":"a"},{"content":1}]}"#).unwrap_err().to_string(),
        "invalid response from PagerDuty: notes[1].content is missing or not a string"
    );
}
