//! Monitoring (issue 12): the views `oncall.pg_stat_oncall` and `oncall.pg_stat_oncall_sync`
//! and `oncall.stats_reset()` — who may read and reset them, and that they report what the
//! gate and the sync do — and the shipped sql_exporter configuration (docs/monitoring/): every
//! query of the collector run against a live cluster as a pg_monitor member, with the columns
//! its metrics name, and alert rules that use only metrics the collector exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use e2e::*;
use postgres::error::SqlState;
use postgres::types::Type;
use postgres::Client;
use serde::Deserialize;

const TOKEN: &str = "monitoring-token";

fn docs(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/monitoring").join(file)
}

fn read_yaml<T: for<'de> Deserialize<'de>>(file: &str) -> T {
    let path = docs(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{} is not what sql_exporter/Prometheus read: {e}", path.display()))
}

// ------------------------------------------------------------------ sql_exporter's formats

/// A collector file, as sql_exporter reads it (unknown keys are errors there too).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Collector {
    collector_name: String,
    #[serde(default)]
    #[allow(dead_code)]
    min_interval: Option<String>,
    metrics: Vec<Metric>,
    #[serde(default)]
    queries: Vec<NamedQuery>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Metric {
    metric_name: String,
    #[serde(rename = "type")]
    kind: String,
    help: String,
    #[serde(default)]
    key_labels: Vec<String>,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    value_label: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    query_ref: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedQuery {
    query_name: String,
    query: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExporterConfig {
    #[allow(dead_code)]
    global: serde_norway::Value,
    target: Target,
    collector_files: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    #[allow(dead_code)]
    name: String,
    data_source_name: String,
    collectors: Vec<String>,
}

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    #[allow(dead_code)]
    name: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    alert: String,
    expr: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn collector() -> Collector {
    read_yaml("pg_oncall.collector.yml")
}

/// Each metric with the SQL it runs (inline or by reference), checked for shape.
fn metrics_with_sql(c: &Collector) -> Vec<(&Metric, String)> {
    let named: BTreeMap<&str, &str> = c.queries.iter().map(|q| (q.query_name.as_str(), q.query.as_str())).collect();
    assert_eq!(named.len(), c.queries.len(), "query names are unique");
    let mut names = BTreeSet::new();
    let mut used = BTreeSet::new();
    let out: Vec<(&Metric, String)> = c
        .metrics
        .iter()
        .map(|m| {
            let name = &m.metric_name;
            assert!(names.insert(name.clone()), "{name}: metric names are unique");
            assert!(name.starts_with("pg_oncall_"), "{name}: prefixed pg_oncall_");
            assert!(!m.help.trim().is_empty(), "{name}: has help");
            match m.kind.as_str() {
                "counter" => assert!(name.ends_with("_total"), "{name}: a counter's name ends in _total"),
                "gauge" => assert!(!name.ends_with("_total"), "{name}: a gauge's name does not end in _total"),
                other => panic!("{name}: type {other} is neither counter nor gauge"),
            }
            assert!(!m.values.is_empty(), "{name}: names its value column");
            assert!(m.values.len() == 1 || m.value_label.is_some(), "{name}: several values need a value_label");
            let sql = match (&m.query, &m.query_ref) {
                (Some(q), None) => q.clone(),
                (None, Some(r)) => {
                    used.insert(r.as_str());
                    named.get(r.as_str()).unwrap_or_else(|| panic!("{name}: query_ref {r} is not defined")).to_string()
                }
                _ => panic!("{name}: exactly one of query and query_ref"),
            };
            (m, sql)
        })
        .collect();
    let unused: Vec<&&str> = named.keys().filter(|q| !used.contains(*q)).collect();
    assert!(unused.is_empty(), "queries no metric uses: {unused:?}");
    out
}

// ------------------------------------------------------------------ the cluster

/// A cluster synced from a fake PagerDuty, with a gated role, alice on call (manual shift),
/// bob not, and `exporter`, a login role in pg_monitor only.
fn monitored(extra_conf: &[&str]) -> (Cluster, fake_pagerduty::FakePagerDuty, Client) {
    let (cluster, fake) = Cluster::start_with_pagerduty(extra_conf, TOKEN);
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE ROLE prod_admin NOLOGIN;
             CREATE ROLE alice LOGIN NOINHERIT;
             CREATE ROLE bob LOGIN NOINHERIT;
             CREATE ROLE nobody LOGIN;
             CREATE ROLE exporter LOGIN IN ROLE pg_monitor;
             GRANT prod_admin TO alice, bob;
             SELECT oncall.gate_role('prod_admin');
             INSERT INTO oncall.identities VALUES ('alice', 'alice@example.com'), ('bob', 'bob@example.com');
             INSERT INTO oncall.shifts (source, email) VALUES ('manual', 'alice@example.com');",
        )
        .unwrap_or_else(|e| panic!("set up: {}", error_text(&e)));
    let mut alice = cluster.connect_as("alice");
    assert!(
        wait_until(Duration::from_secs(5), || check_access(&mut alice)),
        "alice's shift reaches decisions\n{}",
        cluster.log_tail()
    );
    (cluster, fake, admin)
}

fn decisions(c: &mut Client) -> BTreeMap<(String, String), i64> {
    c.query("SELECT route, decision, count FROM oncall.pg_stat_oncall", &[])
        .unwrap_or_else(|e| panic!("oncall.pg_stat_oncall: {}", error_text(&e)))
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect()
}

fn count(d: &BTreeMap<(String, String), i64>, route: &str, decision: &str) -> i64 {
    *d.get(&(route.to_string(), decision.to_string()))
        .unwrap_or_else(|| panic!("pg_stat_oncall has no row {route}/{decision}: {d:?}"))
}

#[track_caller]
fn refused(c: &mut Client, sql: &str) {
    let e = c.batch_execute(sql).expect_err(sql);
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{sql}: {}", error_text(&e));
}

// ------------------------------------------------------------------ the views

#[test]
fn pg_stat_oncall_counts_decisions_since_a_superusers_reset() {
    let (cluster, _fake, mut admin) = monitored(&[]);
    let mut exporter = cluster.connect_as("exporter");
    let before = decisions(&mut exporter);
    assert_eq!(before.len(), 24, "every route × decision, zeros included: {before:?}");
    let started: chrono::DateTime<chrono::Utc> =
        exporter.query_one("SELECT DISTINCT stats_reset FROM oncall.pg_stat_oncall", &[]).unwrap().get(0);
    let server_start: chrono::DateTime<chrono::Utc> = admin.query_one("SELECT pg_postmaster_start_time()", &[]).unwrap().get(0);
    assert!(
        (started - server_start).num_seconds().abs() <= 5,
        "stats_reset is the server's start until a reset: {started} vs {server_start}"
    );

    // Only superusers reset; pg_monitor reads; others neither.
    refused(&mut exporter, "SELECT oncall.stats_reset()");
    refused(&mut exporter, "SELECT oncall._stats_reset()");
    let mut nobody = cluster.connect_as("nobody");
    for sql in [
        "SELECT * FROM oncall.pg_stat_oncall",
        "SELECT * FROM oncall.pg_stat_oncall_sync",
        "SELECT oncall.stats_reset()",
        "SELECT oncall._stats_reset()",
        "SELECT oncall._stats_reset_at()",
        "SELECT * FROM oncall._snapshot_usage()",
    ] {
        refused(&mut nobody, sql);
    }
    // Even if a superuser grants EXECUTE by mistake, the C side refuses a non-superuser.
    admin.batch_execute("GRANT EXECUTE ON FUNCTION oncall.stats_reset(), oncall._stats_reset() TO nobody").unwrap();
    refused(&mut nobody, "SELECT oncall.stats_reset()");
    admin.batch_execute("REVOKE EXECUTE ON FUNCTION oncall.stats_reset(), oncall._stats_reset() FROM nobody").unwrap();

    let mut alice = cluster.connect_as("alice");
    let mut bob = cluster.connect_as("bob");
    alice.batch_execute("SET ROLE prod_admin; RESET ROLE").unwrap();
    refused(&mut bob, "SET ROLE prod_admin");
    let counted = decisions(&mut exporter);
    assert!(count(&counted, "set_role", "allow") >= 1 && count(&counted, "set_role", "deny") >= 1, "{counted:?}");

    let reset: chrono::DateTime<chrono::Utc> = admin.query_one("SELECT oncall.stats_reset()", &[]).unwrap().get(0);
    let zeroed = decisions(&mut exporter);
    assert!(zeroed.values().all(|&c| c == 0), "every counter is zero after the reset: {zeroed:?}");
    let shown: chrono::DateTime<chrono::Utc> =
        exporter.query_one("SELECT DISTINCT stats_reset FROM oncall.pg_stat_oncall", &[]).unwrap().get(0);
    assert_eq!(shown, reset, "stats_reset shows the reset's time");
    assert!(reset > started);

    for _ in 0..2 {
        alice.batch_execute("SET ROLE prod_admin; RESET ROLE").unwrap();
    }
    for _ in 0..3 {
        refused(&mut bob, "SET ROLE prod_admin");
    }
    let after = decisions(&mut exporter);
    assert_eq!(count(&after, "set_role", "allow"), 2, "{after:?}");
    assert_eq!(count(&after, "set_role", "deny"), 3, "{after:?}");
    // oncall.stats() reads the same counters.
    let stats: i64 =
        admin.query_one("SELECT count FROM oncall.stats() WHERE route = 'set_role' AND decision = 'deny'", &[]).unwrap().get(0);
    assert_eq!(stats, 3);
}

#[test]
fn monitoring_objects_are_readable_by_pg_monitor_and_writable_by_nobody_else() {
    let (cluster, _fake, mut admin) = monitored(&[]);
    // Every relation of the schema: pg_monitor may read the views it is meant to, and may
    // change nothing; a plain role may do neither.
    let rows = admin
        .query(
            "SELECT c.oid::regclass::text,
                    has_table_privilege('exporter', c.oid, 'SELECT'),
                    has_table_privilege('exporter', c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'),
                    has_table_privilege('nobody', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
               FROM pg_class AS c
              WHERE c.relnamespace = 'oncall'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
              ORDER BY 1",
            &[],
        )
        .unwrap();
    let readable: BTreeSet<String> = rows.iter().filter(|r| r.get::<_, bool>(1)).map(|r| r.get(0)).collect();
    let expected: BTreeSet<String> =
        ["oncall.elevations", "oncall.pg_stat_oncall", "oncall.pg_stat_oncall_sync"].iter().map(|s| s.to_string()).collect();
    assert!(expected.is_subset(&readable), "pg_monitor reads the monitoring views: {readable:?}");
    for r in &rows {
        let name: String = r.get(0);
        assert!(!r.get::<_, bool>(2), "pg_monitor may change {name}");
        assert!(!r.get::<_, bool>(3), "a plain role may use {name}");
    }
    // Functions: a plain role may run only the decisions everyone may ask for.
    let open: Vec<String> = admin
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc AS p
              WHERE p.pronamespace = 'oncall'::regnamespace AND has_function_privilege('nobody', p.oid, 'EXECUTE')
              ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // (`_ids_valid` is the CHECK constraints' pure test of an id list.)
    let for_everyone =
        ["oncall.check_oncall_access", "oncall.is_on_call", "oncall.whoami", "oncall._whoami", "oncall._ids_valid"];
    let unexpected: Vec<&String> =
        open.iter().filter(|f| !for_everyone.iter().any(|p| f.starts_with(&format!("{p}(")))).collect();
    assert!(unexpected.is_empty(), "everyone may run {unexpected:?}");
    let mut exporter = cluster.connect_as("exporter");
    let e = exporter.batch_execute("DELETE FROM oncall.pg_stat_oncall").expect_err("views are not writable");
    assert!(
        matches!(e.code(), Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE || *c == SqlState::FEATURE_NOT_SUPPORTED || *c == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE),
        "{}",
        error_text(&e)
    );
}

#[test]
fn pg_stat_oncall_sync_reports_health_failures_and_capacity() {
    let (cluster, fake, mut admin) = monitored(&["pg_oncall.max_identities = 4", "pg_oncall.max_shifts = 50"]);
    let mut exporter = cluster.connect_as("exporter");
    let row = exporter
        .query_one(
            "SELECT worker_running, token_configured, stale, last_error, syncs_ok, last_success_age_seconds,
                    snapshot_identities, snapshot_max_identities, snapshot_shifts, snapshot_max_shifts,
                    snapshot_gated_roles, snapshot_max_gated_roles, snapshot_overflowed, elevation_events_dropped,
                    incidents_stale, notes_enabled, notes_posted, notes_failed, notes_dropped
               FROM oncall.pg_stat_oncall_sync",
            &[],
        )
        .unwrap_or_else(|e| panic!("pg_stat_oncall_sync as pg_monitor: {}", error_text(&e)));
    assert!(row.get::<_, bool>("worker_running"));
    assert!(row.get::<_, bool>("token_configured"));
    assert!(!row.get::<_, bool>("stale"), "just synced");
    assert_eq!(row.get::<_, Option<String>>("last_error"), None);
    assert!(row.get::<_, i64>("syncs_ok") >= 1);
    let age: f64 = row.get("last_success_age_seconds");
    assert!((0.0..60.0).contains(&age), "last_success_age_seconds {age}");
    assert_eq!((row.get::<_, i64>("snapshot_identities"), row.get::<_, i64>("snapshot_max_identities")), (2, 4));
    assert_eq!((row.get::<_, i64>("snapshot_shifts"), row.get::<_, i64>("snapshot_max_shifts")), (1, 50), "alice's manual shift");
    assert_eq!((row.get::<_, i64>("snapshot_gated_roles"), row.get::<_, i64>("snapshot_max_gated_roles")), (1, 1000));
    assert!(!row.get::<_, bool>("snapshot_overflowed"));
    assert_eq!(row.get::<_, i64>("elevation_events_dropped"), 0);
    assert_eq!(row.get::<_, Option<bool>>("incidents_stale"), None, "no rule requires an incident: incidents are not synced");
    assert!(!row.get::<_, bool>("notes_enabled"));
    let notes: (i64, i64, i64) = (row.get("notes_posted"), row.get("notes_failed"), row.get("notes_dropped"));
    assert_eq!(notes, (0, 0, 0));

    // A load past the capacity is refused whole and shows.
    admin
        .batch_execute(
            "INSERT INTO oncall.identities VALUES ('c1', 'c1@example.com'), ('c2', 'c2@example.com'), ('c3', 'c3@example.com')",
        )
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || exporter
            .query_one("SELECT snapshot_overflowed FROM oncall.pg_stat_oncall_sync", &[])
            .unwrap()
            .get::<_, bool>(0)),
        "the refused load shows as snapshot_overflowed\n{}",
        cluster.log_tail()
    );
    let still: i64 = exporter.query_one("SELECT snapshot_identities FROM oncall.pg_stat_oncall_sync", &[]).unwrap().get(0);
    assert_eq!(still, 2, "the previous snapshot stays in force");
    admin.batch_execute("DELETE FROM oncall.identities WHERE role_name IN ('c1', 'c2', 'c3')").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || !exporter
            .query_one("SELECT snapshot_overflowed FROM oncall.pg_stat_oncall_sync", &[])
            .unwrap()
            .get::<_, bool>(0)),
        "a load that fits clears snapshot_overflowed"
    );

    // A failing sync: last_error, syncs_failed, and the collector's `failing` flag.
    fake.set_token("another-token");
    let e = admin.batch_execute("SELECT oncall.refresh()").expect_err("the sync fails with a wrong token");
    eprintln!("refresh with a wrong token: {}", error_text(&e));
    let row = exporter.query_one("SELECT last_error, syncs_failed, stale FROM oncall.pg_stat_oncall_sync", &[]).unwrap();
    let last_error: Option<String> = row.get(0);
    assert!(last_error.as_deref().is_some_and(|e| e.contains("401")), "last_error names the failure: {last_error:?}");
    assert!(row.get::<_, i64>(1) >= 1, "syncs_failed counts it");
    assert!(!row.get::<_, bool>(2), "one failed sync does not make the data stale");
    assert!(!last_error.unwrap_or_default().contains(TOKEN), "the token never shows");
    let failing: i32 =
        exporter.query_one("SELECT (last_error IS NOT NULL)::int FROM oncall.pg_stat_oncall_sync", &[]).unwrap().get(0);
    assert_eq!(failing, 1);
}

// ------------------------------------------------------------------ docs/monitoring

#[test]
fn every_shipped_collector_query_runs_as_pg_monitor_with_its_columns() {
    let collector = collector();
    assert_eq!(collector.collector_name, "pg_oncall");
    let exporter_config: ExporterConfig = read_yaml("sql_exporter.yml");
    assert!(exporter_config.target.collectors.contains(&collector.collector_name), "sql_exporter.yml runs the collector");
    assert!(
        exporter_config.collector_files.iter().any(|f| f == "pg_oncall.collector.yml"),
        "sql_exporter.yml loads the collector file"
    );
    assert!(exporter_config.target.data_source_name.starts_with("postgres://"), "a PostgreSQL data source");
    let metrics = metrics_with_sql(&collector);

    let (cluster, _fake, _admin) = monitored(&[]);
    // Something to count, and an elevation in progress while the queries run.
    let mut bob = cluster.connect_as("bob");
    refused(&mut bob, "SET ROLE prod_admin");
    let mut alice = cluster.connect_as("alice");
    alice.batch_execute("SET ROLE prod_admin").unwrap();
    let mut exporter = cluster.connect_as("exporter");
    assert!(
        wait_until(Duration::from_secs(5), || exporter
            .query_one("SELECT count(*) FROM oncall.elevations WHERE ended_at IS NULL", &[])
            .unwrap()
            .get::<_, i64>(0)
            == 1),
        "alice's elevation is recorded\n{}",
        cluster.log_tail()
    );

    let mut exported = BTreeMap::new();
    for (metric, sql) in &metrics {
        let name = &metric.metric_name;
        let statement = exporter
            .prepare(sql)
            .unwrap_or_else(|e| panic!("{name}: the query does not run as pg_monitor: {}\n{sql}", error_text(&e)));
        let columns: BTreeMap<&str, &Type> = statement.columns().iter().map(|c| (c.name(), c.type_())).collect();
        for label in &metric.key_labels {
            let t = columns
                .get(label.as_str())
                .unwrap_or_else(|| panic!("{name}: no column {label} for its label; columns {columns:?}"));
            assert!([Type::TEXT, Type::NAME, Type::VARCHAR].contains(t), "{name}: label column {label} is {t}, not text");
        }
        for value in &metric.values {
            let t = columns
                .get(value.as_str())
                .unwrap_or_else(|| panic!("{name}: no column {value} for its value; columns {columns:?}"));
            assert!(
                [Type::INT2, Type::INT4, Type::INT8, Type::FLOAT4, Type::FLOAT8].contains(t),
                "{name}: value column {value} is {t}, not a number"
            );
        }
        let rows = exporter.query(&statement, &[]).unwrap_or_else(|e| panic!("{name}: {}", error_text(&e)));
        assert!(!rows.is_empty(), "{name}: the query returns rows");
        let mut samples = Vec::new();
        for row in &rows {
            let labels: Vec<String> = metric.key_labels.iter().map(|l| row.get::<_, String>(l.as_str())).collect();
            for value in &metric.values {
                let v: Option<f64> = match *columns[value.as_str()] {
                    Type::INT2 => row.get::<_, Option<i16>>(value.as_str()).map(f64::from),
                    Type::INT4 => row.get::<_, Option<i32>>(value.as_str()).map(f64::from),
                    Type::INT8 => row.get::<_, Option<i64>>(value.as_str()).map(|v| v as f64),
                    Type::FLOAT4 => row.get::<_, Option<f32>>(value.as_str()).map(f64::from),
                    _ => row.get::<_, Option<f64>>(value.as_str()),
                };
                let v =
                    v.unwrap_or_else(|| panic!("{name}: {value} is NULL (sql_exporter cannot export it) for labels {labels:?}"));
                samples.push((labels.clone(), v));
            }
        }
        let unique: BTreeSet<&Vec<String>> = samples.iter().map(|(l, _)| l).collect();
        assert_eq!(unique.len(), samples.len(), "{name}: one sample per label set: {samples:?}");
        eprintln!("{name}: {samples:?}");
        exported.insert(name.clone(), samples);
    }
    let one = |name: &str| -> f64 {
        let s = &exported[name];
        assert_eq!(s.len(), 1, "{name}: one sample");
        s[0].1
    };
    assert_eq!(one("pg_oncall_sync_worker_up"), 1.0);
    assert_eq!(one("pg_oncall_sync_stale"), 0.0);
    assert_eq!(one("pg_oncall_sync_failing"), 0.0);
    assert!(one("pg_oncall_sync_last_success_timestamp_seconds") > 1.7e9);
    assert_eq!(exported["pg_oncall_decisions_total"].len(), 24);
    assert!(exported["pg_oncall_decisions_total"].contains(&(vec!["set_role".into(), "deny".into()], 1.0)));
    assert_eq!(exported["pg_oncall_elevations_open"], vec![(vec!["prod_admin".to_string()], 1.0)]);
    let kinds: BTreeSet<String> = exported["pg_oncall_snapshot_capacity"].iter().map(|(l, _)| l[0].clone()).collect();
    assert_eq!(kinds, ["gated_roles", "identities", "ids", "shifts"].iter().map(|s| s.to_string()).collect());
    assert!(exported["pg_oncall_snapshot_entries"].contains(&(vec!["identities".into()], 2.0)));
    assert_eq!(one("pg_oncall_incidents_stale"), 0.0, "incidents are not synced: not stale");
    assert_eq!(exported["pg_oncall_notes_total"].len(), 3);
}

#[test]
fn alert_rules_cover_the_failure_modes_with_collected_metrics() {
    let collector = collector();
    let metrics: BTreeSet<&str> = collector.metrics.iter().map(|m| m.metric_name.as_str()).collect();
    let rules: RuleFile = read_yaml("pg_oncall.rules.yml");
    let all: Vec<&Rule> = rules.groups.iter().flat_map(|g| &g.rules).collect();
    for rule in &all {
        let mut rest = rule.expr.as_str();
        let mut named = 0;
        while let Some(at) = rest.find("pg_oncall_") {
            let tail = &rest[at..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            let metric = &tail[..end];
            assert!(metrics.contains(metric), "{}: {metric} is not a metric of the collector", rule.alert);
            named += 1;
            rest = &tail[end..];
        }
        assert!(named > 0, "{}: uses a pg_oncall metric", rule.alert);
        assert!(rule.labels.contains_key("severity"), "{}: has a severity", rule.alert);
        assert!(rule.annotations.contains_key("summary"), "{}: has a summary", rule.alert);
    }
    let uses = |metric: &str| all.iter().any(|r| r.expr.contains(metric));
    for (failure, metric) in [
        ("the sync failing", "pg_oncall_sync_failing"),
        ("stale data", "pg_oncall_sync_stale"),
        ("denials spiking", "pg_oncall_decisions_total"),
        ("the snapshot near capacity", "pg_oncall_snapshot_capacity"),
        ("elevation events dropped", "pg_oncall_elevation_events_dropped_total"),
        ("stale incidents", "pg_oncall_incidents_stale"),
        ("notes not posted", "pg_oncall_notes_total"),
    ] {
        assert!(uses(metric), "an alert on {failure} ({metric})");
    }
}
