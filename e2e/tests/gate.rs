//! End-to-end tests of the gate (DESIGN.md, "The gate — guarantees"): every route into a gated
//! role, the non-routes, what is never blocked, continuous enforcement, the login gate, the
//! enforcement modes, audit lines and statistics, hostile role names, concurrency, a restart
//! whose worker cannot load, and DROP EXTENSION. Each test asserts what a user sees: the
//! SQLSTATE, message, DETAIL and HINT of a refusal, `current_user`, and the server log.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::*;
use postgres::error::{DbError, SqlState};
use postgres::{Client, Config, SimpleQueryMessage};

const GATED: &str = "prod_admin";
const ALICE_EMAIL: &str = "alice@example.com";
const BOB_EMAIL: &str = "bob@example.com";

// ------------------------------------------------------------------ helpers

/// A cluster with:
/// - `prod_admin` (NOLOGIN, gated, any policy) and `readers` (NOLOGIN, not gated);
/// - `alice` (NOINHERIT, member of both, identity alice@example.com, on call for an hour);
/// - `bob` (NOINHERIT, member of both, identity bob@example.com, never on call);
/// - a schema `work` where prod_admin may create, with a table `work.t` readable by prod_admin.
/// Returns once both sessions decide from that snapshot.
fn team(extra_conf: &[&str]) -> (Cluster, Client) {
    let cluster = Cluster::start(extra_conf);
    let admin = team_on(&cluster);
    (cluster, admin)
}

/// The set-up of [`team`] on an existing cluster; returns a superuser session.
fn team_on(cluster: &Cluster) -> Client {
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE ROLE prod_admin NOLOGIN;
             CREATE ROLE readers NOLOGIN;
             CREATE ROLE alice LOGIN NOINHERIT;
             CREATE ROLE bob LOGIN NOINHERIT;
             GRANT prod_admin, readers TO alice, bob;
             CREATE SCHEMA work;
             GRANT USAGE, CREATE ON SCHEMA work TO prod_admin;
             CREATE TABLE work.t (x int);
             INSERT INTO work.t VALUES (1), (2);
             GRANT SELECT ON work.t TO prod_admin;",
        )
        .unwrap_or_else(|e| panic!("set-up: {}", error_text(&e)));
    admin
        .batch_execute(
            "INSERT INTO oncall.identities VALUES ('alice', 'alice@example.com'), ('bob', 'bob@example.com');
             SELECT oncall.gate_role('prod_admin');
             INSERT INTO oncall.shifts (source, email, starts_at, ends_at)
                  VALUES ('manual', 'alice@example.com', now() - interval '1 minute', now() + interval '1 hour');",
        )
        .unwrap_or_else(|e| panic!("gate set-up: {}", error_text(&e)));
    let mut alice = cluster.connect_as("alice");
    let mut bob = cluster.connect_as("bob");
    assert!(
        wait_until(Duration::from_secs(5), || may_assume(&mut alice, GATED) && !may_assume(&mut bob, GATED)),
        "the gate set-up did not reach the sessions within 5 s\n{}",
        cluster.log_tail()
    );
    admin
}

fn may_assume(session: &mut Client, role: &str) -> bool {
    session
        .query_one("SELECT oncall.check_oncall_access($1::text::name)", &[&role])
        .unwrap_or_else(|e| panic!("check_oncall_access({role}): {}", error_text(&e)))
        .get(0)
}

fn current_user(session: &mut Client) -> String {
    session
        .query_one("SELECT current_user::text", &[])
        .unwrap_or_else(|e| panic!("current_user: {}", error_text(&e)))
        .get(0)
}

fn simple_value(session: &mut Client, sql: &str) -> Result<Option<String>, postgres::Error> {
    let messages = session.simple_query(sql)?;
    Ok(messages.into_iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
        _ => None,
    }).flatten())
}

fn db_error(e: &postgres::Error) -> &DbError {
    e.as_db_error().unwrap_or_else(|| panic!("expected a server error, got a client error: {e}"))
}

/// Asserts the refusal the contract promises: SQLSTATE 42501, a message naming the role and the
/// identity, a DETAIL with the reason, a HINT.
#[track_caller]
fn assert_refused(result: Result<impl std::fmt::Debug, postgres::Error>, role: &str, identity: &str, what: &str) -> DbError {
    let e = match result {
        Ok(v) => panic!("{what}: expected a refusal, got success: {v:?}"),
        Err(e) => e,
    };
    let db = db_error(&e).clone();
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{what}: SQLSTATE ({})", error_text(&e));
    assert!(db.message().contains(role), "{what}: the message names the role {role:?}: {}", error_text(&e));
    assert!(db.message().contains(identity), "{what}: the message names the identity {identity:?}: {}", error_text(&e));
    let detail = db.detail().unwrap_or_else(|| panic!("{what}: a DETAIL is present: {}", error_text(&e)));
    assert!(detail.contains("not on call"), "{what}: the DETAIL gives the reason: {}", error_text(&e));
    assert!(db.hint().is_some_and(|h| !h.is_empty()), "{what}: a HINT is present: {}", error_text(&e));
    db
}

/// The `pg_oncall: <decision> ...` audit lines of `log`, from the word after the prefix on.
fn decision_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.find("pg_oncall: ").map(|i| &l[i + "pg_oncall: ".len()..]))
        .filter(|rest| ["allow ", "deny ", "audit_deny "].iter().any(|w| rest.starts_with(w)))
        .map(str::to_owned)
        .collect()
}

/// A parsed audit line: the decision word and its key=value fields, in order (quoted values
/// unescaped). Panics when the line does not have exactly the contract's shape.
#[derive(Debug, Clone)]
struct AuditLine {
    decision: String,
    fields: Vec<(String, String)>,
}

impl AuditLine {
    fn get(&self, key: &str) -> &str {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {key} in {self:?}"))
    }
}

const AUDIT_KEYS: [&str; 6] = ["role", "session_user", "identity", "route", "reason", "shift_end"];

#[track_caller]
fn parse_audit(line: &str) -> AuditLine {
    let (decision, mut rest) = line.split_once(' ').unwrap_or_else(|| panic!("audit line without fields: {line:?}"));
    assert!(["allow", "deny", "audit_deny"].contains(&decision), "decision word: {line:?}");
    let mut fields = Vec::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').unwrap_or_else(|| panic!("field without '=' in {line:?}"));
        let mut value = String::new();
        let remaining;
        if let Some(quoted) = after.strip_prefix('"') {
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, 'r')) => value.push('\r'),
                        Some((_, c)) => value.push(c),
                        None => panic!("dangling escape in {line:?}"),
                    },
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.unwrap_or_else(|| panic!("unterminated quoted value in {line:?}"));
            remaining = &quoted[end..];
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            value.push_str(&after[..end]);
            remaining = &after[end..];
        }
        fields.push((key.to_owned(), value));
        rest = match remaining.strip_prefix(' ') {
            Some(r) => r,
            None => {
                assert!(remaining.is_empty(), "junk after a value in {line:?}");
                remaining
            }
        };
    }
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys[..AUDIT_KEYS.len().min(keys.len())], AUDIT_KEYS, "the key=value fields of {line:?}");
    // A switch's line names the elevation it starts and the reason given for it.
    let extra = &keys[AUDIT_KEYS.len()..];
    assert!(["elevation", "justification"].starts_with(extra) || extra == ["justification"], "extra fields of {line:?}");
    AuditLine { decision: decision.to_owned(), fields }
}

/// The audit lines after `offset` whose route is `route`.
fn audits(cluster: &Cluster, offset: usize, route: &str) -> Vec<AuditLine> {
    decision_lines(&cluster.log_since(offset)).iter().map(|l| parse_audit(l)).filter(|a| a.get("route") == route).collect()
}

/// Waits (the log is written asynchronously by the server process) for an audit line after
/// `offset` matching `decision`, `route` and `session_user`.
#[track_caller]
fn expect_audit(cluster: &Cluster, offset: usize, decision: &str, route: &str, session_user: &str, role: &str) -> AuditLine {
    let mut found = None;
    wait_until(Duration::from_secs(3), || {
        found = audits(cluster, offset, route)
            .into_iter()
            .find(|a| a.decision == decision && a.get("session_user") == session_user && a.get("role") == role);
        found.is_some()
    });
    found.unwrap_or_else(|| {
        panic!("no `{decision} ... route={route}` line for {session_user} → {role} in the log\n{}", cluster.log_since(offset))
    })
}

/// A connection that collects the notices (WARNINGs...) the server sends.
fn connect_collecting(cluster: &Cluster, mut config: Config) -> (Result<Client, postgres::Error>, Arc<Mutex<Vec<DbError>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&notices);
    config.notice_callback(move |n| sink.lock().unwrap().push(n));
    (cluster.try_connect_with(&config), notices)
}

fn with_options(cluster: &Cluster, role: &str, options: &str) -> Config {
    let mut config = cluster.config(role, "postgres");
    config.options(&format!("-c statement_timeout=60s {options}"));
    config
}

/// Ends alice's shift (DELETE) and waits until her session (whose current role is `role`) is
/// refused a statement; returns that error.
fn end_alice_shift(cluster: &Cluster, admin: &mut Client) {
    admin.execute("DELETE FROM oncall.shifts WHERE email = $1", &[&ALICE_EMAIL]).expect("delete alice's shift");
    let mut probe = cluster.connect_as("alice");
    assert!(
        wait_until(Duration::from_secs(3), || !may_assume(&mut probe, GATED)),
        "alice's shift did not end within 3 s\n{}",
        cluster.log_tail()
    );
}

fn start_alice_shift(cluster: &Cluster, admin: &mut Client) {
    admin
        .execute(
            "INSERT INTO oncall.shifts (source, email, starts_at, ends_at) VALUES ('manual', $1, now() - interval '1 minute', now() + interval '1 hour')",
            &[&ALICE_EMAIL],
        )
        .expect("insert alice's shift");
    let mut probe = cluster.connect_as("alice");
    assert!(
        wait_until(Duration::from_secs(3), || may_assume(&mut probe, GATED)),
        "alice's shift did not start within 3 s\n{}",
        cluster.log_tail()
    );
}

// ------------------------------------------------------------------ 1. every route

#[test]
fn every_route_allows_on_call_and_refuses_off_call() {
    let (cluster, mut admin) = team(&[]);
    let mut alice = cluster.connect_as("alice");
    let mut bob = cluster.connect_as("bob");

    // SET ROLE
    let offset = cluster.log_len();
    alice.batch_execute("SET ROLE prod_admin").unwrap_or_else(|e| panic!("alice SET ROLE: {}", error_text(&e)));
    assert_eq!(current_user(&mut alice), GATED);
    alice.batch_execute("RESET ROLE").unwrap();
    assert_refused(bob.batch_execute("SET ROLE prod_admin"), GATED, BOB_EMAIL, "bob SET ROLE");
    assert_eq!(current_user(&mut bob), "bob");
    expect_audit(&cluster, offset, "allow", "set_role", "alice", GATED);
    expect_audit(&cluster, offset, "deny", "set_role", "bob", GATED);

    // SET LOCAL ROLE, in a transaction
    // A new session: the first allow per session, role and shift is logged (later ones are counted).
    alice = cluster.connect_as("alice");
    let offset = cluster.log_len();
    {
        let mut tx = alice.transaction().unwrap();
        tx.batch_execute("SET LOCAL ROLE prod_admin").unwrap_or_else(|e| panic!("alice SET LOCAL ROLE: {}", error_text(&e)));
        let user: String = tx.query_one("SELECT current_user::text", &[]).unwrap().get(0);
        assert_eq!(user, GATED);
        tx.commit().unwrap();
    }
    assert_eq!(current_user(&mut alice), "alice", "SET LOCAL ends with the transaction");
    {
        let mut tx = bob.transaction().unwrap();
        assert_refused(tx.batch_execute("SET LOCAL ROLE prod_admin"), GATED, BOB_EMAIL, "bob SET LOCAL ROLE");
        tx.rollback().unwrap();
    }
    assert_eq!(current_user(&mut bob), "bob");
    expect_audit(&cluster, offset, "allow", "set_role", "alice", GATED);
    expect_audit(&cluster, offset, "deny", "set_role", "bob", GATED);

    // set_config('role', r, false): session-wide
    // A new session: the first allow per session, role and shift is logged (later ones are counted).
    alice = cluster.connect_as("alice");
    let offset = cluster.log_len();
    let value = simple_value(&mut alice, "SELECT set_config('role', 'prod_admin', false)")
        .unwrap_or_else(|e| panic!("alice set_config(false): {}", error_text(&e)));
    assert_eq!(value.as_deref(), Some(GATED));
    assert_eq!(current_user(&mut alice), GATED);
    alice.batch_execute("RESET ROLE").unwrap();
    assert_refused(simple_value(&mut bob, "SELECT set_config('role', 'prod_admin', false)"), GATED, BOB_EMAIL, "bob set_config(false)");
    assert_eq!(current_user(&mut bob), "bob");
    expect_audit(&cluster, offset, "allow", "set_config", "alice", GATED);
    expect_audit(&cluster, offset, "deny", "set_config", "bob", GATED);

    // set_config('role', r, true): transaction-local
    // A new session: the first allow per session, role and shift is logged (later ones are counted).
    alice = cluster.connect_as("alice");
    let offset = cluster.log_len();
    {
        let mut tx = alice.transaction().unwrap();
        tx.batch_execute("SELECT set_config('role', 'prod_admin', true)")
            .unwrap_or_else(|e| panic!("alice set_config(true): {}", error_text(&e)));
        let user: String = tx.query_one("SELECT current_user::text", &[]).unwrap().get(0);
        assert_eq!(user, GATED);
        tx.commit().unwrap();
    }
    assert_eq!(current_user(&mut alice), "alice");
    {
        let mut tx = bob.transaction().unwrap();
        assert_refused(tx.batch_execute("SELECT set_config('role', 'prod_admin', true)"), GATED, BOB_EMAIL, "bob set_config(true)");
        tx.rollback().unwrap();
    }
    assert_eq!(current_user(&mut bob), "bob");
    expect_audit(&cluster, offset, "allow", "set_config", "alice", GATED);
    expect_audit(&cluster, offset, "deny", "set_config", "bob", GATED);

    // A SECURITY INVOKER function created by a superuser with SET role = prod_admin.
    admin
        .batch_execute(
            "CREATE FUNCTION public.as_admin() RETURNS text LANGUAGE sql SECURITY INVOKER SET role = prod_admin
                 AS $$ SELECT current_user::text $$;
             CREATE FUNCTION public.as_admin_plpgsql() RETURNS text LANGUAGE plpgsql SECURITY INVOKER SET role = prod_admin
                 AS $$ BEGIN RETURN current_user::text; END $$;",
        )
        .unwrap_or_else(|e| panic!("create functions: {}", error_text(&e)));
    // A new session: the first allow per session, role and shift is logged (later ones are counted).
    alice = cluster.connect_as("alice");
    let offset = cluster.log_len();
    for f in ["public.as_admin()", "public.as_admin_plpgsql()"] {
        let inside = simple_value(&mut alice, &format!("SELECT {f}")).unwrap_or_else(|e| panic!("alice {f}: {}", error_text(&e)));
        assert_eq!(inside.as_deref(), Some(GATED), "{f} runs as prod_admin for alice");
        assert_eq!(current_user(&mut alice), "alice", "the function's SET ends with it");
        assert_refused(simple_value(&mut bob, &format!("SELECT {f}")), GATED, BOB_EMAIL, &format!("bob {f}"));
        assert_eq!(current_user(&mut bob), "bob");
    }
    expect_audit(&cluster, offset, "allow", "function_set", "alice", GATED);
    expect_audit(&cluster, offset, "deny", "function_set", "bob", GATED);

    // A DO block with SET ROLE (the setting outlives the block, as PostgreSQL does).
    // A new session: the first allow per session, role and shift is logged (later ones are counted).
    alice = cluster.connect_as("alice");
    let offset = cluster.log_len();
    alice
        .batch_execute("DO $$ BEGIN SET ROLE prod_admin; END $$")
        .unwrap_or_else(|e| panic!("alice DO SET ROLE: {}", error_text(&e)));
    assert_eq!(current_user(&mut alice), GATED);
    alice.batch_execute("RESET ROLE").unwrap();
    assert_refused(bob.batch_execute("DO $$ BEGIN SET ROLE prod_admin; END $$"), GATED, BOB_EMAIL, "bob DO SET ROLE");
    assert_eq!(current_user(&mut bob), "bob");
    expect_audit(&cluster, offset, "allow", "set_role", "alice", GATED);
    expect_audit(&cluster, offset, "deny", "set_role", "bob", GATED);

    // A DO block that catches the refusal: the caught SQLSTATE is 42501, and the user is still
    // itself inside the handler and afterwards.
    bob.batch_execute(
        "DO $$
         BEGIN
             BEGIN
                 SET ROLE prod_admin;
                 PERFORM set_config('e2e.caught', 'no error', false);
             EXCEPTION WHEN OTHERS THEN
                 PERFORM set_config('e2e.caught', SQLSTATE || ' ' || current_user, false);
             END;
         END $$",
    )
    .unwrap_or_else(|e| panic!("bob DO with handler: {}", error_text(&e)));
    let caught = simple_value(&mut bob, "SELECT current_setting('e2e.caught')").unwrap();
    assert_eq!(caught.as_deref(), Some("42501 bob"), "caught SQLSTATE and current_user in the handler");
    assert_eq!(current_user(&mut bob), "bob", "after the caught refusal");
    bob.batch_execute("SELECT 1").expect("bob's session works on");

    // PL/pgSQL EXECUTE 'SET ROLE prod_admin'
    // A new session: the first allow per session, role and shift is logged (later ones are counted).
    alice = cluster.connect_as("alice");
    let offset = cluster.log_len();
    alice
        .batch_execute("DO $$ BEGIN EXECUTE 'SET ROLE prod_admin'; END $$")
        .unwrap_or_else(|e| panic!("alice EXECUTE SET ROLE: {}", error_text(&e)));
    assert_eq!(current_user(&mut alice), GATED);
    alice.batch_execute("RESET ROLE").unwrap();
    assert_refused(bob.batch_execute("DO $$ BEGIN EXECUTE 'SET ROLE prod_admin'; END $$"), GATED, BOB_EMAIL, "bob EXECUTE SET ROLE");
    assert_eq!(current_user(&mut bob), "bob");
    expect_audit(&cluster, offset, "allow", "set_role", "alice", GATED);
    expect_audit(&cluster, offset, "deny", "set_role", "bob", GATED);

    // Extended protocol, the role as a bound parameter.
    // A new session: the first allow per session, role and shift is logged (later ones are counted).
    alice = cluster.connect_as("alice");
    let offset = cluster.log_len();
    let row = alice
        .query_one("SELECT set_config('role', $1, false)", &[&GATED])
        .unwrap_or_else(|e| panic!("alice extended set_config: {}", error_text(&e)));
    assert_eq!(row.get::<_, String>(0), GATED);
    assert_eq!(current_user(&mut alice), GATED);
    alice.batch_execute("RESET ROLE").unwrap();
    assert_refused(bob.query_one("SELECT set_config('role', $1, false)", &[&GATED]), GATED, BOB_EMAIL, "bob extended set_config");
    assert_eq!(current_user(&mut bob), "bob");
    expect_audit(&cluster, offset, "allow", "set_config", "alice", GATED);
    expect_audit(&cluster, offset, "deny", "set_config", "bob", GATED);

    // -c role=prod_admin in the startup options: alice logs in as prod_admin, bob is refused.
    // A new session: the first allow per session, role and shift is logged (later ones are counted).
    alice = cluster.connect_as("alice");
    let offset = cluster.log_len();
    let mut alice_opt = cluster
        .try_connect_with(&with_options(&cluster, "alice", "-c role=prod_admin"))
        .unwrap_or_else(|e| panic!("alice -c role=prod_admin: {}", error_text(&e)));
    assert_eq!(current_user(&mut alice_opt), GATED);
    let e = cluster.try_connect_with(&with_options(&cluster, "bob", "-c role=prod_admin")).err().expect("bob -c role=prod_admin is refused");
    let db = db_error(&e);
    assert_eq!(db.severity(), "FATAL", "a startup refusal ends the connection: {}", error_text(&e));
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{}", error_text(&e));
    assert!(db.message().contains(GATED) && db.message().contains(BOB_EMAIL), "{}", error_text(&e));
    assert!(db.detail().is_some_and(|d| d.contains("not on call")) && db.hint().is_some(), "{}", error_text(&e));
    expect_audit(&cluster, offset, "allow", "startup_option", "alice", GATED);
    expect_audit(&cluster, offset, "deny", "startup_option", "bob", GATED);
    // bob can still log in without the option.
    assert_eq!(current_user(&mut cluster.connect_as("bob")), "bob");

    // ALTER ROLE x SET role = prod_admin, applied at login.
    admin.batch_execute("ALTER ROLE alice SET role = prod_admin; ALTER ROLE bob SET role = prod_admin").unwrap();
    // A new session: the first allow per session, role and shift is logged (later ones are counted).
    alice = cluster.connect_as("alice");
    let offset = cluster.log_len();
    let (alice_default, alice_notices) = connect_collecting(&cluster, cluster.config("alice", "postgres"));
    let mut alice_default = alice_default.unwrap_or_else(|e| panic!("alice with a role default: {}", error_text(&e)));
    assert_eq!(current_user(&mut alice_default), GATED, "alice (on call) gets her role default");
    assert!(alice_notices.lock().unwrap().is_empty(), "no warning for alice: {:?}", alice_notices.lock().unwrap());
    let (bob_default, bob_notices) = connect_collecting(&cluster, cluster.config("bob", "postgres"));
    let mut bob_default = bob_default.unwrap_or_else(|e| panic!("bob with a role default must log in: {}", error_text(&e)));
    assert_eq!(current_user(&mut bob_default), "bob", "bob logs in as himself");
    let warnings: Vec<DbError> = bob_notices.lock().unwrap().clone();
    assert!(
        warnings.iter().any(|n| n.severity() == "WARNING" && n.message().contains(GATED) && n.message().contains(BOB_EMAIL)),
        "bob got a WARNING naming the role and his identity: {warnings:?}"
    );
    expect_audit(&cluster, offset, "allow", "role_default", "alice", GATED);
    expect_audit(&cluster, offset, "deny", "role_default", "bob", GATED);
    assert!(
        cluster.log_since(offset).lines().any(|l| l.contains("WARNING:") && l.contains("permission denied to set role \"prod_admin\"")),
        "the WARNING is in the server log too\n{}",
        cluster.log_since(offset)
    );
    admin.batch_execute("ALTER ROLE alice RESET role; ALTER ROLE bob RESET role").unwrap();

    // The gate holds in every database of the cluster, and for a database's role default.
    admin.batch_execute("CREATE DATABASE other_db").unwrap();
    admin.batch_execute("ALTER DATABASE other_db SET role = prod_admin").unwrap();
    // A new session: the first allow per session, role and shift is logged (later ones are counted).
    alice = cluster.connect_as("alice");
    let offset = cluster.log_len();
    let mut alice_other = cluster.connect_db("alice", "other_db");
    assert_eq!(current_user(&mut alice_other), GATED, "alice gets other_db's role default");
    let (bob_other, bob_notices) = connect_collecting(&cluster, cluster.config("bob", "other_db"));
    let mut bob_other = bob_other.unwrap_or_else(|e| panic!("bob logs in to other_db: {}", error_text(&e)));
    assert_eq!(current_user(&mut bob_other), "bob");
    assert!(
        bob_notices.lock().unwrap().iter().any(|n| n.severity() == "WARNING" && n.message().contains(GATED)),
        "bob got a WARNING: {:?}",
        bob_notices.lock().unwrap()
    );
    expect_audit(&cluster, offset, "deny", "role_default", "bob", GATED);
    assert_refused(bob_other.batch_execute("SET ROLE prod_admin"), GATED, BOB_EMAIL, "bob SET ROLE in other_db");
    alice_other.batch_execute("RESET ROLE; SET ROLE prod_admin; RESET ROLE").expect("alice in other_db");
}

// ------------------------------------------------------------------ 2. non-routes

#[test]
fn non_routes_update_pg_settings_and_session_authorization() {
    let (cluster, _admin) = team(&[]);
    for (user, identity) in [("bob", BOB_EMAIL), ("alice", ALICE_EMAIL)] {
        let mut session = cluster.connect_as(user);
        // pg_settings does not list `role` on PG15: the UPDATE reaches nothing.
        let listed: i64 = session.query_one("SELECT count(*) FROM pg_settings WHERE name = 'role'", &[]).unwrap().get(0);
        assert_eq!(listed, 0, "role is not in pg_settings on PG15");
        let updated = session
            .execute("UPDATE pg_settings SET setting = 'prod_admin' WHERE name = 'role'", &[])
            .unwrap_or_else(|e| panic!("{user}: UPDATE pg_settings: {}", error_text(&e)));
        assert_eq!(updated, 0, "{user}: UPDATE pg_settings affects no row");
        assert_eq!(current_user(&mut session), user, "{user}: UPDATE pg_settings changes no role");

        // SET SESSION AUTHORIZATION is superuser-only: PostgreSQL's own refusal, not the gate's.
        let offset = cluster.log_len();
        let e = session.batch_execute("SET SESSION AUTHORIZATION prod_admin").err().expect("SET SESSION AUTHORIZATION refused");
        let db = db_error(&e);
        assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{}", error_text(&e));
        assert!(db.message().contains("session authorization"), "PostgreSQL's own message: {}", error_text(&e));
        assert!(!db.message().contains("pg_oncall") && !db.message().contains(identity), "not the gate's message: {}", error_text(&e));
        assert_eq!(current_user(&mut session), user);
        let session_user: String = session.query_one("SELECT session_user::text", &[]).unwrap().get(0);
        assert_eq!(session_user, user);
        std::thread::sleep(Duration::from_millis(100));
        assert!(decision_lines(&cluster.log_since(offset)).is_empty(), "no gate decision for a non-route\n{}", cluster.log_since(offset));
    }
}

#[test]
fn non_members_get_postgresql_own_refusal_and_no_decision() {
    let (cluster, mut admin) = team(&[]);
    admin.batch_execute("CREATE ROLE carol LOGIN NOINHERIT").unwrap();
    let mut carol = cluster.connect_as("carol");
    let offset = cluster.log_len();
    let e = carol.batch_execute("SET ROLE prod_admin").unwrap_err();
    let db = db_error(&e);
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{}", error_text(&e));
    assert_eq!(db.message(), "permission denied to set role \"prod_admin\"", "PostgreSQL's own message for a non-member");
    std::thread::sleep(Duration::from_millis(100));
    assert!(decision_lines(&cluster.log_since(offset)).is_empty(), "a non-member's attempt is PostgreSQL's refusal, not a gate decision");

    // A member without any identity: refused by the gate, the DETAIL says why.
    admin.batch_execute("GRANT prod_admin TO carol").unwrap();
    let e = carol.batch_execute("SET ROLE prod_admin").unwrap_err();
    let db = db_error(&e);
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{}", error_text(&e));
    assert!(db.message().contains(GATED) && db.message().contains("carol"), "{}", error_text(&e));
    assert!(db.detail().is_some_and(|d| d.contains("no PagerDuty identity")), "{}", error_text(&e));
    let line = expect_audit(&cluster, offset, "deny", "set_role", "carol", GATED);
    assert_eq!(line.get("identity"), "-");
    assert_eq!(line.get("reason"), "no identity");
}

/// A rename must not ungate a role: in PG15 any CREATEROLE user may rename a non-superuser
/// role, so "rename, wait for the next reload, SET ROLE" would otherwise be a way past the gate.
/// pg_oncall refuses to rename a gated role (for superusers too: ungate, rename, gate again).
#[test]
fn renaming_a_gated_role_is_refused() {
    let (cluster, mut admin) = team(&[]);
    admin.batch_execute("CREATE ROLE role_admin LOGIN CREATEROLE NOINHERIT").unwrap();
    let err = cluster
        .connect_as("role_admin")
        .batch_execute("ALTER ROLE prod_admin RENAME TO prod_admin_renamed")
        .expect_err("renaming a gated role must be refused");
    let db = err.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "42501", "{}", error_text(&err));
    assert!(db.message().contains("prod_admin") && db.message().contains("cannot be renamed"), "{}", db.message());
    assert!(db.hint().is_some_and(|h| h.contains("ungate_role")), "{:?}", db.hint());
    let err = admin.batch_execute("ALTER ROLE prod_admin RENAME TO prod_admin_renamed").expect_err("superusers too");
    assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{}", error_text(&err));
    // The role keeps its name and its gate, across a reload of the snapshot.
    sync_point(&cluster, &mut admin);
    let mut bob = cluster.connect_as("bob");
    assert_refused(bob.batch_execute("SET ROLE prod_admin"), "prod_admin", BOB_EMAIL, "gated role after a refused rename");
    // Ungate (committed, so that the snapshot knows), rename, gate again: the documented way.
    admin.batch_execute("SELECT oncall.ungate_role('prod_admin')").unwrap();
    sync_point(&cluster, &mut admin);
    admin
        .batch_execute("ALTER ROLE prod_admin RENAME TO prod_admin_renamed; SELECT oncall.gate_role('prod_admin_renamed')")
        .unwrap_or_else(|e| panic!("rename, gate: {}", error_text(&e)));
    sync_point(&cluster, &mut admin);
    let mut bob = cluster.connect_as("bob");
    assert_refused(bob.batch_execute("SET ROLE prod_admin_renamed"), "prod_admin_renamed", BOB_EMAIL, "re-gated under its new name");
    let mut alice = cluster.connect_as("alice");
    alice.batch_execute("SET ROLE prod_admin_renamed").unwrap_or_else(|e| panic!("alice, renamed role: {}", error_text(&e)));
}

/// An ungated role that INHERITs a gated role hands out its privileges: `SET ROLE` to it is
/// gated by the gated role's rule, and a GRANT/REVOKE reaches sessions already open.
#[test]
fn a_role_inheriting_a_gated_role_is_gated_by_its_rule() {
    let (cluster, mut admin) = team(&[]);
    admin
        .batch_execute("CREATE ROLE helpers NOLOGIN INHERIT; GRANT prod_admin TO helpers; GRANT helpers TO alice, bob;")
        .unwrap();
    let mut bob = cluster.connect_as("bob");
    assert_refused(bob.batch_execute("SET ROLE helpers"), "helpers", BOB_EMAIL, "off-call bob, role inheriting prod_admin");
    let mut alice = cluster.connect_as("alice");
    alice.batch_execute("SET ROLE helpers").unwrap_or_else(|e| panic!("on-call alice: {}", error_text(&e)));
    assert_eq!(current_user(&mut alice), "helpers");
    // The chain is cut: bob's open session sees it at once (no snapshot change involved).
    admin.batch_execute("REVOKE prod_admin FROM helpers").unwrap();
    bob.batch_execute("SET ROLE helpers").unwrap_or_else(|e| panic!("helpers no longer inherits prod_admin: {}", error_text(&e)));
    bob.batch_execute("RESET ROLE").unwrap();
    // And restored: refused again in the same session.
    admin.batch_execute("GRANT prod_admin TO helpers").unwrap();
    assert_refused(bob.batch_execute("SET ROLE helpers"), "helpers", BOB_EMAIL, "after the GRANT, same session");
    // A NOINHERIT role only reaches prod_admin's privileges through SET ROLE, which is gated.
    admin.batch_execute("CREATE ROLE switchers NOLOGIN NOINHERIT; GRANT prod_admin TO switchers; GRANT switchers TO bob").unwrap();
    bob.batch_execute("SET ROLE switchers").unwrap_or_else(|e| panic!("NOINHERIT intermediate: {}", error_text(&e)));
    assert_refused(bob.batch_execute("SET ROLE prod_admin"), GATED, BOB_EMAIL, "from switchers on to prod_admin");
}

// ------------------------------------------------------------------ 3. never blocked

/// RESET ROLE, SET ROLE NONE and SET ROLE to an ungated role work in `session`, whatever its
/// current role, and leave it as `user` / `readers`.
#[track_caller]
fn leaving_works(session: &mut Client, user: &str, what: &str) {
    session.batch_execute("RESET ROLE").unwrap_or_else(|e| panic!("{what}: RESET ROLE: {}", error_text(&e)));
    assert_eq!(current_user(session), user, "{what}: after RESET ROLE");
    session.batch_execute("SET ROLE NONE").unwrap_or_else(|e| panic!("{what}: SET ROLE NONE: {}", error_text(&e)));
    assert_eq!(current_user(session), user, "{what}: after SET ROLE NONE");
    session.batch_execute("SET ROLE readers").unwrap_or_else(|e| panic!("{what}: SET ROLE readers: {}", error_text(&e)));
    assert_eq!(current_user(session), "readers", "{what}: after SET ROLE readers");
    session.batch_execute("RESET ROLE").unwrap();
}

#[test]
fn reset_none_and_ungated_roles_are_never_blocked() {
    let (cluster, mut admin) = team(&[]);
    // An off-call user.
    let mut bob = cluster.connect_as("bob");
    leaving_works(&mut bob, "bob", "off-call bob");
    assert_refused(bob.batch_execute("SET ROLE prod_admin"), GATED, BOB_EMAIL, "bob SET ROLE");
    leaving_works(&mut bob, "bob", "off-call bob after a refusal");
    let v = simple_value(&mut bob, "SELECT set_config('role', 'none', false)").unwrap();
    assert_eq!(v.as_deref(), Some("none"));
    let v = simple_value(&mut bob, "SELECT set_config('role', 'readers', false)").unwrap();
    assert_eq!(v.as_deref(), Some("readers"));
    bob.batch_execute("RESET ROLE").unwrap();

    // After the shift ended while the gated role was current: each way out works. (Not
    // `SELECT set_config('role', 'none', false)`: that is a SELECT run as prod_admin, which the
    // per-statement re-check refuses before set_config is evaluated. Not RESET ALL either: it
    // does not reset the role in PostgreSQL.)
    for way_out in ["RESET ROLE", "SET ROLE NONE", "SET ROLE readers", "DISCARD ALL"] {
        let mut alice = cluster.connect_as("alice");
        alice.batch_execute("SET ROLE prod_admin").unwrap_or_else(|e| panic!("alice SET ROLE: {}", error_text(&e)));
        end_alice_shift(&cluster, &mut admin);
        let e = alice.batch_execute("SELECT 1").err().unwrap_or_else(|| panic!("a statement as prod_admin after the shift ended is refused"));
        assert_eq!(db_error(&e).code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{}", error_text(&e));
        alice.batch_execute(way_out).unwrap_or_else(|e| panic!("after the shift ended, {way_out}: {}", error_text(&e)));
        let expected = if way_out == "SET ROLE readers" { "readers" } else { "alice" };
        assert_eq!(current_user(&mut alice), expected, "after {way_out}");
        leaving_works(&mut alice, "alice", &format!("alice after {way_out}"));
        start_alice_shift(&cluster, &mut admin);
    }
}

// ------------------------------------------------------------------ 4. continuous enforcement

#[track_caller]
fn assert_access_ended(result: Result<impl std::fmt::Debug, postgres::Error>, what: &str) {
    let e = match result {
        Ok(v) => panic!("{what}: expected the statement to be refused, got {v:?}"),
        Err(e) => e,
    };
    let db = db_error(&e);
    assert_eq!(db.code(), &SqlState::INSUFFICIENT_PRIVILEGE, "{what}: {}", error_text(&e));
    assert!(db.message().contains("ended"), "{what}: the message says on-call access ended: {}", error_text(&e));
    assert!(db.message().contains(GATED) && db.message().contains(ALICE_EMAIL), "{what}: {}", error_text(&e));
    assert!(db.detail().is_some(), "{what}: DETAIL: {}", error_text(&e));
    assert!(db.hint().is_some_and(|h| h.contains("SET ROLE NONE")), "{what}: the hint says SET ROLE NONE: {}", error_text(&e));
}

#[test]
fn access_ends_when_the_shift_ends() {
    let (cluster, mut admin) = team(&[]);
    let statements = [
        ("SELECT 1", "a SELECT"),
        ("SELECT count(*) FROM work.t", "a SELECT from a table"),
        ("CREATE TABLE work.made_after_end (x int)", "CREATE TABLE (utility)"),
        ("CREATE TEMP TABLE made_after_end (x int)", "CREATE TEMP TABLE (utility)"),
    ];
    for (sql, what) in statements {
        let mut alice = cluster.connect_as("alice");
        alice.batch_execute("SET ROLE prod_admin").unwrap();
        let n: i64 = alice.query_one("SELECT count(*) FROM work.t", &[]).unwrap().get(0);
        assert_eq!(n, 2, "prod_admin reads work.t while on call");
        let offset = cluster.log_len();
        end_alice_shift(&cluster, &mut admin);
        assert_access_ended(alice.batch_execute(sql), what);
        // The statement did nothing.
        let exists: bool = admin.query_one("SELECT to_regclass('work.made_after_end') IS NOT NULL", &[]).unwrap().get(0);
        assert!(!exists, "{what}: nothing was created");
        let line = expect_audit(&cluster, offset, "deny", "statement", "alice", GATED);
        assert_eq!(line.get("identity"), ALICE_EMAIL);
        alice.batch_execute("RESET ROLE").unwrap_or_else(|e| panic!("RESET ROLE: {}", error_text(&e)));
        assert_eq!(current_user(&mut alice), "alice");
        alice
            .batch_execute("SELECT 1; CREATE TEMP TABLE alice_own (x int); DROP TABLE alice_own")
            .unwrap_or_else(|e| panic!("statements as alice herself after RESET ROLE: {}", error_text(&e)));
        start_alice_shift(&cluster, &mut admin);
    }

    // The shift ends by its own ends_at (no table change) in the middle of a long transaction.
    admin.execute("DELETE FROM oncall.shifts WHERE email = $1", &[&ALICE_EMAIL]).unwrap();
    admin
        .execute(
            "INSERT INTO oncall.shifts (source, email, starts_at, ends_at) VALUES ('manual', $1, now() - interval '1 minute', now() + interval '2 seconds')",
            &[&ALICE_EMAIL],
        )
        .unwrap();
    let mut alice = cluster.connect_as("alice");
    assert!(wait_until(Duration::from_secs(2), || may_assume(&mut alice, GATED)), "the short shift grants");
    alice.batch_execute("BEGIN; SET ROLE prod_admin").unwrap_or_else(|e| panic!("BEGIN; SET ROLE: {}", error_text(&e)));
    alice.batch_execute("SELECT count(*) FROM work.t").expect("a statement while on call, in the transaction");
    let ended = wait_until(Duration::from_secs(6), || alice.batch_execute("SELECT count(*) FROM work.t").is_err());
    assert!(ended, "a statement in the same transaction is refused once ends_at passed\n{}", cluster.log_tail());
    // The refusal aborted the transaction; its rollback also undoes the SET ROLE.
    alice.batch_execute("ROLLBACK").unwrap();
    assert_eq!(current_user(&mut alice), "alice");
    alice.batch_execute("SELECT 1").unwrap();

    // Same, with the refusal seen directly (not in a poll), from a fresh transaction.
    admin
        .execute(
            "INSERT INTO oncall.shifts (source, email, starts_at, ends_at) VALUES ('manual', $1, now() - interval '1 minute', now() + interval '2 seconds')",
            &[&ALICE_EMAIL],
        )
        .unwrap();
    assert!(wait_until(Duration::from_secs(2), || may_assume(&mut alice, GATED)), "the second short shift grants");
    alice.batch_execute("BEGIN; SET ROLE prod_admin; SELECT 1").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_access_ended(alice.batch_execute("SELECT count(*) FROM work.t"), "next statement in the long transaction");
    alice.batch_execute("ROLLBACK").unwrap();
    assert_eq!(current_user(&mut alice), "alice");

    // After ends_at passed, with no table change, a new SET ROLE is refused too (the decision
    // cached while she was on call expires at the shift's end).
    admin
        .execute(
            "INSERT INTO oncall.shifts (source, email, starts_at, ends_at) VALUES ('manual', $1, now() - interval '1 minute', now() + interval '2 seconds')",
            &[&ALICE_EMAIL],
        )
        .unwrap();
    assert!(wait_until(Duration::from_secs(2), || may_assume(&mut alice, GATED)), "the third short shift grants");
    alice.batch_execute("SET ROLE prod_admin; RESET ROLE").expect("alice switches while on call");
    std::thread::sleep(Duration::from_millis(2500));
    assert_refused(alice.batch_execute("SET ROLE prod_admin"), GATED, ALICE_EMAIL, "SET ROLE after ends_at");
}

// ------------------------------------------------------------------ 5. login gate

/// Commits a marker shift and waits until the snapshot has it: everything committed before is
/// then visible to every new backend, without a decision being made (nothing is counted).
fn sync_point(cluster: &Cluster, admin: &mut Client) {
    // A marker never used before (the log's length alone can repeat when nothing was logged
    // in between, and an old marker is already on call: the wait would not wait).
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let marker = format!("marker-{}-{n}@sync.invalid", cluster.log_len());
    admin.execute("INSERT INTO oncall.shifts (source, email) VALUES ('manual', $1)", &[&marker]).unwrap();
    assert!(wait_until(Duration::from_secs(5), || is_on_call(admin, &marker)), "the snapshot did not reload within 5 s\n{}", cluster.log_tail());
}

const OPS_BOT_EMAIL: &str = "ops-bot@example.com";

/// Connection settings over TCP only (asserted with [`over_tcp`] where a login succeeds).
fn tcp_only(cluster: &Cluster, role: &str) -> Config {
    cluster.tcp_config(role, "postgres")
}

/// Whether the session came over TCP (and not the Unix socket).
fn over_tcp(session: &mut Client) -> bool {
    session.query_one("SELECT inet_client_addr() IS NOT NULL", &[]).unwrap().get(0)
}

fn gate_ops_bot(cluster: &Cluster, admin: &mut Client) {
    admin
        .batch_execute(
            "CREATE ROLE ops_bot LOGIN;
             INSERT INTO oncall.identities VALUES ('ops_bot', 'ops-bot@example.com');
             SELECT oncall.gate_role('ops_bot', gate_login => true);",
        )
        .unwrap_or_else(|e| panic!("gate ops_bot: {}", error_text(&e)));
    sync_point(cluster, admin);
}

#[track_caller]
fn assert_login_refused(result: Result<Client, postgres::Error>, what: &str) {
    let e = match result {
        Ok(_) => panic!("{what}: the login as ops_bot must be refused"),
        Err(e) => e,
    };
    let db = db_error(&e);
    assert_eq!(db.severity(), "FATAL", "{what}: {}", error_text(&e));
    assert_eq!(db.code(), &SqlState::INVALID_AUTHORIZATION_SPECIFICATION, "{what}: {}", error_text(&e));
    assert!(db.message().contains("ops_bot") && db.message().contains(OPS_BOT_EMAIL), "{what}: the message names role and identity: {}", error_text(&e));
    assert!(db.message().contains("not on call"), "{what}: the message says why: {}", error_text(&e));
    assert!(db.detail().is_some() && db.hint().is_some(), "{what}: DETAIL and HINT: {}", error_text(&e));
}

#[test]
fn login_gate_refuses_off_call_logins_over_tcp_and_socket() {
    let (cluster, mut admin) = team(&[]);
    gate_ops_bot(&cluster, &mut admin);

    let offset = cluster.log_len();
    assert_login_refused(cluster.try_connect_with(&tcp_only(&cluster, "ops_bot")), "TCP");
    assert_login_refused(cluster.try_connect_with(&cluster.config("ops_bot", "postgres")), "Unix socket");
    let denies: Vec<AuditLine> = {
        let mut d = Vec::new();
        wait_until(Duration::from_secs(3), || {
            d = audits(&cluster, offset, "login").into_iter().filter(|a| a.decision == "deny").collect();
            d.len() >= 2
        });
        d
    };
    assert_eq!(denies.len(), 2, "one deny line per refused login\n{}", cluster.log_since(offset));
    for line in &denies {
        assert_eq!(line.get("role"), "ops_bot");
        assert_eq!(line.get("session_user"), "ops_bot");
        assert_eq!(line.get("identity"), OPS_BOT_EMAIL);
        assert_eq!(line.get("reason"), "not on call");
    }

    // Unrelated roles log in normally, over both routes, while ops_bot is refused.
    for role in ["bob", "alice", "postgres"] {
        let mut c = cluster.try_connect_with(&tcp_only(&cluster, role)).unwrap_or_else(|e| panic!("{role} over TCP: {}", error_text(&e)));
        assert_eq!(current_user(&mut c), role);
        assert!(over_tcp(&mut c));
        let mut c = cluster.try_connect(role, "postgres").unwrap_or_else(|e| panic!("{role} over the socket: {}", error_text(&e)));
        assert_eq!(current_user(&mut c), role);
        assert!(!over_tcp(&mut c));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        audits(&cluster, offset, "login").iter().all(|a| a.get("session_user") == "ops_bot"),
        "logins as ungated roles are not decisions\n{}",
        cluster.log_since(offset)
    );

    // On call: both routes let ops_bot in.
    admin.execute("INSERT INTO oncall.shifts (source, email) VALUES ('manual', $1)", &[&OPS_BOT_EMAIL]).unwrap();
    sync_point(&cluster, &mut admin);
    let offset = cluster.log_len();
    let mut tcp = cluster.try_connect_with(&tcp_only(&cluster, "ops_bot")).unwrap_or_else(|e| panic!("ops_bot on call, TCP: {}", error_text(&e)));
    assert_eq!(current_user(&mut tcp), "ops_bot");
    assert!(over_tcp(&mut tcp));
    let mut sock = cluster.try_connect("ops_bot", "postgres").unwrap_or_else(|e| panic!("ops_bot on call, socket: {}", error_text(&e)));
    assert_eq!(current_user(&mut sock), "ops_bot");
    assert!(!over_tcp(&mut sock));
    let allow = expect_audit(&cluster, offset, "allow", "login", "ops_bot", "ops_bot");
    assert_eq!(allow.get("identity"), OPS_BOT_EMAIL);
    assert_eq!(allow.get("reason"), "on call");

    // The shift ends: refused again.
    admin.execute("DELETE FROM oncall.shifts WHERE email = $1", &[&OPS_BOT_EMAIL]).unwrap();
    sync_point(&cluster, &mut admin);
    assert_login_refused(cluster.try_connect_with(&tcp_only(&cluster, "ops_bot")), "TCP after the shift");
    assert_login_refused(cluster.try_connect("ops_bot", "postgres"), "socket after the shift");
}

// ------------------------------------------------------------------ 6. enforcement modes

#[test]
fn enforcement_modes_audit_off_enforce() {
    let (cluster, mut admin) = team(&[]);
    gate_ops_bot(&cluster, &mut admin);
    let mut bob = cluster.connect_as("bob");
    let mut alice = cluster.connect_as("alice");
    assert_refused(bob.batch_execute("SET ROLE prod_admin"), GATED, BOB_EMAIL, "enforce");

    // audit: the would-be refusal is logged and allowed.
    cluster.alter_system("pg_oncall.enforcement", "'audit'");
    let offset = cluster.log_len();
    bob.batch_execute("SET ROLE prod_admin").unwrap_or_else(|e| panic!("audit mode: bob SET ROLE: {}", error_text(&e)));
    assert_eq!(current_user(&mut bob), GATED);
    let line = expect_audit(&cluster, offset, "audit_deny", "set_role", "bob", GATED);
    assert_eq!(line.get("reason"), "not on call");
    // Statements bob runs as prod_admin are audited too, not refused.
    bob.batch_execute("SELECT count(*) FROM work.t").expect("audit mode: statements run");
    expect_audit(&cluster, offset, "audit_deny", "statement", "bob", GATED);
    bob.batch_execute("RESET ROLE").unwrap();
    let mut bot = cluster.try_connect("ops_bot", "postgres").unwrap_or_else(|e| panic!("audit mode: ops_bot logs in: {}", error_text(&e)));
    assert_eq!(current_user(&mut bot), "ops_bot");
    expect_audit(&cluster, offset, "audit_deny", "login", "ops_bot", "ops_bot");
    assert!(audits(&cluster, offset, "set_role").iter().all(|a| a.decision != "deny"), "no hard deny in audit mode");

    // off: no decision at all, nothing logged.
    cluster.alter_system("pg_oncall.enforcement", "'off'");
    let offset = cluster.log_len();
    bob.batch_execute("SET ROLE prod_admin").unwrap_or_else(|e| panic!("off: bob SET ROLE: {}", error_text(&e)));
    assert_eq!(current_user(&mut bob), GATED);
    bob.batch_execute("SELECT count(*) FROM work.t").expect("off: statements run");
    bob.batch_execute("RESET ROLE").unwrap();
    alice.batch_execute("SET ROLE prod_admin; RESET ROLE").unwrap();
    let mut bot = cluster.try_connect("ops_bot", "postgres").unwrap_or_else(|e| panic!("off: ops_bot logs in: {}", error_text(&e)));
    assert_eq!(current_user(&mut bot), "ops_bot");
    std::thread::sleep(Duration::from_millis(200));
    let lines = decision_lines(&cluster.log_since(offset));
    assert!(lines.is_empty(), "enforcement = off logs no decision: {lines:?}");

    // enforce again: refused again, in the same session.
    cluster.alter_system("pg_oncall.enforcement", "'enforce'");
    let offset = cluster.log_len();
    assert_refused(bob.batch_execute("SET ROLE prod_admin"), GATED, BOB_EMAIL, "enforce again");
    assert_eq!(current_user(&mut bob), "bob");
    expect_audit(&cluster, offset, "deny", "set_role", "bob", GATED);
    assert_login_refused(cluster.try_connect("ops_bot", "postgres"), "enforce again");
}

// ------------------------------------------------------------------ 7. audit lines and stats

fn stats(admin: &mut Client) -> BTreeMap<(String, String), i64> {
    admin
        .query("SELECT route, decision, count FROM oncall.stats()", &[])
        .unwrap_or_else(|e| panic!("oncall.stats(): {}", error_text(&e)))
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect()
}

#[test]
fn stats_count_decisions_and_lines_have_the_contract_shape() {
    let (cluster, mut admin) = team(&[]);
    gate_ops_bot(&cluster, &mut admin);
    admin
        .batch_execute(
            "CREATE FUNCTION public.as_admin() RETURNS text LANGUAGE sql SET role = prod_admin AS $$ SELECT current_user::text $$;",
        )
        .unwrap();
    // Creating a function with SET role = prod_admin is not a switch (PostgreSQL would switch
    // to validate its body; pg_oncall has it skip that validation): nothing counted so far.
    let start = stats(&mut admin);
    let nonzero: Vec<_> = start.iter().filter(|(_, &c)| c != 0).collect();
    assert!(nonzero.is_empty(), "creating the function decided nothing: {start:?}");
    for route in ["set_role", "set_config", "function_set", "startup_option", "role_default", "statement", "login"] {
        for decision in ["allow", "deny", "audit_deny"] {
            assert!(start.contains_key(&(route.to_string(), decision.to_string())), "stats() lists {route}/{decision}: {start:?}");
        }
    }
    let offset = cluster.log_len();
    let mut alice = cluster.connect_as("alice");
    let mut bob = cluster.connect_as("bob");

    alice.batch_execute("SET ROLE prod_admin; RESET ROLE").unwrap();
    bob.batch_execute("SET ROLE prod_admin").unwrap_err();
    alice.batch_execute("SELECT set_config('role', 'prod_admin', false); RESET ROLE").unwrap();
    bob.batch_execute("SELECT set_config('role', 'prod_admin', false)").unwrap_err();
    alice.batch_execute("SELECT public.as_admin()").unwrap();
    bob.batch_execute("SELECT public.as_admin()").unwrap_err();
    cluster.try_connect_with(&with_options(&cluster, "alice", "-c role=prod_admin")).expect("alice -c role");
    cluster.try_connect_with(&with_options(&cluster, "bob", "-c role=prod_admin")).err().expect("bob -c role refused");
    admin.batch_execute("ALTER ROLE alice SET role = prod_admin; ALTER ROLE bob SET role = prod_admin").unwrap();
    cluster.connect_as("alice");
    cluster.connect_as("bob");
    admin.batch_execute("ALTER ROLE alice RESET role; ALTER ROLE bob RESET role").unwrap();
    cluster.try_connect("ops_bot", "postgres").err().expect("ops_bot refused");
    admin.execute("INSERT INTO oncall.shifts (source, email) VALUES ('manual', $1)", &[&OPS_BOT_EMAIL]).unwrap();
    sync_point(&cluster, &mut admin);
    cluster.try_connect("ops_bot", "postgres").expect("ops_bot on call logs in");
    // A statement after the shift ended (simple protocol: exactly one statement).
    alice.batch_execute("SET ROLE prod_admin").unwrap();
    let alice_shift_end: String = admin
        .query_one("SELECT ends_at::text FROM oncall.shifts WHERE email = $1", &[&ALICE_EMAIL])
        .unwrap()
        .get(0);
    admin.execute("DELETE FROM oncall.shifts WHERE email = $1", &[&ALICE_EMAIL]).unwrap();
    sync_point(&cluster, &mut admin);
    alice.batch_execute("SELECT 1").unwrap_err();
    alice.batch_execute("RESET ROLE").unwrap();

    let expected: BTreeMap<(String, String), i64> = [
        ("set_role", "allow", 2),
        ("set_role", "deny", 1),
        ("set_config", "allow", 1),
        ("set_config", "deny", 1),
        ("function_set", "allow", 1),
        ("function_set", "deny", 1),
        ("startup_option", "allow", 1),
        ("startup_option", "deny", 1),
        ("role_default", "allow", 1),
        ("role_default", "deny", 1),
        ("statement", "deny", 1),
        ("login", "allow", 1),
        ("login", "deny", 1),
    ]
    .into_iter()
    .map(|(r, d, c)| ((r.to_string(), d.to_string()), c))
    .collect();
    let got: BTreeMap<(String, String), i64> =
        stats(&mut admin).into_iter().map(|(k, c)| (k.clone(), c - start[&k])).filter(|(_, c)| *c != 0).collect();
    assert_eq!(got, expected, "oncall.stats() after the scripted decisions");

    // The log has one line per counted decision, each exactly of the contract's shape, except
    // for allows after the first in a session for the same role and shift (counted only):
    // alice's set_config and function_set allows and her second SET ROLE came in the session
    // whose first SET ROLE was logged.
    let mut expected_lines = expected.clone();
    expected_lines.insert(("set_role".into(), "allow".into()), 1);
    expected_lines.remove(&("set_config".to_string(), "allow".to_string()));
    expected_lines.remove(&("function_set".to_string(), "allow".to_string()));
    let line_count: i64 = expected_lines.values().sum();
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(3), || {
        lines = decision_lines(&cluster.log_since(offset));
        lines.len() as i64 >= line_count
    });
    let parsed: Vec<AuditLine> = lines.iter().map(|l| parse_audit(l)).collect();
    let mut per_key: BTreeMap<(String, String), i64> = BTreeMap::new();
    for a in &parsed {
        *per_key.entry((a.get("route").to_owned(), a.decision.clone())).or_default() += 1;
    }
    assert_eq!(per_key, expected_lines, "log lines per route/decision\n{}", lines.join("\n"));
    assert!(
        lines.contains(&"deny role=prod_admin session_user=bob identity=bob@example.com route=set_role reason=\"not on call\" shift_end=-".to_string()),
        "bob's SET ROLE deny line, verbatim\n{}",
        lines.join("\n")
    );
    assert!(
        lines.contains(&"deny role=prod_admin session_user=alice identity=alice@example.com route=statement reason=\"not on call\" shift_end=-".to_string()),
        "alice's statement deny line, verbatim\n{}",
        lines.join("\n")
    );
    assert!(
        lines.contains(&"deny role=ops_bot session_user=ops_bot identity=ops-bot@example.com route=login reason=\"not on call\" shift_end=-".to_string()),
        "ops_bot's login deny line, verbatim\n{}",
        lines.join("\n")
    );
    let alice_allow = parsed.iter().find(|a| a.decision == "allow" && a.get("route") == "set_role").unwrap();
    assert_eq!(alice_allow.get("session_user"), "alice");
    assert_eq!(alice_allow.get("identity"), ALICE_EMAIL);
    assert_eq!(alice_allow.get("reason"), "on call");
    assert_eq!(alice_allow.get("shift_end"), alice_shift_end, "an allow names when the shift ends");
    let bot_allow = parsed.iter().find(|a| a.decision == "allow" && a.get("route") == "login").unwrap();
    assert_eq!(bot_allow.get("shift_end"), "open", "an open-ended shift");

    // A superuser switching into a gated role: allowed, logged with reason=superuser, counted.
    let offset = cluster.log_len();
    let mut su = cluster.connect();
    su.batch_execute("SET ROLE prod_admin").unwrap();
    assert_eq!(current_user(&mut su), GATED);
    su.batch_execute("SELECT 1; RESET ROLE").unwrap();
    let line = expect_audit(&cluster, offset, "allow", "set_role", "postgres", GATED);
    assert_eq!(line.get("reason"), "superuser");
    assert_eq!(line.get("identity"), "-");
    assert_eq!(line.get("shift_end"), "-");
    let key = ("set_role".to_string(), "allow".to_string());
    assert_eq!(stats(&mut admin)[&key] - start[&key], 3, "the superuser's switch is counted");

    // Parallel workers restore the leader's role: not a decision, not logged, not counted.
    start_alice_shift(&cluster, &mut admin);
    let before = stats(&mut admin);
    let offset = cluster.log_len();
    let mut alice = cluster.connect_as("alice");
    // PostgreSQL 16 renamed force_parallel_mode to debug_parallel_query.
    let force_parallel = if server_major() >= 16 { "debug_parallel_query" } else { "force_parallel_mode" };
    alice
        .batch_execute(&format!(
            "SET {force_parallel} = on; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
             SET min_parallel_table_scan_size = 0; SET ROLE prod_admin"
        ))
        .unwrap();
    let plan: Vec<String> = alice
        .query("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM work.t", &[])
        .unwrap_or_else(|e| panic!("parallel query as prod_admin: {}", error_text(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(plan.iter().any(|l| l.contains("Workers Launched: 1") || l.contains("Workers Launched: 2")), "a parallel worker ran: {plan:#?}");
    let n: i64 = alice.query_one("SELECT count(*) FROM work.t", &[]).unwrap().get(0);
    assert_eq!(n, 2);
    alice.batch_execute("RESET ROLE").unwrap();
    let after = stats(&mut admin);
    let delta: Vec<_> = after.iter().filter(|(k, c)| **c != before[*k]).map(|(k, c)| (k.clone(), c - before[k])).collect();
    assert_eq!(delta, vec![(key.clone(), 1)], "only alice's own SET ROLE is counted");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(decision_lines(&cluster.log_since(offset)).len(), 1, "one line: alice's SET ROLE\n{}", cluster.log_since(offset));
}

// ------------------------------------------------------------------ 8. hostile input

#[test]
fn hostile_role_names_and_values() {
    let (cluster, mut admin) = team(&[]);
    let long = format!("{}x", "é".repeat(31));
    assert_eq!(long.len(), 63, "NAMEDATALEN - 1 bytes");
    let names = [
        "it's \"quoted\"".to_string(),
        "with space".to_string(),
        "ünïcødé-rôle ☃".to_string(),
        long.clone(),
        "line\nbreak".to_string(),
        "x route=login reason=forged".to_string(),
        "back\\slash".to_string(),
    ];
    for name in &names {
        let q = quote_ident(name);
        admin
            .batch_execute(&format!("CREATE ROLE {q} NOLOGIN; GRANT {q} TO alice, bob;"))
            .unwrap_or_else(|e| panic!("create {name:?}: {}", error_text(&e)));
        admin.execute("SELECT oncall.gate_role($1::text::name)", &[name]).unwrap_or_else(|e| panic!("gate {name:?}: {}", error_text(&e)));
    }
    sync_point(&cluster, &mut admin);
    let mut alice = cluster.connect_as("alice");
    let mut bob = cluster.connect_as("bob");
    for name in &names {
        let q = quote_ident(name);
        let offset = cluster.log_len();
        alice.batch_execute(&format!("SET ROLE {q}")).unwrap_or_else(|e| panic!("alice SET ROLE {q}: {}", error_text(&e)));
        assert_eq!(&current_user(&mut alice), name);
        alice.batch_execute("RESET ROLE").unwrap();
        assert_refused(bob.batch_execute(&format!("SET ROLE {q}")), name, BOB_EMAIL, &format!("bob SET ROLE {q}"));
        assert_refused(bob.query_one("SELECT set_config('role', $1, false)", &[name]), name, BOB_EMAIL, &format!("bob set_config {q}"));
        assert_eq!(current_user(&mut bob), "bob");
        // The log lines: one line each, role quoted, parsed back to the exact name.
        let allow = expect_audit(&cluster, offset, "allow", "set_role", "alice", name);
        let deny = expect_audit(&cluster, offset, "deny", "set_role", "bob", name);
        assert_eq!(allow.get("identity"), ALICE_EMAIL);
        assert_eq!(deny.get("reason"), "not on call");
        let raw: Vec<String> = decision_lines(&cluster.log_since(offset));
        assert!(raw.iter().all(|l| l.contains("role=\"")), "{name:?}: the role value is quoted: {raw:?}");
        // PostgreSQL continues its own multi-line messages (ERROR, STATEMENT) with a tab; no
        // continuation line may carry audit fields.
        assert!(
            !cluster.log_since(offset).lines().filter(|l| !l.starts_with("20")).any(|l| l.contains("session_user=") || l.contains("route=")),
            "{name:?}: an audit line was split\n{}",
            cluster.log_since(offset)
        );
    }
    // A name longer than NAMEDATALEN - 1 through set_config (not truncated like an identifier)
    // must not reach the 63-byte gated role ungated.
    let too_long = format!("{long}zz");
    let r = bob.query_one("SELECT set_config('role', $1, false)", &[&too_long]);
    assert!(r.is_err(), "a 65-byte role value must not succeed for bob");
    assert_eq!(current_user(&mut bob), "bob");

    // SET ROLE to a role that does not exist: PostgreSQL's own error, no decision. (PG15 reports
    // it from the role setting's check hook: 22023 invalid_parameter_value.)
    let offset = cluster.log_len();
    for session in [&mut alice, &mut bob] {
        let e = session.batch_execute("SET ROLE no_such_role").unwrap_err();
        let db = db_error(&e);
        assert_eq!(db.code(), &SqlState::INVALID_PARAMETER_VALUE, "{}", error_text(&e));
        assert_eq!(db.message(), "role \"no_such_role\" does not exist");
        let e = session.query_one("SELECT set_config('role', 'no_such_role', false)", &[]).unwrap_err();
        assert_eq!(db_error(&e).message(), "role \"no_such_role\" does not exist");
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(decision_lines(&cluster.log_since(offset)).is_empty(), "no decision for a missing role");

    // set_config('role', NULL, ...) resets the role, as PostgreSQL 15 does without the extension
    // (it returns 'none'): for an off-call user, and for an on-call user inside the gated role.
    let v = simple_value(&mut bob, "SELECT set_config('role', NULL, false)").unwrap_or_else(|e| panic!("bob set_config NULL: {}", error_text(&e)));
    assert_eq!(v.as_deref(), Some("none"));
    assert_eq!(current_user(&mut bob), "bob");
    alice.batch_execute("SET ROLE prod_admin").unwrap();
    let v = simple_value(&mut alice, "SELECT set_config('role', NULL, false)").unwrap_or_else(|e| panic!("alice set_config NULL: {}", error_text(&e)));
    assert_eq!(v.as_deref(), Some("none"));
    assert_eq!(current_user(&mut alice), "alice");
    let v = simple_value(&mut bob, "BEGIN; SELECT set_config('role', NULL, true); COMMIT").unwrap();
    assert_eq!(v.as_deref(), Some("none"));
    // set_config(NULL, ...): PostgreSQL's "SET requires parameter name" (22004).
    for sql in ["SELECT set_config(NULL, 'prod_admin', false)", "SELECT set_config(NULL, NULL, false)"] {
        let e = simple_value(&mut bob, sql).unwrap_err();
        let db = db_error(&e);
        assert_eq!(db.code(), &SqlState::NULL_VALUE_NOT_ALLOWED, "{sql}: {}", error_text(&e));
        assert_eq!(db.message(), "SET requires parameter name", "{sql}");
    }
    assert_eq!(current_user(&mut bob), "bob");
    // Sessions are fine afterwards.
    alice.batch_execute("SET ROLE prod_admin; SELECT 1; RESET ROLE").unwrap();
    assert_refused(bob.batch_execute("SET ROLE prod_admin"), GATED, BOB_EMAIL, "bob after the hostile input");
}

// ------------------------------------------------------------------ 9. concurrency

#[test]
fn concurrent_switches_while_the_snapshot_keeps_reloading() {
    const USERS: usize = 8;
    const RUN: Duration = Duration::from_secs(10);
    let (cluster, mut admin) = team(&[]);
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
    sync_point(&cluster, &mut admin);

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

// ------------------------------------------------------------------ 10. restart

#[test]
fn restart_with_an_unloadable_worker_keeps_the_gate_from_disk() {
    let mut cluster = Cluster::builder().no_wait_ready().start();
    cluster.wait_ready();
    let mut admin = team_on(&cluster);
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
    // A bit later (the worker has had time to fail), still refused.
    std::thread::sleep(Duration::from_secs(2));
    assert_refused(cluster.connect_as("bob").batch_execute("SET ROLE prod_admin"), GATED, BOB_EMAIL, "2 s after the restart");
}

// ------------------------------------------------------------------ 11. DROP EXTENSION

#[test]
fn drop_extension_ungates_within_seconds() {
    let (cluster, mut admin) = team(&[]);
    let mut bob = cluster.connect_as("bob");
    assert_refused(bob.batch_execute("SET ROLE prod_admin"), GATED, BOB_EMAIL, "before DROP EXTENSION");
    admin.batch_execute("DROP EXTENSION pg_oncall").unwrap();
    let dropped = Instant::now();
    let ungated = wait_until(Duration::from_secs(3), || match bob.batch_execute("SET ROLE prod_admin") {
        Ok(()) => true,
        Err(e) => {
            assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{}", error_text(&e));
            false
        }
    });
    assert!(
        ungated,
        "3 s after DROP EXTENSION pg_oncall, an off-call member is still refused SET ROLE prod_admin\n{}",
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
    let mut admin = team_on(&cluster);
    admin.batch_execute("DROP EXTENSION pg_oncall").unwrap();
    drop(admin);
    cluster.restart();
    let mut bob = cluster.connect_as("bob");
    let ungated = wait_until(Duration::from_secs(10), || bob.batch_execute("SET ROLE prod_admin").is_ok());
    assert!(ungated, "10 s after a restart that followed DROP EXTENSION, bob is still refused\n{}", cluster.log_tail());
}
