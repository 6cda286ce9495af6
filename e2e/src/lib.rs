//! End-to-end test harness for pg_oncall: real clusters started with initdb/pg_ctl (as the
//! `postgres` OS user), real client sessions over the Unix socket or TCP, and the fake
//! PagerDuty. The tests live in `tests/*.rs`; `make test` runs them on every major, `make
//! test-major PG=17` on one (each from a private tree with the library just built).
//!
//! Environment: `PG_CONFIG` (default `/usr/lib/postgresql/15/bin/pg_config`; `make test` sets
//! it to a private tree of the major under test), `PG_ONCALL_CHROOT` (the root file system the
//! server's programs run in, when they cannot run here: PostgreSQL 17, see
//! `scripts/provision.sh`), `E2E_KEEP`
//! (keep every cluster directory), `E2E_KEEP_FAILED` (keep those of failed tests),
//! `E2E_DEADLINE_SECS` (per-cluster watchdog, default 180).

pub mod cluster;

pub use cluster::{chroot_dir, error_text, quote_ident, quote_literal, server_major, wait_until, Builder, Cluster, PROBE_EMAIL, SYNC_WORKER};

use std::time::{Duration, Instant};

use postgres::Client;

/// Polls `f` (every 10 ms) until it holds; `Some(time it took)` or `None` after `timeout`.
pub fn time_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts that `f` holds within `timeout`, and says how long it took.
#[track_caller]
pub fn within(what: &str, timeout: Duration, cluster: &Cluster, f: impl FnMut() -> bool) {
    match time_until(timeout, f) {
        Some(took) => eprintln!("{what}: {took:?}"),
        None => panic!("{what}: not within {timeout:?}\n{}", cluster.log_tail()),
    }
}

/// Asserts that `f` keeps holding for `d`.
#[track_caller]
pub fn holds_for(what: &str, d: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < d {
        assert!(f(), "{what}: stopped holding after {:?}", start.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
