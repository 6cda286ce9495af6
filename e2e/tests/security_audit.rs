//! Security suite, part 4: audit lines you can trust (DESIGN.md guarantee 5, issue 9 "Audit
//! lines"). Every cluster logs with `log_line_prefix` containing `%e`: pg_oncall's audit lines
//! carry SQLSTATE OC000, which its emit_log_hook takes away from anything else claiming it.
//!
//! | case | test |
//! |---|---|
//! | a refusal inside PL/pgSQL (switch caught / uncaught, set_config in a function, membership via EXECUTE, a statement after the shift ended in a DO loop) logs exactly one line, without CONTEXT or STATEMENT lines of its own | `refusals_inside_plpgsql_log_exactly_one_line` |
//! | `RAISE LOG 'pg_oncall: allow …'`, `… USING ERRCODE = 'OC000'` (LOG, WARNING, EXCEPTION), a forged line after an embedded newline: told apart by the SQLSTATE | `forged_audit_lines_are_told_apart_by_sqlstate` |
//! | the same in `jsonlog` and `csvlog` (`state_code` / `sql_state_code`) | `forged_lines_are_told_apart_in_jsonlog_and_csvlog` |

mod sec_common;

use std::time::Duration;

use e2e::*;
use sec_common::*;

const FORGED: &str =
    "pg_oncall: allow role=prod_admin session_user=bob identity=bob@example.com route=set_role reason=\"on call\" shift_end=open";

/// Checks the log after `offset`: exactly one decision line (genuine, OC000) for `session_user`,
/// no other line carries OC000, and the decision line is not followed by a continuation, a
/// CONTEXT, STATEMENT, DETAIL or HINT line of its own.
#[track_caller]
fn exactly_one_clean_line(t: &Team, offset: usize, decision: &str, route: &str, session_user: &str, what: &str) {
    expect_audit(&t.cluster, offset, decision, route, session_user, GATED);
    std::thread::sleep(Duration::from_millis(150));
    let lines = log_lines(&t.cluster.log_since(offset));
    let decisions: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.message.starts_with("pg_oncall: allow ") || l.message.starts_with("pg_oncall: deny "))
        .map(|(i, _)| i)
        .collect();
    let dump = lines.iter().map(|l| l.raw.as_str()).collect::<Vec<_>>().join("\n");
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
        exactly_one_clean_line(&t, offset, "deny", route, "bob", what);
    }
    // A statement refused inside a DO loop after alice's shift ended.
    let ends = t.alice_shift_ends_in(1.0);
    let mut alice = t.connect_as("alice");
    ok(alice.batch_execute("SET ROLE prod_admin"), "alice on call");
    let offset_before_end = t.cluster.log_len();
    let handle = spawn_query(
        alice,
        "DO $$ BEGIN FOR i IN 1..200 LOOP PERFORM count(*) FROM work.secret; PERFORM pg_sleep(0.05); END LOOP; END $$".into(),
    );
    t.wait_shift_over(ends);
    let (_, r, _) = join_within(handle, Duration::from_secs(5), "DO loop");
    assert_access_ended(r, "DO loop after the end");
    // The allow of the SET ROLE came before offset_before_end; after it: one deny.
    exactly_one_clean_line(&t, offset_before_end, "deny", "statement", "alice", "statement refused inside a DO loop");
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
    std::thread::sleep(Duration::from_millis(150));

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
        wait_until(Duration::from_secs(5), || {
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
