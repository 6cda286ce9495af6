//! Elevations (DESIGN.md, "Elevations: accountability while privileged"): statement audit
//! lines, the `oncall.elevations` record and each way an elevation ends, reasons, time limits,
//! warnings, the bounded queue, and standbys. Each test on its own cluster (`e2e::team`, with
//! the rule's extra arguments where the test needs them).
//!
//! | case | test |
//! |---|---|
//! | every statement of an elevation logged (nested, rolled back, escaped), counted and recorded with its reason | `statements_of_an_elevation_are_logged_counted_and_recorded` |
//! | `reset`, `switch`, `session_end` (quit, terminated), `shift_end` | `every_end_reason_is_recorded` |
//! | `max_duration` ends an elevation; a new switch starts another | `time_limit_ends_an_elevation_and_a_new_switch_starts_another` |
//! | `require_reason` refuses a switch without one (blank too) | `require_reason_refuses_a_switch_without_one` |
//! | one NOTICE per elevation when the end is near | `a_warning_once_when_the_end_is_near` |
//! | `pg_oncall.log_statements` = none, ddl, mod, all | `log_statements_levels` |
//! | a `SET role` function called per row is one elevation | `a_function_with_set_role_called_per_row_is_one_elevation` |
//! | a full queue drops and counts | `a_full_queue_loses_what_it_counts` |
//! | records survive a crash; open ones are closed at restart | `records_survive_a_crash_and_a_restart` |
//! | a standby logs elevations but records none | `a_standby_logs_elevations_but_does_not_record_them` |

use std::time::Duration;

use e2e::*;
use postgres::error::SqlState;
use postgres::Client;

#[derive(Debug, Clone, PartialEq)]
struct Record {
    id: i64,
    session_user: String,
    identity: Option<String>,
    role: String,
    route: String,
    reason: Option<String>,
    end_reason: Option<String>,
    statements: Option<i64>,
    ended: bool,
}

fn records(admin: &mut Client) -> Vec<Record> {
    admin
        .query(
            "SELECT id, \"session_user\"::text, identity, role::text, route, reason, end_reason, statements, ended_at IS NOT NULL
               FROM oncall.elevations ORDER BY id",
            &[],
        )
        .unwrap_or_else(|e| panic!("oncall.elevations: {}", error_text(&e)))
        .iter()
        .map(|r| Record {
            id: r.get(0),
            session_user: r.get(1),
            identity: r.get(2),
            role: r.get(3),
            route: r.get(4),
            reason: r.get(5),
            end_reason: r.get(6),
            statements: r.get(7),
            ended: r.get(8),
        })
        .collect()
}

/// Waits until the elevations recorded satisfy `f`; returns them.
#[track_caller]
fn records_until(cluster: &Cluster, admin: &mut Client, what: &str, f: impl Fn(&[Record]) -> bool) -> Vec<Record> {
    let mut last = Vec::new();
    let ok = wait_until(PATIENCE, || {
        last = records(admin);
        f(&last)
    });
    assert!(ok, "{what}: oncall.elevations is {last:#?}\n{}", cluster.log_tail());
    last
}

#[test]
fn statements_of_an_elevation_are_logged_counted_and_recorded() {
    let t = team_with_rule(&[], "");
    let (cluster, mut admin) = (&t.cluster, t.cluster.connect());
    let mut alice = cluster.connect_as("alice");
    let offset = cluster.log_len();
    alice.batch_execute("SET pg_oncall.reason = 'INC-1234: disk full on db-3'").unwrap();
    alice.batch_execute("SET ROLE prod_admin").unwrap();
    alice.batch_execute("SELECT count(*) FROM work.t").unwrap();
    alice.batch_execute("INSERT INTO work.t VALUES (1)").unwrap();
    alice.batch_execute("DO $$ BEGIN INSERT INTO work.t VALUES (2); END $$").unwrap();
    alice.batch_execute("BEGIN; INSERT INTO work.t VALUES (3); ROLLBACK").unwrap();
    alice.batch_execute("SELECT 'a \"quoted\"\nline'").unwrap();
    alice.batch_execute("RESET ROLE").unwrap();
    alice.batch_execute("SELECT 'not elevated any more'").unwrap();

    let rows = records_until(cluster, &mut admin, "one ended elevation", |r| r.len() == 1 && r[0].ended);
    let r = &rows[0];
    assert_eq!((r.session_user.as_str(), r.identity.as_deref(), r.role.as_str()), ("alice", Some("alice@example.com"), GATED));
    assert_eq!(r.route, "set_role");
    assert_eq!(r.reason.as_deref(), Some("INC-1234: disk full on db-3"));
    assert_eq!(r.end_reason.as_deref(), Some("reset"));

    let lines = statement_lines(cluster, offset);
    let id = format!("elevation={} ", r.id);
    assert!(lines.iter().all(|l| l.starts_with(&format!("statement {id}"))), "every line names the elevation:\n{}", lines.join("\n"));
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(has("statement=\"SELECT count(*) FROM work.t\""), "{lines:#?}");
    assert!(has("statement=\"INSERT INTO work.t VALUES (1)\""), "{lines:#?}");
    assert!(has("statement=\"INSERT INTO work.t VALUES (2)\""), "the DO block's nested statement: {lines:#?}");
    assert!(has("statement=\"INSERT INTO work.t VALUES (3)\""), "a rolled-back statement: {lines:#?}");
    assert!(has(r#"statement="SELECT 'a \"quoted\"\nline'""#), "escaped, one line: {lines:#?}");
    assert!(!has("not elevated"), "after RESET ROLE nothing is logged: {lines:#?}");
    assert!(lines.iter().all(|l| l.contains(" role=prod_admin session_user=alice identity=alice@example.com statement=")), "{lines:#?}");
    assert_eq!(r.statements, Some(lines.len() as i64), "the record counts what was logged: {lines:#?}");
    let allow = cluster.log_since(offset).lines().find(|l| l.contains("pg_oncall: allow ")).map(str::to_owned).expect("an allow line");
    assert!(allow.contains(&format!("elevation={}", r.id)) && allow.contains("justification=\"INC-1234: disk full on db-3\""), "{allow}");
}

#[test]
fn every_end_reason_is_recorded() {
    let t = team_with_rule(&[], "");
    let (cluster, mut admin) = (&t.cluster, t.cluster.connect());
    // reset
    let mut alice = cluster.connect_as("alice");
    alice.batch_execute("SET ROLE prod_admin; SELECT 1; SET ROLE NONE").unwrap();
    // switch (to a role that is not gated)
    alice.batch_execute("SET ROLE prod_admin; SET ROLE readers").unwrap();
    alice.batch_execute("RESET ROLE").unwrap();
    // session_end: the client goes away, and pg_terminate_backend
    let mut quits = cluster.connect_as("alice");
    quits.batch_execute("SET ROLE prod_admin; SELECT 1").unwrap();
    drop(quits);
    let mut killed = cluster.connect_as("alice");
    killed.batch_execute("SET ROLE prod_admin").unwrap();
    let pid: i32 = killed.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    admin.execute("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
    // shift_end: the next statement after the shift ended is refused, which ends it
    let mut late = cluster.connect_as("alice");
    late.batch_execute("SET ROLE prod_admin").unwrap();
    admin.batch_execute("DELETE FROM oncall.shifts WHERE email = 'alice@example.com'").unwrap();
    assert!(wait_until(PATIENCE, || late.batch_execute("SELECT 1").is_err()), "refused once the shift ended");
    let rows = records_until(cluster, &mut admin, "five ended elevations", |r| r.len() == 5 && r.iter().all(|e| e.ended));
    let reasons: Vec<&str> = rows.iter().map(|r| r.end_reason.as_deref().unwrap_or("-")).collect();
    assert_eq!(reasons, ["reset", "switch", "session_end", "session_end", "shift_end"], "{rows:#?}");
}

#[test]
fn time_limit_ends_an_elevation_and_a_new_switch_starts_another() {
    let t = team_with_rule(&[], ", max_duration => '2 seconds'");
    let (cluster, mut admin) = (&t.cluster, t.cluster.connect());
    let mut alice = cluster.connect_as("alice");
    alice.batch_execute("SET ROLE prod_admin; SELECT 1").unwrap();
    let refused = wait_until(Duration::from_secs(10), || alice.batch_execute("SELECT 1").is_err());
    assert!(refused, "statements are refused once max_duration passed");
    let e = alice.batch_execute("SELECT 1").unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(db.detail().unwrap_or("").contains("time limit"), "{}", error_text(&e));
    assert!(db.hint().unwrap_or("").contains("SET ROLE prod_admin"), "{}", error_text(&e));
    alice.batch_execute("SET ROLE NONE; SET ROLE prod_admin; SELECT 1").unwrap_or_else(|e| panic!("a new switch: {}", error_text(&e)));
    // Once more, switching again without leaving the role first.
    assert!(wait_until(Duration::from_secs(10), || alice.batch_execute("SELECT 1").is_err()), "the second elevation ends too");
    alice.batch_execute("SET ROLE prod_admin; SELECT 1").unwrap_or_else(|e| panic!("a switch from the expired role: {}", error_text(&e)));
    alice.batch_execute("RESET ROLE").unwrap();
    let rows = records_until(cluster, &mut admin, "three elevations", |r| r.len() == 3 && r.iter().all(|e| e.ended));
    let reasons: Vec<&str> = rows.iter().map(|r| r.end_reason.as_deref().unwrap_or("-")).collect();
    assert_eq!(reasons, ["max_duration", "max_duration", "reset"], "{rows:#?}");
}

#[test]
fn require_reason_refuses_a_switch_without_one() {
    let t = team_with_rule(&[], ", require_reason => true");
    let (cluster, mut admin) = (&t.cluster, t.cluster.connect());
    let mut alice = cluster.connect_as("alice");
    let e = alice.batch_execute("SET ROLE prod_admin").unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{}", error_text(&e));
    assert!(db.detail().unwrap_or("").contains("requires a reason"), "{}", error_text(&e));
    assert!(db.hint().unwrap_or("").contains("SET pg_oncall.reason"), "{}", error_text(&e));
    alice.batch_execute("SET pg_oncall.reason = '   '").unwrap();
    assert!(alice.batch_execute("SET ROLE prod_admin").is_err(), "a blank reason is no reason");
    alice.batch_execute("SET pg_oncall.reason = 'INC-42'; SET ROLE prod_admin; RESET ROLE").unwrap();
    let rows = records_until(cluster, &mut admin, "one elevation", |r| r.len() == 1 && r[0].ended);
    assert_eq!(rows[0].reason.as_deref(), Some("INC-42"));
    let deny = cluster.log().lines().find(|l| l.contains("pg_oncall: deny ")).map(str::to_owned).expect("a deny line");
    assert!(deny.contains("reason=\"no reason given\""), "{deny}");
}

#[test]
fn a_warning_once_when_the_end_is_near() {
    let t = team_with_rule(&["pg_oncall.warn_before_end = '10min'"], "");
    let (cluster, mut admin) = (&t.cluster, t.cluster.connect());
    admin
        .batch_execute("UPDATE oncall.shifts SET ends_at = now() + interval '5 minutes' WHERE email = 'alice@example.com'")
        .unwrap();
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = notices.clone();
    let mut config = cluster.config("alice", "postgres");
    config.notice_callback(move |n| sink.lock().unwrap().push(n.message().to_owned()));
    let mut alice = config.connect(postgres::NoTls).unwrap();
    let seen = |notices: &std::sync::Arc<std::sync::Mutex<Vec<String>>>| notices.lock().unwrap().iter().filter(|m| m.contains("ends at")).count();
    assert!(
        wait_until(PATIENCE, || {
            alice.batch_execute("SET ROLE prod_admin; SELECT 1; RESET ROLE").unwrap();
            seen(&notices) > 0
        }),
        "a NOTICE that the shift ends soon"
    );
    notices.lock().unwrap().clear();
    alice.batch_execute("SET ROLE prod_admin").unwrap();
    alice.batch_execute("SELECT 1").unwrap();
    alice.batch_execute("SELECT 2").unwrap();
    alice.batch_execute("SELECT 3").unwrap();
    assert_eq!(seen(&notices), 1, "once per elevation: {:?}", notices.lock().unwrap());
}

#[test]
fn log_statements_levels() {
    for (level, logged, not_logged) in [
        ("none", vec![], vec!["SELECT 1", "INSERT INTO", "CREATE TABLE"]),
        ("ddl", vec!["CREATE TABLE"], vec!["SELECT 1", "INSERT INTO"]),
        ("mod", vec!["CREATE TABLE", "INSERT INTO"], vec!["SELECT 1"]),
        ("all", vec!["CREATE TABLE", "INSERT INTO", "SELECT 1"], vec![]),
    ] {
        let t = team(&[&format!("pg_oncall.log_statements = '{level}'")]);
        let cluster = &t.cluster;
        let offset = cluster.log_len();
        let mut alice = cluster.connect_as("alice");
        alice.batch_execute("SET ROLE prod_admin").unwrap();
        alice.batch_execute("SELECT 1").unwrap();
        alice.batch_execute("INSERT INTO work.t VALUES (1)").unwrap();
        alice.batch_execute("CREATE TABLE work.made (x int)").unwrap();
        alice.batch_execute("RESET ROLE").unwrap();
        alice.batch_execute("SELECT 'sync point'").unwrap();
        let lines = statement_lines(cluster, offset);
        for l in logged {
            assert!(lines.iter().any(|x| x.contains(l)), "{level}: {l} is logged: {lines:#?}");
        }
        for l in not_logged {
            assert!(!lines.iter().any(|x| x.contains(l)), "{level}: {l} is not logged: {lines:#?}");
        }
    }
}

#[test]
fn a_function_with_set_role_called_per_row_is_one_elevation() {
    let t = team_with_rule(&[], "");
    let (cluster, mut admin) = (&t.cluster, t.cluster.connect());
    admin
        .batch_execute(
            "CREATE FUNCTION public.as_admin(i int) RETURNS int LANGUAGE sql SET role = prod_admin AS $$ SELECT i $$;
             GRANT EXECUTE ON FUNCTION public.as_admin(int) TO alice;",
        )
        .unwrap();
    let mut alice = cluster.connect_as("alice");
    let n: i64 = alice.query_one("SELECT sum(public.as_admin(i)) FROM generate_series(1, 500) AS i", &[]).unwrap().get(0);
    assert_eq!(n, 125_250);
    alice.batch_execute("SELECT 'sync point'").unwrap();
    let rows = records_until(cluster, &mut admin, "one elevation", |r| r.len() == 1 && r[0].ended);
    assert_eq!(rows[0].route, "function_set");
}

#[test]
fn a_full_queue_loses_what_it_counts() {
    let t = team_with_rule(&["pg_oncall.elevation_queue_size = 16"], "");
    let (cluster, mut admin) = (&t.cluster, t.cluster.connect());
    let worker = cluster.worker_pid().expect("the worker runs");
    // SAFETY: SIGSTOP/SIGCONT to our own cluster's worker.
    unsafe { libc::kill(worker, libc::SIGSTOP) };
    let mut alice = cluster.connect_as("alice");
    for _ in 0..20 {
        alice.batch_execute("SET ROLE prod_admin; RESET ROLE").unwrap();
    }
    // 20 elevations = 40 events into 16 places: 24 dropped.
    let dropped: i64 = admin.query_one("SELECT elevation_events_dropped FROM oncall.status()", &[]).unwrap().get(0);
    // SAFETY: as above.
    unsafe { libc::kill(worker, libc::SIGCONT) };
    assert_eq!(dropped, 24, "the drops are counted");
    let rows = records_until(cluster, &mut admin, "the first 8 elevations", |r| r.len() == 8 && r.iter().all(|e| e.ended));
    assert!(rows.iter().all(|r| r.end_reason.as_deref() == Some("reset")));
}

#[test]
fn records_survive_a_crash_and_a_restart() {
    let mut t = team(&[]);
    let mut admin = t.cluster.connect();
    let mut alice = t.cluster.connect_as("alice");
    alice.batch_execute("SET ROLE prod_admin; SELECT 1; RESET ROLE").unwrap();
    alice.batch_execute("SET ROLE prod_admin; SELECT 1").unwrap();
    records_until(&t.cluster, &mut admin, "one ended, one open", |r| r.len() == 2 && r[0].ended && !r[1].ended);
    drop(alice);
    drop(admin);
    t.cluster.crash_and_restart();
    let mut admin = t.cluster.connect();
    let rows = records_until(&t.cluster, &mut admin, "both ended", |r| r.len() == 2 && r.iter().all(|e| e.ended));
    assert_eq!(rows[0].end_reason.as_deref(), Some("reset"));
    assert_eq!(rows[1].end_reason.as_deref(), Some("session_end"), "the open one is closed after the restart");
}

#[test]
fn a_standby_logs_elevations_but_does_not_record_them() {
    let t = team(&[]);
    let primary = &t.cluster;
    let mut admin = primary.connect();
    let standby = Cluster::standby_of(primary);
    let offset = standby.log_len();
    let mut alice = standby.connect_as("alice");
    alice.batch_execute("SET ROLE prod_admin; SELECT count(*) FROM work.t; RESET ROLE").unwrap();
    assert!(
        standby.wait_for_log(offset, "pg_oncall: statement ", PATIENCE),
        "the standby logs the statement\n{}",
        standby.log_tail()
    );
    assert!(standby.wait_caught_up(primary, PATIENCE));
    assert!(records(&mut admin).is_empty(), "nothing recorded on the primary");
    assert!(records(&mut standby.connect()).is_empty(), "nothing recorded on the standby");
}
