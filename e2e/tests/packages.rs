//! The Debian package of one major, in a cluster of that major (issue 12): run by
//! `scripts/package-test.sh <major>` (`make test`), which installs the `.deb` into a throw-away
//! root with dpkg, makes a private tree of the major whose pg_oncall files are exactly those
//! the package installed (`scripts/pgtree.sh --payload`), and points `PG_CONFIG` at it and
//! `PG_ONCALL_PACKAGE` at the `.deb`. The harness checks that every cluster maps that tree's
//! library. Not part of the ordinary suite (`test = false` in e2e/Cargo.toml), whose tree holds the
//! library just built instead.
//!
//!   bash scripts/package-test.sh 15

use std::time::Duration;

use e2e::*;
use postgres::error::SqlState;
use postgres::Client;

/// Released versions the package must carry the scripts of (as e2e/tests/upgrade.rs).
const RELEASED: &[&str] = &["0.1.0"];

fn package() -> String {
    std::env::var("PG_ONCALL_PACKAGE").expect("PG_ONCALL_PACKAGE names the .deb under test: run scripts/package-test.sh <major>")
}

/// The extension's version: the workspace's (Cargo.toml), which the package is named after.
fn version() -> String {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml")).expect("read Cargo.toml");
    let v = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \"").and_then(|r| r.strip_suffix('"')))
        .expect("a version in Cargo.toml")
        .to_string();
    assert!(package().contains(&format!("_{v}_")), "{} is the package of version {v}", package());
    v
}

fn extversion(admin: &mut Client) -> String {
    admin.query_one("SELECT extversion FROM pg_extension WHERE extname = 'pg_oncall'", &[]).unwrap().get(0)
}

/// The smoke test: a gated role that alice (on call, manual shift) may assume and bob may not.
fn gate_smoke(cluster: &Cluster, what: &str) {
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'prod_admin') THEN
                     CREATE ROLE prod_admin NOLOGIN;
                     CREATE ROLE alice LOGIN NOINHERIT;
                     CREATE ROLE bob LOGIN NOINHERIT;
                     GRANT prod_admin TO alice, bob;
                 END IF;
             END $$;
             SELECT oncall.gate_role('prod_admin');
             DELETE FROM oncall.identities;
             INSERT INTO oncall.identities VALUES ('alice', 'alice@example.com'), ('bob', 'bob@example.com');
             DELETE FROM oncall.shifts WHERE source = 'manual';
             INSERT INTO oncall.shifts (source, email) VALUES ('manual', 'alice@example.com');",
        )
        .unwrap_or_else(|e| panic!("{what}: set up the gate: {}", error_text(&e)));
    let mut alice = cluster.connect_as("alice");
    assert!(
        wait_until(Duration::from_secs(5), || alice.batch_execute("SET ROLE prod_admin").is_ok()),
        "{what}: alice (on call) may SET ROLE prod_admin\n{}",
        cluster.log_tail()
    );
    let current: String = alice.query_one("SELECT current_user::text", &[]).unwrap().get(0);
    assert_eq!(current, "prod_admin", "{what}");
    alice.batch_execute("RESET ROLE").unwrap();
    let mut bob = cluster.connect_as("bob");
    let e = bob.batch_execute("SET ROLE prod_admin").expect_err("bob is not on call");
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{what}: bob is refused: {}", error_text(&e));
    let denied: i64 = admin
        .query_one("SELECT count FROM oncall.stats() WHERE route = 'set_role' AND decision = 'deny'", &[])
        .unwrap_or_else(|e| panic!("{what}: oncall.stats(): {}", error_text(&e)))
        .get(0);
    assert!(denied >= 1, "{what}: the refusal is counted");
}

#[test]
fn the_package_creates_the_extension_and_gates() {
    let version = version();
    let cluster = Cluster::start(&[]);
    let mut admin = cluster.connect();
    assert_eq!(extversion(&mut admin), version, "CREATE EXTENSION installs the package's version");
    let available: Vec<String> = admin
        .query("SELECT version FROM pg_available_extension_versions WHERE name = 'pg_oncall' ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for v in RELEASED.iter().copied().chain([version.as_str()]) {
        assert!(available.iter().any(|a| a == v), "the package carries version {v}: {available:?}");
    }
    let doctor: Vec<String> = admin.query("SELECT problem FROM oncall.doctor()", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    eprintln!("doctor on a fresh install: {doctor:?}");
    gate_smoke(&cluster, "fresh install");
}

#[test]
fn the_package_updates_every_release_in_place() {
    let version = version();
    for &old in RELEASED {
        let cluster = Cluster::builder().extension_version(old).start();
        let mut admin = cluster.connect();
        assert_eq!(extversion(&mut admin), old);
        gate_smoke(&cluster, &format!("{old} catalog, new library"));
        let path: Vec<String> = admin
            .query("SELECT target FROM pg_extension_update_paths('pg_oncall') WHERE source = $1 AND path IS NOT NULL", &[&old])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(path.contains(&version), "the package carries an update path {old} → {version}: {path:?}");
        admin
            .batch_execute("ALTER EXTENSION pg_oncall UPDATE")
            .unwrap_or_else(|e| panic!("{old}: ALTER EXTENSION UPDATE: {}", error_text(&e)));
        assert_eq!(extversion(&mut admin), version, "{old} → {version}");
        gate_smoke(&cluster, &format!("updated from {old}"));
    }
}

/// Upgrading a running server, in the README's order: the package (dpkg renames the new
/// library over the old one; the running server keeps the old one mapped), a restart (the new
/// library with the old catalog: it enforces it), then `ALTER EXTENSION pg_oncall UPDATE`.
/// (Before the restart an update that adds C functions fails: PostgreSQL resolves them in the
/// library the backend already loaded under that file name, the old one.) No way back down.
#[test]
fn package_then_restart_then_update_and_never_back() {
    let version = version();
    let old = RELEASED[0];
    let mut cluster = Cluster::builder().extension_version(old).start();
    let lib = e2e::cluster::pkglibdir().join("pg_oncall.so");
    let fresh = lib.with_extension("so.dpkg-new");
    std::fs::copy(&lib, &fresh).expect("copy the library");
    std::fs::rename(&fresh, &lib).expect("rename it into place, as dpkg does");
    gate_smoke(&cluster, "the running server after the package was replaced");
    cluster.restart();
    let mut admin = cluster.connect();
    assert_eq!(extversion(&mut admin), old);
    gate_smoke(&cluster, &format!("restarted on the new library, {old} catalog"));
    admin
        .batch_execute("ALTER EXTENSION pg_oncall UPDATE")
        .unwrap_or_else(|e| panic!("ALTER EXTENSION UPDATE after the restart: {}", error_text(&e)));
    assert_eq!(extversion(&mut admin), version);
    gate_smoke(&cluster, "updated after the restart");
    let e = admin.batch_execute(&format!("ALTER EXTENSION pg_oncall UPDATE TO '{old}'")).expect_err("no downgrade path");
    assert!(error_text(&e).contains("no update path"), "{}", error_text(&e));
}
