//! Shared set-up and assertions of the security suite (`security_*.rs`): the team a DBA would
//! create, refusals as the contract words them, audit lines, and shifts that end by their own
//! `ends_at` while PagerDuty is down.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use e2e::*;
use fake_pagerduty::{Fault, FakePagerDuty};
use postgres::error::{DbError, SqlState};
use postgres::{Client, Config, SimpleQueryMessage};

pub const GATED: &str = "prod_admin";
pub const ALICE_EMAIL: &str = "alice@example.com";
pub const BOB_EMAIL: &str = "bob@example.com";
pub const TOKEN: &str = "security-suite-token-3f9a1c";
/// Every log line carries its SQLSTATE (`%e`): pg_oncall's audit lines carry OC000.
pub const PREFIX: &str = "log_line_prefix = '%m [%p] %e %q%u@%d '";
pub const AUDIT_SQLSTATE: &str = "OC000";

/// The cluster a DBA would run: pg_oncall preloaded, a (fake) PagerDuty with a token, and
/// - `prod_admin` NOLOGIN, gated (any policy), owning `work.secret` (one row, 's3cr3t'),
///   `work.seq`, `work.progress` and large object [`LO_OID`] ('lo-secret'); it may create in
///   schemas `work` and `lab`;
/// - `alice` LOGIN NOINHERIT, member of prod_admin, on call for an hour (manual shift);
/// - `bob` LOGIN NOINHERIT, member of prod_admin, never on call;
/// - both may use `work` and use/create in `lab` and in the database.
/// `oncall.doctor()` is clean. PagerDuty answers (no on-call rows); see [`Team::pagerduty_down`].
pub struct Team {
    pub cluster: Cluster,
    pub fake: FakePagerDuty,
    pub admin: Client,
}

pub const LO_OID: u32 = 424242;

pub fn team(extra_conf: &[&str]) -> Team {
    let mut conf = vec![PREFIX];
    conf.extend_from_slice(extra_conf);
    let (cluster, fake) = Cluster::start_with_pagerduty(&conf, TOKEN);
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE ROLE prod_admin NOLOGIN;
             CREATE ROLE alice LOGIN NOINHERIT;
             CREATE ROLE bob LOGIN NOINHERIT;
             GRANT prod_admin TO alice, bob;
             CREATE SCHEMA work;
             CREATE SCHEMA lab;
             GRANT USAGE, CREATE ON SCHEMA work, lab TO prod_admin;
             GRANT USAGE ON SCHEMA work TO alice, bob;
             GRANT USAGE, CREATE ON SCHEMA lab TO alice, bob;
             GRANT CREATE ON DATABASE postgres TO alice, bob;
             CREATE TABLE work.secret (x text);
             INSERT INTO work.secret VALUES ('s3cr3t');
             CREATE TABLE work.progress (at timestamptz NOT NULL DEFAULT clock_timestamp(), what text);
             CREATE SEQUENCE work.seq;
             ALTER TABLE work.secret OWNER TO prod_admin;
             ALTER TABLE work.progress OWNER TO prod_admin;
             ALTER SEQUENCE work.seq OWNER TO prod_admin;
             SELECT lo_create(424242);
             SELECT lo_put(424242, 0, 'lo-secret');
             ALTER LARGE OBJECT 424242 OWNER TO prod_admin;
             INSERT INTO oncall.identities VALUES ('alice', 'alice@example.com'), ('bob', 'bob@example.com');
             SELECT oncall.gate_role('prod_admin');
             INSERT INTO oncall.shifts (source, email, starts_at, ends_at)
                  VALUES ('manual', 'alice@example.com', now() - interval '1 minute', now() + interval '1 hour');",
        )
        .unwrap_or_else(|e| panic!("team set-up: {}", error_text(&e)));
    let findings: Vec<String> = admin
        .query("SELECT severity || ' ' || object || ': ' || problem FROM oncall.doctor()", &[])
        .unwrap_or_else(|e| panic!("doctor(): {}", error_text(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(findings.is_empty(), "the team set-up is what doctor calls clean: {findings:#?}");
    let mut alice = cluster.connect_as("alice");
    let mut bob = cluster.connect_as("bob");
    assert!(
        wait_until(Duration::from_secs(5), || may_assume(&mut alice, GATED) && !may_assume(&mut bob, GATED)),
        "the gate set-up did not reach the sessions within 5 s\n{}",
        cluster.log_tail()
    );
    Team { cluster, fake, admin }
}

impl Team {
    /// PagerDuty stops answering (503 to every request): nothing republishes the snapshot.
    pub fn pagerduty_down(&self) {
        self.fake.set_persistent_fault(Some(Fault::Status { code: 503, body: None, headers: vec![] }));
    }

    pub fn connect_as(&self, role: &str) -> Client {
        self.cluster.connect_as(role)
    }

    /// Replaces alice's shifts by one that ends `secs` seconds from now; returns its end.
    pub fn alice_shift_ends_in(&mut self, secs: f64) -> DateTime<Utc> {
        let ends: DateTime<Utc> = self
            .admin
            .query_one(
                "WITH gone AS (DELETE FROM oncall.shifts WHERE email = $1)
                 INSERT INTO oncall.shifts (source, email, starts_at, ends_at)
                      VALUES ('manual', $1, now() - interval '1 minute', clock_timestamp() + make_interval(secs => $2))
                 RETURNING ends_at",
                &[&ALICE_EMAIL, &secs],
            )
            .unwrap_or_else(|e| panic!("short shift for alice: {}", error_text(&e)))
            .get(0);
        let mut probe = self.cluster.connect_as("alice");
        assert!(
            wait_until(Duration::from_secs(3), || Utc::now() < ends && may_assume(&mut probe, GATED)),
            "alice's short shift did not grant before its end\n{}",
            self.cluster.log_tail()
        );
        ends
    }

    /// Waits (on the condition, no fixed sleep) until alice's shift that ends at `ends` is over
    /// for the gate: a fresh session of hers may no longer assume prod_admin.
    pub fn wait_shift_over(&self, ends: DateTime<Utc>) {
        let mut probe = self.cluster.connect_as("alice");
        let limit = (ends - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(5);
        assert!(
            wait_until(limit, || Utc::now() >= ends && !may_assume(&mut probe, GATED)),
            "alice's shift did not end by its ends_at\n{}",
            self.cluster.log_tail()
        );
    }

    pub fn scalar_i64(&mut self, sql: &str) -> i64 {
        self.admin.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e))).get(0)
    }

    pub fn scalar_bool(&mut self, sql: &str) -> bool {
        self.admin.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e))).get(0)
    }

    pub fn scalar_text(&mut self, sql: &str) -> Option<String> {
        self.admin.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e))).get(0)
    }

    /// `oncall.stats()` as (route, decision) → count.
    pub fn stats(&mut self) -> std::collections::BTreeMap<(String, String), i64> {
        self.admin
            .query("SELECT route, decision, count FROM oncall.stats()", &[])
            .unwrap_or_else(|e| panic!("oncall.stats(): {}", error_text(&e)))
            .iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect()
    }
}

pub fn may_assume(session: &mut Client, role: &str) -> bool {
    session
        .query_one("SELECT oncall.check_oncall_access($1::text::name)", &[&role])
        .unwrap_or_else(|e| panic!("check_oncall_access({role}): {}", error_text(&e)))
        .get(0)
}

pub fn current_user(session: &mut Client) -> String {
    session.query_one("SELECT current_user::text", &[]).unwrap_or_else(|e| panic!("current_user: {}", error_text(&e))).get(0)
}

/// The first column of the first row of a simple-protocol query.
pub fn simple_value(session: &mut Client, sql: &str) -> Result<Option<String>, postgres::Error> {
    let messages = session.simple_query(sql)?;
    Ok(messages
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
            _ => None,
        })
        .flatten())
}

pub fn db_error(e: &postgres::Error) -> &DbError {
    e.as_db_error().unwrap_or_else(|| panic!("expected a server error, got a client error: {e}"))
}

/// The refusal the contract promises: SQLSTATE 42501, a message from pg_oncall naming the role
/// and the identity, a DETAIL with the reason, a HINT.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(result: Result<T, postgres::Error>, role: &str, identity: &str, what: &str) -> DbError {
    let e = match result {
        Ok(v) => panic!("{what}: expected pg_oncall's refusal, got success: {v:?}"),
        Err(e) => e,
    };
    let db = db_error(&e).clone();
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{what}: SQLSTATE ({})", error_text(&e));
    assert!(db.message().starts_with("pg_oncall: "), "{what}: pg_oncall's refusal, not PostgreSQL's: {}", error_text(&e));
    assert!(db.message().contains(&format!("\"{role}\"")), "{what}: the message names the role {role:?}: {}", error_text(&e));
    assert!(db.message().contains(identity), "{what}: the message names the identity {identity:?}: {}", error_text(&e));
    let detail = db.detail().unwrap_or_else(|| panic!("{what}: a DETAIL is present: {}", error_text(&e)));
    assert!(detail.contains("not on call"), "{what}: the DETAIL gives the reason: {}", error_text(&e));
    assert!(db.hint().is_some_and(|h| !h.is_empty()), "{what}: a HINT is present: {}", error_text(&e));
    db
}

/// A membership-route refusal for bob (off call).
#[track_caller]
pub fn assert_bob_refused<T: std::fmt::Debug>(result: Result<T, postgres::Error>, what: &str) -> DbError {
    assert_refused(result, GATED, BOB_EMAIL, what)
}

/// After the shift ended: "on-call access … has ended", HINT `SET ROLE NONE`.
#[track_caller]
pub fn assert_access_ended<T: std::fmt::Debug>(result: Result<T, postgres::Error>, what: &str) -> DbError {
    let db = assert_refused(result, GATED, ALICE_EMAIL, what);
    assert!(db.message().contains("ended"), "{what}: the message says access ended: {}", db.message());
    assert!(db.hint().is_some_and(|h| h.contains("SET ROLE NONE")), "{what}: the HINT says SET ROLE NONE: {:?}", db.hint());
    db
}

/// Not refused by pg_oncall: success, or PostgreSQL's own error (returned).
#[track_caller]
pub fn not_refused_by_gate<T>(result: Result<T, postgres::Error>, what: &str) -> Option<DbError> {
    match result {
        Ok(_) => None,
        Err(e) => {
            let db = db_error(&e).clone();
            assert!(!db.message().contains("pg_oncall"), "{what}: the gate refused an on-call member: {}", error_text(&e));
            Some(db)
        }
    }
}

#[track_caller]
pub fn ok<T>(result: Result<T, postgres::Error>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {}", error_text(&e)))
}

// ------------------------------------------------------------------ audit lines

/// One line of the server log with its SQLSTATE (the `%e` of [`PREFIX`]) and its message.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub sqlstate: String,
    /// `LOG`, `ERROR`, `CONTEXT`, `STATEMENT`...
    pub severity: String,
    pub message: String,
    pub raw: String,
}

/// Parses the log written with [`PREFIX`]: `2026-… UTC [pid] SQLSTATE user@db SEVERITY:  msg`.
/// Continuation lines (a tab first) are kept as their own entries with severity "".
pub fn log_lines(log: &str) -> Vec<LogLine> {
    log.lines()
        .map(|l| {
            if !l.starts_with("20") {
                return LogLine { sqlstate: String::new(), severity: String::new(), message: l.to_owned(), raw: l.to_owned() };
            }
            // "YYYY-MM-DD HH:MM:SS.mmm UTC [pid] SQLSTATE user@db SEVERITY:  msg"
            let after_pid = l.find("] ").map(|i| &l[i + 2..]).unwrap_or("");
            let (sqlstate, rest) = after_pid.split_once(' ').unwrap_or(("", after_pid));
            let (severity, message) = match rest.find(":  ") {
                Some(i) => {
                    let head = &rest[..i];
                    let severity = head.rsplit(' ').next().unwrap_or(head);
                    (severity.to_owned(), rest[i + 3..].to_owned())
                }
                None => (String::new(), rest.to_owned()),
            };
            LogLine { sqlstate: sqlstate.to_owned(), severity, message, raw: l.to_owned() }
        })
        .collect()
}

/// The log lines after `offset` whose message starts with `pg_oncall: allow|deny|audit_deny `.
pub fn decision_log_lines(cluster: &Cluster, offset: usize) -> Vec<LogLine> {
    log_lines(&cluster.log_since(offset))
        .into_iter()
        .filter(|l| ["pg_oncall: allow ", "pg_oncall: deny ", "pg_oncall: audit_deny "].iter().any(|p| l.message.starts_with(p)))
        .collect()
}

/// A parsed audit message: decision word and its key=value fields (values unquoted).
#[derive(Debug, Clone)]
pub struct Audit {
    pub decision: String,
    pub fields: Vec<(String, String)>,
    pub sqlstate: String,
}

impl Audit {
    pub fn get(&self, key: &str) -> &str {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("")
    }
}

pub fn parse_audit(line: &LogLine) -> Audit {
    let body = line.message.strip_prefix("pg_oncall: ").unwrap_or(&line.message);
    let (decision, mut rest) = body.split_once(' ').unwrap_or((body, ""));
    let mut fields = Vec::new();
    while let Some((key, after)) = rest.split_once('=') {
        let mut value = String::new();
        let remaining;
        if let Some(quoted) = after.strip_prefix('"') {
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, c)) = chars.next() {
                            value.push(c)
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            remaining = &quoted[end..];
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            value.push_str(&after[..end]);
            remaining = &after[end..];
        }
        fields.push((key.trim().to_owned(), value));
        rest = remaining.trim_start();
    }
    Audit { decision: decision.to_owned(), fields, sqlstate: line.sqlstate.clone() }
}

/// The genuine audit lines (SQLSTATE OC000) after `offset`.
pub fn audits(cluster: &Cluster, offset: usize) -> Vec<Audit> {
    decision_log_lines(cluster, offset).iter().filter(|l| l.sqlstate == AUDIT_SQLSTATE).map(parse_audit).collect()
}

/// Waits for a genuine audit line after `offset` with this decision, route, session user and role.
#[track_caller]
pub fn expect_audit(cluster: &Cluster, offset: usize, decision: &str, route: &str, session_user: &str, role: &str) -> Audit {
    let mut found = None;
    wait_until(Duration::from_secs(3), || {
        found = audits(cluster, offset).into_iter().find(|a| {
            a.decision == decision && a.get("route") == route && a.get("session_user") == session_user && a.get("role") == role
        });
        found.is_some()
    });
    found.unwrap_or_else(|| {
        panic!("no genuine `{decision} … route={route}` line for {session_user} → {role} in the log\n{}", cluster.log_since(offset))
    })
}

/// The connection's notices (NOTICE, WARNING...) collected as they arrive.
pub fn connect_collecting(cluster: &Cluster, mut config: Config) -> (Client, std::sync::Arc<std::sync::Mutex<Vec<DbError>>>) {
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&notices);
    config.notice_callback(move |n| sink.lock().unwrap().push(n));
    let client = cluster.try_connect_with(&config).unwrap_or_else(|e| panic!("connect: {}", error_text(&e)));
    (client, notices)
}

/// Runs `sql` on `session` in a thread; returns the handle (joined by the caller).
pub fn spawn_query(mut session: Client, sql: String) -> std::thread::JoinHandle<(Client, Result<(), postgres::Error>, Instant)> {
    std::thread::spawn(move || {
        let r = session.batch_execute(&sql);
        (session, r, Instant::now())
    })
}

/// Joins a [`spawn_query`] thread, failing after `timeout`.
#[track_caller]
pub fn join_within<T: Send + 'static>(handle: std::thread::JoinHandle<T>, timeout: Duration, what: &str) -> T {
    let start = Instant::now();
    while !handle.is_finished() {
        assert!(start.elapsed() < timeout, "{what}: still running after {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.join().unwrap_or_else(|_| panic!("{what}: the thread panicked"))
}
