//! `parse_oncalls_page` and `parse_error_body` against PagerDuty's real bodies
//! (fixtures/pagerduty, copied from the shared reference) and against each way a page can be malformed.

use oncall_core::pagerduty::{parse_error_body, parse_oncalls_page, Page, Shift, SyncError};
use serde_json::{json, Value};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../fixtures/pagerduty/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path} unreadable: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// The fixture with each row's user reference turned into a full user object (what
/// `include[]=users` returns).
fn with_emails(mut page: Value, emails: &[&str]) -> Vec<u8> {
    for (row, email) in page["oncalls"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(emails)
    {
        row["user"]["type"] = json!("user");
        row["user"]["email"] = json!(email);
    }
    serde_json::to_vec(&page).unwrap()
}

fn parse_error(body: Value) -> String {
    match parse_oncalls_page(body.to_string().as_bytes()) {
        Err(error @ SyncError::InvalidResponse { offset: None, .. }) => error.to_string(),
        other => panic!("expected an invalid-response error for {body}, got {other:?}"),
    }
}

#[test]
fn spec_example_has_only_a_user_reference_so_it_yields_no_shift() {
    // The spec's example was fetched without include[]=users: its user has no email.
    let page = parse_oncalls_page(&fixture("oncalls_list.json")).unwrap();
    assert_eq!(
        page,
        Page {
            shifts: vec![],
            skipped_without_email: 1,
            more: false,
            limit: 25,
            offset: 0
        }
    );
}

#[test]
fn spec_example_with_included_user_gives_the_exact_row() {
    let body = with_emails(
        fixture_json("oncalls_list.json"),
        &["tim.wright@example.com"],
    );
    let page = parse_oncalls_page(&body).unwrap();
    assert_eq!(
        page.shifts,
        vec![Shift {
            email: "tim.wright@example.com".into(),
            user_id: "PT23IWX".into(),
            escalation_policy_id: "PT20YPA".into(),
            escalation_level: 2,
            schedule_id: Some("PI7DH85".into()),
            start_us: Some(1_425_673_731_000_000), // 2015-03-06T15:28:51-05:00
            end_us: Some(1_425_760_131_000_000),
        }]
    );
    assert_eq!(page.skipped_without_email, 0);
}

#[test]
fn permanent_oncalls_from_the_bug_report() {
    // Both rows are user references (no email): skipped, not an error.
    let page = parse_oncalls_page(&fixture("oncalls_permanent_from_issue.json")).unwrap();
    assert_eq!((page.shifts.len(), page.skipped_without_email), (0, 2));
    // No pagination fields at all: treated as the last page.
    assert_eq!((page.more, page.limit, page.offset), (false, 0, 0));

    let body = with_emails(
        fixture_json("oncalls_permanent_from_issue.json"),
        &["User1@Example.com", "User1@Example.com"],
    );
    let page = parse_oncalls_page(&body).unwrap();
    let expected = |level| Shift {
        email: "User1@Example.com".into(),
        user_id: "user1-id".into(),
        escalation_policy_id: "team1-id".into(),
        escalation_level: level,
        schedule_id: None,
        start_us: None,
        end_us: None,
    };
    // One user at two levels: two rows, in PagerDuty's order, email kept as given.
    assert_eq!(page.shifts, vec![expected(13), expected(11)]);
}

#[test]
fn deleted_or_null_users_are_skipped() {
    let row = |user: Value| json!({"user": user, "escalation_policy": {"id": "P"}, "escalation_level": 1});
    let body = json!({"oncalls": [
        row(Value::Null),
        row(json!({"id": "PX", "type": "user_reference", "summary": "Deleted User", "deleted_at": "2020-01-01T00:00:00Z"})),
        row(json!({"id": "PY", "email": null})),
        row(json!({"id": "PZ", "email": "  "})),
        row(json!({"id": "PA", "email": "a@x.test", "name": "A", "unknown": [1, 2]})),
        {"escalation_policy": {"id": "P"}, "escalation_level": 1},
    ], "more": true, "limit": 6, "offset": 12, "total": 40, "extra": {"ignored": true}});
    let page = parse_oncalls_page(body.to_string().as_bytes()).unwrap();
    assert_eq!(page.skipped_without_email, 5);
    assert_eq!(page.shifts.len(), 1);
    assert_eq!((page.more, page.limit, page.offset), (true, 6, 12));
}

#[test]
fn timestamps_in_any_offset_become_utc_microseconds() {
    let body = json!({"oncalls": [{
        "user": {"id": "U", "email": "a@x.test"},
        "escalation_policy": {"id": "P"}, "escalation_level": 1,
        "start": "1970-01-01T00:00:01.5Z", "end": "1970-01-01T05:30:02+05:30",
    }]});
    let shift = &parse_oncalls_page(body.to_string().as_bytes())
        .unwrap()
        .shifts[0];
    assert_eq!(
        (shift.start_us, shift.end_us),
        (Some(1_500_000), Some(2_000_000))
    );
}

#[test]
fn malformed_pages_name_the_problem() {
    let good_row = json!({"user": {"id": "U", "email": "a@x.test"}, "escalation_policy": {"id": "P"}, "escalation_level": 1});
    let with = |key: &str, value: Value| {
        let mut row = good_row.clone();
        row[key] = value;
        json!({"oncalls": [good_row.clone(), row]})
    };
    let without = |key: &str| {
        let mut row = good_row.clone();
        row.as_object_mut().unwrap().remove(key);
        json!({"oncalls": [row]})
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "expected a JSON object"),
        (json!({"users": []}), "`oncalls` is missing"),
        (json!({"oncalls": {}}), "`oncalls` is not an array"),
        (
            json!({"oncalls": [], "more": "yes"}),
            "`more` is not a boolean",
        ),
        (
            json!({"oncalls": [], "limit": -1}),
            "`limit` is not a non-negative integer",
        ),
        (
            json!({"oncalls": [], "offset": 1.5}),
            "`offset` is not a non-negative integer",
        ),
        (json!({"oncalls": [7]}), "oncalls[0] is not an object"),
        (
            without("escalation_policy"),
            "oncalls[0].escalation_policy.id is missing",
        ),
        (
            with(
                "escalation_policy",
                json!({"type": "escalation_policy_reference"}),
            ),
            "oncalls[1].escalation_policy.id is missing",
        ),
        (
            with("escalation_policy", json!({"id": 5})),
            "oncalls[1].escalation_policy.id is missing or not a string",
        ),
        (
            with("escalation_policy", json!("P")),
            "oncalls[1].escalation_policy.id",
        ),
        (
            without("escalation_level"),
            "oncalls[0].escalation_level is missing or not an integer",
        ),
        (
            with("escalation_level", json!("2")),
            "oncalls[1].escalation_level is missing or not an integer",
        ),
        (
            with("escalation_level", json!(2.5)),
            "oncalls[1].escalation_level",
        ),
        (
            with("escalation_level", json!(4_294_967_296i64)),
            "oncalls[1].escalation_level",
        ),
        (
            with("schedule", json!("S")),
            "oncalls[1].schedule is neither null nor an object",
        ),
        (
            with("schedule", json!({"type": "schedule_reference"})),
            "oncalls[1].schedule.id is missing",
        ),
        (
            with("start", json!("yesterday")),
            "oncalls[1].start is not an RFC 3339 timestamp: \"yesterday\"",
        ),
        (
            with("end", json!("2015-02-30T00:00:00Z")),
            "oncalls[1].end is not an RFC 3339 timestamp",
        ),
        (
            with("end", json!(1425673731)),
            "oncalls[1].end is neither null nor a string",
        ),
        (
            with("user", json!("PX")),
            "oncalls[1].user is neither null nor an object",
        ),
        (
            with("user", json!({"id": "U", "email": 3})),
            "oncalls[1].user.email is not a string",
        ),
        (
            with("user", json!({"email": "a@x.test"})),
            "oncalls[1].user.id is missing",
        ),
    ];
    for (body, expected) in cases {
        let error = parse_error(body.clone());
        assert!(
            error.starts_with("invalid response from PagerDuty: "),
            "{error}"
        );
        assert!(error.contains(expected), "{body}: {error}");
    }
}

#[test]
fn unparsable_bodies_are_errors() {
    for (body, expected) in [
        (&b""[..], "empty body"),
        (b"  \n", "empty body"),
        (b"<html>502 Bad Gateway</html>", "not valid JSON"),
        (
            b"{\"oncalls\":[{\"user\":",
            "not valid JSON (EOF while parsing",
        ),
        (b"\xff\xfe{}", "not valid JSON"),
    ] {
        let error = parse_oncalls_page(body).unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
    }
    // Nesting deeper than serde_json's recursion limit is an error, not a stack overflow.
    let deep = format!(
        "{{\"oncalls\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(parse_oncalls_page(deep.as_bytes())
        .unwrap_err()
        .to_string()
        .contains("recursion limit"));
}

#[test]
fn documented_error_bodies() {
    assert_eq!(
        parse_error_body(&fixture("error_generic.json")).as_deref(),
        Some("Error Message String (code 2001): human-readable error details, more details")
    );
    assert_eq!(
        parse_error_body(&fixture("error_429.json")).as_deref(),
        Some("Rate Limit Exceeded (code 2020)")
    );
    assert_eq!(
        parse_error_body(
            br#"{"error":{"message":"Invalid Input Provided","code":2001,"errors":["a","b"]}}"#
        )
        .as_deref(),
        Some("Invalid Input Provided (code 2001): a, b")
    );
}

#[test]
fn quirky_error_bodies() {
    assert_eq!(
        parse_error_body(&fixture("error_quirk_error_as_array.json")).as_deref(),
        Some("links should have at most 50 item(s)")
    );
    assert_eq!(
        parse_error_body(&fixture("error_quirk_errors_as_string.json")).as_deref(),
        Some("Invalid Override (code 2001): Override must end in the future, Override must end after its start")
    );
    assert_eq!(
        parse_error_body(br#"{"error":"Unauthorized"}"#).as_deref(),
        Some("Unauthorized")
    );
    assert_eq!(
        parse_error_body(br#"{"error":{"errors":["only details"]}}"#).as_deref(),
        Some("error: only details")
    );
    assert_eq!(
        parse_error_body(br#"{"error":{"message":"m","code":"E42"}}"#).as_deref(),
        Some("m (code E42)")
    );
    assert_eq!(
        parse_error_body(br#"["x", 2, {"y": 1}]"#).as_deref(),
        Some("x, 2")
    );
}

#[test]
fn error_bodies_without_a_message() {
    for body in [
        &b""[..],
        b"<html>Bad Gateway</html>",
        b"{}",
        b"null",
        b"42",
        br#"{"error":{}}"#,
        br#"{"error":{"code":2001}}"#,
        br#"{"error":[]}"#,
        br#"{"error":"   "}"#,
        br#"{"error":{"message":"","errors":[null, {}]}}"#,
    ] {
        assert_eq!(
            parse_error_body(body),
            None,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn error_messages_are_one_short_clean_line() {
    let long = "x".repeat(10_000);
    let body = json!({"error": {"message": format!("line1\nline2\r\u{1b}[31mred\u{7}"), "errors": [long]}});
    let message = parse_error_body(body.to_string().as_bytes()).unwrap();
    assert!(message.starts_with("line1 line2 [31mred: xxx"), "{message}");
    assert!(message.chars().count() <= 201, "{}", message.len());
    assert!(message.ends_with('…'));
    assert!(!message.chars().any(char::is_control));
}
