//! DESIGN.md guarantee 2 in every execution context: statements nested in functions, DO
//! blocks and procedures (a loop started while on call stops at the end), cursor fetches and
//! portals, fast-path calls, and `COMMIT PREPARED` of a transaction prepared as the role. In
//! every test PagerDuty is down (every request answers 503: nothing republishes the snapshot)
//! and alice's manual shift simply ends by its `ends_at`, a few seconds after the context
//! started as prod_admin; the tests wait on that condition (`Team::wait_shift_over`), never a
//! fixed sleep. Each asserts that what runs after the end gets nothing (SQLSTATE 42501 "access
//! … has ended", its work rolled back or stopped at the end) and that it worked while on call.
//! Top-level statements and transactions: `expiry.rs`.
//!
//! | context | test |
//! |---|---|
//! | statements nested in a SQL function (one top-level statement started on call) | `nested_sql_function_statements_stop_at_the_shift_end` |
//! | statements in a PL/pgSQL function | `plpgsql_function_statements_stop_at_the_shift_end` |
//! | a DO loop of SQL statements | `do_loop_of_sql_statements_stops_at_the_shift_end` |
//! | a DO loop of simple expressions: `b := lo_get(oid)` | `do_loop_of_lo_get_simple_expressions_stops_at_the_shift_end` |
//! | a DO loop of simple expressions: `x := nextval('seq')` | `do_loop_of_nextval_simple_expressions_stops_at_the_shift_end` |
//! | a DO `WHILE` whose condition does the work (empty body) (was bypass B1) | `a_while_condition_loop_stops_when_the_shift_ends` |
//! | a procedure with COMMIT inside | `procedure_with_commit_stops_at_the_shift_end` |
//! | a cursor declared as R, FETCHed after RESET ROLE | `cursor_declared_as_role_fetched_after_reset_role` |
//! | a WITH HOLD cursor across COMMIT (FETCH, MOVE) | `held_cursor_fetch_after_the_shift_end` |
//! | a WITH HOLD cursor read by PL/pgSQL `FETCH` on a refcursor (was bypass B2) | `a_held_cursor_fetched_from_plpgsql_is_refused_after_the_shift` |
//! | an extended-protocol portal (Execute after the end), a statement prepared on call and bound after | `extended_protocol_portal_and_prepared_statement` |
//! | a libpq fast-path call (`\lo_export` through psql: lo_open/loread via PQfn) | `fast_path_lo_export_after_the_shift_end` |
//! | `COMMIT PREPARED` of a transaction prepared as R | `commit_prepared_after_the_shift_end` |

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use e2e::*;
use postgres::Client;

/// Slack for a statement that started just before the end and wrote just after.
const SLACK_MS: i64 = 150;

fn contexts_team() -> Team {
    let t = team(&["max_prepared_transactions = 5"]);
    t.pagerduty_down();
    t
}

fn elevated_alice(t: &Team) -> Client {
    let mut alice = t.connect_as("alice");
    ok(alice.batch_execute("SET ROLE prod_admin"), "alice SET ROLE while on call");
    alice
}

/// Runs `sql` as alice elevated, while on call, with a shift ending in `secs`; returns when the
/// statement ended: its result, how long after the shift's end it ended, and the end.
fn run_across_the_end(t: &mut Team, sql: &str, secs: f64, limit: Duration) -> (Result<(), postgres::Error>, Duration, DateTime<Utc>) {
    let ends = t.alice_shift_ends_in(secs);
    let alice = elevated_alice(t);
    let handle = spawn_query(alice, sql.to_owned());
    t.wait_shift_over(ends);
    let seen_end = Instant::now();
    let (_, result, finished) = join_within(handle, limit, sql);
    (result, finished.saturating_duration_since(seen_end), ends)
}

/// No `work.progress` row tagged `what` was written after `ends` (beyond [`SLACK_MS`]); returns
/// how many were written in all.
fn progress_stopped(t: &mut Team, what: &str, ends: DateTime<Utc>) -> i64 {
    let late: i64 = t
        .admin
        .query_one(
            "SELECT count(*) FROM work.progress WHERE what = $1 AND at > $2::timestamptz + make_interval(secs => $3::float8 / 1000)",
            &[&what, &ends, &(SLACK_MS as f64)],
        )
        .unwrap()
        .get(0);
    assert_eq!(late, 0, "{what}: rows written after the shift ended");
    t.admin.query_one("SELECT count(*) FROM work.progress WHERE what = $1", &[&what]).unwrap().get(0)
}

#[test]
fn nested_sql_function_statements_stop_at_the_shift_end() {
    let mut t = contexts_team();
    ok(
        t.admin.batch_execute(
            "CREATE FUNCTION work.tick(i int) RETURNS bigint LANGUAGE sql VOLATILE
                 AS $$ SELECT pg_sleep(0.05); SELECT count(*) FROM work.secret $$",
        ),
        "work.tick",
    );
    let mut alice = elevated_alice(&t);
    let n: i64 = ok(alice.query_one("SELECT sum(work.tick(g))::int8 FROM generate_series(1, 3) g", &[]), "on call").get(0);
    assert_eq!(n, 3);
    // One top-level statement started on call, calling the function for 10 s.
    let (result, after, _) = run_across_the_end(&mut t, "SELECT work.tick(g) FROM generate_series(1, 200) g", SHORT_SHIFT_SECS, Duration::from_secs(5));
    assert_access_ended(result, "a SQL function's nested statement after the end");
    assert!(after < Duration::from_secs(1), "refused {after:?} after the end was seen");
}

#[test]
fn plpgsql_function_statements_stop_at_the_shift_end() {
    let mut t = contexts_team();
    ok(
        t.admin.batch_execute(
            "CREATE FUNCTION work.pl_loop(n int) RETURNS void LANGUAGE plpgsql AS $$
             BEGIN
                 FOR i IN 1..n LOOP
                     INSERT INTO work.progress (what) SELECT 'plpgsql' FROM work.secret;
                     PERFORM pg_sleep(0.05);
                 END LOOP;
             END $$",
        ),
        "work.pl_loop",
    );
    let mut alice = elevated_alice(&t);
    ok(alice.batch_execute("SELECT work.pl_loop(2)"), "on call");
    let (result, after, ends) = run_across_the_end(&mut t, "SELECT work.pl_loop(200)", SHORT_SHIFT_SECS, Duration::from_secs(5));
    assert_access_ended(result, "a PL/pgSQL function's statement after the end");
    assert!(after < Duration::from_secs(1), "refused {after:?} after the end was seen");
    assert_eq!(progress_stopped(&mut t, "plpgsql", ends), 2, "the refused call's rows are rolled back; the on-call call's stay");
}

#[test]
fn do_loop_of_sql_statements_stops_at_the_shift_end() {
    let mut t = contexts_team();
    let sql = "DO $$ BEGIN FOR i IN 1..200 LOOP INSERT INTO work.progress (what) VALUES ('do'); PERFORM pg_sleep(0.05); END LOOP; END $$";
    let (result, after, ends) = run_across_the_end(&mut t, sql, SHORT_SHIFT_SECS, Duration::from_secs(5));
    assert_access_ended(result, "a DO loop's statement after the end");
    assert!(after < Duration::from_secs(1), "refused {after:?} after the end was seen");
    progress_stopped(&mut t, "do", ends);
}

/// Simple expressions (`b := lo_get(…)`) never reach the executor: PL/pgSQL's statement hook
/// must stop the loop. The loop body has no SQL statement at all.
#[test]
fn do_loop_of_lo_get_simple_expressions_stops_at_the_shift_end() {
    let mut t = contexts_team();
    let sql = format!(
        "DO $$ DECLARE b bytea; z text; BEGIN
             FOR i IN 1..200 LOOP b := lo_get({LO_OID}); z := pg_sleep(0.05)::text; END LOOP;
         END $$"
    );
    let mut alice = elevated_alice(&t);
    let v = ok(simple_value(&mut alice, &format!("SELECT convert_from(lo_get({LO_OID}), 'UTF8')")), "on call");
    assert_eq!(v.as_deref(), Some("lo-secret"));
    let (result, after, _) = run_across_the_end(&mut t, &sql, SHORT_SHIFT_SECS, Duration::from_secs(5));
    assert_access_ended(result, "lo_get in a DO loop after the end");
    assert!(after < Duration::from_secs(1), "refused {after:?} after the end was seen");
}

/// Sequences are not transactional: the sequence's value shows how long the loop ran.
#[test]
fn do_loop_of_nextval_simple_expressions_stops_at_the_shift_end() {
    let mut t = contexts_team();
    let sql = "DO $$ DECLARE x bigint; z text; BEGIN
                   FOR i IN 1..200 LOOP x := nextval('work.seq'); z := pg_sleep(0.05)::text; END LOOP;
               END $$";
    let ends = t.alice_shift_ends_in(SHORT_SHIFT_SECS);
    let handle = spawn_query(elevated_alice(&t), sql.to_owned());
    t.wait_shift_over(ends);
    let at_end = t.scalar_i64("SELECT last_value FROM work.seq");
    let (_, result, _) = join_within(handle, Duration::from_secs(5), sql);
    assert_access_ended(result, "nextval in a DO loop after the end");
    let last = t.scalar_i64("SELECT last_value FROM work.seq");
    assert!(at_end >= 5, "the loop ran while on call ({at_end})");
    assert!(last - at_end <= 2, "the loop went on after the end: {at_end} → {last}");
}

/// BYPASS B1 (notes/attacks.md): a WHILE whose condition does the work runs no PL/pgSQL
/// statement per iteration, so nothing re-checks.
#[test]
fn a_while_condition_loop_stops_when_the_shift_ends() {
    let mut t = contexts_team();
    let sql = "DO $$ BEGIN
                   WHILE nextval('work.seq') < 200 AND pg_sleep(0.05) IS NOT NULL LOOP END LOOP;
               END $$";
    let ends = t.alice_shift_ends_in(SHORT_SHIFT_SECS);
    let handle = spawn_query(elevated_alice(&t), sql.to_owned());
    t.wait_shift_over(ends);
    let at_end = t.scalar_i64("SELECT last_value FROM work.seq");
    // Without the gate the loop would run ~7 s more; 5 s tells the two apart.
    let finished = wait_until(Duration::from_secs(5), || handle.is_finished());
    let last = t.scalar_i64("SELECT last_value FROM work.seq");
    assert!(last - at_end <= 2, "the WHILE loop went on as prod_admin after the shift ended: {at_end} → {last}");
    assert!(finished, "the WHILE loop is still running 5 s after the shift ended");
    let (_, result, _) = join_within(handle, Duration::from_secs(1), sql);
    assert_access_ended(result, "the WHILE loop after the end");
}

#[test]
fn procedure_with_commit_stops_at_the_shift_end() {
    let mut t = contexts_team();
    ok(
        t.admin.batch_execute(
            "CREATE PROCEDURE work.batch(n int) LANGUAGE plpgsql AS $$
             BEGIN
                 FOR i IN 1..n LOOP
                     INSERT INTO work.progress (what) VALUES ('proc');
                     COMMIT;
                     PERFORM pg_sleep(0.05);
                 END LOOP;
             END $$",
        ),
        "work.batch",
    );
    let (result, after, ends) = run_across_the_end(&mut t, "CALL work.batch(200)", SHORT_SHIFT_SECS, Duration::from_secs(5));
    assert_access_ended(result, "a procedure's statement after a COMMIT, after the end");
    assert!(after < Duration::from_secs(1), "refused {after:?} after the end was seen");
    let n = progress_stopped(&mut t, "proc", ends);
    assert!(n >= 3, "the procedure committed while on call ({n} rows)");
}

#[test]
fn cursor_declared_as_role_fetched_after_reset_role() {
    let mut t = contexts_team();
    let ends = t.alice_shift_ends_in(SHORT_SHIFT_SECS);
    let mut alice = t.connect_as("alice");
    ok(
        alice.batch_execute(
            "BEGIN; SET LOCAL ROLE prod_admin;
             DECLARE c CURSOR FOR SELECT x, g FROM work.secret, generate_series(1, 10) AS g;
             RESET ROLE",
        ),
        "DECLARE as prod_admin",
    );
    assert_eq!(current_user(&mut alice), "alice");
    let v = ok(simple_value(&mut alice, "FETCH 1 FROM c"), "FETCH as alice while on call");
    assert_eq!(v.as_deref(), Some("s3cr3t"), "a cursor declared as prod_admin reads with its rights");
    t.wait_shift_over(ends);
    assert_access_ended(simple_value(&mut alice, "FETCH 1 FROM c"), "FETCH after the end, as alice");
    ok(alice.batch_execute("ROLLBACK"), "rollback");
    assert_eq!(current_user(&mut alice), "alice");
}

#[test]
fn held_cursor_fetch_after_the_shift_end() {
    let mut t = contexts_team();
    let ends = t.alice_shift_ends_in(SHORT_SHIFT_SECS);
    let mut alice = t.connect_as("alice");
    ok(
        alice.batch_execute(
            "BEGIN; SET LOCAL ROLE prod_admin;
             DECLARE h CURSOR WITH HOLD FOR SELECT x, g FROM work.secret, generate_series(1, 10) AS g;
             COMMIT",
        ),
        "DECLARE WITH HOLD as prod_admin, COMMIT",
    );
    assert_eq!(current_user(&mut alice), "alice");
    let v = ok(simple_value(&mut alice, "FETCH 1 FROM h"), "FETCH while on call");
    assert_eq!(v.as_deref(), Some("s3cr3t"));
    t.wait_shift_over(ends);
    assert_access_ended(simple_value(&mut alice, "FETCH 1 FROM h"), "FETCH of the held cursor after the end");
    assert_access_ended(simple_value(&mut alice, "FETCH ALL IN h"), "FETCH ALL");
    assert_access_ended(alice.batch_execute("MOVE 1 IN h"), "MOVE");
    ok(alice.batch_execute("CLOSE h"), "CLOSE is never refused");
}

/// BYPASS B2 (notes/attacks.md): PL/pgSQL `FETCH` on a refcursor naming the held cursor reads
/// the stored rows without ProcessUtility or the executor.
#[test]
fn a_held_cursor_fetched_from_plpgsql_is_refused_after_the_shift() {
    let mut t = contexts_team();
    let ends = t.alice_shift_ends_in(SHORT_SHIFT_SECS);
    let mut alice = t.connect_as("alice");
    ok(
        alice.batch_execute(
            "BEGIN; SET LOCAL ROLE prod_admin; DECLARE h CURSOR WITH HOLD FOR SELECT x FROM work.secret; COMMIT",
        ),
        "DECLARE WITH HOLD as prod_admin",
    );
    t.wait_shift_over(ends);
    assert_access_ended(simple_value(&mut alice, "FETCH 1 FROM h"), "plain FETCH after the end (refused)");
    let got = simple_value(
        &mut alice,
        "DO $$ DECLARE r refcursor := 'h'; v text; BEGIN FETCH r INTO v; PERFORM set_config('e2e.loot', coalesce(v, ''), false); END $$;
         SELECT current_setting('e2e.loot', true)",
    );
    assert_access_ended(got, "PL/pgSQL FETCH of the held cursor after the end");
}

/// Bind starts the executor; each Execute runs it again: a portal bound as prod_admin while on
/// call is refused at its next Execute after the end (also after RESET ROLE), and a statement
/// prepared while on call is refused at its Bind after the end.
#[test]
fn extended_protocol_portal_and_prepared_statement() {
    let mut t = contexts_team();
    let ends = t.alice_shift_ends_in(SHORT_SHIFT_SECS);
    let mut alice = t.connect_as("alice");
    let prepared = ok(alice.prepare("SELECT x FROM work.secret"), "prepare");
    let mut elevated = elevated_alice(&t);
    let prepared_as_r = ok(elevated.prepare("SELECT x FROM work.secret"), "prepare as prod_admin");
    let rows = ok(elevated.query(&prepared_as_r, &[]), "execute while on call");
    assert_eq!(rows.len(), 1);
    let mut tx = ok(alice.transaction(), "BEGIN");
    ok(tx.batch_execute("SET LOCAL ROLE prod_admin"), "SET LOCAL ROLE");
    let portal = ok(tx.bind("SELECT x, g FROM work.secret, generate_series(1, 10) AS g", &[]), "Bind as prod_admin");
    let rows = ok(tx.query_portal(&portal, 1), "Execute while on call");
    assert_eq!(rows[0].get::<_, String>(0), "s3cr3t");
    ok(tx.batch_execute("RESET ROLE"), "RESET ROLE");
    t.wait_shift_over(ends);
    assert_access_ended(tx.query_portal(&portal, 1), "Execute of the portal after the end");
    drop(tx);
    assert_access_ended(elevated.query(&prepared_as_r, &[]), "a statement prepared on call, bound after the end");
    // The same prepared statement as alice herself is PostgreSQL's business (permission denied).
    let e = alice.query(&prepared, &[]).expect_err("alice herself may not read it");
    assert!(!db_error(&e).message().contains("pg_oncall"), "{}", error_text(&e));
}

/// libpq's fast-path interface: psql's `\lo_export` opens and reads the large object with PQfn
/// calls (lo_open, loread), which reach neither ProcessUtility nor the executor.
#[test]
fn fast_path_lo_export_after_the_shift_end() {
    let mut t = contexts_team();
    let ends = t.alice_shift_ends_in(5.0);
    let before = t.cluster.dir().join("lo-before.out");
    let after = t.cluster.dir().join("lo-after.out");
    let out = t.cluster.dir().join("psql.out");
    let mut child = t
        .cluster
        .psql()
        .env("PGUSER", "alice")
        .args(["-v", "ON_ERROR_STOP=0", "-v", "VERBOSITY=verbose"])
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(t.cluster.dir().join("psql.err")).unwrap())
        .spawn()
        .expect("psql");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "\\set VERBOSITY verbose\nSET ROLE prod_admin;\n\\lo_export {LO_OID} '{}'\n\\echo MARK-ONE", before.display()).unwrap();
    stdin.flush().unwrap();
    let marked = wait_until(Duration::from_secs(10), || std::fs::read_to_string(&out).unwrap_or_default().contains("MARK-ONE"));
    if !marked {
        let _ = child.kill();
        panic!("psql did not get through the on-call export");
    }
    assert_eq!(std::fs::read_to_string(&before).unwrap_or_default(), "lo-secret", "\\lo_export while on call");
    t.wait_shift_over(ends);
    writeln!(stdin, "\\lo_export {LO_OID} '{}'\n\\echo MARK-TWO\n\\q", after.display()).unwrap();
    drop(stdin);
    let done = wait_until(Duration::from_secs(10), || child.try_wait().ok().flatten().is_some());
    if !done {
        let _ = child.kill();
        panic!("psql did not finish");
    }
    let err = std::fs::read_to_string(t.cluster.dir().join("psql.err")).unwrap_or_default();
    assert!(
        std::fs::read_to_string(&after).map_or(true, |s| s.is_empty()),
        "\\lo_export after the end exported the large object:\n{err}"
    );
    assert!(err.contains("42501") && err.contains("has ended") && err.contains(GATED) && err.contains(ALICE_EMAIL), "psql's error:\n{err}");
}

#[test]
fn commit_prepared_after_the_shift_end() {
    let mut t = contexts_team();
    // While on call: prepared and committed as prod_admin.
    let mut alice = elevated_alice(&t);
    ok(alice.batch_execute("BEGIN; INSERT INTO work.progress (what) VALUES ('2pc-on-call'); PREPARE TRANSACTION 'on_call'"), "prepare");
    ok(alice.batch_execute("COMMIT PREPARED 'on_call'"), "COMMIT PREPARED while on call");
    assert_eq!(t.scalar_i64("SELECT count(*) FROM work.progress WHERE what = '2pc-on-call'"), 1);
    // Prepared on call, committed after the end.
    let ends = t.alice_shift_ends_in(SHORT_SHIFT_SECS);
    let mut alice = elevated_alice(&t);
    ok(alice.batch_execute("BEGIN; INSERT INTO work.progress (what) VALUES ('2pc-late'); PREPARE TRANSACTION 'late'"), "prepare");
    t.wait_shift_over(ends);
    assert_access_ended(alice.batch_execute("COMMIT PREPARED 'late'"), "COMMIT PREPARED after the end");
    assert_eq!(t.scalar_i64("SELECT count(*) FROM work.progress WHERE what = '2pc-late'"), 0, "nothing committed");
    assert_eq!(t.scalar_i64("SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'late'"), 1, "still prepared");
    // As herself, PostgreSQL refuses (the preparer was prod_admin).
    ok(alice.batch_execute("SET ROLE NONE"), "leave");
    assert!(alice.batch_execute("COMMIT PREPARED 'late'").is_err());
    ok(alice.batch_execute("SET ROLE NONE; ROLLBACK PREPARED 'late'").or_else(|_| t.admin.batch_execute("ROLLBACK PREPARED 'late'")), "cleanup");
    assert_eq!(t.scalar_i64("SELECT count(*) FROM work.progress WHERE what = '2pc-late'"), 0);
}
