//! Concurrency (DESIGN.md guarantees 1 and 7 under load): eight sessions switch in and out of
//! the gated role while a writer keeps committing changes that reload the snapshot; every
//! on-call switch is allowed, every off-call one refused, `current_user` is always right, no
//! thread stalls, the server does not crash, deadlock or fail to lock.
//!
//! | case | test |
//! |---|---|
//! | 8 sessions × SET ROLE / SELECT / RESET ROLE for 10 s, a writer reloading the snapshot every few ms | `concurrent_switches_while_the_snapshot_keeps_reloading` |

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::*;
use postgres::error::SqlState;
use postgres::SimpleQueryMessage;

#[test]
fn concurrent_switches_while_the_snapshot_keeps_reloading() {
    const USERS: usize = 8;
    const RUN: Duration = Duration::from_secs(10);
    let mut t = team(&[]);
    let (cluster, admin) = (&t.cluster, &mut t.admin);
    let mut setup = String::from("CREATE ROLE churn_role LOGIN NOINHERIT; CREATE ROLE side_admin NOLOGIN;");
    for i in 0..USERS {
        let on = i % 2 == 0;
        let name = format!("{}{i}", if on { "on" } else { "off" });
        setup.push_str(&format!(
            "CREATE ROLE {name} LOGIN NOINHERIT; GRANT prod_admin, side_admin TO {name};
             INSERT INTO oncall.identities VALUES ('{name}', '{name}@example.com');"
        ));
        if on {
            setup.push_str(&format!("INSERT INTO oncall.shifts (source, email) VALUES ('manual', '{name}@example.com');"));
        }
    }
    setup.push_str("INSERT INTO oncall.identities VALUES ('churn_role', 'churn-0@example.com');");
    admin.batch_execute(&setup).unwrap_or_else(|e| panic!("set-up: {}", error_text(&e)));
    cluster.sync_point();

    let stop = Arc::new(AtomicBool::new(false));
    let problems: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let log_offset = cluster.log_len();
    let start = Instant::now();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(String, u64, u64)>();

    let mut handles = Vec::new();
    for i in 0..USERS {
        let on = i % 2 == 0;
        let name = format!("{}{i}", if on { "on" } else { "off" });
        let mut session = cluster.connect_as(&name);
        let stop = Arc::clone(&stop);
        let problems = Arc::clone(&problems);
        let done_tx = done_tx.clone();
        handles.push(std::thread::spawn(move || {
            let (mut rounds, mut refusals) = (0u64, 0u64);
            let report = |what: String| problems.lock().unwrap().push(what);
            while !stop.load(Ordering::Relaxed) {
                match session.batch_execute("SET ROLE prod_admin") {
                    Ok(()) if on => {}
                    Ok(()) => report(format!("{name}: off call but SET ROLE prod_admin succeeded")),
                    Err(e) if !on => {
                        if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
                            refusals += 1;
                        } else {
                            report(format!("{name}: unexpected error on SET ROLE: {}", error_text(&e)));
                        }
                    }
                    Err(e) => report(format!("{name}: on call but refused: {}", error_text(&e))),
                }
                let expected = if on { "prod_admin" } else { name.as_str() };
                match session.simple_query("SELECT 1, current_user::text") {
                    Ok(msgs) => {
                        let user = msgs.iter().find_map(|m| match m {
                            SimpleQueryMessage::Row(r) => r.get(1).map(str::to_owned),
                            _ => None,
                        });
                        if user.as_deref() != Some(expected) {
                            report(format!("{name}: current_user {user:?}, expected {expected}"));
                        }
                    }
                    Err(e) => report(format!("{name}: SELECT 1 failed: {}", error_text(&e))),
                }
                if let Err(e) = session.batch_execute("RESET ROLE") {
                    report(format!("{name}: RESET ROLE failed: {}", error_text(&e)));
                }
                rounds += 1;
            }
            let _ = done_tx.send((name, rounds, refusals));
        }));
    }
    // The writer: commits that each force a snapshot reload, without changing who is on call.
    let writer = {
        let mut admin = cluster.connect();
        let stop = Arc::clone(&stop);
        let problems = Arc::clone(&problems);
        let done_tx = done_tx.clone();
        std::thread::spawn(move || {
            let mut commits = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let sql = match commits % 5 {
                    0 => "INSERT INTO oncall.shifts (source, email) VALUES ('manual', 'churn@example.com')".to_string(),
                    1 => "DELETE FROM oncall.shifts WHERE email = 'churn@example.com'".to_string(),
                    2 => format!("UPDATE oncall.identities SET email = 'churn-{commits}@example.com' WHERE role_name = 'churn_role'"),
                    3 => "INSERT INTO oncall.shifts (source, email, ends_at) VALUES ('manual', 'on0@example.com', now() + interval '1 hour')".to_string(),
                    _ => "DELETE FROM oncall.shifts WHERE email = 'on0@example.com' AND ends_at IS NOT NULL; SELECT oncall.gate_role('side_admin')".to_string(),
                };
                if let Err(e) = admin.batch_execute(&sql) {
                    problems.lock().unwrap().push(format!("writer: {sql}: {}", error_text(&e)));
                }
                commits += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = done_tx.send(("writer".into(), commits, 0));
        })
    };
    drop(done_tx);
    // A load test: the threads switch and the writer commits for RUN (not a wait for
    // something to happen; every thread checks its own invariant on every round).
    std::thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    // Bounded: every thread must finish its round within 20 s of the stop (no deadlock).
    let mut results = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while results.len() < USERS + 1 {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(r) => results.push(r),
            Err(_) => panic!(
                "only {} of {} threads finished within 20 s of the stop (deadlock?): {results:?}\n{}",
                results.len(),
                USERS + 1,
                cluster.log_tail()
            ),
        }
    }
    for h in handles {
        h.join().expect("client thread");
    }
    writer.join().expect("writer thread");
    eprintln!("concurrency: {:?} in {:?}", results, start.elapsed());

    let problems = problems.lock().unwrap().clone();
    assert!(problems.is_empty(), "{} problems, first ones: {:#?}", problems.len(), &problems[..problems.len().min(20)]);
    for (name, rounds, refusals) in &results {
        assert!(*rounds >= 20, "{name} made progress: {rounds} rounds");
        if name.starts_with("off") {
            assert_eq!(refusals, rounds, "{name}: every SET ROLE refused");
        }
    }
    // The server is still up, and nothing crashed.
    let mut c = cluster.connect();
    c.batch_execute("SELECT 1").expect("the server answers");
    let log = cluster.log_since(log_offset);
    for bad in ["PANIC", "terminated by signal", "server process", "was terminated", "TRAP:", "could not obtain lock", "deadlock detected"] {
        assert!(!log.contains(bad), "the log contains {bad:?}\n{}", cluster.log_tail());
    }
    let mut on0 = cluster.connect_as("on0");
    on0.batch_execute("SET ROLE prod_admin; SELECT 1; RESET ROLE").expect("on0 still switches");
    assert_refused(cluster.connect_as("off1").batch_execute("SET ROLE prod_admin"), GATED, "off1@example.com", "off1 still refused");
}
