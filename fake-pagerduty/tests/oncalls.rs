//! `GET /oncalls` semantics: auth, Accept, pagination, windows, includes, filters,
//! shapes, raw pages, other paths, and request recording.

mod common;

use chrono::{DateTime, Duration as Days, TimeZone, Utc};
use common::*;
use fake_pagerduty::{oncall, FakePagerDuty, Oncall};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
}

fn fmt(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn fake_with(oncalls: Vec<Oncall>) -> FakePagerDuty {
    let fake = FakePagerDuty::start(TOKEN).unwrap();
    fake.set_oncalls(oncalls);
    fake
}

fn emails(page: &Value) -> Vec<String> {
    page["oncalls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["user"]["summary"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn missing_or_wrong_auth_gets_401_with_documented_body() {
    let fake = fake_with(vec![oncall("a@x.io", "EP1", 1)]);
    let url = format!("{}/oncalls", fake.url());
    let want = json!({"error": {"message": "Unauthorized", "code": 2006}});

    let none = send("GET", &url, &[("Accept", ACCEPT)], None);
    assert_eq!(none.status, 401);
    assert_eq!(none.json(), want);
    assert!(none
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));

    for bad in [
        "Token token=nope",
        "Token nope",
        "Bearer nope",
        "s3cret-token",
        "Basic czNjcmV0LXRva2Vu",
    ] {
        let r = send(
            "GET",
            &url,
            &[("Accept", ACCEPT), ("Authorization", bad)],
            None,
        );
        assert_eq!(r.status, 401, "{bad}");
        assert_eq!(r.json(), want, "{bad}");
    }

    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(
        send(
            "GET",
            &url,
            &[("Accept", ACCEPT), ("Authorization", &bearer)],
            None
        )
        .status,
        200
    );
    assert_eq!(get(&fake, "/oncalls").status, 200);

    fake.set_token("rotated");
    assert_eq!(get(&fake, "/oncalls").status, 401);
    let rotated = send(
        "GET",
        &url,
        &[("Accept", ACCEPT), ("Authorization", "Token token=rotated")],
        None,
    );
    assert_eq!(rotated.status, 200);
}

#[test]
fn wrong_or_missing_accept_is_400_and_spacing_is_tolerated() {
    let fake = fake_with(vec![]);
    let url = format!("{}/oncalls", fake.url());
    let auth = format!("Token token={TOKEN}");
    for bad in [
        "application/json",
        "application/vnd.pagerduty+json;version=1",
        "*/*",
    ] {
        let r = send(
            "GET",
            &url,
            &[("Accept", bad), ("Authorization", &auth)],
            None,
        );
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["error"]["code"], 2001, "{bad}");
        assert!(r.json()["error"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("Accept"));
    }
    for good in [
        "application/vnd.pagerduty+json;version=2",
        "application/vnd.pagerduty+json; version=2",
        "application/vnd.pagerduty+json ; version = 2",
    ] {
        let r = send(
            "GET",
            &url,
            &[("Accept", good), ("Authorization", &auth)],
            None,
        );
        assert_eq!(r.status, 200, "{good}");
    }
    // No Accept header at all (raw, so no client default sneaks in).
    let (bytes, _) = raw(
        fake.port(),
        &format!("GET /oncalls HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"),
        Duration::from_secs(5),
    );
    let (status, _, body) = split_response(&bytes);
    assert_eq!(status, 400);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["message"], "Invalid Input Provided");
}

fn many(n: usize) -> Vec<Oncall> {
    (0..n)
        .map(|i| {
            oncall(
                &format!("user{i:03}@example.com"),
                &format!("EP{}", i % 3),
                (i % 2) as i32 + 1,
            )
        })
        .collect()
}

#[test]
fn paginates_250_oncalls_in_three_pages_of_100() {
    let fake = fake_with(many(250));
    let mut seen = Vec::new();
    let expected = [(0, 100, true), (100, 100, true), (200, 50, false)];
    for (offset, count, more) in expected {
        let page = get_ok(&fake, &format!("/oncalls?limit=100&offset={offset}"));
        assert_eq!(page["limit"], 100);
        assert_eq!(page["offset"], offset);
        assert_eq!(page["more"], more, "offset {offset}");
        assert_eq!(page["total"], Value::Null);
        assert_eq!(page["oncalls"].as_array().unwrap().len(), count);
        for o in page["oncalls"].as_array().unwrap() {
            seen.push((
                o["escalation_policy"]["id"].as_str().unwrap().to_string(),
                o["escalation_level"].as_i64().unwrap(),
                o["user"]["id"].as_str().unwrap().to_string(),
            ));
        }
    }
    assert_eq!(seen.len(), 250);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        250,
        "pages overlap"
    );
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "order is (policy, level, user id)");
    // Stable across calls.
    let again = get_ok(&fake, "/oncalls?limit=100&offset=100");
    assert_eq!(
        again["oncalls"][0]["user"]["id"].as_str().unwrap(),
        seen[100].2
    );

    let with_total = get_ok(&fake, "/oncalls?limit=10&offset=240&total=true");
    assert_eq!(with_total["total"], 250);
    assert_eq!(with_total["more"], false);
    assert_eq!(
        get_ok(&fake, "/oncalls?limit=10&offset=239&total=true")["more"],
        true
    );
    assert_eq!(get_ok(&fake, "/oncalls?offset=1000")["oncalls"], json!([]));
}

#[test]
fn limit_defaults_to_25_and_is_clamped_to_100() {
    let fake = fake_with(many(250));
    let page = get_ok(&fake, "/oncalls");
    assert_eq!(page["limit"], 25);
    assert_eq!(page["offset"], 0);
    assert_eq!(page["oncalls"].as_array().unwrap().len(), 25);
    let big = get_ok(&fake, "/oncalls?limit=500");
    assert_eq!(big["limit"], 100);
    assert_eq!(big["oncalls"].as_array().unwrap().len(), 100);
    for bad in [
        "limit=0",
        "limit=-1",
        "limit=ten",
        "offset=-5",
        "total=maybe",
        "earliest=yes",
    ] {
        let r = get(&fake, &format!("/oncalls?{bad}"));
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["error"]["code"], 2001, "{bad}");
    }
}

#[test]
fn offset_plus_limit_over_10000_is_400() {
    let fake = fake_with(many(5));
    let r = get(&fake, "/oncalls?limit=100&offset=9901");
    assert_eq!(r.status, 400);
    let body = r.json();
    assert_eq!(body["error"]["code"], 2001);
    assert!(
        body["error"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("10000"),
        "{body}"
    );
    // A clamped limit counts as 100.
    assert_eq!(get(&fake, "/oncalls?limit=1000&offset=9950").status, 400);
    // Exactly 10000 is allowed.
    let ok = get_ok(&fake, "/oncalls?limit=100&offset=9900");
    assert_eq!(ok["oncalls"], json!([]));
    assert_eq!(ok["more"], false);
}

fn windowed() -> Vec<Oncall> {
    let t = t0();
    vec![
        oncall("a@x.io", "EP1", 1).with_window(t, t + Days::days(1)),
        oncall("b@x.io", "EP1", 1).with_window(t + Days::days(1), t + Days::days(2)),
        oncall("c@x.io", "EP1", 1).with_window(None, Some(t + Days::hours(12))),
        oncall("d@x.io", "EP1", 1).with_window(Some(t + Days::days(3)), None),
        oncall("e@x.io", "EP1", 1).with_schedule(None), // permanent, direct target
    ]
}

#[test]
fn since_until_returns_overlapping_shifts_with_open_ends() {
    let fake = fake_with(windowed());
    let t = t0();
    let q = |since: DateTime<Utc>, until: DateTime<Utc>| {
        let mut names = emails(&get_ok(
            &fake,
            &format!("/oncalls?since={}&until={}", fmt(since), fmt(until)),
        ));
        names.sort();
        names
    };
    // [t+1d, t+2d): a ends exactly at since (excluded), c ended, d not started.
    assert_eq!(q(t + Days::days(1), t + Days::days(2)), ["B", "E"]);
    assert_eq!(q(t + Days::hours(6), t + Days::hours(7)), ["A", "C", "E"]);
    assert_eq!(q(t + Days::hours(60), t + Days::days(4)), ["D", "E"]);
    assert_eq!(
        q(t - Days::days(10), t + Days::days(10)),
        ["A", "B", "C", "D", "E"]
    );

    // Rendering of open ends and times.
    let page = get_ok(
        &fake,
        &format!(
            "/oncalls?since={}&until={}",
            fmt(t - Days::days(1)),
            fmt(t + Days::days(5))
        ),
    );
    let by_name = |n: &str| {
        page["oncalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["user"]["summary"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("A")["start"], "2030-01-01T00:00:00Z");
    assert_eq!(by_name("A")["end"], "2030-01-02T00:00:00Z");
    assert_eq!(by_name("C")["start"], Value::Null);
    assert_eq!(by_name("D")["end"], Value::Null);
    assert_eq!(by_name("E")["schedule"], Value::Null);
    assert_eq!(by_name("E")["start"], Value::Null);

    // URL-encoded offsets work ('+' as %2B).
    let enc = get_ok(
        &fake,
        "/oncalls?since=2030-01-02T01%3A00%3A00%2B01%3A00&until=2030-01-02T12:00:00Z",
    );
    let mut names = emails(&enc);
    names.sort();
    assert_eq!(names, ["B", "E"]);
}

#[test]
fn no_window_means_on_call_now() {
    let now = Utc::now();
    let fake = fake_with(vec![
        oncall("now@x.io", "EP1", 1).with_window(now - Days::hours(1), now + Days::hours(1)),
        oncall("past@x.io", "EP1", 1).with_window(now - Days::hours(3), now - Days::hours(2)),
        oncall("future@x.io", "EP1", 1).with_window(now + Days::hours(2), now + Days::hours(3)),
        oncall("forever@x.io", "EP1", 2),
    ]);
    let mut names = emails(&get_ok(&fake, "/oncalls"));
    names.sort();
    assert_eq!(names, ["Forever", "Now"]);
}

#[test]
fn bad_windows_are_400() {
    let fake = fake_with(windowed());
    let t = t0();
    let cases = [
        format!("since={}&until={}", fmt(t + Days::days(1)), fmt(t)),
        format!("since={}&until={}", fmt(t), fmt(t + Days::days(91))),
        "since=yesterday".to_string(),
        // An unencoded '+' decodes to a space.
        "since=2030-01-01T00:00:00+01:00&until=2030-01-02T00:00:00Z".to_string(),
        // Only since, in the future: until defaults to now, which is before since.
        format!("since={}", fmt(Utc::now() + Days::days(2))),
    ];
    for q in &cases {
        let r = get(&fake, &format!("/oncalls?{q}"));
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert_eq!(
            r.json()["error"]["message"],
            "Invalid Input Provided",
            "{q}"
        );
    }
    let ok = format!("since={}&until={}", fmt(t), fmt(t + Days::days(90)));
    assert_eq!(get(&fake, &format!("/oncalls?{ok}")).status, 200);
}

#[test]
fn include_users_adds_email_and_reference_has_none() {
    let fake = fake_with(vec![oncall("Jane.Doe@Example.com", "EP1", 1)]);
    let plain = get_ok(&fake, "/oncalls");
    let user = &plain["oncalls"][0]["user"];
    let mut keys: Vec<_> = user.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["html_url", "id", "self", "summary", "type"]);
    assert_eq!(user["type"], "user_reference");
    assert_eq!(user["summary"], "Jane Doe");
    assert!(user["id"].as_str().unwrap().starts_with('P'));

    for q in [
        "include[]=users",
        "include%5B%5D=users",
        "include[]=users&include[]=schedules&include[]=escalation_policies",
    ] {
        let full = get_ok(&fake, &format!("/oncalls?{q}"));
        let user = &full["oncalls"][0]["user"];
        assert_eq!(user["type"], "user", "{q}");
        assert_eq!(user["email"], "Jane.Doe@Example.com", "{q}");
        assert_eq!(user["name"], "Jane Doe");
        assert_eq!(user["id"], plain["oncalls"][0]["user"]["id"]);
        assert!(user["self"]
            .as_str()
            .unwrap()
            .ends_with(user["id"].as_str().unwrap()));
        assert!(user["html_url"].is_string());
    }
    let all = get_ok(
        &fake,
        "/oncalls?include[]=schedules&include[]=escalation_policies",
    );
    assert_eq!(all["oncalls"][0]["schedule"]["type"], "schedule");
    assert_eq!(
        all["oncalls"][0]["escalation_policy"]["type"],
        "escalation_policy"
    );
    assert_eq!(all["oncalls"][0]["user"]["type"], "user_reference");
    assert_eq!(get(&fake, "/oncalls?include[]=teams").status, 400);
}

#[test]
fn entry_shape_matches_the_spec() {
    let fake = fake_with(vec![
        oncall("a@x.io", "PT20YPA", 2).with_schedule(Some("PI7DH85"))
    ]);
    let page = get_ok(&fake, "/oncalls");
    let mut top: Vec<_> = page.as_object().unwrap().keys().cloned().collect();
    top.sort();
    assert_eq!(top, ["limit", "more", "offset", "oncalls", "total"]);
    let o = &page["oncalls"][0];
    let mut keys: Vec<_> = o.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "end",
            "escalation_level",
            "escalation_policy",
            "schedule",
            "start",
            "user"
        ]
    );
    assert_eq!(o["escalation_level"], 2);
    assert_eq!(o["escalation_policy"]["id"], "PT20YPA");
    assert_eq!(
        o["escalation_policy"]["type"],
        "escalation_policy_reference"
    );
    assert_eq!(
        o["escalation_policy"]["self"],
        "https://api.pagerduty.com/escalation_policies/PT20YPA"
    );
    assert!(
        o["escalation_policy"]["summary"].is_string()
            && o["escalation_policy"]["html_url"].is_string()
    );
    assert_eq!(o["schedule"]["id"], "PI7DH85");
    assert_eq!(o["schedule"]["type"], "schedule_reference");
    assert_eq!(
        o["schedule"]["self"],
        "https://api.pagerduty.com/schedules/PI7DH85"
    );
    assert_eq!(o["start"], Value::Null);
    assert_eq!(o["end"], Value::Null);
}

#[test]
fn filters_by_policy_user_and_schedule() {
    let mut list = vec![
        oncall("a@x.io", "EP1", 1),
        oncall("b@x.io", "EP2", 1),
        oncall("c@x.io", "EP3", 1),
        oncall("d@x.io", "EP3", 2).with_schedule(None),
    ];
    list.push(oncall("a@x.io", "EP3", 3));
    let fake = fake_with(list);
    let names = |q: &str| {
        let mut n = emails(&get_ok(&fake, &format!("/oncalls?{q}")));
        n.sort();
        n
    };
    assert_eq!(
        names("escalation_policy_ids[]=EP1&escalation_policy_ids[]=EP2"),
        ["A", "B"]
    );
    assert_eq!(names("escalation_policy_ids%5B%5D=EP2"), ["B"]);
    assert_eq!(names("escalation_policy_ids[]=NOPE"), Vec::<String>::new());
    let a_id = fake_pagerduty::user_id_for_email("a@x.io");
    assert_eq!(names(&format!("user_ids[]={a_id}")), ["A", "A"]);
    assert_eq!(
        names(&format!("user_ids[]={a_id}&escalation_policy_ids[]=EP3")),
        ["A"]
    );
    assert_eq!(names("schedule_ids[]=SCHED-EP3"), ["A", "C"]);
    assert_eq!(
        names("schedule_ids[]=SCHED-EP3&schedule_ids[]=null"),
        ["A", "C", "D"]
    );
    assert_eq!(names("schedule_ids[]=null"), ["D"]);
    // Unknown parameters (including un-bracketed names) are ignored, like PagerDuty; time_zone too.
    assert_eq!(
        names("escalation_policy_ids=EP1&time_zone=Europe/Paris&foo=bar").len(),
        5
    );
}

#[test]
fn earliest_keeps_first_shift_per_user_policy_level() {
    let t = t0();
    let fake = fake_with(vec![
        oncall("a@x.io", "EP1", 1).with_window(t + Days::days(2), t + Days::days(3)),
        oncall("a@x.io", "EP1", 1).with_window(t, t + Days::days(1)),
        oncall("a@x.io", "EP1", 1).with_window(t + Days::days(4), t + Days::days(5)),
        oncall("a@x.io", "EP1", 2).with_window(t + Days::days(4), t + Days::days(5)),
        oncall("b@x.io", "EP1", 1).with_window(t + Days::days(1), t + Days::days(2)),
    ]);
    let window = format!("since={}&until={}", fmt(t), fmt(t + Days::days(10)));
    assert_eq!(
        get_ok(&fake, &format!("/oncalls?{window}"))["oncalls"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let page = get_ok(&fake, &format!("/oncalls?{window}&earliest=true"));
    let got: Vec<(String, i64, String)> = page["oncalls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["user"]["summary"].as_str().unwrap().to_string(),
                o["escalation_level"].as_i64().unwrap(),
                o["start"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(
        got_sorted,
        [
            ("A".to_string(), 1, "2030-01-01T00:00:00Z".to_string()),
            ("A".to_string(), 2, "2030-01-05T00:00:00Z".to_string()),
            ("B".to_string(), 1, "2030-01-02T00:00:00Z".to_string()),
        ]
    );
}

#[test]
fn raw_page_is_served_verbatim_behind_auth() {
    let fake = fake_with(vec![oncall("a@x.io", "EP1", 1)]);
    let body = fixture("oncalls_permanent_from_issue.json");
    fake.set_raw_page(Some(body.clone()));
    let r = get(&fake, "/oncalls?limit=100&offset=0&include[]=users");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body);
    // Query validation is skipped for raw pages, auth is not.
    assert_eq!(get(&fake, "/oncalls?limit=100&offset=9950").body, body);
    let unauth = send(
        "GET",
        &format!("{}/oncalls", fake.url()),
        &[("Accept", ACCEPT)],
        None,
    );
    assert_eq!(unauth.status, 401);
    fake.set_raw_page(None);
    assert_eq!(emails(&get_ok(&fake, "/oncalls")), ["A"]);
}

#[test]
fn other_paths_are_404_and_other_methods_405() {
    let fake = fake_with(vec![]);
    for path in ["/users", "/oncalls/", "/", "/schedules/P1/users"] {
        let r = get(&fake, path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(
            r.json(),
            json!({"error": {"message": "Not Found", "code": 2100}}),
            "{path}"
        );
    }
    let auth = format!("Token token={TOKEN}");
    let r = send(
        "POST",
        &format!("{}/oncalls", fake.url()),
        &[("Authorization", &auth), ("Accept", ACCEPT)],
        Some("{}"),
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    assert!(r.json()["error"]["message"].is_string());
}

#[test]
fn every_request_is_recorded_in_order() {
    let fake = fake_with(vec![]);
    let url = fake.url();
    send(
        "GET",
        &format!("{url}/oncalls?include%5B%5D=users&user_ids[]=P1&user_ids[]=P2"),
        &[("Accept", ACCEPT)],
        None,
    ); // 401
    get(
        &fake,
        "/oncalls?since=2030-01-01T00%3A00%3A00%2B02%3A00&until=2030-01-02T00:00:00Z",
    );
    get(&fake, "/nope");
    admin(&fake, "GET", "/_admin/requests", None); // admin: not recorded
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/oncalls");
    assert_eq!(reqs[0].header("authorization"), None);
    assert_eq!(reqs[0].query_values("include[]"), ["users"]);
    assert_eq!(reqs[0].query_values("user_ids[]"), ["P1", "P2"]);
    assert_eq!(
        reqs[1].header("Authorization"),
        Some(format!("Token token={TOKEN}").as_str())
    );
    assert!(reqs[1]
        .headers
        .iter()
        .any(|(n, v)| n == "accept" && v == ACCEPT));
    assert_eq!(reqs[1].query_values("since"), ["2030-01-01T00:00:00+02:00"]);
    assert_eq!(reqs[2].path, "/nope");
    assert!(reqs[0].at <= reqs[1].at && reqs[1].at <= reqs[2].at);
    fake.clear_requests();
    assert!(fake.requests().is_empty());
    get(&fake, "/oncalls");
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn keep_alive_connections_serve_several_requests() {
    let fake = fake_with(vec![oncall("a@x.io", "EP1", 1)]);
    let one = format!("GET /oncalls HTTP/1.1\r\nHost: x\r\n{}\r\n", auth_headers());
    let two = format!(
        "GET /oncalls?limit=1 HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
        auth_headers()
    );
    let (bytes, closed) = raw(fake.port(), &format!("{one}{two}"), Duration::from_secs(5));
    assert!(closed, "server closes after Connection: close");
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert_eq!(fake.requests().len(), 2);
}
