//! Whatever the network sends, the parsers (on-call pages, incident pages, notes, error bodies)
//! return a value or an error: never a panic, and every error displays as one line. Random
//! bytes, random JSON, and mutated real fixtures.

use oncall_core::pagerduty::{
    parse_error_body, parse_incidents_page, parse_note_body, parse_notes_body, parse_oncalls_page, IncidentStatus,
};
use proptest::prelude::*;
use serde_json::{json, Value};

/// `name` relative to the crate (`../fixtures/pagerduty/` holds the shared ones,
/// `tests/fixtures/` the incident ones).
fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path} unreadable: {e}"))
}

const FIXTURES: [&str; 9] = [
    "../fixtures/pagerduty/oncalls_list.json",
    "../fixtures/pagerduty/oncalls_permanent_from_issue.json",
    "../fixtures/pagerduty/error_generic.json",
    "../fixtures/pagerduty/error_429.json",
    "../fixtures/pagerduty/error_quirk_error_as_array.json",
    "../fixtures/pagerduty/error_quirk_errors_as_string.json",
    "tests/fixtures/incidents_list.json",
    "tests/fixtures/incident_notes_list.json",
    "tests/fixtures/incident_note_created.json",
];

fn check_error(error: &impl std::fmt::Display) {
    let text = error.to_string();
    assert!(!text.contains('\n') && !text.contains('\r'), "{text}");
    assert!(text.chars().count() < 400, "{text}");
}

/// Feeds both parsers and checks the invariants that hold for any input.
fn check(body: &[u8]) {
    match parse_oncalls_page(body) {
        Ok(page) => assert!(page.shifts.iter().all(|s| !s.email.trim().is_empty())),
        Err(error) => check_error(&error),
    }
    match parse_incidents_page(body) {
        Ok(page) => {
            for incident in &page.incidents {
                assert!(!incident.id.is_empty());
                assert!(matches!(incident.status, IncidentStatus::Triggered | IncidentStatus::Acknowledged));
                let emails = &incident.assignee_emails;
                assert!(emails.windows(2).all(|w| w[0] < w[1]), "sorted, deduplicated: {emails:?}");
                assert!(emails.iter().all(|e| !e.is_empty() && *e == e.trim().to_lowercase()), "{emails:?}");
            }
        }
        Err(error) => check_error(&error),
    }
    if let Err(error) = parse_note_body(body) {
        check_error(&error);
    }
    if let Err(error) = parse_notes_body(body) {
        check_error(&error);
    }
    if let Some(message) = parse_error_body(body) {
        assert!(!message.is_empty());
        assert!(message.chars().count() <= 201);
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<u64>().prop_map(|n| json!(n)),
        "[ -~\\n\\t\u{0}-\u{1f}é€😀]{0,20}".prop_map(Value::String),
        prop_oneof![
            Just("2015-03-06T15:28:51-05:00"),
            Just("+275760-09-13T00:00:00Z"),
            Just("9999-12-31T23:59:59.999999999+23:59"),
            Just("user"),
            Just("oncalls"),
            Just("triggered"),
            Just("acknowledged"),
            Just(" MiXed@Case.Example ")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("oncalls".to_string()),
                        Just("user".to_string()),
                        Just("email".to_string()),
                        Just("id".to_string()),
                        Just("escalation_policy".to_string()),
                        Just("escalation_level".to_string()),
                        Just("schedule".to_string()),
                        Just("start".to_string()),
                        Just("end".to_string()),
                        Just("more".to_string()),
                        Just("limit".to_string()),
                        Just("offset".to_string()),
                        Just("error".to_string()),
                        Just("errors".to_string()),
                        Just("message".to_string()),
                        Just("code".to_string()),
                        Just("incidents".to_string()),
                        Just("incident_number".to_string()),
                        Just("status".to_string()),
                        Just("created_at".to_string()),
                        Just("assignments".to_string()),
                        Just("assignee".to_string()),
                        Just("service".to_string()),
                        Just("note".to_string()),
                        Just("notes".to_string()),
                        Just("content".to_string()),
                        "[a-z]{1,8}",
                    ],
                    inner,
                ),
                0..6
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Replaces the value at a pseudo-random place inside `target` with `replacement`.
fn graft(target: &mut Value, mut path: Vec<usize>, replacement: Value) {
    let Some(step) = path.pop() else {
        *target = replacement;
        return;
    };
    match target {
        Value::Array(items) if !items.is_empty() => {
            let i = step % items.len();
            graft(&mut items[i], path, replacement)
        }
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(step % map.len()).cloned().unwrap();
            graft(map.get_mut(&key).unwrap(), path, replacement)
        }
        _ => *target = replacement,
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..8),
                Just(b"null".to_vec()),
                Just(b"\"".to_vec()),
                Just(b"{".to_vec()),
                Just(b"]".to_vec()),
                Just(b"1e999".to_vec()),
            ]
        )
            .prop_map(|(i, bytes)| Mutation::Insert(i, bytes)),
        (any::<usize>(), 1..40usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn apply(body: &mut Vec<u8>, mutation: &Mutation) {
    let len = body.len().max(1);
    match mutation {
        Mutation::Flip(i, b) => {
            if !body.is_empty() {
                let i = i % len;
                body[i] ^= b | 1;
            }
        }
        Mutation::Truncate(i) => body.truncate(i % len),
        Mutation::Insert(i, bytes) => {
            let at = i % (body.len() + 1);
            body.splice(at..at, bytes.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let at = i % len;
            let end = (at + n).min(body.len());
            if at < end {
                body.drain(at..end);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&body);
    }

    #[test]
    fn random_json_never_panics(value in json_value()) {
        check(value.to_string().as_bytes());
        check(json!({"oncalls": [value.clone()], "more": false}).to_string().as_bytes());
        check(json!({"error": value}).to_string().as_bytes());
        check(json!({"incidents": [value.clone()], "more": false}).to_string().as_bytes());
        check(json!({"incidents": [{"id": "P1", "incident_number": 1, "status": "triggered",
            "created_at": "2030-01-01T00:00:00Z", "assignments": [value.clone()]}]}).to_string().as_bytes());
        check(json!({"note": value.clone()}).to_string().as_bytes());
        check(json!({"notes": [value]}).to_string().as_bytes());
    }

    #[test]
    fn byte_mutated_fixtures_never_panic(
        which in 0..FIXTURES.len(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let mut body = fixture(FIXTURES[which]);
        for m in &mutations {
            apply(&mut body, m);
        }
        check(&body);
    }

    #[test]
    fn value_grafted_fixtures_never_panic(
        which in 0..FIXTURES.len(),
        path in prop::collection::vec(any::<usize>(), 0..6),
        replacement in json_value(),
    ) {
        let mut value: Value = serde_json::from_slice(&fixture(FIXTURES[which])).unwrap();
        graft(&mut value, path, replacement);
        check(value.to_string().as_bytes());
    }

    #[test]
    fn parsed_rows_are_all_accounted_for(
        rows in prop::collection::vec(
            (prop::option::of("[a-z]{1,5}@x\\.test"), "[A-Z0-9]{1,7}", -3i32..20, any::<bool>(), prop::option::of(0i64..4_000_000_000)),
            0..30,
        ),
    ) {
        let oncalls: Vec<Value> = rows.iter().map(|(email, policy, level, scheduled, start)| {
            let start = start.map(|s| chrono::DateTime::from_timestamp(s, 0).unwrap().to_rfc3339());
            json!({
                "user": {"id": "U1", "email": email},
                "escalation_policy": {"id": policy},
                "escalation_level": level,
                "schedule": if *scheduled { json!({"id": "S1"}) } else { Value::Null },
                "start": start,
                "end": null,
            })
        }).collect();
        let page = parse_oncalls_page(json!({"oncalls": oncalls}).to_string().as_bytes()).unwrap();
        prop_assert_eq!(page.shifts.len() + page.skipped_without_email, rows.len());
        prop_assert_eq!(page.skipped_without_email, rows.iter().filter(|r| r.0.is_none()).count());
    }

    #[test]
    fn parsed_incidents_are_all_accounted_for(
        rows in prop::collection::vec(
            (
                prop_oneof![Just("triggered"), Just("acknowledged"), Just("resolved"), Just("snoozed")],
                prop::collection::vec(prop::option::of("[ ]?[a-zA-Z]{1,4}@[xX]\\.test[ ]?"), 0..4),
                0i64..4_000_000_000,
            ),
            0..30,
        ),
    ) {
        let incidents: Vec<Value> = rows.iter().enumerate().map(|(i, (status, assignees, created))| {
            let assignments: Vec<Value> = assignees.iter().map(|email| {
                json!({"at": "2030-01-01T00:00:00Z", "assignee": {"id": "PU", "type": "user", "email": email}})
            }).collect();
            json!({
                "id": format!("P{i}"),
                "incident_number": i,
                "status": status,
                "created_at": chrono::DateTime::from_timestamp(*created, 0).unwrap().to_rfc3339(),
                "assignments": assignments,
            })
        }).collect();
        let page = parse_incidents_page(json!({"incidents": incidents}).to_string().as_bytes()).unwrap();
        let open = |s: &&str| *s == "triggered" || *s == "acknowledged";
        prop_assert_eq!(page.incidents.len() + page.skipped_not_open, rows.len());
        prop_assert_eq!(page.incidents.len(), rows.iter().filter(|r| open(&r.0)).count());
        for incident in &page.incidents {
            let (_, assignees, created) = &rows[incident.incident_number as usize];
            let mut expected: Vec<String> = assignees.iter().flatten().map(|e| e.trim().to_lowercase()).collect();
            expected.sort();
            expected.dedup();
            prop_assert_eq!(&incident.assignee_emails, &expected);
            prop_assert_eq!(incident.created_at_us, created * 1_000_000);
        }
        let without: usize = rows.iter().filter(|r| open(&r.0)).map(|r| r.1.iter().filter(|e| e.is_none()).count()).sum();
        prop_assert_eq!(page.assignees_without_email, without);
    }
}
