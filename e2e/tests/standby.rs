//! End-to-end tests of hot standbys (issue "Ready for a DBA", item 4; DESIGN.md "Scale and
//! replicas"; README "Hot standby"): a streaming-replication standby enforces what the primary
//! synced, its worker neither syncs nor writes nor needs the token, changes on the primary reach
//! its decisions within seconds, it fails closed by `max_staleness` when replication stops, and
//! it enforces the copied `pg_oncall.snapshot` from its first connection.
//!
//! | case | test |
//! |---|---|
//! | the standby enforces what the primary synced (SET ROLE, check_oncall_access, whoami) | `standby_enforces_what_the_primary_synced` |
//! | its worker neither syncs nor writes nor needs the token, also after a reload with one | `standby_worker_neither_syncs_nor_writes_nor_needs_the_token` |
//! | PagerDuty and manual changes on the primary reach the standby's decisions | `primary_changes_reach_standby_decisions_within_seconds` |
//! | replication paused, the primary stopped: fails closed after `max_staleness` (manual shifts stay) | `standby_fails_closed_when_replication_stops` |
//! | the copied on-disk snapshot enforces from the first connection, even when the worker cannot load | `standby_enforces_the_copied_snapshot_from_its_first_connection` |
//! | `oncall.refresh()` on a standby says the sync happens on the primary | `refresh_on_a_standby_says_sync_happens_on_the_primary` |
//! | the standby's idle worker sleeps between its 1 s reload polls | `standby_worker_sleeps_between_reload_polls` |
//!
//! Elevations on a standby: `elevations.rs::a_standby_logs_elevations_but_does_not_record_them`.

use std::time::Duration;

use e2e::*;
use fake_pagerduty::{oncall, FakePagerDuty};
use postgres::error::{DbError, SqlState};
use postgres::Client;

// ------------------------------------------------------------------ helpers

/// A primary synced from the fake PagerDuty, with `prod_admin` (NOLOGIN, gated, any policy) and
/// the NOINHERIT login members `alice`, `bob`, `carol` (identities `<name>@example.com`);
/// alice is on call in PagerDuty, bob and carol are not. Returns once the primary decides so.
fn primary_with_team(extra_conf: &[&str]) -> (Cluster, FakePagerDuty) {
    let (primary, fake) = Cluster::start_with_pagerduty(extra_conf, TOKEN);
    let mut admin = primary.connect();
    admin
        .batch_execute(
            "CREATE ROLE prod_admin NOLOGIN;
             CREATE ROLE alice LOGIN NOINHERIT;
             CREATE ROLE bob LOGIN NOINHERIT;
             CREATE ROLE carol LOGIN NOINHERIT;
             GRANT prod_admin TO alice, bob, carol;
             INSERT INTO oncall.identities VALUES
                ('alice', 'alice@example.com'), ('bob', 'bob@example.com'), ('carol', 'carol@example.com');
             SELECT oncall.gate_role('prod_admin');",
        )
        .unwrap_or_else(|e| panic!("team set-up: {}", error_text(&e)));
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1)]);
    primary.refresh();
    let mut alice = primary.connect_as("alice");
    let mut bob = primary.connect_as("bob");
    assert!(
        wait_until(PATIENCE, || may_assume(&mut alice, GATED) && !may_assume(&mut bob, GATED)),
        "the primary did not decide from the synced shifts\n{}",
        primary.log_tail()
    );
    (primary, fake)
}

/// `SET ROLE prod_admin` and a statement as that role (checking `current_user`), then
/// `RESET ROLE` (never refused). Access that ends between the two statements — the data going
/// stale, say — refuses the second one: that refusal is returned like the first's.
fn set_role(session: &mut Client) -> Result<(), DbError> {
    let result = session
        .batch_execute("SET ROLE prod_admin")
        .and_then(|()| session.query_one("SELECT current_user::text", &[]))
        .map(|row| row.get::<_, String>(0));
    session.batch_execute("RESET ROLE").unwrap_or_else(|e| panic!("RESET ROLE: {}", error_text(&e)));
    match result {
        Ok(user) => {
            assert_eq!(user, GATED, "SET ROLE succeeded, so current_user is the gated role");
            Ok(())
        }
        Err(e) => Err(e.as_db_error().unwrap_or_else(|| panic!("a client error instead of a refusal: {e}")).clone()),
    }
}

/// Asserts that `SET ROLE prod_admin` is refused with 42501 and a DETAIL containing `reason`.
#[track_caller]
fn assert_switch_refused(session: &mut Client, who: &str, reason: &str) {
    match set_role(session) {
        Ok(()) => panic!("{who}: SET ROLE {GATED} succeeded, expected a refusal"),
        Err(db) => {
            assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{who}: SQLSTATE: {} {:?}", db.message(), db.detail());
            assert!(db.message().contains(GATED), "{who}: the message names the role: {}", db.message());
            let detail = db.detail().unwrap_or_default();
            assert!(detail.contains(reason), "{who}: DETAIL {detail:?} should contain {reason:?}");
        }
    }
}

#[track_caller]
fn assert_switch_allowed(session: &mut Client, who: &str) {
    if let Err(db) = set_role(session) {
        panic!("{who}: SET ROLE {GATED} refused: {} DETAIL: {:?}", db.message(), db.detail());
    }
}

/// Whether `SET ROLE prod_admin` is refused because the data is stale.
fn refused_as_stale(session: &mut Client) -> bool {
    matches!(set_role(session), Err(db) if db.code() == &SqlState::INSUFFICIENT_PRIVILEGE && db.detail().unwrap_or_default().contains("stale"))
}


/// Every PagerDuty row of `oncall.shifts`, as text, sorted.
fn pagerduty_rows(c: &mut Client) -> Vec<String> {
    c.query("SELECT s::text FROM oncall.shifts AS s WHERE source = 'pagerduty' ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Server-log lines that would betray a sync or a write attempt by the worker (or its exit).
fn sync_or_write_lines(log: &str) -> Vec<&str> {
    let needles = [
        "PagerDuty sync",
        "token file",
        "no PagerDuty token",
        "storing the synced shifts",
        "could not record the sync failure",
        "read-only transaction",
        "cannot execute",
        "during recovery",
        "\"pg_oncall sync\" (PID",
    ];
    log.lines().filter(|l| needles.iter().any(|n| l.contains(n))).collect()
}

// ------------------------------------------------------------------ tests

#[test]
fn standby_enforces_what_the_primary_synced() {
    let (primary, _fake) = primary_with_team(&[]);
    let standby = Cluster::standby_of(&primary);
    assert!(standby.in_recovery() && !primary.in_recovery());

    let mut alice = standby.connect_as("alice");
    assert_switch_allowed(&mut alice, "alice on the standby");
    assert!(check_access(&mut alice), "check_oncall_access() on the standby: alice is on call");
    let (on_call, assumable): (bool, Vec<String>) = {
        let r = alice.query_one("SELECT on_call, assumable_roles FROM oncall.whoami()", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    assert!(on_call && assumable == [GATED], "whoami() on the standby: on_call {on_call}, assumable {assumable:?}");

    let mut bob = standby.connect_as("bob");
    assert_switch_refused(&mut bob, "bob on the standby", "not on call");
    assert!(!check_access(&mut bob), "check_oncall_access() on the standby: bob is not on call");
    let user: String = bob.query_one("SELECT current_user::text", &[]).unwrap().get(0);
    assert_eq!(user, "bob", "the refusal left bob's role unchanged");

    // The standby's rows are the primary's, replicated (same synced_at and all).
    assert!(standby.wait_caught_up(&primary, Duration::from_secs(10)), "replay caught up\n{}", standby.log_tail());
    let on_primary = pagerduty_rows(&mut primary.connect());
    assert_eq!(on_primary.len(), 1, "the primary holds alice's PagerDuty shift: {on_primary:?}");
    assert_eq!(pagerduty_rows(&mut standby.connect()), on_primary, "oncall.shifts on the standby = on the primary");
}

#[test]
fn standby_worker_neither_syncs_nor_writes_nor_needs_the_token() {
    let (primary, fake) = primary_with_team(&[]);
    // The copied postgresql.conf names the primary's token file: point it at nothing.
    let standby = Cluster::builder()
        .conf(&["pg_oncall.pagerduty_token_file = '/nonexistent/pg_oncall-e2e.token'"])
        .start_standby(&primary);
    fake.clear_requests();
    let unreadable: String = standby.connect().query_one("SHOW pg_oncall.pagerduty_token_file", &[]).unwrap().get(0);
    assert_eq!(unreadable, "/nonexistent/pg_oncall-e2e.token");

    // It enforces without a token.
    let mut alice = standby.connect_as("alice");
    let mut bob = standby.connect_as("bob");
    assert_switch_allowed(&mut alice, "alice on a standby without a token");
    assert_switch_refused(&mut bob, "bob on a standby without a token", "not on call");

    // Something that must NOT happen: a sync. A worker syncs, if it does, in the same loop turn
    // as the reload it makes at start; the sync point (a probe committed on the primary, seen
    // and then seen gone on the standby) waits for two later turns, so a sync would have been
    // made (and its request received) by then. The same worker all along.
    let worker = standby.worker_pid().expect("the standby's sync worker runs");
    standby.sync_point();
    assert_eq!(standby.worker_pid(), Some(worker), "the standby's sync worker kept running\n{}", standby.log_tail());
    assert!(fake.requests().is_empty(), "the standby called PagerDuty: {:?}", fake.requests());
    let log = standby.log();
    assert!(sync_or_write_lines(&log).is_empty(), "sync or write attempts in the standby's log: {:?}", sync_or_write_lines(&log));

    // A readable token and a reload (which makes a primary's worker sync at once) change nothing.
    let token = standby.token_file(TOKEN);
    standby.alter_system("pg_oncall.pagerduty_token_file", &quote_literal(&token.to_string_lossy()));
    // As above: the worker handles the reload at the top of a loop turn, where a primary's
    // would sync; two later turns have passed after the sync point.
    standby.sync_point();
    assert!(fake.requests().is_empty(), "the standby called PagerDuty after a reload with a token: {:?}", fake.requests());
    let log = standby.log();
    assert!(sync_or_write_lines(&log).is_empty(), "sync or write attempts in the standby's log: {:?}", sync_or_write_lines(&log));
    assert_switch_allowed(&mut alice, "alice after the reload");
    assert_switch_refused(&mut bob, "bob after the reload", "not on call");
    // The status the standby shows is the primary's, replicated.
    let status = "SELECT last_success_at::text, syncs_ok, syncs_failed FROM oncall.status()";
    let on_standby: (Option<String>, i64, i64) = {
        let r = standby.connect().query_one(status, &[]).unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    let on_primary: (Option<String>, i64, i64) = {
        let r = primary.connect().query_one(status, &[]).unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(on_standby, on_primary, "oncall.status() on the standby is the primary's sync state");
    standby.assert_secret_hidden(TOKEN);
}

#[test]
fn primary_changes_reach_standby_decisions_within_seconds() {
    let (primary, fake) = primary_with_team(&[]);
    let mut admin = primary.connect();
    add_manual_shift(&mut admin, "carol@example.com");
    let standby = Cluster::standby_of(&primary);
    let mut alice = standby.connect_as("alice");
    let mut bob = standby.connect_as("bob");
    let mut carol = standby.connect_as("carol");
    assert_switch_refused(&mut bob, "bob before the handover", "not on call");
    assert_switch_allowed(&mut carol, "carol with her manual shift");

    // Handover in PagerDuty, synced on the primary: bob on, alice off, on the standby.
    fake.set_oncalls(vec![oncall("bob@example.com", "EP1", 1)]);
    primary.refresh();
    let limit = Duration::from_secs(10);
    within("PagerDuty handover → bob allowed on the standby", limit, &standby, || may_assume(&mut bob, GATED));
    within("PagerDuty handover → alice refused on the standby", limit, &standby, || !may_assume(&mut alice, GATED));
    assert_switch_allowed(&mut bob, "bob after the handover");
    assert_switch_refused(&mut alice, "alice after the handover", "not on call");

    // Revoking a manual shift on the primary revokes on the standby (manual shifts never go
    // stale: only replication can end this access), and a new one grants.
    admin.execute("DELETE FROM oncall.shifts WHERE email = 'carol@example.com'", &[]).unwrap();
    within("manual shift deleted on the primary → carol refused on the standby", limit, &standby, || !may_assume(&mut carol, GATED));
    assert_switch_refused(&mut carol, "carol after her shift was deleted", "not on call");
    add_manual_shift(&mut admin, "carol@example.com");
    within("manual shift inserted on the primary → carol allowed on the standby", limit, &standby, || may_assume(&mut carol, GATED));
    assert_switch_allowed(&mut carol, "carol with a new manual shift");
}

#[test]
fn standby_fails_closed_when_replication_stops() {
    // The primary syncs every second, so the replicated last_success_at stays younger than the
    // standby's max_staleness for as long as replication runs.
    let max_staleness = Duration::from_secs(4);
    let (primary, _fake) = primary_with_team(&["pg_oncall.refresh_interval = '1s'"]);
    add_manual_shift(&mut primary.connect(), "carol@example.com");
    let standby = Cluster::builder().conf(&["pg_oncall.max_staleness = '4s'"]).start_standby(&primary);
    let mut alice = standby.connect_as("alice");
    let mut carol = standby.connect_as("carol");
    let mut admin = standby.connect();
    let stale = |c: &mut Client| -> bool { c.query_one("SELECT stale FROM oncall.status()", &[]).unwrap().get(0) };

    // Something that must NOT happen while replication runs: staleness. Alice stays allowed
    // until the standby has replayed a sync that succeeded more than max_staleness after the
    // first one it saw — had the standby judged by its own clock or an old sync, she would
    // have been refused by then.
    let last_success = |c: &mut Client| -> chrono::DateTime<chrono::Utc> {
        c.query_one("SELECT last_success_at FROM oncall.status()", &[]).unwrap().get::<_, Option<_>>(0).expect("a successful sync")
    };
    let first = last_success(&mut admin);
    let later = first + chrono::Duration::from_std(max_staleness).unwrap() + chrono::Duration::seconds(1);
    assert!(
        wait_until(max_staleness + PATIENCE, || {
            assert!(may_assume(&mut alice, GATED), "alice refused on the standby while replication runs\n{}", standby.log_tail());
            last_success(&mut admin) > later
        }),
        "the standby did not replay a sync newer than max_staleness after {first}\n{}",
        standby.log_tail()
    );
    assert_switch_allowed(&mut alice, "alice while replicating");
    assert_switch_allowed(&mut carol, "carol (manual shift) while replicating");
    assert!(!stale(&mut admin), "oncall.status() on the standby: fresh while replicating");

    // 1. Replication paused, both servers up: PagerDuty shifts stop granting on the standby.
    standby.pause_replication();
    let limit = max_staleness + PATIENCE;
    within("replication paused → alice refused (stale) on the standby", limit, &standby, || refused_as_stale(&mut alice));
    assert!(!may_assume(&mut alice, GATED), "check_oncall_access agrees");
    assert_switch_allowed(&mut carol, "carol (manual shift) while replication is paused");
    assert!(stale(&mut admin), "oncall.status() on the standby: stale");
    assert!(may_assume(&mut primary.connect_as("alice"), GATED), "the primary, still syncing, keeps granting alice");

    // Replication resumed: fresh again.
    standby.resume_replication();
    within("replication resumed → alice allowed again on the standby", PATIENCE, &standby, || may_assume(&mut alice, GATED));
    assert_switch_allowed(&mut alice, "alice after the resume");

    // 2. The primary goes away: the standby keeps serving reads and fails closed.
    primary.stop();
    within("primary stopped → alice refused (stale) on the standby", limit, &standby, || refused_as_stale(&mut alice));
    assert_switch_refused(&mut alice, "alice with the primary gone", "stale");
    assert_switch_allowed(&mut carol, "carol (manual shift) with the primary gone");
    assert!(check_access(&mut standby.connect_as("carol")), "a new session of carol's is on call too");
    assert!(standby.in_recovery(), "still a standby");
}

#[test]
fn standby_enforces_the_copied_snapshot_from_its_first_connection() {
    let (primary, _fake) = primary_with_team(&[]);

    // A standby whose worker never loads (its database does not exist): only the
    // pg_oncall.snapshot copied by pg_basebackup can gate, and it does.
    let offset = 0;
    let standby = Cluster::builder()
        .conf(&["pg_oncall.database = 'no_such_database'"])
        .no_wait_ready()
        .start_standby(&primary);
    let mut bob = standby.connect_as("bob");
    assert_switch_refused(&mut bob, "bob at the first connection to a standby whose worker cannot load", "not on call");
    let mut alice = standby.connect_as("alice");
    assert_switch_allowed(&mut alice, "alice at the first connection to a standby whose worker cannot load");
    assert!(
        standby.wait_for_log(offset, "does not exist; waiting", PATIENCE),
        "the launcher waits for the missing database\n{}",
        standby.log_tail()
    );
    assert_eq!(standby.worker_pid(), None, "no sync worker runs");
    // The launcher has given up loading (it said so): still enforced, from the copied file.
    assert_switch_refused(&mut standby.connect_as("bob"), "bob once the launcher waits", "not on call");
    assert_switch_allowed(&mut standby.connect_as("alice"), "alice once the launcher waits");
    drop(standby);

    // A normal standby: enforced from the very first connection, whether the worker has loaded yet or not.
    let standby = Cluster::builder().no_wait_ready().start_standby(&primary);
    assert_switch_refused(&mut standby.connect_as("bob"), "bob at the first connection to a fresh standby", "not on call");
    assert_switch_allowed(&mut standby.connect_as("alice"), "alice at the first connection to a fresh standby");
}

#[test]
fn refresh_on_a_standby_says_sync_happens_on_the_primary() {
    let (primary, fake) = primary_with_team(&[]);
    let standby = Cluster::builder().no_wait_ready().start_standby(&primary);
    fake.clear_requests();
    let mut admin = standby.connect();
    for sql in ["SELECT oncall.refresh()", "SELECT oncall.refresh(false)", "SELECT oncall.refresh(true, '1s')"] {
        let e = admin.batch_execute(sql).expect_err("oncall.refresh() on a standby must fail");
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: a client error: {e}"));
        assert_eq!(db.code(), &SqlState::READ_ONLY_SQL_TRANSACTION, "{sql}: {}", error_text(&e));
        assert!(db.message().contains("standby") && db.message().contains("primary"), "{sql}: a clear message: {}", error_text(&e));
    }
    assert!(fake.requests().is_empty(), "refresh() on the standby reached PagerDuty: {:?}", fake.requests());
    // The primary still syncs on request.
    primary.refresh();
    assert!(!fake.requests().is_empty(), "refresh() on the primary calls PagerDuty");
}

/// Voluntary context switches of process `pid` (each sleep on its latch is one).
fn wakeups(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no voluntary_ctxt_switches in /proc/{pid}/status"))
}

#[test]
fn standby_worker_sleeps_between_reload_polls() {
    let (primary, _fake) = primary_with_team(&[]);
    let standby = Cluster::standby_of(&primary);
    let worker = standby.worker_pid().expect("the standby's sync worker runs");
    let before = wakeups(worker);
    // A rate measured over a fixed interval (not a wait for something to happen).
    std::thread::sleep(Duration::from_secs(3));
    let woke = wakeups(worker) - before;
    assert_eq!(standby.worker_pid(), Some(worker), "the same worker all along");
    // One reload poll a second (STANDBY_RELOAD), each a few sleeps at most; a 10 ms loop makes ~300.
    eprintln!("standby worker: {woke} sleeps in 3 s");
    assert!(woke <= 30, "the standby's idle worker slept {woke} times in 3 s (a reload poll every second is ~3)");
}
