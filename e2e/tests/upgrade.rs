//! Upgrades (DESIGN.md, "Releases"): a cluster created at each released version and filled
//! with every kind of row keeps all of it through `ALTER EXTENSION pg_oncall UPDATE`, ends with
//! exactly the schema of a fresh install, and is enforced by the new library before and after
//! the update.

use e2e::*;
use postgres::Client;

/// Every released version a DBA may upgrade from (add each release here).
const RELEASED: &[&str] = &["0.1.0"];

/// The extension's objects as `pg_dump --schema-only` prints them. pg_dump shows an
/// extension as one CREATE EXTENSION line, so its members are detached from it first (they stay
/// in place): the cluster is not usable as an extension afterwards. Lines that differ between
/// any two clusters (the dump's own version, its random `\restrict` key) are left out.
fn schema(cluster: &Cluster) -> String {
    let mut admin = cluster.connect();
    let detach: Vec<String> = rows(
        &mut admin,
        "SELECT pg_catalog.format('ALTER EXTENSION pg_oncall DROP %s %s', o.type, o.identity)
           FROM pg_catalog.pg_depend AS d, pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid) AS o
          WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
            AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension AS e WHERE e.extname = 'pg_oncall')
            -- A table's row type, and (a member from PostgreSQL 17) its array type, go with the table.
            AND NOT (d.classid = 'pg_catalog.pg_type'::regclass
                     AND EXISTS (SELECT FROM pg_catalog.pg_type AS t
                                  WHERE t.oid = d.objid
                                    AND (t.typrelid <> 0
                                         OR EXISTS (SELECT FROM pg_catalog.pg_type AS e WHERE e.oid = t.typelem AND e.typrelid <> 0))))
          ORDER BY 1",
    );
    assert!(!detach.is_empty(), "the extension has members");
    admin.batch_execute(&detach.join(";\n")).unwrap_or_else(|e| panic!("detach the members: {}", error_text(&e)));
    let out = cluster.client("pg_dump").args(["--schema-only", "-d", "postgres"]).output().expect("run pg_dump");
    assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("-- Dumped") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn rows(c: &mut Client, sql: &str) -> Vec<String> {
    c.query(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e))).iter().map(|r| r.get::<_, String>(0)).collect()
}

/// Every row of every table, in the columns 0.1.0 had (columns added later are checked apart).
const TABLES: [&str; 4] = [
    "SELECT (g.role_name, g.escalation_policy_ids, g.schedule_ids, g.min_escalation_level, g.max_escalation_level,
             g.gate_login)::text FROM oncall.gated_roles AS g ORDER BY 1",
    "SELECT i::text FROM oncall.identities AS i ORDER BY 1",
    "SELECT s::text FROM oncall.shifts AS s ORDER BY 1",
    "SELECT (s.singleton, s.token_configured, s.last_attempt_at, s.last_success_at, s.last_error, s.shifts, s.pages,
             s.requests, s.duration_ms, s.next_attempt_at, s.syncs_ok, s.syncs_failed)::text
       FROM oncall.sync_state AS s ORDER BY 1",
];

fn fill(admin: &mut Client) {
    admin
        .batch_execute(
            "CREATE ROLE prod_admin NOLOGIN;
             CREATE ROLE ops_bot LOGIN;
             CREATE ROLE alice LOGIN NOINHERIT;
             CREATE ROLE bob LOGIN NOINHERIT;
             GRANT prod_admin TO alice, bob;
             SELECT oncall.gate_role('prod_admin', escalation_policy_ids => '{PT20YPA,PABC}', min_escalation_level => 1,
                                     max_escalation_level => 2);
             SELECT oncall.gate_role('ops_bot', schedule_ids => '{SCHED1}', gate_login => true);
             INSERT INTO oncall.identities VALUES ('alice', 'alice@example.com'), ('bob', 'Bob@Example.com');
             INSERT INTO oncall.shifts (source, email, starts_at, ends_at)
                  VALUES ('manual', 'alice@example.com', now() - interval '1 minute', now() + interval '1 hour');
             SELECT oncall.override('carol@example.com', '2 hours', 'INC-1: disk full');
             INSERT INTO oncall.shifts (source, email, pagerduty_user_id, escalation_policy_id, escalation_level,
                                        schedule_id, starts_at, ends_at, synced_at)
                  VALUES ('pagerduty', 'bob@example.com', 'PUSER1', 'PT20YPA', 1, 'SCHED1', now() - interval '1 hour',
                          now() + interval '3 hours', now());
             UPDATE oncall.sync_state SET token_configured = true, last_attempt_at = now(), last_success_at = now(),
                    shifts = 1, pages = 1, requests = 1, duration_ms = 12.5, syncs_ok = 3, syncs_failed = 1;",
        )
        .unwrap_or_else(|e| panic!("fill the tables: {}", error_text(&e)));
}

/// Whether `user` may SET ROLE prod_admin (waiting for the snapshot to catch up).
fn may_switch(cluster: &Cluster, user: &str) -> bool {
    let mut session = cluster.connect_as(user);
    wait_until(PATIENCE, || session.batch_execute("SET ROLE prod_admin; RESET ROLE").is_ok())
}

/// Whether `user` may SET ROLE prod_admin once every committed change reached the snapshot.
fn may_switch_now(cluster: &Cluster, user: &str) -> bool {
    cluster.sync_point();
    cluster.connect_as(user).batch_execute("SET ROLE prod_admin").is_ok()
}

#[test]
fn every_release_upgrades_keeping_every_row_to_the_fresh_schema() {
    let fresh = Cluster::start(&[]);
    let version: String = fresh.connect().query_one("SELECT extversion FROM pg_extension WHERE extname = 'pg_oncall'", &[]).unwrap().get(0);
    let fresh_schema = schema(&fresh);
    assert!(fresh_schema.contains("CREATE FUNCTION oncall.doctor()"), "the dump shows the members:\n{fresh_schema}");
    for &old in RELEASED {
        let cluster = Cluster::builder().extension_version(old).start();
        let mut admin = cluster.connect();
        fill(&mut admin);
        // The new library enforces the old catalog: alice by her manual shift, bob by his
        // PagerDuty shift (fresh: sync_state says it synced now).
        assert!(may_switch(&cluster, "alice"), "{old}: alice is allowed with the {old} catalog");
        assert!(may_switch(&cluster, "bob"), "{old}: bob is allowed with the {old} catalog");
        admin.batch_execute("DELETE FROM oncall.shifts WHERE email = 'bob@example.com'").unwrap();
        assert!(!may_switch_now(&cluster, "bob"), "{old}: bob is refused once his shift is gone");
        admin.batch_execute(
            "INSERT INTO oncall.shifts (source, email, pagerduty_user_id, escalation_policy_id, escalation_level, schedule_id,
                                        starts_at, ends_at, synced_at)
                  VALUES ('pagerduty', 'dave@example.com', 'PUSER2', 'PABC', 2, NULL, now(), NULL, now())",
        ).unwrap();
        let before: Vec<Vec<String>> = TABLES.iter().map(|q| rows(&mut admin, q)).collect();
        assert!(before.iter().all(|t| !t.is_empty()), "{old}: every table has rows: {before:?}");

        admin.batch_execute("ALTER EXTENSION pg_oncall UPDATE").unwrap_or_else(|e| panic!("{old}: ALTER EXTENSION UPDATE: {}", error_text(&e)));
        let now: String = admin.query_one("SELECT extversion FROM pg_extension WHERE extname = 'pg_oncall'", &[]).unwrap().get(0);
        assert_eq!(now, version, "{old}: updated to the current version");
        let after: Vec<Vec<String>> = TABLES.iter().map(|q| rows(&mut admin, q)).collect();
        assert_eq!(after, before, "{old}: every row is kept");
        let added = rows(&mut admin, "SELECT (g.require_reason, g.max_duration, g.require_incident)::text FROM oncall.gated_roles AS g");
        assert!(added.iter().all(|r| r == "(f,,f)"), "{old}: rules gain the elevation limits' defaults: {added:?}");
        let added = rows(&mut admin, "SELECT (s.incidents, s.incident_requests, s.incidents_last_success_at)::text FROM oncall.sync_state AS s");
        assert_eq!(added, ["(0,0,)"], "{old}: the sync's health gains the incident sync's, never run");
        assert!(may_switch(&cluster, "alice"), "{old}: the gate allows after the update");
        assert!(!may_switch_now(&cluster, "bob"), "{old}: the gate refuses after the update");
        let upgraded = schema(&cluster);
        if upgraded != fresh_schema {
            let diff: Vec<String> = upgraded
                .lines()
                .zip(fresh_schema.lines())
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .take(10)
                .map(|(i, (a, b))| format!("line {i}:\n  upgraded: {a}\n  fresh:    {b}"))
                .collect();
            panic!("{old}: the upgraded schema differs from a fresh install of {version}:\n{}", diff.join("\n"));
        }
    }
}
