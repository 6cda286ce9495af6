//! The worker's and the extension's life cycle (DESIGN.md "Data flow", README "Fail-closed
//! rules" and "Operations"): the snapshot restored from disk at start (also when the worker
//! cannot load, and while PagerDuty is down), the launcher waiting for a missing database
//! without a restart loop, a terminated worker coming back, signals honoured during a slow
//! request, the library refusing to load unless preloaded, and `DROP EXTENSION` ending the gate.
//!
//! | case | test |
//! |---|---|
//! | a restart whose worker cannot load (`pg_oncall.database` missing): the on-disk snapshot gates | `restart_with_an_unloadable_worker_keeps_the_gate_from_disk` |
//! | a restart while PagerDuty is down: decisions from the durable table before any sync | `decisions_survive_a_restart_while_pagerduty_is_down` |
//! | `pg_oncall.database` missing: said once, no restart loop, the worker starts when it appears | `missing_worker_database_is_reported_once` |
//! | `pg_terminate_backend` of the worker: decisions go on, it comes back and serves | `worker_comes_back_after_termination` |
//! | SIGHUP and SIGTERM during a 30 s request | `signals_are_honoured_during_a_slow_request` |
//! | not in `shared_preload_libraries`: LOAD and the functions refuse, doctor says so | `the_library_refuses_to_load_unless_preloaded` |
//! | `DROP EXTENSION pg_oncall` ungates (open and new sessions) | `drop_extension_ungates_within_seconds` |
//! | `DROP EXTENSION` then a restart: the on-disk snapshot does not gate again | `drop_extension_then_restart_ungates` |

use std::time::{Duration, Instant};

use e2e::*;
use fake_pagerduty::{oncall, Fault};
use postgres::error::SqlState;

#[test]
fn restart_with_an_unloadable_worker_keeps_the_gate_from_disk() {
    let mut cluster = Cluster::builder().no_wait_ready().start();
    cluster.wait_ready();
    let mut admin = setup_team(&cluster, "");
    assert_refused(cluster.connect_as("bob").batch_execute("SET ROLE prod_admin"), GATED, BOB_EMAIL, "before the restart");
    // Let the worker publish (and so save) what was committed: the team set-up waited for it.
    admin.batch_execute("ALTER SYSTEM SET pg_oncall.database = 'no_such_database'").unwrap();
    drop(admin);
    let offset = cluster.log_len();
    cluster.restart();
    let mut admin = cluster.connect();
    let database: String = admin.query_one("SHOW pg_oncall.database", &[]).unwrap().get(0);
    assert_eq!(database, "no_such_database", "the restart applied the postmaster setting");

    // bob is still refused: the snapshot came back from disk.
    let mut bob = cluster.connect_as("bob");
    assert_refused(bob.batch_execute("SET ROLE prod_admin"), GATED, BOB_EMAIL, "after the restart");
    assert_eq!(current_user(&mut bob), "bob");
    assert_refused(bob.query_one("SELECT set_config('role', $1, false)", &[&GATED]), GATED, BOB_EMAIL, "set_config after the restart");
    expect_audit(&cluster, offset, "deny", "set_role", "bob", GATED);
    // An ungated role still works.
    bob.batch_execute("SET ROLE readers").unwrap_or_else(|e| panic!("SET ROLE readers: {}", error_text(&e)));
    assert_eq!(current_user(&mut bob), "readers");
    bob.batch_execute("RESET ROLE").unwrap();
    // alice's shift came back too.
    let mut alice = cluster.connect_as("alice");
    alice.batch_execute("SET ROLE prod_admin").unwrap_or_else(|e| panic!("alice after the restart: {}", error_text(&e)));
    assert_eq!(current_user(&mut alice), GATED);
    alice.batch_execute("SELECT count(*) FROM work.t; RESET ROLE").unwrap();
    // Once the launcher has found that the worker cannot load (it says so, and waits), still
    // refused: nothing but the on-disk snapshot gates.
    assert!(
        cluster.wait_for_log(offset, "does not exist; waiting for it", PATIENCE),
        "the launcher did not report the missing database\n{}",
        cluster.log_tail()
    );
    assert_eq!(cluster.worker_pid(), None, "no sync worker runs");
    assert_refused(cluster.connect_as("bob").batch_execute("SET ROLE prod_admin"), GATED, BOB_EMAIL, "after the worker failed to load");
    assert!(may_assume(&mut cluster.connect_as("alice"), GATED), "alice's shift still grants from the on-disk snapshot");
}

#[test]
fn decisions_survive_a_restart_while_pagerduty_is_down() {
    let (mut cluster, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "alice@example.com");
    create_login_role(&mut admin, "carol@example.com");
    add_manual_shift(&mut admin, "carol@example.com");
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1)]);
    cluster.refresh();
    let rows = pd_rows(&mut admin);
    drop(admin);
    fake.set_persistent_fault(Some(Fault::Status { code: 503, body: None, headers: vec![] }));
    let offset = cluster.log_len();
    cluster.restart();
    // The snapshot is rebuilt from the durable table: decisions work before PagerDuty answers.
    let mut alice = cluster.connect_as("alice@example.com");
    let mut carol = cluster.connect_as("carol@example.com");
    assert!(check_access(&mut alice), "PagerDuty rows (synced minutes ago) grant after a restart\n{}", cluster.log_tail());
    assert!(check_access(&mut carol), "manual rows grant after a restart");
    let mut admin = cluster.connect();
    assert!(
        cluster.wait_for_log(offset, "server error 503", PATIENCE),
        "the start-up sync after the restart tried PagerDuty and failed\n{}",
        cluster.log_tail()
    );
    assert_eq!(pd_rows(&mut admin), rows, "a failed sync after a restart keeps the rows");
    assert!(check_access(&mut alice));
    fake.set_persistent_fault(None);
    cluster.refresh();
    cluster.assert_secret_hidden(TOKEN);
}

#[test]
fn missing_worker_database_is_reported_once() {
    let cluster = Cluster::builder().conf(&["pg_oncall.database = 'no_such_db'"]).no_wait_ready().start();
    let missing = |log: &str| log.lines().filter(|l| l.contains("\"no_such_db\"") && l.contains("does not exist")).count();
    assert!(
        wait_until(PATIENCE, || missing(&cluster.log()) >= 1),
        "the log never says that database no_such_db does not exist\n{}",
        cluster.log_tail()
    );
    // Something that must NOT happen: a restart loop. A launcher that exited would be started
    // again by the postmaster after its restart time (5 s) and say the line again, under a new
    // pid; one that did not wait quietly would say it again at its next recheck (every 5 s).
    // Watching for 7 s — longer than both — with the same launcher and a single line shows
    // that it waits.
    let launcher = |c: &Cluster| -> Option<i32> {
        c.connect().query_opt("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_oncall launcher'", &[]).ok().flatten().map(|r| r.get(0))
    };
    let first = launcher(&cluster).expect("the launcher runs");
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(7) {
        assert_eq!(launcher(&cluster), Some(first), "the launcher restarted after {:?}\n{}", watched.elapsed(), cluster.log_tail());
        assert_eq!(missing(&cluster.log()), 1, "said again after {:?} (restart loop?)\n{}", watched.elapsed(), cluster.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = cluster.log();
    for bad in ["exited with exit code", "terminated by signal", "FATAL", "PANIC"] {
        assert!(!log.contains(bad), "unexpected '{bad}' in the log:\n{log}");
    }
    assert_eq!(cluster.worker_pid(), None, "no sync worker without its database");

    // Ungated sessions work normally, and decisions answer (nothing is loaded: not on call).
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "plain@x.test");
    admin.batch_execute("CREATE TABLE public.t (v int); GRANT ALL ON public.t TO \"plain@x.test\";").unwrap();
    add_manual_shift(&mut admin, "plain@x.test");
    let mut plain = cluster.connect_as("plain@x.test");
    plain.batch_execute("INSERT INTO public.t VALUES (1), (2)").unwrap();
    let n: i64 = plain.query_one("SELECT count(*) FROM public.t", &[]).unwrap().get(0);
    assert_eq!(n, 2);
    assert!(!check_access(&mut plain), "no worker, no snapshot: nothing grants");
    let err = admin.batch_execute("SELECT oncall.refresh()").map_err(|e| error_text(&e)).expect_err("refresh without a worker");
    assert!(err.contains("sync worker is not running") && err.contains("no_such_db"), "{err}");
    let mut tcp = cluster.connect_tcp_as("plain@x.test");
    let addr: Option<String> = tcp.query_one("SELECT host(inet_client_addr())", &[]).unwrap().get(0);
    assert_eq!(addr.as_deref(), Some("127.0.0.1"), "connect_tcp_as goes over TCP");
    let addr: Option<String> = plain.query_one("SELECT host(inet_client_addr())", &[]).unwrap().get(0);
    assert_eq!(addr, None, "connect_as goes over the Unix socket");

    // Once the database appears, the launcher starts the worker there, which waits for the
    // extension quietly and then loads the snapshot.
    let offset = cluster.log_len();
    admin.batch_execute("CREATE DATABASE no_such_db").unwrap();
    assert!(
        wait_until(PATIENCE, || cluster.worker_pid().is_some()),
        "the worker did not start within {PATIENCE:?} of CREATE DATABASE\n{}",
        cluster.log_tail()
    );
    let mut db_admin = cluster.connect_db("postgres", "no_such_db");
    db_admin.batch_execute("CREATE EXTENSION pg_oncall").unwrap();
    add_manual_shift(&mut db_admin, "plain@x.test");
    assert!(
        wait_until(PATIENCE, || check_access(&mut plain)),
        "the worker in no_such_db loads its tables\n{}",
        cluster.log_tail()
    );
    let log = cluster.log_since(offset);
    assert!(!log.contains("FATAL") && !log.contains("exited with exit code"), "{log}");
}

#[test]
fn worker_comes_back_after_termination() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&[], TOKEN);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "alice@example.com");
    create_login_role(&mut admin, "carol@example.com");
    create_login_role(&mut admin, "dave@example.com");
    let mut alice = cluster.connect_as("alice@example.com");
    let mut carol = cluster.connect_as("carol@example.com");
    let mut dave = cluster.connect_as("dave@example.com");
    add_manual_shift(&mut admin, "carol@example.com");
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1)]);
    cluster.refresh();
    eventually("alice (PagerDuty) and carol (manual) on call", &cluster, || check_access(&mut alice) && check_access(&mut carol));

    let offset = cluster.log_len();
    let old = cluster.worker_pid().expect("the sync worker runs");
    let killed: bool = admin.query_one("SELECT pg_terminate_backend($1)", &[&old]).unwrap().get(0);
    assert!(killed);
    let started = Instant::now();
    let mut new = None;
    while started.elapsed() < Duration::from_secs(15) {
        assert!(check_access(&mut alice) && check_access(&mut carol), "decisions keep working without the worker ({:?})", started.elapsed());
        if let Some(pid) = cluster.worker_pid().filter(|&p| p != old) {
            new = Some(pid);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let back_after = started.elapsed();
    assert!(new.is_some(), "the sync worker did not come back within 15 s\n{}", cluster.log_tail());
    eprintln!("worker back after {back_after:?}");
    assert!(back_after < Duration::from_secs(10), "the worker came back only after {back_after:?}");

    // The new worker serves changes and refreshes.
    add_manual_shift(&mut admin, "dave@example.com");
    eventually("the new worker loads changes", &cluster, || check_access(&mut dave));
    fake.set_oncalls(vec![]);
    cluster.refresh();
    eventually("the new worker syncs", &cluster, || !check_access(&mut alice));
    let log = cluster.log_since(offset);
    assert!(!log.contains("terminating any other active server processes") && !log.contains("reinitializing"), "no crash-restart:\n{log}");
    cluster.assert_secret_hidden(TOKEN);
}

/// SIGTERM and SIGHUP are honoured at once even while the worker waits on a slow PagerDuty
/// (the HTTP request runs on a helper thread; the worker's own thread keeps polling signals).
#[test]
fn signals_are_honoured_during_a_slow_request() {
    let (cluster, fake) = Cluster::start_with_pagerduty(&["pg_oncall.http_timeout = '60s'"], TOKEN);
    let mut admin = cluster.connect();
    fake.set_persistent_fault(Some(Fault::Delay(Duration::from_secs(30))));
    admin.execute("SELECT oncall.refresh(wait => false)", &[]).unwrap();
    assert!(
        wait_until(PATIENCE, || fake.requests().iter().any(|r| r.path == "/oncalls")),
        "the sync did not start"
    );

    // SIGHUP: a reload returns promptly and the worker keeps running.
    let pid = cluster.worker_pid().expect("the sync worker runs");
    let reloaded = Instant::now();
    cluster.reload();
    assert!(reloaded.elapsed() < Duration::from_secs(5), "reload took {:?}", reloaded.elapsed());
    assert_eq!(cluster.worker_pid(), Some(pid), "SIGHUP does not stop the worker");

    // SIGTERM: the worker exits well before the 30 s request would end.
    let terminated = Instant::now();
    let sent: bool = admin.query_one("SELECT pg_terminate_backend($1)", &[&pid]).unwrap().get(0);
    assert!(sent);
    // The request would take 30 s: gone well before that is "at once", with room for a
    // loaded machine.
    assert!(
        wait_until(Duration::from_secs(15), || cluster.worker_pid() != Some(pid)),
        "the worker still runs {:?} after SIGTERM during a slow request\n{}",
        terminated.elapsed(),
        cluster.log_tail()
    );
    fake.set_persistent_fault(None);
    assert!(
        wait_until(PATIENCE, || cluster.worker_pid().is_some_and(|p| p != pid)),
        "the worker came back"
    );
    cluster.assert_secret_hidden(TOKEN);
}

/// Without `shared_preload_libraries` there is no gate: loading the library refuses clearly
/// (ERROR with a hint) instead of half-working, and the extension's C functions say so too.
#[test]
fn the_library_refuses_to_load_unless_preloaded() {
    let mut cluster = Cluster::builder().no_wait_ready().start();
    cluster.set_conf("shared_preload_libraries = ''");
    cluster.restart();
    let mut admin = cluster.connect();
    for sql in ["LOAD 'pg_oncall'", "SELECT oncall.check_oncall_access()"] {
        let err = admin.batch_execute(sql).expect_err("the library must refuse to load");
        let db = err.as_db_error().unwrap_or_else(|| panic!("{sql}: {}", error_text(&err)));
        assert!(db.message().contains("shared_preload_libraries"), "{sql}: {}", db.message());
        assert!(db.hint().is_some_and(|h| h.contains("shared_preload_libraries")), "{sql}: {:?}", db.hint());
    }
    let err = admin.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_oncall_other").err();
    assert!(err.is_some(), "sanity: an unknown extension errors");
    let doctor: i64 = admin
        .query_one("SELECT count(*) FROM oncall.doctor() WHERE object = 'shared_preload_libraries'", &[])
        .unwrap()
        .get(0);
    assert_eq!(doctor, 1, "doctor() (plain SQL) reports it");
}

#[test]
fn drop_extension_ungates_within_seconds() {
    let t = team(&[]);
    let (cluster, mut admin) = (&t.cluster, t.cluster.connect());
    let mut bob = cluster.connect_as("bob");
    assert_refused(bob.batch_execute("SET ROLE prod_admin"), GATED, BOB_EMAIL, "before DROP EXTENSION");
    admin.batch_execute("DROP EXTENSION pg_oncall").unwrap();
    let dropped = Instant::now();
    let ungated = wait_until(PATIENCE, || match bob.batch_execute("SET ROLE prod_admin") {
        Ok(()) => true,
        Err(e) => {
            assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{}", error_text(&e));
            false
        }
    });
    assert!(
        ungated,
        "{PATIENCE:?} after DROP EXTENSION pg_oncall, an off-call member is still refused SET ROLE prod_admin\n{}",
        cluster.log_tail()
    );
    eprintln!("ungated {:?} after DROP EXTENSION", dropped.elapsed());
    assert_eq!(current_user(&mut bob), GATED);
    bob.batch_execute("RESET ROLE").unwrap();
    // New sessions too.
    let mut bob2 = cluster.connect_as("bob");
    bob2.batch_execute("SET ROLE prod_admin").unwrap_or_else(|e| panic!("new session after DROP EXTENSION: {}", error_text(&e)));
}

/// DROP EXTENSION followed by a restart (before the worker noticed the drop) must not leave
/// the role gated from the on-disk snapshot.
#[test]
fn drop_extension_then_restart_ungates() {
    let mut cluster = Cluster::builder().no_wait_ready().start();
    cluster.wait_ready();
    let mut admin = setup_team(&cluster, "");
    admin.batch_execute("DROP EXTENSION pg_oncall").unwrap();
    drop(admin);
    cluster.restart();
    let mut bob = cluster.connect_as("bob");
    let ungated = wait_until(PATIENCE, || bob.batch_execute("SET ROLE prod_admin").is_ok());
    assert!(ungated, "{PATIENCE:?} after a restart that followed DROP EXTENSION, bob is still refused\n{}", cluster.log_tail());
}
