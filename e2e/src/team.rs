//! The set-up a DBA would make, shared by the gate's tests: a (fake) PagerDuty with a token,
//! one gated role, one member on call and one who is not, and the controls of alice's shift.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use fake_pagerduty::{Fault, FakePagerDuty};
use postgres::Client;

use crate::cluster::{error_text, wait_until, Cluster};
use crate::refusal::{assert_access_ended_for, assert_refused};
use crate::session::may_assume;
use crate::PATIENCE;

pub const GATED: &str = "prod_admin";
pub const ALICE_EMAIL: &str = "alice@example.com";
pub const BOB_EMAIL: &str = "bob@example.com";
pub const TOKEN: &str = "team-token-3f9a1c";
/// A large object owned by prod_admin (content 'lo-secret').
pub const LO_OID: u32 = 424242;

/// The team's roles and objects; `{rule}` is replaced by extra `oncall.gate_role` arguments.
const TEAM_SQL: &str = "
    CREATE ROLE prod_admin NOLOGIN;
    CREATE ROLE readers NOLOGIN;
    CREATE ROLE alice LOGIN NOINHERIT;
    CREATE ROLE bob LOGIN NOINHERIT;
    GRANT prod_admin, readers TO alice, bob;
    CREATE SCHEMA work;
    CREATE SCHEMA lab;
    GRANT USAGE, CREATE ON SCHEMA work, lab TO prod_admin;
    GRANT USAGE ON SCHEMA work TO alice, bob;
    GRANT USAGE, CREATE ON SCHEMA lab TO alice, bob;
    GRANT CREATE ON DATABASE postgres TO alice, bob;
    CREATE TABLE work.t (x int);
    INSERT INTO work.t VALUES (1), (2);
    GRANT SELECT, INSERT ON work.t TO prod_admin;
    CREATE TABLE work.secret (x text);
    INSERT INTO work.secret VALUES ('s3cr3t');
    CREATE TABLE work.progress (at timestamptz NOT NULL DEFAULT clock_timestamp(), what text);
    CREATE SEQUENCE work.seq;
    ALTER TABLE work.secret OWNER TO prod_admin;
    ALTER TABLE work.progress OWNER TO prod_admin;
    ALTER SEQUENCE work.seq OWNER TO prod_admin;
    SELECT lo_create(424242);
    SELECT lo_put(424242, 0, 'lo-secret');
    ALTER LARGE OBJECT 424242 OWNER TO prod_admin;
    INSERT INTO oncall.identities VALUES ('alice', 'alice@example.com'), ('bob', 'bob@example.com');
    SELECT oncall.gate_role('prod_admin'{rule});
    INSERT INTO oncall.shifts (source, email, starts_at, ends_at)
         VALUES ('manual', 'alice@example.com', now() - interval '1 minute', now() + interval '1 hour');";

/// The cluster a DBA would run: pg_oncall preloaded, a (fake) PagerDuty with a token and a
/// fresh sync, and
/// - `prod_admin` NOLOGIN, gated (any policy), owning `work.secret` (one row, 's3cr3t'),
///   `work.seq`, `work.progress` and large object [`LO_OID`] ('lo-secret'); it may read and
///   insert into `work.t` (two rows), and create in schemas `work` and `lab`;
/// - `readers` NOLOGIN, not gated;
/// - `alice` LOGIN NOINHERIT, member of both, identity alice@example.com, on call for an hour
///   (a manual shift);
/// - `bob` LOGIN NOINHERIT, member of both, identity bob@example.com, never on call;
/// - both may use `work` and use/create in `lab` and in the database.
///
/// `oncall.doctor()` is clean. PagerDuty answers (no on-call rows); see [`Team::pagerduty_down`].
pub struct Team {
    pub cluster: Cluster,
    pub fake: FakePagerDuty,
    pub admin: Client,
}

/// A [`Team`] on a fresh cluster with `extra_conf`.
pub fn team(extra_conf: &[&str]) -> Team {
    team_with_rule(extra_conf, "")
}

/// A [`Team`] whose rule for prod_admin has the extra `oncall.gate_role` arguments `rule`
/// (e.g. `", max_duration => '2 seconds'"`).
pub fn team_with_rule(extra_conf: &[&str], rule: &str) -> Team {
    let (cluster, fake) = Cluster::start_with_pagerduty(extra_conf, TOKEN);
    let mut admin = setup_team(&cluster, rule);
    let findings: Vec<String> = admin
        .query("SELECT severity || ' ' || object || ': ' || problem FROM oncall.doctor()", &[])
        .unwrap_or_else(|e| panic!("doctor(): {}", error_text(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(findings.is_empty(), "the team set-up is what doctor calls clean: {findings:#?}");
    Team { cluster, fake, admin }
}

/// The team's roles, objects, rule and shift on an existing cluster (no PagerDuty needed);
/// returns a superuser session once alice may assume prod_admin and bob may not.
pub fn setup_team(cluster: &Cluster, rule: &str) -> Client {
    let mut admin = cluster.connect();
    admin.batch_execute(&TEAM_SQL.replace("{rule}", rule)).unwrap_or_else(|e| panic!("team set-up: {}", error_text(&e)));
    let mut alice = cluster.connect_as("alice");
    let mut bob = cluster.connect_as("bob");
    assert!(
        wait_until(PATIENCE, || may_assume(&mut alice, GATED) && !may_assume(&mut bob, GATED)),
        "the team set-up did not reach the sessions within {PATIENCE:?}\n{}",
        cluster.log_tail()
    );
    admin
}

impl Team {
    /// PagerDuty stops answering (503 to every request): nothing republishes the snapshot.
    pub fn pagerduty_down(&self) {
        self.fake.set_persistent_fault(Some(Fault::Status { code: 503, body: None, headers: vec![] }));
    }

    pub fn connect_as(&self, role: &str) -> Client {
        self.cluster.connect_as(role)
    }

    /// Replaces alice's shifts by one that ends `secs` seconds from now, and returns its end
    /// once it grants (a fresh session of hers may assume prod_admin before that end). Use a
    /// few seconds: whatever the test does "while on call" must fit before the end.
    pub fn alice_shift_ends_in(&mut self, secs: f64) -> DateTime<Utc> {
        let ends: DateTime<Utc> = self
            .admin
            .query_one(
                "WITH gone AS (DELETE FROM oncall.shifts WHERE email = $1)
                 INSERT INTO oncall.shifts (source, email, starts_at, ends_at)
                      VALUES ('manual', $1, now() - interval '1 minute', clock_timestamp() + make_interval(secs => $2))
                 RETURNING ends_at",
                &[&ALICE_EMAIL, &secs],
            )
            .unwrap_or_else(|e| panic!("short shift for alice: {}", error_text(&e)))
            .get(0);
        let mut probe = self.cluster.connect_as("alice");
        // may_assume is judged at its statement's start: true means "granted before the end".
        let mut granted = false;
        wait_until(PATIENCE, || {
            granted = Utc::now() < ends && may_assume(&mut probe, GATED);
            granted || Utc::now() >= ends
        });
        assert!(
            granted,
            "alice's {secs} s shift did not grant before its end (the machine is too slow for this window?)\n{}",
            self.cluster.log_tail()
        );
        ends
    }

    /// Waits (on the condition, no fixed sleep) until alice's shift that ends at `ends` is over
    /// for the gate: the clock passed `ends` and a fresh session of hers may no longer assume
    /// prod_admin.
    pub fn wait_shift_over(&self, ends: DateTime<Utc>) {
        let mut probe = self.cluster.connect_as("alice");
        let limit = (ends - Utc::now()).to_std().unwrap_or_default() + PATIENCE;
        assert!(
            wait_until(limit, || Utc::now() >= ends && !may_assume(&mut probe, GATED)),
            "alice's shift did not end by its ends_at\n{}",
            self.cluster.log_tail()
        );
    }

    /// Deletes alice's shifts and waits until a fresh session of hers may not assume prod_admin.
    pub fn end_alice_shift(&mut self) {
        self.admin.execute("DELETE FROM oncall.shifts WHERE email = $1", &[&ALICE_EMAIL]).expect("delete alice's shift");
        let mut probe = self.cluster.connect_as("alice");
        assert!(wait_until(PATIENCE, || !may_assume(&mut probe, GATED)), "alice's shift did not end\n{}", self.cluster.log_tail());
    }

    /// Gives alice a shift from a minute ago to an hour from now and waits until it grants.
    pub fn start_alice_shift(&mut self) {
        self.admin
            .execute(
                "INSERT INTO oncall.shifts (source, email, starts_at, ends_at) VALUES ('manual', $1, now() - interval '1 minute', now() + interval '1 hour')",
                &[&ALICE_EMAIL],
            )
            .expect("insert alice's shift");
        let mut probe = self.cluster.connect_as("alice");
        assert!(wait_until(PATIENCE, || may_assume(&mut probe, GATED)), "alice's shift did not start\n{}", self.cluster.log_tail());
    }

    /// Gates `ops_bot` (LOGIN, identity ops-bot@example.com) with `gate_login`; waits until the
    /// snapshot has the rule.
    pub fn gate_ops_bot(&mut self) {
        self.admin
            .batch_execute(
                "CREATE ROLE ops_bot LOGIN;
                 INSERT INTO oncall.identities VALUES ('ops_bot', 'ops-bot@example.com');
                 SELECT oncall.gate_role('ops_bot', gate_login => true);",
            )
            .unwrap_or_else(|e| panic!("gate ops_bot: {}", error_text(&e)));
        self.cluster.sync_point();
    }

    pub fn scalar_i64(&mut self, sql: &str) -> i64 {
        self.admin.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e))).get(0)
    }

    pub fn scalar_bool(&mut self, sql: &str) -> bool {
        self.admin.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e))).get(0)
    }

    pub fn scalar_text(&mut self, sql: &str) -> Option<String> {
        self.admin.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {}", error_text(&e))).get(0)
    }

    /// `oncall.stats()` as (route, decision) → count.
    pub fn stats(&mut self) -> BTreeMap<(String, String), i64> {
        stats(&mut self.admin)
    }
}

/// bob's refusal (he is never on call): SQLSTATE 42501 from pg_oncall, "not on call".
#[track_caller]
pub fn assert_bob_refused<T: std::fmt::Debug>(result: Result<T, postgres::Error>, what: &str) -> postgres::error::DbError {
    assert_refused(result, GATED, BOB_EMAIL, what)
}

/// A statement of alice's as prod_admin after her shift ended: "access … has ended", HINT
/// `SET ROLE NONE`.
#[track_caller]
pub fn assert_access_ended<T: std::fmt::Debug>(result: Result<T, postgres::Error>, what: &str) -> postgres::error::DbError {
    assert_access_ended_for(result, GATED, ALICE_EMAIL, what)
}

/// The e-mail of the `ops_bot` role [`Team::gate_ops_bot`] gates.
pub const OPS_BOT_EMAIL: &str = "ops-bot@example.com";

/// `oncall.stats()` as (route, decision) → count.
pub fn stats(admin: &mut Client) -> BTreeMap<(String, String), i64> {
    admin
        .query("SELECT route, decision, count FROM oncall.stats()", &[])
        .unwrap_or_else(|e| panic!("oncall.stats(): {}", error_text(&e)))
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect()
}

/// How long a shift of alice's ends after the gate saw it begin: a few seconds, long enough for
/// what the tests do while on call on a loaded machine.
pub const SHORT_SHIFT_SECS: f64 = 3.0;
