//! DESIGN.md guarantee 4 and the README's fail-closed rules: PagerDuty shifts grant nothing
//! once the last successful sync is older than `max_staleness` (and nothing before the first
//! sync), judged at each statement's own timestamp, while manual shifts are not subject to
//! staleness; a snapshot that does not fit shared memory is refused whole and the previous one
//! stays. (A failed sync keeps the previous rows: `sync_faults.rs`; a standby whose replication
//! stops: `standby.rs`; the on-disk snapshot at start: `lifecycle.rs`.)
//!
//! | case | test |
//! |---|---|
//! | never synced, fresh, 20 minutes old, `max_staleness` raised: PagerDuty rows grant only while fresh; manual rows always | `manual_rows_grant_while_pagerduty_rows_are_stale` |
//! | a synced shift stops granting exactly when the data goes stale (PagerDuty down), and grants again after a successful sync | `stale_pagerduty_rows_stop_granting_manual_rows_do_not` |
//! | 30 shifts with `max_shifts = 16`: refused whole, said once, doctor reports it; the previous snapshot decides | `snapshot_overflow_keeps_the_previous_snapshot` |

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use e2e::*;
use fake_pagerduty::{oncall, Fault};
use postgres::Client;

#[test]
fn manual_rows_grant_while_pagerduty_rows_are_stale() {
    let cluster = Cluster::start(&[]);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "pd@x.test");
    let mut pd = cluster.connect_as("pd@x.test");
    let last_success: Option<DateTime<Utc>> = admin.query_one("SELECT last_success_at FROM oncall.sync_state", &[]).unwrap().get(0);
    assert_eq!(last_success, None, "no token, never synced");
    admin
        .batch_execute(
            "INSERT INTO oncall.shifts (source, email, pagerduty_user_id, escalation_policy_id, escalation_level, schedule_id, synced_at)
                  VALUES ('pagerduty', 'pd@x.test', 'PPD0001', 'EP1', 1, 'S1', now()),
                         ('manual', 'man@x.test', NULL, NULL, NULL, NULL, NULL);",
        )
        .unwrap();
    eventually("manual row grants without any sync", &cluster, || is_on_call(&mut admin, "man@x.test"));
    assert!(!is_on_call(&mut admin, "pd@x.test"), "a PagerDuty row never synced (last_success_at NULL) grants nothing");
    assert!(!check_access(&mut pd));
    let stale: bool = admin.query_one("SELECT stale FROM oncall.status()", &[]).unwrap().get(0);
    assert!(stale, "status says stale before any successful sync");

    admin.execute("UPDATE oncall.sync_state SET last_success_at = now()", &[]).unwrap();
    eventually("last_success_at = now() → the PagerDuty row grants", &cluster, || check_access(&mut pd));
    assert!(is_on_call(&mut admin, "pd@x.test"));
    let stale: bool = admin.query_one("SELECT stale FROM oncall.status()", &[]).unwrap().get(0);
    assert!(!stale);

    // Older than max_staleness (default 15 min): fail closed for PagerDuty rows only.
    admin.execute("UPDATE oncall.sync_state SET last_success_at = now() - interval '20 minutes'", &[]).unwrap();
    eventually("last success 20 min ago → the PagerDuty row stops granting", &cluster, || !check_access(&mut pd));
    assert!(!is_on_call(&mut admin, "pd@x.test"));
    assert!(is_on_call(&mut admin, "man@x.test"), "manual rows are not subject to max_staleness");
    let stale: bool = admin.query_one("SELECT stale FROM oncall.status()", &[]).unwrap().get(0);
    assert!(stale);

    // Raising max_staleness past the data's age makes it fresh again, with no table change.
    cluster.alter_system("pg_oncall.max_staleness", "'1h'");
    eventually("max_staleness = 1h: fresh again", &cluster, || check_access(&mut pd));
}

#[test]
fn stale_pagerduty_rows_stop_granting_manual_rows_do_not() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&["pg_oncall.max_staleness = '3s'"], TOKEN);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "alice@example.com");
    create_login_role(&mut admin, "bob@example.com");
    let mut alice = cluster.connect_as("alice@example.com");
    let mut bob = cluster.connect_as("bob@example.com");
    add_manual_shift(&mut admin, "bob@example.com");
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1)]);
    cluster.refresh();
    fake.set_persistent_fault(Some(Fault::Status { code: 503, body: None, headers: vec![] }));
    let stale_at = sync_status(&mut admin).last_success_at.unwrap() + chrono::Duration::seconds(3);
    // Wait for the grant, or for the data to go stale (the loop below then fails: never fresh).
    eventually("the fresh PagerDuty shift grants, or went stale", &cluster, || Utc::now() >= stale_at || check_access(&mut alice));
    // Every answer must match the data's age at the statement's own timestamp.
    let (mut saw_fresh, mut saw_stale) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(3) + PATIENCE;
    while Instant::now() < deadline && !saw_stale {
        let row = alice.query_one("SELECT oncall.check_oncall_access(), statement_timestamp() < $1", &[&stale_at]).unwrap();
        let (got, fresh): (bool, bool) = (row.get(0), row.get(1));
        assert_eq!(got, fresh, "alice at a statement {} the data goes stale ({stale_at})", if fresh { "before" } else { "after" });
        saw_fresh |= got;
        saw_stale |= !got;
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(saw_fresh && saw_stale, "fresh, then stale after max_staleness");
    assert!(check_access(&mut bob), "manual shifts ignore max_staleness");
    assert!(sync_status(&mut admin).stale);
    assert!(try_refresh(&mut admin).is_err(), "PagerDuty still failing");
    assert!(!check_access(&mut alice));
    fake.set_persistent_fault(None);
    cluster.refresh();
    eventually("a successful sync makes it fresh again", &cluster, || check_access(&mut alice));
    cluster.assert_secret_hidden(TOKEN);
}

#[test]
fn snapshot_overflow_keeps_the_previous_snapshot() {
    let cluster = Cluster::start(&["pg_oncall.max_shifts = 16"]);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "alice@example.com");
    let mut alice = cluster.connect_as("alice@example.com");
    admin
        .batch_execute(
            "INSERT INTO oncall.shifts (source, email, starts_at, ends_at)
             SELECT 'manual', 'alice@example.com', now() - i * interval '1 minute', now() + i * interval '1 hour'
               FROM generate_series(1, 10) AS i",
        )
        .unwrap();
    eventually("10 shifts fit in 16", &cluster, || check_access(&mut alice));

    let offset = cluster.log_len();
    admin
        .batch_execute(
            "BEGIN;
             INSERT INTO oncall.shifts (source, email) SELECT 'manual', 'extra' || i || '@x.test' FROM generate_series(1, 10) AS i;
             INSERT INTO oncall.shifts (source, email) SELECT 'manual', 'extra' || i || '@x.test' FROM generate_series(11, 20) AS i;
             COMMIT;",
        )
        .unwrap();
    assert!(
        cluster.wait_for_log(offset, "does not fit", PATIENCE),
        "no 'does not fit' line after 30 shifts with max_shifts = 16\n{}",
        cluster.log_tail()
    );
    let log = cluster.log_since(offset);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("does not fit")).collect();
    assert!(lines[0].contains("pg_oncall.max_shifts"), "the line names the setting: {}", lines[0]);
    assert!(lines[0].contains("30") && lines[0].contains("16"), "the line says how many and the capacity: {}", lines[0]);
    // The line is written by the reload that refused the bigger snapshot: whatever alice's
    // session decides from now on comes from the snapshot that stayed.
    assert!(check_access(&mut alice), "alice keeps access from the previous snapshot");
    assert!(!is_on_call(&mut admin, "extra1@x.test"), "rows of the refused snapshot grant nothing");
    let lines = cluster.log_since(offset).lines().filter(|l| l.contains("does not fit")).count();
    assert_eq!(lines, 1, "said once per change, not once per wake-up");
    let overflow_findings = |admin: &mut Client| -> i64 {
        admin
            .query_one("SELECT count(*) FROM oncall.doctor() WHERE object = 'shared memory'", &[])
            .unwrap()
            .get(0)
    };
    assert_eq!(overflow_findings(&mut admin), 1, "doctor() reports the overflow, not only the log");

    admin.execute("DELETE FROM oncall.shifts WHERE email LIKE 'extra%'", &[]).unwrap();
    add_manual_shift(&mut admin, "late@x.test");
    eventually("after the delete, new changes apply again", &cluster, || is_on_call(&mut admin, "late@x.test"));
    assert_eq!(overflow_findings(&mut admin), 0, "the finding goes once a snapshot fits again");
    admin.execute("DELETE FROM oncall.shifts WHERE email = 'alice@example.com'", &[]).unwrap();
    eventually("and alice's delete applies", &cluster, || !check_access(&mut alice));
}
