//! Incidents (DESIGN.md, "Incidents: access tied to an emergency, recorded on it"), against the
//! fake PagerDuty: `require_incident` rules admit only while an open incident is assigned (within
//! one sync of its opening, refused at the next statement after it is resolved, refused once the
//! incident data is stale), `whoami()` and the elevation record name the incidents, and each
//! new elevation puts one note on each of them — with the right `From` and text, retried on
//! 429/500 without ever slowing a switch, never twice — or says in `status()` why it cannot.

use std::time::{Duration, Instant};

use e2e::*;
use fake_pagerduty::{incident, oncall, Endpoint, FakePagerDuty, Fault, User};
use postgres::error::SqlState;
use postgres::Client;

const TOKEN: &str = "e2eRead-5Hk8Zq1Wm3Tx";
const WRITE_TOKEN: &str = "e2eWrite-9Jd2Pf6Lc4Nv";
const FROM: &str = "pg-oncall@example.com";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

/// Roles, identities and the rule: prod_admin (policy EP1, `require_incident` and `rule`'s extra
/// gate_role arguments); alice and bob, NOINHERIT members, both on call in EP1 at PagerDuty.
/// Synced once; returns the superuser session.
fn setup(cluster: &Cluster, fake: &FakePagerDuty, rule: &str) -> Client {
    fake.set_oncalls(vec![oncall(ALICE, "EP1", 1), oncall(BOB, "EP1", 1)]);
    let mut admin = cluster.connect();
    admin
        .batch_execute(&format!(
            "CREATE ROLE prod_admin NOLOGIN;
             CREATE ROLE alice LOGIN NOINHERIT;
             CREATE ROLE bob LOGIN NOINHERIT;
             GRANT prod_admin TO alice, bob;
             INSERT INTO oncall.identities VALUES ('alice', '{ALICE}'), ('bob', '{BOB}');
             SELECT oncall.gate_role('prod_admin', escalation_policy_ids => '{{EP1}}', require_incident => true{rule});"
        ))
        .unwrap_or_else(|e| panic!("set-up: {}", error_text(&e)));
    refresh(cluster, &mut admin);
    admin
}

#[track_caller]
fn refresh(cluster: &Cluster, admin: &mut Client) {
    if let Err(e) = admin.batch_execute("SELECT oncall.refresh()") {
        panic!("oncall.refresh() failed: {}\n{}", error_text(&e), cluster.log_tail());
    }
}

/// `SET ROLE prod_admin; RESET ROLE` in a new session of `user`.
fn may_switch(cluster: &Cluster, user: &str) -> Result<(), postgres::Error> {
    cluster.connect_as(user).batch_execute("SET ROLE prod_admin; RESET ROLE")
}

/// Waits (5 s) until `user`'s switch is allowed (`true`) or refused (`false`).
#[track_caller]
fn switch_becomes(cluster: &Cluster, user: &str, allowed: bool) {
    let ok = wait_until(Duration::from_secs(5), || may_switch(cluster, user).is_ok() == allowed);
    assert!(ok, "{user}'s switch is {} within 5 s\n{}", if allowed { "allowed" } else { "refused" }, cluster.log_tail());
}

#[track_caller]
fn refused_with(e: &postgres::Error, detail: &str) {
    let db = e.as_db_error().unwrap_or_else(|| panic!("a server error: {e}"));
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{}", error_text(e));
    assert!(db.detail().unwrap_or("").contains(detail), "DETAIL mentions {detail:?}: {}", error_text(e));
}

fn status_row(admin: &mut Client, columns: &str) -> postgres::Row {
    admin
        .query_one(&format!("SELECT {columns} FROM oncall.status()"), &[])
        .unwrap_or_else(|e| panic!("status(): {}", error_text(&e)))
}

fn incident_ids_of(session: &mut Client) -> Option<Vec<String>> {
    session.query_one("SELECT incident_ids FROM oncall.whoami()", &[]).unwrap().get(0)
}

/// (id, incident_number, title, status, escalation_policy_id, assignee_emails) of `oncall.incidents`.
type IncidentRow = (String, Option<i32>, Option<String>, Option<String>, Option<String>, Option<Vec<String>>);

#[test]
fn an_assigned_open_incident_admits_and_its_resolution_ends_the_elevation() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = setup(&cluster, &fake, "");

    // On call, but no incident: refused, and told why.
    let offset = cluster.log_len();
    let e = may_switch(&cluster, "alice").unwrap_err();
    refused_with(&e, "requires an open PagerDuty incident assigned to alice@example.com");
    assert!(
        cluster.wait_for_log(offset, r#"pg_oncall: deny role=prod_admin session_user=alice identity=alice@example.com route=set_role reason="no open incident assigned""#, Duration::from_secs(2)),
        "the refusal's audit line names the condition that failed\n{}",
        cluster.log_since(offset)
    );
    assert_eq!(incident_ids_of(&mut cluster.connect_as("alice")), Some(vec![]), "synced, none assigned");

    // An incident of EP1's service assigned to alice; one of another policy's service to bob.
    fake.add_incident(incident("PINC1", "PSVC1", "EP1").assigned_to("Alice@Example.com").with_title("Disk full on db-3"));
    fake.add_incident(incident("PINC9", "PSVC9", "EP9").assigned_to(BOB));
    refresh(&cluster, &mut admin);
    switch_becomes(&cluster, "alice", true);
    let e = may_switch(&cluster, "bob").unwrap_err();
    refused_with(&e, "requires an open PagerDuty incident");
    assert_eq!(incident_ids_of(&mut cluster.connect_as("alice")), Some(vec!["PINC1".to_owned()]));
    assert_eq!(incident_ids_of(&mut cluster.connect_as("bob")), Some(vec!["PINC9".to_owned()]), "whoami() shows every incident");

    let rows: Vec<IncidentRow> = admin
        .query(
            "SELECT id, incident_number, title, status, escalation_policy_id, assignee_emails FROM oncall.incidents ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0, "PINC1");
    assert_eq!(
        (rows[0].2.as_deref(), rows[0].3.as_deref(), rows[0].4.as_deref(), rows[0].5.clone()),
        (Some("Disk full on db-3"), Some("triggered"), Some("EP1"), Some(vec![ALICE.to_owned()])),
        "assignee emails lower-cased"
    );
    let st = status_row(&mut admin, "incidents, incident_requests, requests, incidents_stale, last_error");
    let (incidents, incident_requests, requests): (i32, i32, i32) = (st.get(0), st.get(1), st.get(2));
    assert_eq!((incidents, incident_requests, requests), (2, 1, 2), "one extra request per sync for a small account");
    assert_eq!((st.get::<_, Option<bool>>(3), st.get::<_, Option<String>>(4)), (Some(false), None));

    // Elevated with the incident; resolved at PagerDuty: refused at the next statement.
    let mut alice = cluster.connect_as("alice");
    alice.batch_execute("SET pg_oncall.reason = 'INC-1: disk full'; SET ROLE prod_admin; SELECT 1").unwrap();
    fake.resolve_incident("PINC1");
    refresh(&cluster, &mut admin);
    let refused = wait_until(Duration::from_secs(5), || alice.batch_execute("SELECT 1").is_err());
    assert!(refused, "the elevation ends once the incident is resolved\n{}", cluster.log_tail());
    let e = alice.batch_execute("SELECT 1").unwrap_err();
    refused_with(&e, "requires an open PagerDuty incident");
    alice.batch_execute("SET ROLE NONE").expect("leaving the role is never refused");
    let record = wait_until(Duration::from_secs(10), || {
        admin
            .query_opt(
                "SELECT 1 FROM oncall.elevations WHERE \"session_user\" = 'alice' AND incident_ids = '{PINC1}'
                    AND end_reason = 'refused' AND reason = 'INC-1: disk full'",
                &[],
            )
            .unwrap()
            .is_some()
    });
    let all: Vec<String> =
        admin.query("SELECT e::text FROM oncall.elevations AS e", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(record, "the record keeps the incident and how it ended: {all:#?}");
    assert_eq!(incident_ids_of(&mut cluster.connect_as("alice")), Some(vec![]));
}

#[test]
fn an_incident_opened_admits_within_one_sync() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&["pg_oncall.refresh_interval = '1s'"], TOKEN);
    let _admin = setup(&cluster, &fake, "");
    switch_becomes(&cluster, "alice", false);
    fake.add_incident(incident("PINC1", "PSVC1", "EP1").assigned_to(ALICE));
    let took = time_until(Duration::from_secs(10), || may_switch(&cluster, "alice").is_ok());
    let took = took.unwrap_or_else(|| panic!("alice is not admitted within 10 s of the incident\n{}", cluster.log_tail()));
    eprintln!("incident opened → alice admitted: {took:?} (refresh_interval 1s)");
    assert!(took < Duration::from_secs(3), "within one sync (1 s) and a reload: {took:?}");

    // Assigned to bob instead: alice's access goes with the next sync, bob's comes.
    fake.assign_incident("PINC1", &[BOB]);
    switch_becomes(&cluster, "bob", true);
    switch_becomes(&cluster, "alice", false);
}

#[test]
fn stale_incident_data_refuses_and_a_hung_incident_fetch_never_delays_a_reload() {
    let (cluster, fake) =
        Cluster::start_with_pagerduty(&["pg_oncall.refresh_interval = '1s'", "pg_oncall.max_staleness = '4s'"], TOKEN);
    let mut admin = setup(&cluster, &fake, "");
    fake.add_incident(incident("PINC1", "PSVC1", "EP1").assigned_to(ALICE));
    switch_becomes(&cluster, "alice", true);
    let mut alice = cluster.connect_as("alice");
    alice.batch_execute("SET ROLE prod_admin; SELECT 1").unwrap();

    // Only the incidents fail (say the token lacks incidents.read): shifts stay fresh, the
    // incidents go stale, and the running elevation ends with them.
    fake.set_persistent_fault_for(
        Endpoint::Incidents,
        Some(Fault::Status {
            code: 403,
            body: Some(r#"{"error":{"message":"Access Denied","code":2010}}"#.into()),
            headers: vec![],
        }),
    );
    let refused = wait_until(Duration::from_secs(15), || alice.batch_execute("SELECT 1").is_err());
    assert!(refused, "refused once the incident data is older than max_staleness\n{}", cluster.log_tail());
    alice.batch_execute("SET ROLE NONE").unwrap();
    let e = may_switch(&cluster, "alice").unwrap_err();
    refused_with(&e, "incident data is stale");
    let st = status_row(&mut admin, "stale, incidents_stale, last_error");
    let last_error: Option<String> = st.get(2);
    assert_eq!((st.get::<_, bool>(0), st.get::<_, Option<bool>>(1)), (false, Some(true)), "{last_error:?}");
    assert!(
        last_error
            .as_deref()
            .unwrap_or("")
            .contains("open incidents: PagerDuty refused: the token lacks scope incidents.read (403)"),
        "{last_error:?}"
    );
    let doctor: Vec<String> = admin.query("SELECT problem FROM oncall.doctor()", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(doctor.iter().any(|p| p.contains("incident sync is older than pg_oncall.max_staleness")), "{doctor:#?}");

    // PagerDuty answers again: admitted again.
    fake.set_persistent_fault_for(Endpoint::Incidents, None);
    switch_becomes(&cluster, "alice", true);

    // PagerDuty down altogether (every endpoint): refused past max_staleness.
    fake.set_persistent_fault(Some(Fault::Status { code: 503, body: None, headers: vec![] }));
    let took = time_until(Duration::from_secs(15), || may_switch(&cluster, "alice").is_err());
    assert!(took.is_some(), "refused with PagerDuty down past max_staleness\n{}", cluster.log_tail());
    fake.set_persistent_fault(None);
    switch_becomes(&cluster, "alice", true);

    // The incident fetch hangs (on the worker's helper thread): a break-glass change still
    // reaches decisions within a second.
    fake.clear_requests();
    fake.set_persistent_fault_for(Endpoint::Incidents, Some(Fault::Hang));
    let hanging = wait_until(Duration::from_secs(5), || fake.requests().iter().any(|r| r.path == "/incidents"));
    assert!(hanging, "a sync is waiting on the incidents");
    std::thread::sleep(Duration::from_millis(200));
    admin.batch_execute("SELECT oncall.ungate_role('prod_admin')").unwrap();
    let took = time_until(Duration::from_secs(5), || cluster.connect_as("bob").batch_execute("SET ROLE prod_admin").is_ok());
    let took = took.unwrap_or_else(|| panic!("the change did not reach decisions\n{}", cluster.log_tail()));
    eprintln!("ungate_role during a hung incident fetch → decisions: {took:?}");
    assert!(took < Duration::from_secs(1), "within a second while the incident fetch hangs: {took:?}");
}

#[test]
fn overrides_do_not_open_incidents_and_rules_without_require_incident_need_none() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = setup(&cluster, &fake, "");
    admin
        .batch_execute(
            "CREATE ROLE carol LOGIN NOINHERIT; GRANT prod_admin TO carol;
             INSERT INTO oncall.identities VALUES ('carol', 'carol@example.com');
             SELECT oncall.override('carol@example.com', '1 hour', 'break glass');",
        )
        .unwrap();
    let e = wait_until(Duration::from_secs(5), || {
        may_switch(&cluster, "carol")
            .err()
            .is_some_and(|e| e.as_db_error().and_then(|d| d.detail()).unwrap_or("").contains("incident"))
    });
    assert!(e, "an override makes carol on call, not assigned: still refused for want of an incident");
    admin.batch_execute("SELECT oncall.gate_role('prod_admin', escalation_policy_ids => '{EP1}')").unwrap();
    switch_becomes(&cluster, "carol", true);
    switch_becomes(&cluster, "alice", true);

    // No rule needs incidents any more: the next sync does not ask for them.
    fake.clear_requests();
    refresh(&cluster, &mut admin);
    let paths: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.iter().all(|p| p == "/oncalls"), "only /oncalls: {paths:?}");
    let st = status_row(&mut admin, "incident_requests, incidents_stale");
    assert_eq!((st.get::<_, i32>(0), st.get::<_, Option<bool>>(1)), (0, None), "incidents not synced: staleness does not apply");
    assert_eq!(incident_ids_of(&mut cluster.connect_as("alice")), Some(vec![]), "the last incident sync is still fresh");

    // sync_incidents = off while a rule needs them: doctor says so, and nobody is admitted.
    admin
        .batch_execute("SELECT oncall.gate_role('prod_admin', escalation_policy_ids => '{EP1}', require_incident => true)")
        .unwrap();
    cluster.alter_system("pg_oncall.sync_incidents", "off");
    let doctor: Vec<String> = admin.query("SELECT problem FROM oncall.doctor()", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(doctor.iter().any(|p| p.contains("pg_oncall.sync_incidents is off")), "{doctor:#?}");
}

/// Notes on: a write token the fake accepts, a `From` user of the account, `cluster_name`.
fn notes_conf(cluster: &Cluster, fake: &FakePagerDuty) {
    fake.set_write_token(Some(WRITE_TOKEN));
    fake.add_users(vec![User::from_email(FROM)]);
    let write_token = cluster.token_file(WRITE_TOKEN);
    cluster.set_conf(&format!("pg_oncall.pagerduty_write_token_file = '{}'", write_token.display()));
    cluster.set_conf(&format!("pg_oncall.pagerduty_from_email = '{FROM}'"));
    cluster.set_conf("pg_oncall.annotate_incidents = on");
    cluster.reload();
}

#[track_caller]
fn notes_until(cluster: &Cluster, fake: &FakePagerDuty, n: usize) -> Vec<fake_pagerduty::Note> {
    let mut notes = Vec::new();
    let ok = wait_until(Duration::from_secs(20), || {
        notes = fake.notes();
        notes.len() >= n
    });
    assert!(ok, "{n} notes: the fake has {notes:#?}\n{}", cluster.log_tail());
    notes
}

#[test]
fn each_elevation_puts_one_note_on_each_incident() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&["cluster_name = 'e2e-main'"], TOKEN);
    let mut admin = setup(&cluster, &fake, "");
    notes_conf(&cluster, &fake);
    fake.add_incident(incident("PINC1", "PSVC1", "EP1").assigned_to(ALICE));
    fake.add_incident(incident("PINC2", "PSVC2", "EP1").assigned_to(ALICE).assigned_to(BOB));
    refresh(&cluster, &mut admin);
    switch_becomes(&cluster, "alice", true);
    // Waiting for the switch made elevations (and notes) already: start from a clean slate.
    assert!(
        wait_until(Duration::from_secs(10), || fake.notes().len() >= 2),
        "the probing switches' notes\n{}",
        cluster.log_tail()
    );
    std::thread::sleep(Duration::from_millis(500));
    fake.clear_notes();
    fake.clear_requests();
    let posted_before: i64 = status_row(&mut admin, "notes_posted").get(0);

    let mut alice = cluster.connect_as("alice");
    alice.batch_execute("SET pg_oncall.reason = 'INC-1234: disk full on db-3'; SET ROLE prod_admin; SELECT 1; SELECT 2").unwrap();
    let notes = notes_until(&cluster, &fake, 2);
    let mut incidents: Vec<&str> = notes.iter().map(|n| n.incident_id.as_str()).collect();
    incidents.sort();
    assert_eq!(incidents, ["PINC1", "PINC2"], "one note on each incident: {notes:#?}");
    for note in &notes {
        assert_eq!(note.from, FROM);
        let (head, at) = note.content.split_once(" at ").expect("`… at <time>; reason: …`");
        assert_eq!(head, "alice@example.com assumed prod_admin on e2e-main/postgres", "{note:#?}");
        let (time, reason) = at.split_once("; reason: ").expect("a reason");
        assert_eq!(reason, "INC-1234: disk full on db-3");
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "RFC 3339 time: {time}");
    }
    // What went to PagerDuty: the note's text, nothing else.
    for request in fake.requests().iter().filter(|r| r.method == "POST") {
        let body: serde_json::Value = serde_json::from_slice(&request.body).expect("JSON body");
        let content = body["note"]["content"].as_str().unwrap_or_default().to_owned();
        assert_eq!(body, serde_json::json!({ "note": { "content": content } }), "only the note text is sent");
        assert_eq!(request.header("authorization"), Some(format!("Token token={WRITE_TOKEN}").as_str()), "the write token posts");
    }

    // More statements, SET LOCAL, a function's SET clause inside the elevation: still one
    // elevation, no more notes. RESET and a new switch: a new elevation, new notes.
    alice.batch_execute("SELECT 3; BEGIN; SET LOCAL pg_oncall.reason = 'x'; SELECT 4; COMMIT").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(fake.notes().len(), 2, "still one elevation: {:#?}", fake.notes());
    alice.batch_execute("RESET pg_oncall.reason; RESET ROLE; SET ROLE prod_admin").unwrap();
    let notes = notes_until(&cluster, &fake, 4);
    assert_eq!(notes.len(), 4, "{notes:#?}");
    assert!(notes[2..].iter().all(|n| n.content.ends_with("; reason: none given")), "{notes:#?}");
    let st = status_row(&mut admin, "notes_enabled, notes_posted, notes_failed, notes_dropped, last_note_error");
    assert_eq!(
        (st.get::<_, bool>(0), st.get::<_, i64>(1) - posted_before, st.get::<_, i64>(2), st.get::<_, i64>(3)),
        (true, 4, 0, 0)
    );
    assert_eq!(st.get::<_, Option<String>>(4), None);
    let ids: Vec<Vec<String>> = admin
        .query("SELECT incident_ids FROM oncall.elevations WHERE \"session_user\" = 'alice' ORDER BY id DESC LIMIT 2", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(ids.iter().all(|i| i == &["PINC1", "PINC2"]) && ids.len() == 2, "{ids:?}");

    // An answer cut off after PagerDuty stored the note: the worker looks before posting again.
    fake.clear_notes();
    fake.push_fault_for(Endpoint::Notes, Fault::Truncated);
    alice.batch_execute("RESET ROLE; SET ROLE prod_admin").unwrap();
    let notes = notes_until(&cluster, &fake, 2);
    std::thread::sleep(Duration::from_secs(3));
    let notes_now = fake.notes();
    assert_eq!(notes_now.len(), 2, "never twice for one elevation: {notes_now:#?}");
    assert_ne!(notes[0].incident_id, notes[1].incident_id);
    let gets = fake.requests().iter().filter(|r| r.method == "GET" && r.path.ends_with("/notes")).count();
    assert!(gets >= 1, "the uncertain post was looked for");
    cluster.assert_secret_hidden(WRITE_TOKEN);
}

/// Median time of `n` `SET ROLE prod_admin; RESET ROLE` round trips in one session.
fn switch_median(session: &mut Client, n: usize) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            session.batch_execute("SET ROLE prod_admin; RESET ROLE").unwrap_or_else(|e| panic!("switch: {}", error_text(&e)));
            start.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

#[test]
fn notes_are_retried_on_429_and_500_and_never_slow_a_switch() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&["pg_oncall.note_queue_size = 64"], TOKEN);
    let mut admin = setup(&cluster, &fake, "");
    fake.add_incident(incident("PINC1", "PSVC1", "EP1").assigned_to(ALICE));
    refresh(&cluster, &mut admin);
    switch_becomes(&cluster, "alice", true);
    let mut alice = cluster.connect_as("alice");
    let _ = switch_median(&mut alice, 50); // warm up
    let notes_off = switch_median(&mut alice, 300);

    notes_conf(&cluster, &fake);
    fake.push_fault_for(Endpoint::Notes, Fault::RateLimited { reset_secs: Some(1) });
    fake.push_fault_for(Endpoint::Notes, Fault::Status { code: 500, body: None, headers: vec![] });
    let mut elevated = cluster.connect_as("alice");
    elevated.batch_execute("SET pg_oncall.reason = 'INC-7'; SET ROLE prod_admin").unwrap();
    let notes = notes_until(&cluster, &fake, 1);
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(notes[0].content.ends_with("; reason: INC-7"), "{notes:#?}");
    let posts = fake.requests().iter().filter(|r| r.method == "POST").count();
    assert!(posts >= 3, "429, 500, then the note: {posts} POSTs");
    let st = status_row(&mut admin, "notes_posted, notes_failed, last_note_error");
    let last: Option<String> = st.get(2);
    assert_eq!((st.get::<_, i64>(0), st.get::<_, i64>(1)), (1, 0), "{last:?}");
    assert!(last.as_deref().unwrap_or("").contains("500: PagerDuty server error"), "the retried failure shows: {last:?}");

    // PagerDuty's notes endpoint failing on every attempt (and slow): switches cost the same.
    fake.set_persistent_fault_for(Endpoint::Notes, Some(Fault::Status { code: 500, body: None, headers: vec![] }));
    let notes_failing = switch_median(&mut alice, 300);
    fake.set_persistent_fault_for(Endpoint::Notes, Some(Fault::Hang));
    let notes_hanging = switch_median(&mut alice, 300);
    eprintln!("SET ROLE + RESET ROLE, median of 300: notes off {notes_off:?}, notes on with PagerDuty failing {notes_failing:?}, hanging {notes_hanging:?}");
    let bound = notes_off * 3 + Duration::from_millis(2);
    assert!(
        notes_failing < bound && notes_hanging < bound,
        "a switch is never slowed by notes: off {notes_off:?}, failing {notes_failing:?}, hanging {notes_hanging:?}"
    );
    let st = status_row(&mut admin, "notes_dropped");
    assert!(
        st.get::<_, i64>(0) > 0,
        "600 elevations with PagerDuty failing overflow a queue of 64: the oldest are dropped and counted"
    );
    fake.set_persistent_fault_for(Endpoint::Notes, None);
}

#[test]
fn without_a_write_token_switches_work_and_status_says_notes_are_off() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = setup(&cluster, &fake, "");
    fake.add_incident(incident("PINC1", "PSVC1", "EP1").assigned_to(ALICE));
    refresh(&cluster, &mut admin);
    cluster.set_conf(&format!("pg_oncall.pagerduty_from_email = '{FROM}'"));
    cluster.set_conf("pg_oncall.annotate_incidents = on");
    cluster.reload();
    switch_becomes(&cluster, "alice", true);
    cluster.connect_as("alice").batch_execute("SET ROLE prod_admin; SELECT 1").unwrap();
    let off = wait_until(Duration::from_secs(5), || {
        let st = status_row(&mut admin, "notes_enabled, notes_posted, notes_failed, last_note_error");
        !st.get::<_, bool>(0)
            && st.get::<_, i64>(1) == 0
            && st.get::<_, i64>(2) >= 1
            && st
                .get::<_, Option<String>>(3)
                .unwrap_or_default()
                .contains("notes are off: no PagerDuty write token: pg_oncall.pagerduty_write_token_file is not set")
    });
    let st = status_row(&mut admin, "notes_enabled, notes_posted, notes_failed, last_note_error");
    assert!(off, "status() says notes are off and why: {st:?}");
    assert!(fake.notes().is_empty());
    let doctor: Vec<String> = admin.query("SELECT problem FROM oncall.doctor()", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(doctor.iter().any(|p| p.contains("annotate_incidents is on, but no note can be posted")), "{doctor:#?}");

    // A write token PagerDuty does not accept: 401, given up at once, said in status(), and
    // the token shows nowhere.
    let wrong = cluster.token_file("e2eWrong-3Qs7Bv0Xy8Kp");
    cluster.set_conf(&format!("pg_oncall.pagerduty_write_token_file = '{}'", wrong.display()));
    cluster.reload();
    let enabled = wait_until(Duration::from_secs(5), || status_row(&mut admin, "notes_enabled").get::<_, bool>(0));
    assert!(enabled, "a write token configured: notes on");
    cluster.connect_as("alice").batch_execute("SET ROLE prod_admin").unwrap();
    let failed = wait_until(Duration::from_secs(10), || {
        status_row(&mut admin, "last_note_error")
            .get::<_, Option<String>>(0)
            .unwrap_or_default()
            .contains("401: PagerDuty rejected the write token")
    });
    assert!(failed, "{:?}", status_row(&mut admin, "notes_failed, last_note_error"));
    assert!(fake.notes().is_empty());
    cluster.assert_secret_hidden("e2eWrong-3Qs7Bv0Xy8Kp");
}

#[test]
fn a_standby_enforces_the_replicated_incidents() {
    let (primary, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = setup(&primary, &fake, "");
    fake.add_incident(incident("PINC1", "PSVC1", "EP1").assigned_to(ALICE));
    refresh(&primary, &mut admin);
    switch_becomes(&primary, "alice", true);
    let standby = Cluster::standby_of(&primary);
    assert!(standby.wait_caught_up(&primary, Duration::from_secs(10)), "the standby catches up");
    switch_becomes(&standby, "alice", true);
    switch_becomes(&standby, "bob", false);
    assert_eq!(incident_ids_of(&mut standby.connect_as("alice")), Some(vec!["PINC1".to_owned()]));
    fake.resolve_incident("PINC1");
    refresh(&primary, &mut admin);
    switch_becomes(&standby, "alice", false);
}

#[test]
fn a_new_require_incident_rule_does_not_wait_a_refresh_interval_for_incidents() {
    // refresh_interval is 1h: only the rule's creation can trigger the incident sync.
    let (cluster, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = setup(&cluster, &fake, "");
    admin.batch_execute("SELECT oncall.gate_role('prod_admin', escalation_policy_ids => '{EP1}')").unwrap();
    refresh(&cluster, &mut admin);
    fake.add_incident(incident("PINC1", "PSVC1", "EP1").assigned_to(ALICE));
    fake.clear_requests();
    admin.batch_execute("SELECT oncall.gate_role('prod_admin', escalation_policy_ids => '{EP1}', require_incident => true)").unwrap();
    switch_becomes(&cluster, "alice", true);
    switch_becomes(&cluster, "bob", false);
    assert!(fake.requests().iter().any(|r| r.path == "/incidents"), "the incidents were fetched for the new rule");
}
