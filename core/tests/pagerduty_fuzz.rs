//! Whatever the network sends, the parsers return a value or an error: never a panic, and every
//! error displays as one line. Random bytes, random JSON, and mutated real fixtures.

use oncall_core::pagerduty::{parse_error_body, parse_oncalls_page};
use proptest::prelude::*;
use serde_json::{json, Value};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../fixtures/pagerduty/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path} unreadable: {e}"))
}

const FIXTURES: [&str; 6] = [
    "oncalls_list.json",
    "oncalls_permanent_from_issue.json",
    "error_generic.json",
    "error_429.json",
    "error_quirk_error_as_array.json",
    "error_quirk_errors_as_string.json",
];

/// Feeds both parsers and checks the invariants that hold for any input.
fn check(body: &[u8]) {
    match parse_oncalls_page(body) {
        Ok(page) => assert!(page.shifts.iter().all(|s| !s.email.trim().is_empty())),
        Err(error) => {
            let text = error.to_string();
            assert!(!text.contains('\n') && !text.contains('\r'), "{text}");
            assert!(text.chars().count() < 400, "{text}");
        }
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
            Just("oncalls")
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
}
