//! End-to-end test harness for pg_oncall: real clusters started with initdb/pg_ctl (as the
//! `postgres` OS user), real client sessions over the Unix socket or TCP, and the fake
//! PagerDuty. The tests live in `tests/*.rs`, one file per guarantee of DESIGN.md; `README.md`
//! beside this crate maps each guarantee to its tests. `make test` runs them on every major,
//! `make test-major PG=17` on one (each from a private tree with the library just built).
//!
//! The harness, one copy of each helper:
//! - [`cluster`]: a throw-away cluster (start, standby, restart, configuration, logs, the
//!   [`Cluster::sync_point`] that replaces sleeps);
//! - [`team`]: the set-up a DBA would make (prod_admin gated, alice on call, bob not) and its
//!   shift controls;
//! - [`session`]: what a test does in a session (`may_assume`, `current_user`, threads,
//!   notices, log fences);
//! - [`refusal`]: the refusals as the contract words them (SQLSTATE, message, DETAIL, HINT);
//! - [`audit`]: the server log and pg_oncall's audit lines, parsed;
//! - this file: waiting on conditions, and table-driven cases that report each failure.
//!
//! Environment: `PG_CONFIG` (default `/usr/lib/postgresql/15/bin/pg_config`; `make test` sets
//! it to a private tree of the major under test), `PG_ONCALL_CHROOT` (the root file system the
//! server's programs run in, when they cannot run here: PostgreSQL 17, see
//! `scripts/provision.sh`), `E2E_KEEP`
//! (keep every cluster directory), `E2E_KEEP_FAILED` (keep those of failed tests),
//! `E2E_DEADLINE_SECS` (per-cluster watchdog, default 180).

pub mod audit;
pub mod cluster;
pub mod refusal;
pub mod session;
pub mod team;

pub use audit::*;
pub use cluster::{chroot_dir, error_text, quote_ident, quote_literal, server_major, wait_until, Builder, Cluster, PROBE_EMAIL, SYNC_WORKER};
pub use refusal::*;
pub use session::*;
pub use team::*;

use std::time::{Duration, Instant};

/// How long a test waits for something that normally takes milliseconds (a committed change
/// reaching decisions, a reload reaching a session, a log line) before it fails. Generous on
/// purpose: the machine running the suite may be loaded. Tests of the 1-second bound itself
/// (DESIGN.md guarantee 7, `propagation.rs`) use [`ONE_SECOND`] instead.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// DESIGN.md guarantee 7: committed changes reach every backend's decisions within 1 second.
pub const ONE_SECOND: Duration = Duration::from_secs(1);

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

/// Asserts that `f` holds within [`PATIENCE`] (a wait, not a bound under test).
#[track_caller]
pub fn eventually(what: &str, cluster: &Cluster, f: impl FnMut() -> bool) {
    within(what, PATIENCE, cluster, f)
}

/// Asserts that `f` holds within 1 s: DESIGN.md's bound for committed changes reaching
/// decisions (guarantee 7).
#[track_caller]
pub fn within_one_second(what: &str, cluster: &Cluster, f: impl FnMut() -> bool) {
    within(what, ONE_SECOND, cluster, f)
}

/// Table-driven cases that each report on their own: [`Cases::run`] runs one case, catching
/// its failure (the panic message is printed as usual), and [`Cases::finish`] fails once,
/// naming every case that failed, so the first failing case does not hide the others.
#[derive(Default)]
pub struct Cases {
    failed: Vec<String>,
    passed: usize,
}

impl Cases {
    pub fn new() -> Cases {
        Cases::default()
    }

    /// Runs case `name`.
    pub fn run(&mut self, name: &str, f: impl FnOnce()) {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(()) => self.passed += 1,
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let first_line = msg.lines().next().unwrap_or("").to_owned();
                self.failed.push(format!("{name}: {first_line}"));
            }
        }
    }

    /// Fails the test if any case failed, listing them all.
    #[track_caller]
    pub fn finish(self) {
        assert!(
            self.failed.is_empty(),
            "{} of {} cases failed:\n  {}",
            self.failed.len(),
            self.failed.len() + self.passed,
            self.failed.join("\n  ")
        );
    }
}
