//! Backup and restore (README, "Operations"): `pg_dump` of the database that holds the
//! extension carries `CREATE EXTENSION pg_oncall` and the rows of its configuration tables
//! (gated_roles, identities, manual shifts, elevation_records) but not PagerDuty shifts or the
//! sync's state, which the next sync rebuilds. Restored into a cluster with the library
//! preloaded, the gate enforces the restored rules as soon as the worker has loaded them (until
//! then a new cluster gates nothing: restore before letting users in); into one without it,
//! CREATE EXTENSION fails with the preload message, none of pg_oncall's rows are restored, and a
//! table whose RLS policy calls `oncall.check_oncall_access()` comes back with RLS on and no
//! policy: closed to everyone but its owner. Preloading, restarting and restoring again into an
//! empty database recovers.

use std::process::Output;
use std::time::Duration;

use e2e::*;
use postgres::Client;

fn run(what: &str, out: std::io::Result<Output>) -> Output {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!("{what}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

fn rows(c: &mut Client, sql: &str) -> Vec<String> {
    c.query(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e))).iter().map(|r| r.get::<_, String>(0)).collect()
}

/// The source: roles (alice on call by a manual shift, bob not), a rule, identities, a manual
/// shift, a PagerDuty shift, an elevation record, and an application table whose RLS policy
/// asks pg_oncall.
fn source() -> Cluster {
    let cluster = Cluster::start(&[]);
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE ROLE prod_admin NOLOGIN;
             CREATE ROLE alice LOGIN NOINHERIT;
             CREATE ROLE bob LOGIN NOINHERIT;
             GRANT prod_admin TO alice, bob;
             SELECT oncall.gate_role('prod_admin', escalation_policy_ids => '{PT20YPA}', require_reason => true,
                                     max_duration => '2 hours');
             INSERT INTO oncall.identities VALUES ('alice', 'alice@example.com'), ('bob', 'bob@example.com');
             SELECT oncall.override('alice@example.com', '1 day', 'INC-42: restore drill', 'PT20YPA');
             INSERT INTO oncall.shifts (source, email, pagerduty_user_id, escalation_policy_id, escalation_level, starts_at, ends_at, synced_at)
                  VALUES ('pagerduty', 'bob@example.com', 'PBOB', 'PT20YPA', 1, now() - interval '1 hour', now() + interval '1 hour', now());
             CREATE TABLE public.accounts (id int PRIMARY KEY, owner text);
             INSERT INTO public.accounts VALUES (1, 'acme'), (2, 'globex');
             ALTER TABLE public.accounts ENABLE ROW LEVEL SECURITY;
             CREATE POLICY on_call_only ON public.accounts USING ((SELECT oncall.check_oncall_access()));
             GRANT SELECT ON public.accounts TO alice, bob;",
        )
        .unwrap_or_else(|e| panic!("fill the source: {}", error_text(&e)));
    // An elevation, recorded by the worker.
    let mut alice = cluster.connect_as("alice");
    assert!(wait_until(Duration::from_secs(5), || check_access(&mut alice)), "alice is on call\n{}", cluster.log_tail());
    alice.batch_execute("SET pg_oncall.reason = 'INC-42'; SET ROLE prod_admin; RESET ROLE").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || rows(
            &mut admin,
            "SELECT count(*)::text FROM oncall.elevations WHERE ended_at IS NOT NULL"
        ) == ["1"]),
        "the elevation is recorded\n{}",
        cluster.log_tail()
    );
    cluster
}

/// The dump files, removed when the test ends, passed or failed.
struct Dump {
    globals: String,
    archive: String,
}

impl Drop for Dump {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.globals);
        let _ = std::fs::remove_file(&self.archive);
    }
}

/// `pg_dumpall --globals-only` (the roles) and `pg_dump -Fc` of database postgres, into files
/// under /tmp named after `name` (they outlive the source cluster).
fn dump(cluster: &Cluster, name: &str) -> Dump {
    let base = std::env::temp_dir().join(format!("pg_oncall-backup-{}-{name}", std::process::id()));
    let (globals, archive) = (format!("{}.sql", base.display()), format!("{}.dump", base.display()));
    let files = Dump { globals: globals.clone(), archive: archive.clone() };
    let out = run("pg_dumpall --globals-only", cluster.client("pg_dumpall").args(["--globals-only", "-f", &globals]).output());
    assert!(out.status.success());
    let out = run("pg_dump -Fc", cluster.client("pg_dump").args(["-Fc", "-d", "postgres", "-f", &archive]).output());
    assert!(out.status.success());
    files
}

/// The roles first (errors for the roles the target already has are expected), then the
/// database; the pg_restore run's output.
fn restore(into: &Cluster, db: &str, globals: &str, archive: &str, exit_on_error: bool) -> Output {
    run("psql -f globals", into.psql().args(["-q", "-f", globals]).output());
    let mut cmd = into.client("pg_restore");
    cmd.args(["-d", db]);
    if exit_on_error {
        cmd.arg("--exit-on-error");
    }
    run("pg_restore", cmd.arg(archive).output())
}

/// Waits until the restored rules are in force in `db`: the worker has loaded them once bob, a
/// member who is not on call, is refused (until the first load nothing is gated).
fn wait_gated(cluster: &Cluster, db: &str) {
    let mut bob = cluster.connect_db("bob", db);
    assert!(
        wait_until(Duration::from_secs(20), || bob
            .batch_execute("SET pg_oncall.reason = 'x'; SET ROLE prod_admin; RESET ROLE")
            .is_err()),
        "the worker loads the restored rules into the gate\n{}",
        cluster.log_tail()
    );
}

fn visible_accounts(cluster: &Cluster, role: &str, db: &str) -> String {
    let mut c = cluster.connect_db(role, db);
    c.query_one("SELECT count(*)::text FROM public.accounts", &[]).unwrap_or_else(|e| panic!("{role}: {}", error_text(&e))).get(0)
}

#[test]
fn a_dump_restores_into_a_cluster_with_the_library_and_the_gate_enforces_it() {
    let src = source();
    let files = dump(&src, "lib");
    let (globals, archive) = (files.globals.as_str(), files.archive.as_str());
    let mut s = src.connect();
    let tables = [
        "SELECT g::text FROM oncall.gated_roles AS g ORDER BY 1",
        "SELECT i::text FROM oncall.identities AS i ORDER BY 1",
        "SELECT (s.source, s.email, s.escalation_policy_id, s.starts_at, s.ends_at, s.reason, s.created_by)::text
           FROM oncall.shifts AS s WHERE s.source = 'manual' ORDER BY 1",
        "SELECT e::text FROM oncall.elevation_records AS e ORDER BY 1",
    ];
    let before: Vec<Vec<String>> = tables.iter().map(|q| rows(&mut s, q)).collect();
    assert!(before.iter().all(|t| !t.is_empty()), "every configuration table has rows: {before:?}");
    drop(s);
    drop(src);

    // A fresh cluster with the library preloaded, extension not created: pg_restore creates it.
    let dst = Cluster::builder()
        .no_wait_ready()
        .without_pg_oncall()
        .conf(&["shared_preload_libraries = 'pg_oncall'", "pg_oncall.database = 'postgres'"])
        .start();
    let out = restore(&dst, "postgres", globals, archive, true);
    assert!(out.status.success(), "pg_restore --exit-on-error succeeds:\n{}", String::from_utf8_lossy(&out.stderr));
    let mut admin = dst.connect();
    let after: Vec<Vec<String>> = tables.iter().map(|q| rows(&mut admin, q)).collect();
    assert_eq!(after, before, "rules, identities, manual shifts and elevation records are restored as they were");
    assert_eq!(
        rows(&mut admin, "SELECT count(*)::text FROM oncall.shifts WHERE source = 'pagerduty'"),
        ["0"],
        "PagerDuty shifts are not dumped: the next sync fetches them"
    );
    assert_eq!(
        rows(&mut admin, "SELECT (last_success_at IS NULL AND syncs_ok = 0)::text FROM oncall.sync_state"),
        ["true"],
        "the sync's state starts afresh"
    );
    // The restored gate: alice on call by her restored override, bob (PagerDuty shift, not
    // restored, and never synced here) refused; the RLS policy asks the gate.
    wait_gated(&dst, "postgres");
    let mut alice = dst.connect_as("alice");
    assert!(
        wait_until(Duration::from_secs(10), || alice
            .batch_execute("SET pg_oncall.reason = 'INC-42'; SET ROLE prod_admin; RESET ROLE")
            .is_ok()),
        "alice may assume prod_admin after the restore\n{}",
        dst.log_tail()
    );
    let mut bob = dst.connect_as("bob");
    let e = bob.batch_execute("SET pg_oncall.reason = 'x'; SET ROLE prod_admin").expect_err("bob is refused");
    assert_eq!(e.code(), Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{}", error_text(&e));
    assert_eq!(visible_accounts(&dst, "alice", "postgres"), "2", "the restored RLS policy lets the on-call user read");
    assert_eq!(visible_accounts(&dst, "bob", "postgres"), "0", "and nobody else");
    let e = dst.connect_as("alice").batch_execute("SET ROLE prod_admin").expect_err("the restored rule requires a reason");
    eprintln!("without a reason after the restore: {}", error_text(&e));
}

#[test]
fn without_the_library_preloaded_the_restore_fails_closed_and_says_why() {
    let src = source();
    let files = dump(&src, "nolib");
    let (g, a) = (files.globals.as_str(), files.archive.as_str());
    drop(src);

    // pg_oncall's files are installed, but it is not in shared_preload_libraries.
    let dst = Cluster::builder().without_pg_oncall().start();
    let stop = restore(&dst, "postgres", g, a, true);
    assert!(!stop.status.success(), "pg_restore --exit-on-error stops");
    let stderr = String::from_utf8_lossy(&stop.stderr);
    assert!(stderr.contains("pg_oncall must be loaded via shared_preload_libraries"), "the error names the cause:\n{stderr}");
    let mut admin = dst.connect();
    assert_eq!(rows(&mut admin, "SELECT count(*)::text FROM pg_extension WHERE extname = 'pg_oncall'"), ["0"]);

    // Without --exit-on-error the rest restores; pg_oncall's rows do not, and the table whose
    // policy asks pg_oncall keeps RLS on without its policy: closed to everyone but its owner.
    admin.batch_execute("DROP TABLE IF EXISTS public.accounts").unwrap();
    let out = restore(&dst, "postgres", g, a, false);
    assert!(!out.status.success(), "pg_restore reports the errors it ignored");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("errors ignored on restore"), "{stderr}");
    assert_eq!(rows(&mut admin, "SELECT count(*)::text FROM pg_extension WHERE extname = 'pg_oncall'"), ["0"]);
    assert_eq!(
        rows(
            &mut admin,
            "SELECT count(*)::text FROM pg_class WHERE relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = 'oncall')"
        ),
        ["0"],
        "pg_dump's CREATE SCHEMA oncall leaves an empty schema, nothing in it"
    );
    assert_eq!(rows(&mut admin, "SELECT count(*)::text FROM public.accounts"), ["2"], "the application's rows are restored");
    assert_eq!(rows(&mut admin, "SELECT relrowsecurity::text FROM pg_class WHERE oid = 'public.accounts'::regclass"), ["true"]);
    assert_eq!(rows(&mut admin, "SELECT count(*)::text FROM pg_policy WHERE polrelid = 'public.accounts'::regclass"), ["0"]);
    assert_eq!(visible_accounts(&dst, "alice", "postgres"), "0", "closed without its policy");
    assert_eq!(visible_accounts(&dst, "bob", "postgres"), "0", "closed without its policy");

    // The recovery the README gives: preload the library, restart, restore again into an empty
    // database (here a new one, named by pg_oncall.database).
    dst.set_conf("shared_preload_libraries = 'pg_oncall'");
    dst.set_conf("pg_oncall.database = 'restored'");
    let mut dst = dst;
    dst.restart();
    dst.connect().batch_execute("CREATE DATABASE restored").unwrap();
    let out = restore(&dst, "restored", g, a, true);
    assert!(
        out.status.success(),
        "the restore succeeds once the library is preloaded:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_gated(&dst, "restored");
    let mut alice = dst.connect_db("alice", "restored");
    assert!(
        wait_until(Duration::from_secs(10), || alice
            .batch_execute("SET pg_oncall.reason = 'INC-42'; SET ROLE prod_admin; RESET ROLE")
            .is_ok()),
        "the restored gate lets alice in\n{}",
        dst.log_tail()
    );
    assert_eq!(visible_accounts(&dst, "alice", "restored"), "2");
    assert_eq!(visible_accounts(&dst, "bob", "restored"), "0");
}
