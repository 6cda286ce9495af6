//! Security suite, part 5: further attacks by someone who knows PostgreSQL (notes/attacks.md
//! lists every attempt); each bypass it found is fixed and kept here as a test.
//!
//! | attack | test |
//! |---|---|
//! | an RLS policy `USING (oncall.check_oncall_access())` read in a DO loop started on call (was bypass B4) | `rls_check_oncall_access_in_a_loop_stops_granting_after_the_shift` |
//! | hostile values to the functions everyone may call (NULLs, NULL array elements, 2-D arrays, 100 MB strings, extreme levels), deep recursion through a `SET role` function: the server survives, no internal error | `hostile_inputs_do_not_crash_or_raise_internal_errors` |
//! | `is_on_call(…, ARRAY[NULL])` raises XX000 (internal error) (was bug M1) | `is_on_call_ignores_null_array_elements` |
//! | the token at `log_min_messages = debug5` (worker, sync, errors) | `token_never_logged_even_at_debug5` |
//! | parallel workers, COPY TO, EXPLAIN ANALYZE, LOCK, PREPARE/EXECUTE, NOTIFY as R after the shift ended | `other_statement_kinds_after_the_shift_end` |
//! | a non-superuser `LOAD`s a library to displace the PL/pgSQL plugin | `load_of_a_library_by_a_non_superuser_is_refused` |

mod sec_common;

use std::time::Duration;

use e2e::*;
use postgres::error::SqlState;
use sec_common::*;

/// BYPASS B4: check_oncall_access() decides by the *top-level* statement's start time (and
/// memoizes per top-level statement), so a DO loop or procedure started on call keeps passing
/// RLS policies after the shift ended, indefinitely (also while PagerDuty is down).
#[test]
fn rls_check_oncall_access_in_a_loop_stops_granting_after_the_shift() {
    let mut t = team(&[]);
    t.pagerduty_down();
    ok(
        t.admin.batch_execute(
            "CREATE TABLE public.incidents (x text); INSERT INTO public.incidents VALUES ('rls-row');
             ALTER TABLE public.incidents ENABLE ROW LEVEL SECURITY;
             CREATE POLICY oncall_only ON public.incidents USING (oncall.check_oncall_access());
             GRANT SELECT ON public.incidents TO alice;
             CREATE TABLE public.leak (at timestamptz DEFAULT clock_timestamp(), n bigint);
             GRANT INSERT ON public.leak TO alice;",
        ),
        "RLS set-up",
    );
    let mut alice = t.connect_as("alice");
    assert_eq!(ok(alice.query("SELECT * FROM public.incidents", &[]), "on call").len(), 1);
    let ends = t.alice_shift_ends_in(1.0);
    let handle = spawn_query(
        t.connect_as("alice"),
        "DO $$ BEGIN FOR i IN 1..40 LOOP INSERT INTO public.leak (n) SELECT count(*) FROM public.incidents; PERFORM pg_sleep(0.05); END LOOP; END $$".into(),
    );
    t.wait_shift_over(ends);
    assert_eq!(ok(alice.query("SELECT * FROM public.incidents", &[]), "a new statement").len(), 0, "a new statement sees nothing");
    let _ = join_within(handle, Duration::from_secs(10), "DO loop");
    let late: i64 = t
        .admin
        .query_one("SELECT count(*) FROM public.leak WHERE n > 0 AND at > $1::timestamptz + interval '150 ms'", &[&ends])
        .unwrap()
        .get(0);
    assert_eq!(late, 0, "rows behind check_oncall_access() were read after the shift ended");
}

#[test]
fn hostile_inputs_do_not_crash_or_raise_internal_errors() {
    let mut t = team(&[]);
    let started: String = t.admin.query_one("SELECT pg_postmaster_start_time()::text", &[]).unwrap().get(0);
    ok(
        t.admin.batch_execute(
            "CREATE FUNCTION public.rec(n int) RETURNS int LANGUAGE plpgsql SET role = prod_admin
                 AS $$ BEGIN IF n <= 0 THEN RETURN 0; END IF; RETURN public.rec(n - 1) + 1; END $$",
        ),
        "recursive function",
    );
    let mut bob = t.connect_as("bob");
    let statements = [
        "SELECT oncall.is_on_call(NULL)",
        "SELECT oncall.is_on_call('')",
        "SELECT oncall.is_on_call(repeat('é', 50000000))",
        "SELECT oncall.is_on_call(E'alice@example.com\\n', -2147483648, '{}')",
        "SELECT oncall.is_on_call('alice@example.com', 2147483647, '{{a,b},{c,d}}')",
        "SELECT oncall.is_on_call('alice@example.com', NULL, (SELECT array_agg(g::text) FROM generate_series(1, 200000) g))",
        "SELECT oncall.check_oncall_access(NULL::name)",
        "SELECT oncall.check_oncall_access(repeat('x', 1000))",
        "SELECT oncall.check_oncall_access(E'prod_admin\\u0001')",
        "SELECT * FROM oncall.whoami()",
        "SELECT * FROM oncall._whoami()",
        "SELECT set_config('role', repeat('p', 100000), false)",
        "SELECT public.rec(100000)",
        "CREATE DATABASE x OWNER \"prod_admin \"",
    ];
    for sql in statements {
        if let Err(e) = bob.batch_execute(sql) {
            let code = db_error(&e).code().clone();
            assert_ne!(code, SqlState::INTERNAL_ERROR, "{sql}: an internal error: {}", error_text(&e));
        }
    }
    let mut alice = t.connect_as("alice");
    let e = alice.batch_execute("SELECT public.rec(100000)").expect_err("too deep");
    assert_eq!(db_error(&e).code(), &SqlState::STATEMENT_TOO_COMPLEX, "{}", error_text(&e));
    let now: String = t.admin.query_one("SELECT pg_postmaster_start_time()::text", &[]).unwrap().get(0);
    assert_eq!(now, started, "the server did not restart");
    assert!(!t.cluster.log().contains("terminated by signal"), "no backend crashed");
    ok(bob.batch_execute("SELECT 1"), "bob's session works on");
}

#[test]
fn is_on_call_ignores_null_array_elements() {
    let t = team(&[]);
    let mut bob = t.connect_as("bob");
    let r = bob.batch_execute("SELECT oncall.is_on_call('alice@example.com', NULL, ARRAY['P1', NULL])");
    if let Err(e) = r {
        assert_ne!(db_error(&e).code(), &SqlState::INTERNAL_ERROR, "{}", error_text(&e));
    }
}

#[test]
fn token_never_logged_even_at_debug5() {
    let t = team(&["log_min_messages = debug5", "log_statement = 'all'"]);
    let mut admin = t.cluster.connect();
    ok(admin.batch_execute("SELECT oncall.refresh()"), "a sync at debug5");
    t.fake.set_token("another-token");
    assert!(admin.batch_execute("SELECT oncall.refresh()").is_err(), "a 401 at debug5");
    t.fake.set_token(TOKEN);
    ok(admin.batch_execute("SELECT oncall.refresh()"), "sync");
    t.cluster.reload();
    t.cluster.assert_secret_hidden(TOKEN);
}

#[test]
fn other_statement_kinds_after_the_shift_end() {
    let mut t = team(&[]);
    t.pagerduty_down();
    let kinds = [
        ("parallel query", "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0", "SELECT count(*) FROM work.secret"),
        ("COPY TO", "SELECT 1", "COPY work.secret TO STDOUT"),
        ("EXPLAIN ANALYZE", "SELECT 1", "EXPLAIN ANALYZE SELECT * FROM work.secret"),
        ("LOCK", "BEGIN", "LOCK TABLE work.secret IN ACCESS EXCLUSIVE MODE"),
        ("EXECUTE of a statement prepared on call", "PREPARE p AS SELECT x FROM work.secret", "EXECUTE p"),
        ("NOTIFY", "SELECT 1", "NOTIFY ch, 's3cr3t'"),
        ("CALL", "SELECT 1", "CALL work.noop()"),
    ];
    ok(t.admin.batch_execute("CREATE PROCEDURE work.noop() LANGUAGE sql AS $$ SELECT 1 $$"), "noop");
    for (what, before, after) in kinds {
        let ends = t.alice_shift_ends_in(1.0);
        let mut alice = t.connect_as("alice");
        ok(alice.batch_execute("SET ROLE prod_admin"), what);
        ok(alice.batch_execute(before), &format!("{what}: {before}"));
        t.wait_shift_over(ends);
        assert_access_ended(alice.batch_execute(after), what);
    }
}

#[test]
fn load_of_a_library_by_a_non_superuser_is_refused() {
    let t = team(&[]);
    let mut bob = t.connect_as("bob");
    for lib in ["plpgsql", "auto_explain", "$libdir/plugins/plugin_debugger", "pg_oncall"] {
        let e = bob.batch_execute(&format!("LOAD '{lib}'"));
        if let Err(e) = &e {
            assert!(!db_error(e).message().contains("pg_oncall:"), "{lib}: {}", error_text(e));
        }
        // Whatever LOAD did, the gate still holds in PL/pgSQL.
        assert_bob_refused(bob.batch_execute("DO $$ BEGIN SET ROLE prod_admin; END $$"), &format!("after LOAD '{lib}'"));
    }
}
