//! `oncall.check_oncall_access()` in row-level security policies (DESIGN.md "Functions"):
//! rows visible exactly while the session user is on call, judged at each statement's own
//! timestamp, per row and once per statement (`(SELECT …)`), also for a loop started on call.
//!
//! | case | test |
//! |---|---|
//! | both policy forms: no rows off call, rows on call, none from the shift's end on (no table change) | `row_level_security_policies` |
//! | a DO loop started on call reads nothing behind the policy after the end (was bypass B4) | `rls_check_oncall_access_in_a_loop_stops_granting_after_the_shift` |

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use e2e::*;
use postgres::Client;

#[test]
fn row_level_security_policies() {
    let cluster = Cluster::start(&[]);
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "rls@example.com");
    admin
        .batch_execute(
            "CREATE TABLE public.per_row (id int, secret text);
             CREATE TABLE public.per_statement (id int, secret text);
             INSERT INTO public.per_row SELECT i, 'row ' || i FROM generate_series(1, 3) AS i;
             INSERT INTO public.per_statement SELECT i, 'row ' || i FROM generate_series(1, 3) AS i;
             ALTER TABLE public.per_row ENABLE ROW LEVEL SECURITY;
             ALTER TABLE public.per_statement ENABLE ROW LEVEL SECURITY;
             CREATE POLICY on_call ON public.per_row USING (oncall.check_oncall_access());
             CREATE POLICY on_call ON public.per_statement USING ((SELECT oncall.check_oncall_access()));
             GRANT SELECT ON public.per_row, public.per_statement TO \"rls@example.com\";",
        )
        .unwrap();
    let mut s = cluster.connect_as("rls@example.com");
    let visible = |s: &mut Client| -> (i64, i64) {
        let row = s
            .query_one("SELECT (SELECT count(*) FROM public.per_row), (SELECT count(*) FROM public.per_statement)", &[])
            .unwrap_or_else(|e| panic!("select: {}", error_text(&e)));
        (row.get(0), row.get(1))
    };
    assert_eq!(visible(&mut s), (0, 0), "not on call: no rows");

    let ends_at: DateTime<Utc> = admin
        .query_one(
            "INSERT INTO oncall.shifts (source, email, starts_at, ends_at) VALUES ('manual', 'rls@example.com', now(), now() + interval '3 seconds') RETURNING ends_at",
            &[],
        )
        .unwrap()
        .get(0);
    let mut seen = false;
    eventually("on call: rows visible (or the shift ended)", &cluster, || {
        seen = visible(&mut s) == (3, 3);
        seen || Utc::now() >= ends_at
    });
    assert!(seen, "the 3 s shift made the rows visible before it ended");
    // Until the end rows stay visible; from the end on, none (no table change involved).
    let deadline = Instant::now() + Duration::from_secs(3) + PATIENCE;
    loop {
        let row = s
            .query_one(
                "SELECT (SELECT count(*) FROM public.per_row), (SELECT count(*) FROM public.per_statement), statement_timestamp() < $1",
                &[&ends_at],
            )
            .unwrap();
        let (a, b, before_end): (i64, i64, bool) = (row.get(0), row.get(1), row.get(2));
        let expected = if before_end { 3 } else { 0 };
        assert_eq!((a, b), (expected, expected), "rows at a statement {} the shift's end", if before_end { "before" } else { "after" });
        if !before_end {
            break;
        }
        assert!(Instant::now() < deadline, "the shift did not end");
        std::thread::sleep(Duration::from_millis(50));
    }

    add_manual_shift(&mut admin, "rls@example.com");
    eventually("a new shift: rows visible again", &cluster, || visible(&mut s) == (3, 3));
    admin.execute("DELETE FROM oncall.shifts WHERE email = 'rls@example.com'", &[]).unwrap();
    eventually("shift deleted: no rows", &cluster, || visible(&mut s) == (0, 0));
}

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
    let ends = t.alice_shift_ends_in(SHORT_SHIFT_SECS);
    let handle = spawn_query(
        t.connect_as("alice"),
        "DO $$ BEGIN FOR i IN 1..120 LOOP INSERT INTO public.leak (n) SELECT count(*) FROM public.incidents; PERFORM pg_sleep(0.05); END LOOP; END $$".into(),
    );
    t.wait_shift_over(ends);
    assert_eq!(ok(alice.query("SELECT * FROM public.incidents", &[]), "a new statement").len(), 0, "a new statement sees nothing");
    let _ = join_within(handle, Duration::from_secs(20), "DO loop");
    let late: i64 = t
        .admin
        .query_one("SELECT count(*) FROM public.leak WHERE n > 0 AND at > $1::timestamptz + interval '150 ms'", &[&ends])
        .unwrap()
        .get(0);
    assert_eq!(late, 0, "rows behind check_oncall_access() were read after the shift ended");
    let early: i64 = t
        .admin
        .query_one("SELECT count(*) FROM public.leak WHERE n > 0 AND at < $1::timestamptz", &[&ends])
        .unwrap()
        .get(0);
    assert!(early > 0, "the loop read the rows while on call (else the test proves nothing)");
}
