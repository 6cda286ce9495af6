//! What a test does in a client session: ask the gate, read a value, run a statement in a
//! thread, collect notices, and put a fence in the server log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::error::DbError;
use postgres::{Client, Config, SimpleQueryMessage};

use crate::cluster::{error_text, quote_ident, quote_literal, wait_until, Cluster, STATEMENT_TIMEOUT};

/// `CREATE ROLE "<name>" LOGIN` (a plain, non-superuser login role).
pub fn create_login_role(admin: &mut Client, name: &str) {
    admin
        .batch_execute(&format!("CREATE ROLE {} LOGIN", quote_ident(name)))
        .unwrap_or_else(|e| panic!("CREATE ROLE {name}: {}", error_text(&e)));
}

/// `oncall.check_oncall_access()` in this session.
pub fn check_access(session: &mut Client) -> bool {
    session
        .query_one("SELECT oncall.check_oncall_access()", &[])
        .unwrap_or_else(|e| panic!("check_oncall_access(): {}", error_text(&e)))
        .get(0)
}

/// `oncall.check_oncall_access(role)` in this session: may its session user assume `role` now?
pub fn may_assume(session: &mut Client, role: &str) -> bool {
    session
        .query_one("SELECT oncall.check_oncall_access($1::text::name)", &[&role])
        .unwrap_or_else(|e| panic!("check_oncall_access({role}): {}", error_text(&e)))
        .get(0)
}

/// `oncall.is_on_call(email)`.
pub fn is_on_call(session: &mut Client, email: &str) -> bool {
    session
        .query_one("SELECT oncall.is_on_call($1)", &[&email])
        .unwrap_or_else(|e| panic!("is_on_call({email}): {}", error_text(&e)))
        .get(0)
}

/// Inserts an open-ended manual shift for `email`.
pub fn add_manual_shift(admin: &mut Client, email: &str) {
    admin
        .execute("INSERT INTO oncall.shifts (source, email) VALUES ('manual', $1)", &[&email])
        .unwrap_or_else(|e| panic!("insert manual shift for {email}: {}", error_text(&e)));
}

/// `current_user` of this session.
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

/// The server error of `e` (panics on a client-side error).
pub fn db_error(e: &postgres::Error) -> &DbError {
    e.as_db_error().unwrap_or_else(|| panic!("expected a server error, got a client error: {e}"))
}

/// The value of a result that must succeed.
#[track_caller]
pub fn ok<T>(result: Result<T, postgres::Error>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {}", error_text(&e)))
}

/// `SELECT oncall.refresh()`: Ok, or the error's text.
pub fn try_refresh(c: &mut Client) -> Result<(), String> {
    c.batch_execute("SELECT oncall.refresh()").map_err(|e| error_text(&e))
}

/// Connection settings for `role` to database `postgres` with `options` in the startup
/// packet (after the harness's own `statement_timeout`).
pub fn with_options(cluster: &Cluster, role: &str, options: &str) -> Config {
    let mut config = cluster.config(role, "postgres");
    config.options(&format!("-c statement_timeout={STATEMENT_TIMEOUT} {options}"));
    config
}

/// The notices (NOTICE, WARNING...) a connection receives, collected as they arrive.
pub type Notices = Arc<Mutex<Vec<DbError>>>;

/// Connects with `config`, collecting the notices the server sends (also during the login).
pub fn try_connect_collecting(cluster: &Cluster, mut config: Config) -> (Result<Client, postgres::Error>, Notices) {
    let notices: Notices = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&notices);
    config.notice_callback(move |n| sink.lock().unwrap().push(n));
    (cluster.try_connect_with(&config), notices)
}

/// [`try_connect_collecting`] for a login that must succeed.
#[track_caller]
pub fn connect_collecting(cluster: &Cluster, config: Config) -> (Client, Notices) {
    let (client, notices) = try_connect_collecting(cluster, config);
    (client.unwrap_or_else(|e| panic!("connect: {}", error_text(&e))), notices)
}

/// Runs `sql` on `session` in a thread; the handle gives back the session, the result and
/// when the statement returned (joined with [`join_within`]).
pub fn spawn_query(mut session: Client, sql: String) -> JoinHandle<(Client, Result<(), postgres::Error>, Instant)> {
    std::thread::spawn(move || {
        let r = session.batch_execute(&sql);
        (session, r, Instant::now())
    })
}

/// Joins a thread, failing after `timeout`.
#[track_caller]
pub fn join_within<T: Send + 'static>(handle: JoinHandle<T>, timeout: Duration, what: &str) -> T {
    let start = Instant::now();
    while !handle.is_finished() {
        assert!(start.elapsed() < timeout, "{what}: still running after {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.join().unwrap_or_else(|_| panic!("{what}: the thread panicked"))
}

/// A fence in the server log, written by `session`'s own backend: returns once a LOG line
/// with a marker never used before is in the log. A backend writes its log lines in order
/// (the harness logs to a file, without the collector), so whatever `session` had logged
/// before — a decision line, say — is in the log by then: a test that must show that a
/// statement logged *nothing* reads the log after this fence instead of sleeping. Returns the
/// marker. (Other processes' lines are not ordered by it: use [`Cluster::sync_point`] or wait
/// for the line itself.)
#[track_caller]
pub fn log_fence(cluster: &Cluster, session: &mut Client) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let marker = format!("e2e-log-fence-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    session
        .batch_execute(&format!("DO $$ BEGIN RAISE LOG {}; END $$", quote_literal(&marker)))
        .unwrap_or_else(|e| panic!("log fence: {}", error_text(&e)));
    let offset = 0;
    assert!(
        wait_until(crate::PATIENCE, || cluster.log_since(offset).contains(&marker)),
        "log fence {marker} did not reach the server log\n{}",
        cluster.log_tail()
    );
    marker
}

/// A PagerDuty row of `oncall.shifts`: (email, user id, policy, level, schedule, starts,
/// ends, synced_at).
pub type PagerDutyRow = (
    String,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<chrono::DateTime<chrono::Utc>>,
);

/// Every PagerDuty row of `oncall.shifts`, sorted.
pub fn pd_rows(c: &mut Client) -> Vec<PagerDutyRow> {
    c.query(
        "SELECT email, pagerduty_user_id, escalation_policy_id, escalation_level, schedule_id, starts_at, ends_at, synced_at
           FROM oncall.shifts WHERE source = 'pagerduty'
          ORDER BY email, escalation_policy_id, escalation_level, starts_at NULLS FIRST",
        &[],
    )
    .unwrap_or_else(|e| panic!("PagerDuty rows: {}", error_text(&e)))
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7)))
    .collect()
}

/// What `oncall.status()` says about the sync.
#[derive(Debug)]
pub struct SyncStatus {
    pub token_configured: bool,
    pub last_success_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_error: Option<String>,
    pub stale: bool,
    pub shifts: i32,
    pub pages: i32,
    pub requests: i32,
    pub syncs_ok: i64,
    pub syncs_failed: i64,
}

/// `oncall.status()`.
pub fn sync_status(c: &mut Client) -> SyncStatus {
    let r = c
        .query_one(
            "SELECT token_configured, last_success_at, last_error, stale, shifts, pages, requests, syncs_ok, syncs_failed FROM oncall.status()",
            &[],
        )
        .unwrap_or_else(|e| panic!("oncall.status(): {}", error_text(&e)));
    SyncStatus {
        token_configured: r.get(0),
        last_success_at: r.get(1),
        last_error: r.get(2),
        stale: r.get(3),
        shifts: r.get(4),
        pages: r.get(5),
        requests: r.get(6),
        syncs_ok: r.get(7),
        syncs_failed: r.get(8),
    }
}
