//! `post_note` and `list_notes` against a scripted transport: the request sent, one attempt
//! whatever the answer, and how each answer is classified and worded.

use std::time::Duration;

use serde_json::{json, Value};

use super::super::test_support::*;
use super::super::transport::{HttpResponse, TransportError};
use super::*;

const NOTE: &str = "alice@example.com assumed prod_admin on main/postgres at 2030-01-01 00:00:00+00; reason: INC-1";

fn note_answer() -> Result<HttpResponse, TransportError> {
    ok_json(json!({"note": {
        "id": "PWL7QXS",
        "user": {"id": "PXPGF42", "type": "user_reference", "summary": "pg_oncall bot"},
        "channel": {"summary": "The PagerDuty website or APIs"},
        "content": NOTE,
        "created_at": "2013-03-06T15:28:51-05:00",
        "updated_at": "2023-10-01T12:00:00-05:00"
    }}))
}

#[test]
fn posts_exactly_the_note_with_the_required_headers() {
    let transport = Scripted::new(|_| note_answer());
    let note = post_note_with(&transport, &note_config(), "PT4KHLK", "pg-oncall@example.com", NOTE).unwrap();
    assert_eq!(
        note,
        IncidentNote {
            id: Some("PWL7QXS".into()),
            content: NOTE.into(),
            user_id: Some("PXPGF42".into()),
            created_at_us: Some(1_362_601_731_000_000),
        }
    );
    let sent = transport.sent.borrow();
    assert_eq!(sent.len(), 1);
    let sent = &sent[0];
    assert_eq!((sent.method, sent.url.as_str()), ("POST", "http://pd.test/incidents/PT4KHLK/notes"));
    assert_eq!(sent.header("From"), Some("pg-oncall@example.com"));
    assert_eq!(sent.header("Content-Type"), Some("application/json"));
    assert_eq!(sent.header("Accept"), Some("application/vnd.pagerduty+json;version=2"));
    assert_eq!(sent.header("Authorization"), Some(format!("Token token={TOKEN}").as_str()));
    let body: Value = serde_json::from_slice(sent.body.as_ref().unwrap()).unwrap();
    assert_eq!(body, json!({"note": {"content": NOTE}}), "nothing but the note text is sent");
}

#[test]
fn the_incident_id_is_one_path_segment() {
    let transport = Scripted::new(|_| note_answer());
    post_note_with(&transport, &note_config(), "../users/P1?x=", "a@example.com", NOTE).unwrap();
    assert_eq!(transport.urls(), ["http://pd.test/incidents/..%2Fusers%2FP1%3Fx%3D/notes"]);
}

#[test]
fn every_answer_is_classified_after_one_attempt() {
    struct Case {
        answer: fn() -> Result<HttpResponse, TransportError>,
        text: &'static str,
        permanent: bool,
        may_have_posted: bool,
        retry_after: Option<u64>,
    }
    let cases = [
        Case {
            answer: || status(403, &[], r#"{"error":{"message":"Access Denied","code":2010}}"#),
            text: "403: the write token lacks incidents.write: Access Denied (code 2010)",
            permanent: true,
            may_have_posted: false,
            retry_after: None,
        },
        Case {
            answer: || status(401, &[], r#"{"error":{"message":"Unauthorized","code":2006}}"#),
            text: "401: PagerDuty rejected the write token",
            permanent: true,
            may_have_posted: false,
            retry_after: None,
        },
        Case {
            answer: || {
                status(
                    400,
                    &[],
                    r#"{"error":{"message":"You must specify a user's email address in the \"From\" header to perform this action","code":2016}}"#,
                )
            },
            text: "400: PagerDuty refused the request: You must specify a user's email address in the \"From\" header to \
                   perform this action (code 2016)",
            permanent: true,
            may_have_posted: false,
            retry_after: None,
        },
        Case {
            answer: || status(404, &[], r#"{"error":{"message":"Not Found","code":2100}}"#),
            text: "404: PagerDuty has no incident PT4KHLK: Not Found (code 2100)",
            permanent: true,
            may_have_posted: false,
            retry_after: None,
        },
        Case {
            answer: || status(429, &[("ratelimit-reset", "7")], r#"{"error":{"message":"Rate Limit Exceeded","code":2020}}"#),
            text: "429: PagerDuty rate limit; retry after 7 s",
            permanent: false,
            may_have_posted: false,
            retry_after: Some(7),
        },
        Case {
            answer: || status(429, &[], ""),
            text: "429: PagerDuty rate limit",
            permanent: false,
            may_have_posted: false,
            retry_after: None,
        },
        Case {
            answer: || status(503, &[("Retry-After", "3")], r#"{"error":{"message":"Service Unavailable","code":5000}}"#),
            text: "503: PagerDuty server error: Service Unavailable (code 5000); retry after 3 s",
            permanent: false,
            may_have_posted: true,
            retry_after: Some(3),
        },
        Case {
            answer: || Err(TransportError::Timeout),
            text: "PagerDuty did not answer within 10 s; see pg_oncall.http_timeout",
            permanent: false,
            may_have_posted: true,
            retry_after: None,
        },
        Case {
            answer: || Err(TransportError::Connection("Connection Failed: refused".into())),
            text: "PagerDuty connection failed: Connection Failed: refused",
            permanent: false,
            may_have_posted: true,
            retry_after: None,
        },
        Case {
            answer: || Ok(HttpResponse::from_bytes(200, vec![], "<html>bad gateway</html>")),
            text: "invalid response from PagerDuty: not valid JSON (expected value at line 1 column 1)",
            permanent: false,
            may_have_posted: true,
            retry_after: None,
        },
        Case {
            answer: || ok_json(json!({"notes": []})),
            text: "invalid response from PagerDuty: expected a JSON object with a `note` object",
            permanent: false,
            may_have_posted: true,
            retry_after: None,
        },
        Case {
            answer: || status(302, &[("Location", "https://elsewhere")], ""),
            text: "302: PagerDuty refused the request",
            permanent: true,
            may_have_posted: false,
            retry_after: None,
        },
    ];
    for case in cases {
        let transport = Scripted::new(|_| (case.answer)());
        let error = post_note_with(&transport, &note_config(), "PT4KHLK", "bot@example.com", NOTE).unwrap_err();
        assert_eq!(error.to_string(), case.text);
        assert_eq!(error.is_permanent(), case.permanent, "{error}");
        assert_eq!(error.may_have_posted(), case.may_have_posted, "{error}");
        assert_eq!(error.retry_after(), case.retry_after.map(Duration::from_secs), "{error}");
        assert_eq!(transport.urls().len(), 1, "one attempt: {error}");
    }
}

#[test]
fn bad_arguments_fail_before_any_request() {
    let cases: [(&str, &str, &str, &str); 7] = [
        ("PT4KHLK", "", NOTE, "no From email configured"),
        ("PT4KHLK", "bot", NOTE, "must be one address"),
        ("PT4KHLK", "bot @example.com", NOTE, "must be one address"),
        ("PT4KHLK", "bot@example.com\r\nX-Evil: 1", NOTE, "must be one address"),
        ("PT4KHLK", "bot@example.com", " \n", "the note is empty"),
        (" ", "bot@example.com", NOTE, "no incident id"),
        ("PT4KHLK", "bot@", NOTE, "must be one address"),
    ];
    for (incident, from, content, expected) in cases {
        let transport = Scripted::new(|_| panic!("no request expected"));
        let error = post_note_with(&transport, &note_config(), incident, from, content).unwrap_err();
        assert!(error.is_permanent());
        assert!(error.to_string().starts_with("PagerDuty notes misconfigured: "), "{error}");
        assert!(error.to_string().contains(expected), "{error}");
    }
    let transport = Scripted::new(|_| panic!("no request expected"));
    let cfg = NoteConfig { token: String::new(), ..note_config() };
    let error = post_note_with(&transport, &cfg, "PT4KHLK", "bot@example.com", NOTE).unwrap_err();
    assert_eq!(error.to_string(), "PagerDuty notes misconfigured: no PagerDuty API token configured");
}

#[test]
fn the_token_never_shows() {
    let body = format!(r#"{{"error":{{"message":"token {TOKEN} is read-only","code":2010}}}}"#);
    for code in [400u16, 403, 404, 500] {
        let transport = Scripted::new(|_| status(code, &[], &body));
        let error = post_note_with(&transport, &note_config(), "PT4KHLK", "bot@example.com", NOTE).unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(!text.contains(TOKEN) && text.contains("[redacted]"), "{text}");
    }
    let text = format!("{:?}", note_config());
    assert!(!text.contains(TOKEN) && text.contains("<redacted>"), "{text}");
}

#[test]
fn list_notes_reads_the_spec_shape_and_names_the_read_scope() {
    let transport = Scripted::new(|_| {
        ok_json(json!({"notes": [
            {"id": "PWL7QXS", "user": {"id": "PXPGF42", "type": "user_reference"}, "channel": {"summary": "API"},
             "content": "Firefighters are on the scene.", "created_at": "2013-03-06T15:28:51-05:00"},
            {"content": "a note with only the required field"}
        ]}))
    });
    let notes = list_notes_with(&transport, &note_config(), "PT4KHLK").unwrap();
    assert_eq!(notes.len(), 2);
    assert_eq!(notes[0].content, "Firefighters are on the scene.");
    assert_eq!(
        notes[1],
        IncidentNote { id: None, content: "a note with only the required field".into(), user_id: None, created_at_us: None }
    );
    let sent = transport.sent.borrow()[0].clone();
    assert_eq!((sent.method, sent.url.as_str()), ("GET", "http://pd.test/incidents/PT4KHLK/notes"));
    assert_eq!(sent.header("From"), None);

    let transport = Scripted::new(|_| status(403, &[], ""));
    let error = list_notes_with(&transport, &note_config(), "PT4KHLK").unwrap_err();
    assert_eq!(error.to_string(), "403: the write token lacks incidents.read");
}
