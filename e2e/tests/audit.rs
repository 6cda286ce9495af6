//! DESIGN.md guarantee 5, audit: every deny, and the first allow per (session, role, shift),
//! is exactly one LOG line in the stable key=value form (no CONTEXT or STATEMENT lines, also
//! inside PL/pgSQL); later allows are counted in `oncall.stats()`; a user cannot forge a line a
//! log reader would take for pg_oncall's (SQLSTATE OC000 tells them apart, in the stderr log,
//! `jsonlog` and `csvlog`). Every cluster logs with `%e` in `log_line_prefix`.
//!
//! | case | test |
//! |---|---|
//! | `oncall.stats()` counts every decision per route; one line per logged decision, verbatim in the contract's shape; a superuser's switch (reason=superuser); parallel workers are not decisions | `stats_count_decisions_and_lines_have_the_contract_shape` |
//! | a refusal inside PL/pgSQL (switch caught / uncaught, set_config in a function, membership via EXECUTE, a statement after the shift ended in a DO loop) logs exactly one line | `refusals_inside_plpgsql_log_exactly_one_line` |
//! | `RAISE LOG 'pg_oncall: allow …'`, `… USING ERRCODE = 'OC000'` (LOG, WARNING, EXCEPTION), a forged line after an embedded newline: told apart by the SQLSTATE | `forged_audit_lines_are_told_apart_by_sqlstate` |
//! | the same in `jsonlog` and `csvlog` (`state_code` / `sql_state_code`) | `forged_lines_are_told_apart_in_jsonlog_and_csvlog` |
//!
//! Audit lines of each route are checked in `routes_*.rs`, of logins in `login.rs`, of the
//! enforcement modes in `enforcement.rs`, of hostile role names in `hostile_input.rs`, and the
//! elevations' statement lines in `elevations.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::*;
use postgres::Client;

#[test]
fn stats_count_decisions_and_lines_have_the_contract_shape() {
    let mut t = team(&[]);
    t.gate_ops_bot();
    let cluster = &t.cluster;
    let admin = &mut t.admin;
    admin
        .batch_execute(
            "CREATE FUNCTION public.as_admin() RETURNS text LANGUAGE sql SET role = prod_admin AS $$ SELECT current_user::text $$;",
        )
        .unwrap();
    // Creating a function with SET role = prod_admin is not a switch (PostgreSQL would switch
    // to validate its body; pg_oncall has it skip that validation): nothing counted so far.
    let start = stats(admin);
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
    cluster.try_connect_with(&with_options(cluster, "alice", "-c role=prod_admin")).expect("alice -c role");
    cluster.try_connect_with(&with_options(cluster, "bob", "-c role=prod_admin")).err().expect("bob -c role refused");
    admin.batch_execute("ALTER ROLE alice SET role = prod_admin; ALTER ROLE bob SET role = prod_admin").unwrap();
    cluster.connect_as("alice");
    cluster.connect_as("bob");
    admin.batch_execute("ALTER ROLE alice RESET role; ALTER ROLE bob RESET role").unwrap();
    cluster.try_connect("ops_bot", "postgres").err().expect("ops_bot refused");
    admin.execute("INSERT INTO oncall.shifts (source, email) VALUES ('manual', $1)", &[&OPS_BOT_EMAIL]).unwrap();
    cluster.sync_point();
    cluster.try_connect("ops_bot", "postgres").expect("ops_bot on call logs in");
    // A statement after the shift ended (simple protocol: exactly one statement).
    alice.batch_execute("SET ROLE prod_admin").unwrap();
    let alice_shift_end: String = admin
        .query_one("SELECT ends_at::text FROM oncall.shifts WHERE email = $1", &[&ALICE_EMAIL])
        .unwrap()
        .get(0);
    admin.execute("DELETE FROM oncall.shifts WHERE email = $1", &[&ALICE_EMAIL]).unwrap();
    cluster.sync_point();
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
        stats(admin).into_iter().map(|(k, c)| (k.clone(), c - start[&k])).filter(|(_, c)| *c != 0).collect();
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
    // Every session above was used after its last decision (or is gone: a login's decision is
    // logged before the server answers), so its lines are in the log; alice's fence orders hers.
    log_fence(cluster, &mut alice);
    let claiming = decision_log_lines(cluster, offset);
    assert!(claiming.iter().all(|l| l.sqlstate == AUDIT_SQLSTATE), "every decision line is genuine (OC000): {claiming:#?}");
    let lines: Vec<String> = claiming.iter().map(|l| l.message.clone()).collect();
    assert_eq!(lines.len() as i64, line_count, "one line per logged decision\n{}", lines.join("\n"));
    let parsed: Vec<Audit> = claiming.iter().map(parse_audit).collect();
    let mut per_key: BTreeMap<(String, String), i64> = BTreeMap::new();
    for a in &parsed {
        *per_key.entry((a.get("route").to_owned(), a.decision.clone())).or_default() += 1;
    }
    assert_eq!(per_key, expected_lines, "log lines per route/decision\n{}", lines.join("\n"));
    assert!(
        lines.contains(&"pg_oncall: deny role=prod_admin session_user=bob identity=bob@example.com route=set_role reason=\"not on call\" shift_end=-".to_string()),
        "bob's SET ROLE deny line, verbatim\n{}",
        lines.join("\n")
    );
    assert!(
        lines.contains(&"pg_oncall: deny role=prod_admin session_user=alice identity=alice@example.com route=statement reason=\"not on call\" shift_end=-".to_string()),
        "alice's statement deny line, verbatim\n{}",
        lines.join("\n")
    );
    assert!(
        lines.contains(&"pg_oncall: deny role=ops_bot session_user=ops_bot identity=ops-bot@example.com route=login reason=\"not on call\" shift_end=-".to_string()),
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
    assert_eq!(stats(admin)[&key] - start[&key], 3, "the superuser's switch is counted");

    // Parallel workers restore the leader's role: not a decision, not logged, not counted.
    admin
        .execute(
            "INSERT INTO oncall.shifts (source, email, starts_at, ends_at) VALUES ('manual', $1, now() - interval '1 minute', now() + interval '1 hour')",
            &[&ALICE_EMAIL],
        )
        .unwrap();
    cluster.sync_point();
    let before = stats(admin);
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
    let after = stats(admin);
    let delta: Vec<_> = after.iter().filter(|(k, c)| **c != before[*k]).map(|(k, c)| (k.clone(), c - before[k])).collect();
    assert_eq!(delta, vec![(key.clone(), 1)], "only alice's own SET ROLE is counted");
    // The parallel workers exited before the query returned; alice's fence orders her lines.
    log_fence(cluster, &mut alice);
    assert_eq!(decision_log_lines(cluster, offset).len(), 1, "one line: alice's SET ROLE\n{}", cluster.log_since(offset));
}


const FORGED: &str =
    "pg_oncall: allow role=prod_admin session_user=bob identity=bob@example.com route=set_role reason=\"on call\" shift_end=open";

/// Checks the log after `offset` (up to `session`'s log fence): exactly one decision line (genuine, OC000) for `session_user`,
/// no other line carries OC000, and the decision line is not followed by a continuation, a
/// CONTEXT, STATEMENT, DETAIL or HINT line of its own.
#[track_caller]
fn exactly_one_clean_line(t: &Team, session: &mut Client, offset: usize, decision: &str, route: &str, session_user: &str, what: &str) {
    expect_audit(&t.cluster, offset, decision, route, session_user, GATED);
    // Whatever else the session logged for that statement precedes its fence.
    log_fence(&t.cluster, session);
    let lines = log_lines(&t.cluster.log_since(offset));
    let decisions: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.message.starts_with("pg_oncall: allow ") || l.message.starts_with("pg_oncall: deny "))
        .map(|(i, _)| i)
        .collect();
    let dump = lines.iter().map(|l| l.raw.as_str()).collect::<Vec<_>>().join("\n");
    let fence = lines.iter().position(|l| l.message.starts_with("e2e-log-fence-")).unwrap_or(lines.len());
    let lines = &lines[..fence];
    let decisions: Vec<usize> = decisions.into_iter().filter(|&i| i < fence).collect();
    assert_eq!(decisions.len(), 1, "{what}: exactly one decision line\n{dump}");
    let i = decisions[0];
    assert_eq!(lines[i].sqlstate, AUDIT_SQLSTATE, "{what}: the decision line carries OC000\n{dump}");
    assert_eq!(lines[i].severity, "LOG", "{what}: a LOG line\n{dump}");
    // The elevation's own statement lines are audit lines too; nothing else carries OC000.
    let oc: usize = lines.iter().filter(|l| l.sqlstate == AUDIT_SQLSTATE && !l.message.starts_with("pg_oncall: statement ")).count();
    assert_eq!(oc, 1, "{what}: no other line (CONTEXT, STATEMENT...) carries OC000\n{dump}");
    if let Some(next) = lines.get(i + 1) {
        assert!(!next.raw.starts_with('\t'), "{what}: the decision line has a continuation\n{dump}");
        assert!(
            !["CONTEXT", "STATEMENT", "DETAIL", "HINT"].contains(&next.severity.as_str()),
            "{what}: the decision line is followed by a {} line\n{dump}",
            next.severity
        );
    }
}

#[test]
fn refusals_inside_plpgsql_log_exactly_one_line() {
    let mut t = team(&[]);
    ok(
        t.admin.batch_execute(
            "CREATE FUNCTION lab.switch() RETURNS text LANGUAGE plpgsql AS $$
             BEGIN PERFORM set_config('role', 'prod_admin', false); RETURN current_user; END $$",
        ),
        "lab.switch",
    );
    let mut bob = t.connect_as("bob");
    let cases = [
        ("DO $$ BEGIN SET ROLE prod_admin; EXCEPTION WHEN insufficient_privilege THEN NULL; END $$", true, "set_role", "caught SET ROLE in DO"),
        ("DO $$ BEGIN EXECUTE 'SET ROLE prod_admin'; END $$", false, "set_role", "EXECUTE 'SET ROLE' in DO"),
        ("SELECT lab.switch()", false, "set_config", "set_config in a PL/pgSQL function"),
        (
            "DO $$ BEGIN EXECUTE 'ALTER DEFAULT PRIVILEGES FOR ROLE prod_admin GRANT SELECT ON TABLES TO bob'; END $$",
            false,
            "membership",
            "membership route via EXECUTE",
        ),
    ];
    for (sql, caught, route, what) in cases {
        let offset = t.cluster.log_len();
        let r = bob.batch_execute(sql);
        assert_eq!(r.is_ok(), caught, "{what}: {r:?}");
        if !caught {
            assert_bob_refused(r, what);
        }
        exactly_one_clean_line(&t, &mut bob, offset, "deny", route, "bob", what);
    }
    // A statement refused inside a DO loop after alice's shift ended.
    let ends = t.alice_shift_ends_in(SHORT_SHIFT_SECS);
    let mut alice = t.connect_as("alice");
    ok(alice.batch_execute("SET ROLE prod_admin"), "alice on call");
    let offset_before_end = t.cluster.log_len();
    let handle = spawn_query(
        alice,
        "DO $$ BEGIN FOR i IN 1..200 LOOP PERFORM count(*) FROM work.secret; PERFORM pg_sleep(0.05); END LOOP; END $$".into(),
    );
    t.wait_shift_over(ends);
    let (mut alice, r, _) = join_within(handle, Duration::from_secs(5), "DO loop");
    assert_access_ended(r, "DO loop after the end");
    ok(alice.batch_execute("SET ROLE NONE"), "alice leaves the role (her fence runs as herself)");
    // The allow of the SET ROLE came before offset_before_end; after it: one deny.
    exactly_one_clean_line(&t, &mut alice, offset_before_end, "deny", "statement", "alice", "statement refused inside a DO loop");
}

#[test]
fn forged_audit_lines_are_told_apart_by_sqlstate() {
    let t = team(&[]);
    let offset = t.cluster.log_len();
    let mut bob = t.connect_as("bob");
    let forged_sql = [
        format!("DO $$ BEGIN RAISE LOG '{FORGED}'; END $$"),
        format!("DO $$ BEGIN RAISE LOG '{FORGED}' USING ERRCODE = 'OC000'; END $$"),
        format!("DO $$ BEGIN RAISE LOG SQLSTATE 'OC000' USING MESSAGE = '{FORGED}'; END $$"),
        format!("DO $$ BEGIN RAISE WARNING '{FORGED}' USING ERRCODE = 'OC000'; END $$"),
        format!("DO $$ BEGIN RAISE LOG E'innocent\\n2030-01-01 00:00:00.000 UTC [1] OC000 bob@postgres LOG:  {FORGED}'; END $$"),
    ];
    for sql in &forged_sql {
        ok(bob.batch_execute(sql), sql);
    }
    let e = bob
        .batch_execute(&format!("DO $$ BEGIN RAISE EXCEPTION '{FORGED}' USING ERRCODE = 'OC000'; END $$"))
        .expect_err("RAISE EXCEPTION");
    assert_ne!(db_error(&e).code().code(), AUDIT_SQLSTATE, "not even the client sees OC000 from a user");
    // Genuine lines: alice's allow, bob's deny.
    let mut alice = t.connect_as("alice");
    ok(alice.batch_execute("SET ROLE prod_admin; RESET ROLE"), "alice");
    assert!(bob.batch_execute("SET ROLE prod_admin").is_err());
    expect_audit(&t.cluster, offset, "deny", "set_role", "bob", GATED);
    expect_audit(&t.cluster, offset, "allow", "set_role", "alice", GATED);
    // bob's and alice's lines precede their fences.
    log_fence(&t.cluster, &mut bob);
    log_fence(&t.cluster, &mut alice);

    let lines = log_lines(&t.cluster.log_since(offset));
    let dump = lines.iter().map(|l| l.raw.as_str()).collect::<Vec<_>>().join("\n");
    let claiming: Vec<&LogLine> = lines.iter().filter(|l| l.message.starts_with("pg_oncall: allow") || l.message.starts_with("pg_oncall: deny")).collect();
    let genuine: Vec<Audit> = claiming.iter().filter(|l| l.sqlstate == AUDIT_SQLSTATE).map(|l| parse_audit(l)).collect();
    assert_eq!(genuine.len(), 2, "exactly the two real decisions carry OC000\n{dump}");
    assert!(genuine.iter().any(|a| a.decision == "deny" && a.get("session_user") == "bob"));
    assert!(genuine.iter().any(|a| a.decision == "allow" && a.get("session_user") == "alice"));
    let forged: Vec<&&LogLine> = claiming.iter().filter(|l| l.sqlstate != AUDIT_SQLSTATE).collect();
    assert!(forged.len() >= 5, "the forged lines are in the log, told apart by their SQLSTATE\n{dump}");
    // The line smuggled after a newline is a continuation (a tab first), never a line of its own;
    // besides the two decisions, only alice's elevation's statement lines carry OC000.
    let other_oc000: Vec<&LogLine> = lines
        .iter()
        .filter(|l| l.raw.starts_with("20") && l.sqlstate == AUDIT_SQLSTATE)
        .filter(|l| !l.message.starts_with("pg_oncall: allow") && !l.message.starts_with("pg_oncall: deny"))
        .collect();
    assert!(
        other_oc000.iter().all(|l| l.message.starts_with("pg_oncall: statement ") && l.raw.contains(" alice@postgres ")),
        "no other line starts like a log line with OC000\n{dump}"
    );
    assert!(lines.iter().any(|l| l.raw.starts_with('\t') && l.raw.contains(FORGED)), "the smuggled line is a continuation\n{dump}");
}

/// A minimal CSV reader (quoted fields, doubled quotes, newlines inside quotes).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    records
}

#[test]
fn forged_lines_are_told_apart_in_jsonlog_and_csvlog() {
    let t = team(&["logging_collector = on", "log_destination = 'stderr,csvlog,jsonlog'", "log_directory = 'log'"]);
    let mut bob = t.connect_as("bob");
    ok(bob.batch_execute(&format!("DO $$ BEGIN RAISE LOG '{FORGED}' USING ERRCODE = 'OC000'; END $$")), "forge");
    ok(bob.batch_execute(&format!("DO $$ BEGIN RAISE LOG '{FORGED}'; END $$")), "forge");
    assert!(bob.batch_execute("SET ROLE prod_admin").is_err());
    let mut alice = t.connect_as("alice");
    ok(alice.batch_execute("SET ROLE prod_admin; RESET ROLE"), "alice");
    let dir = t.cluster.data_dir().join("log");
    let read = |ext: &str| -> String {
        std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == ext))
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("")
            })
            .unwrap_or_default()
    };
    // (message, sqlstate) of every record claiming to be a decision.
    let json = || -> Vec<(String, String)> {
        read("json")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| (v["message"].as_str().unwrap_or("").to_owned(), v["state_code"].as_str().unwrap_or("").to_owned()))
            .filter(|(m, _)| m.starts_with("pg_oncall: allow") || m.starts_with("pg_oncall: deny"))
            .collect()
    };
    let csv = || -> Vec<(String, String)> {
        csv_records(&read("csv"))
            .into_iter()
            .filter(|r| r.len() > 13)
            .map(|r| (r[13].clone(), r[12].clone()))
            .filter(|(m, _)| m.starts_with("pg_oncall: allow") || m.starts_with("pg_oncall: deny"))
            .collect()
    };
    for (format, records) in [("jsonlog", &json as &dyn Fn() -> Vec<(String, String)>), ("csvlog", &csv)] {
        let mut got = Vec::new();
        // The collector writes these files asynchronously: wait for the four records.
        wait_until(PATIENCE, || {
            got = records();
            got.len() >= 4
        });
        let genuine: Vec<&(String, String)> = got.iter().filter(|(_, s)| s == AUDIT_SQLSTATE).collect();
        let forged: Vec<&(String, String)> = got.iter().filter(|(_, s)| s != AUDIT_SQLSTATE).collect();
        assert_eq!(genuine.len(), 2, "{format}: the two real decisions carry OC000: {got:#?}");
        assert!(genuine.iter().all(|(m, _)| m.contains("session_user=alice") || m.contains("deny role=prod_admin session_user=bob")), "{format}: {got:#?}");
        assert_eq!(forged.len(), 2, "{format}: the two forged lines do not: {got:#?}");
        assert!(forged.iter().all(|(m, _)| m == FORGED), "{format}: {got:#?}");
    }
}
