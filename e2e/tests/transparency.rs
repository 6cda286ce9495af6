//! The transparency suite (issue 16): for everyone it does not gate, PostgreSQL behaves
//! exactly as without pg_oncall — same results, same errors with every field, same log.
//!
//! Two clusters of the major under test (`PG_CONFIG`): one without pg_oncall, one with it
//! preloaded, `CREATE EXTENSION pg_oncall` and one unrelated role gated
//! (`oncall.gate_role('unrelated_admin')`; the role exists on both). On each:
//!
//! 1. `e2e/sql/transparency.sql` (with `transparency_common.sql`) is run by the major's own
//!    `psql -X -a` (`VERBOSITY verbose`, `SHOW_CONTEXT always`): its whole client output,
//!    stdout and stderr interleaved as a terminal shows them, and psql's exit status;
//! 2. the server log lines of every client session while it runs (the script's and those of
//!    step 3): ERROR/WARNING/FATAL/LOG lines with their DETAIL, HINT, CONTEXT, STATEMENT and,
//!    with `log_error_verbosity = verbose`, LOCATION (source file, line and function) lines;
//!    `log_min_messages` and `log_min_error_statement` are left at their defaults;
//! 3. a few statements through the extended protocol and the simple protocol of the
//!    `postgres` crate, every field of each error and notice (position and internal query,
//!    context, schema/table/column/datatype/constraint, file/line/routine).
//!
//! Each output is normalised (the cluster's directory and port, pids, `pg_temp_N`) and the
//! two clusters' outputs must be identical; any difference fails with a unified diff. Both
//! sides' outputs are kept under `target/tmp/transparency/pg<major>/{without,with}/`.
//!
//! Not compared, and printed instead: log lines of processes that are not client backends
//! (pg_oncall's launcher and sync worker exist only on one side; checkpointer and autovacuum
//! lines come when they come; parallel workers' own lines depend on which worker gets where
//! first), and the settings the script leaves out of its `pg_settings` listing because they
//! legitimately differ when the library is loaded (see the comment there).
//!
//! Run it alone: `PG_CONFIG=$(bash scripts/pgtree.sh --debug target/pgtree/test) cargo test
//! -p e2e --test transparency -- --nocapture` (about 10 s).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::*;
use postgres::error::{DbError, ErrorPosition};

/// The role gated on the cluster with pg_oncall; nothing in the suite uses it, except an
/// ordinary role's `SET ROLE` to it, which PostgreSQL refuses before pg_oncall is asked.
const GATED: &str = "unrelated_admin";
/// Application name of the script's sessions and of the protocol checks' sessions.
const APP: &str = "transparency";
const APP_PROTOCOL: &str = "transparency-protocol";
/// A prefix we can find and normalise: backend type first (only client backends are
/// compared), then pid (normalised), then, for sessions, application, user, database and
/// SQLSTATE. No timestamp.
const LOG_CONF: &[&str] =
    &["log_line_prefix = '@@@ %b|%p|%q%a|%u|%d|%e @@@ '", "log_error_verbosity = verbose", "lc_messages = 'C'"];
const PSQL_TIMEOUT: Duration = Duration::from_secs(120);

/// One side's normalised outputs.
struct Outputs {
    client: String,
    log: String,
    protocol: String,
    /// Log lines of other processes, not compared.
    other_log: String,
    /// The settings the script leaves out of its listing, not compared.
    excluded_settings: String,
}

#[test]
fn same_client_output_and_server_log_with_and_without_pg_oncall() {
    let start = Instant::now();
    let plain = Cluster::builder().without_pg_oncall().conf(LOG_CONF).start();
    let with = Cluster::builder().conf(LOG_CONF).start();
    for cluster in [&plain, &with] {
        cluster
            .connect()
            .batch_execute(&format!("CREATE ROLE {GATED} NOLOGIN; CREATE ROLE tr_probe LOGIN"))
            .unwrap_or_else(|e| panic!("create roles: {}", error_text(&e)));
    }
    gate_unrelated_role(&with);
    for cluster in [&plain, &with] {
        cluster.connect().batch_execute("DROP ROLE tr_probe").expect("drop tr_probe");
    }
    let major: i32 = plain
        .connect()
        .query_one("SELECT current_setting('server_version_num')::int / 10000", &[])
        .expect("server_version_num")
        .get(0);
    eprintln!("transparency: PostgreSQL {major}, clusters ready after {:?}", start.elapsed());

    let without_out = run_side(&plain);
    let with_out = run_side(&with);
    eprintln!("transparency: script and protocol checks run on both after {:?}", start.elapsed());

    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("transparency").join(format!("pg{major}"));
    let dirs = [keep.join("without"), keep.join("with")];
    for (dir, out) in dirs.iter().zip([&without_out, &with_out]) {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        for (name, text) in [
            ("client.out", &out.client),
            ("server.log", &out.log),
            ("protocol.out", &out.protocol),
            ("other-processes.log", &out.other_log),
            ("excluded-settings.txt", &out.excluded_settings),
        ] {
            fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
        }
    }
    assert_baseline_is_meaningful(&without_out);
    eprintln!(
        "transparency: settings left out of the comparison (without pg_oncall):\n{}(with pg_oncall):\n{}",
        without_out.excluded_settings, with_out.excluded_settings
    );
    if !with_out.other_log.is_empty() {
        eprintln!(
            "transparency: log lines of other processes on the cluster with pg_oncall (not compared):\n{}",
            with_out.other_log
        );
    }

    let mut diffs = String::new();
    for name in ["client.out", "server.log", "protocol.out"] {
        if let Some(diff) = unified_diff(&dirs[0].join(name), &dirs[1].join(name)) {
            diffs.push_str(&diff);
        }
    }
    eprintln!("transparency: done in {:?}; outputs kept in {}", start.elapsed(), keep.display());
    assert!(
        diffs.is_empty(),
        "PostgreSQL {major} behaves differently with pg_oncall loaded (--- without, +++ with):\n{diffs}"
    );
}

/// `oncall.gate_role(GATED)`, then waits until a non-superuser's decision sees the rule
/// (the `tr_probe` role has no identity, so it may not assume a gated role).
fn gate_unrelated_role(cluster: &Cluster) {
    cluster
        .connect()
        .batch_execute(&format!("SELECT oncall.gate_role('{GATED}')"))
        .unwrap_or_else(|e| panic!("gate_role: {}", error_text(&e)));
    let mut probe = cluster.connect_as("tr_probe");
    within("the gate rule reaches decisions", Duration::from_secs(10), cluster, || {
        !probe
            .query_one("SELECT oncall.check_oncall_access($1::text::name)", &[&GATED])
            .map(|r| r.get::<_, bool>(0))
            .unwrap_or(true)
    });
}

fn run_side(cluster: &Cluster) -> Outputs {
    let offset = cluster.log_len();
    let client = run_script(cluster);
    let mut protocol = run_protocol_checks(cluster);
    let replacements = run_deadlock_check(cluster, &mut protocol);
    let (log, other_log) = split_log(&cluster.log_since(offset));
    let excluded_settings: String = cluster
        .connect()
        .query(
            "SELECT name || ' = ' || setting FROM pg_settings
              WHERE name LIKE 'pg\\_oncall.%'
                 OR name IN ('shared_preload_libraries', 'shared_memory_size', 'shared_memory_size_in_huge_pages')
              ORDER BY name",
            &[],
        )
        .expect("excluded settings")
        .iter()
        .map(|r| format!("{}\n", r.get::<_, String>(0)))
        .collect();
    let n = |s: &str| replacements.iter().fold(normalise(cluster, s), |text, (from, to)| text.replace(from, to));
    Outputs {
        client: n(&client),
        log: n(&log),
        protocol: n(&protocol),
        other_log: n(&other_log),
        excluded_settings,
    }
}

/// Runs the script with the major's psql from a copy of `e2e/sql` in the cluster's
/// directory (so the file names psql prints are the same on both sides).
fn run_script(cluster: &Cluster) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    let dir = cluster.dir().join("sql");
    fs::create_dir_all(&dir).expect("create sql dir");
    for entry in fs::read_dir(&src).expect("read e2e/sql") {
        let path = entry.expect("e2e/sql entry").path();
        if path.extension().is_some_and(|e| e == "sql") {
            fs::copy(&path, dir.join(path.file_name().unwrap())).expect("copy sql file");
        }
    }
    let out_path = cluster.dir().join("psql.out");
    let out = fs::File::create(&out_path).expect("create psql.out");
    let mut child = cluster
        .psql_in(&dir)
        .env("PGAPPNAME", APP)
        .args(["-a", "-f", "transparency.sql"])
        .stdout(Stdio::from(out.try_clone().expect("dup")))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("start psql");
    let deadline = Instant::now() + PSQL_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("wait psql") {
            Some(status) => break status,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("psql did not finish the script within {PSQL_TIMEOUT:?}\n{}", cluster.log_tail());
            }
        }
    };
    let mut text = fs::read(&out_path).map(|b| String::from_utf8_lossy(&b).into_owned()).expect("read psql.out");
    text.push_str(&format!("==== psql exit status: {:?}\n", status.code()));
    text
}

/// Statements run through both protocols of the `postgres` crate, as the superuser and as
/// the ordinary role, on the objects the script left in database `transparency`.
const PROTOCOL_CHECKS: &[(&str, &str)] = &[
    ("postgres", "SELECT 1 / 0"),
    ("postgres", "SELECT nosuchcol FROM pg_class"),
    ("postgres", "CREATE TABLE tr_su.t_bad (a nosuchtype)"),
    ("postgres", "CREATE FUNCTION tr_su.f_bad(int) RETURNS int LANGUAGE sql AS 'SELECT $2'"),
    ("postgres", "DO $$ BEGIN PERFORM 1 / 0; END $$"),
    ("postgres", "DO $$ DECLARE r int; BEGIN SELECT nosuchcol INTO r FROM pg_class; END $$"),
    ("postgres", "DO $$ BEGIN RAISE NOTICE 'notice' USING DETAIL = 'd', SCHEMA = 's', TABLE = 't'; END $$"),
    ("postgres", "CALL tr_su.p_raise()"),
    ("postgres", "CALL tr_su.p_fields()"),
    ("postgres", "SELECT tr_su.f_fields()"),
    ("postgres", "ALTER TABLE tr_su.child ADD CONSTRAINT child_note_check CHECK (note IS NOT NULL)"),
    ("postgres", "ALTER TABLE tr_su.child ALTER COLUMN note SET NOT NULL"),
    ("postgres", "ALTER TABLE tr_su.child ADD CONSTRAINT child_id_key UNIQUE (id)"),
    ("postgres", "ALTER TABLE tr_su.child VALIDATE CONSTRAINT child_pid_fkey2"),
    ("postgres", "INSERT INTO tr_su.parent VALUES (1)"),
    ("postgres", "REFRESH MATERIALIZED VIEW tr_su.mv"),
    ("postgres", "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT tr_su.f_div(0)"),
    ("postgres", "CREATE MATERIALIZED VIEW tr_su.mv_bad AS SELECT tr_su.f_div(0)"),
    ("postgres", "SELECT * FROM tr_su.pruned WHERE a = tr_su.f_stable_fields(0)"),
    ("postgres", "SET ROLE nosuch_role"),
    ("tr_alice", "SELECT * FROM tr_shared.secret"),
    ("tr_alice", "SELECT tr_shared.read_secret()"),
    ("tr_alice", "TRUNCATE tr_shared.secret"),
    ("tr_alice", "DO $$ BEGIN PERFORM count(*) FROM tr_shared.secret; END $$"),
    ("tr_alice", "SET ROLE tr_bob"),
    ("tr_alice", "SET ROLE unrelated_admin"),
    ("tr_alice", "SELECT set_config('role', 'unrelated_admin', false)"),
    ("tr_alice", "CALL tr_su.p_fields()"),
];

/// Logins PostgreSQL refuses (role, startup options), through ClientAuthentication and
/// the startup packet's settings: the FATAL error's every field.
const LOGIN_CHECKS: &[(&str, &str)] = &[
    ("tr_nologin", ""),
    ("nosuch_role", ""),
    ("tr_alice", "-c role=tr_bob"),
    ("tr_alice", "-c role=unrelated_admin"),
    ("tr_alice", "-c work_mem=lots"),
    ("tr_alice", "-c role=tr_group"),
];

/// Errors raised in ExecutorStart of a top-level statement: generic plans (so that the
/// planner does not call the stable function for its estimates), the value as a parameter of
/// the extended protocol; initial partition pruning then calls it in ExecutorStart.
const GENERIC_PLAN_CHECKS: &[&str] =
    &["SELECT * FROM tr_su.pruned WHERE a = tr_su.f_stable_fields($1)", "SELECT tr_su.f_prune($1)"];

fn run_protocol_checks(cluster: &Cluster) -> String {
    let mut out = String::new();
    for sql in GENERIC_PLAN_CHECKS {
        let mut config = cluster.config("postgres", "transparency");
        config.application_name(APP_PROTOCOL).options("-c plan_cache_mode=force_generic_plan");
        let mut client = cluster.try_connect_with(&config).unwrap_or_else(|e| panic!("connect: {}", error_text(&e)));
        out.push_str(&format!("==== extended protocol, generic plan, as postgres: {sql} with $1 = 0\n"));
        match client.query(*sql, &[&0i32]) {
            Ok(rows) => out.push_str(&format!("ok, {} rows\n", rows.len())),
            Err(e) => match e.as_db_error() {
                Some(db) => out.push_str(&render_db_error(db)),
                None => out.push_str(&format!("client error: {e}\n")),
            },
        }
    }
    for (role, options) in LOGIN_CHECKS {
        let mut config = cluster.config(role, "transparency");
        config.application_name(APP_PROTOCOL);
        if !options.is_empty() {
            config.options(options);
        }
        out.push_str(&format!("==== login as {role} with options {options:?}\n"));
        match cluster.try_connect_with(&config) {
            Ok(mut c) => {
                let who = c.query_one("SELECT session_user::text || ' / ' || current_user", &[]).map(|r| r.get::<_, String>(0));
                out.push_str(&format!("logged in: {}\n", who.unwrap_or_else(|e| error_text(&e))));
            }
            Err(e) => match e.as_db_error() {
                Some(db) => out.push_str(&render_db_error(db)),
                None => out.push_str(&format!("client error: {e}\n")),
            },
        }
    }
    for (role, sql) in PROTOCOL_CHECKS {
        for extended in [true, false] {
            let notices = Arc::new(Mutex::new(Vec::<String>::new()));
            let sink = Arc::clone(&notices);
            let mut config = cluster.config(role, "transparency");
            config.application_name(APP_PROTOCOL).notice_callback(move |n| sink.lock().unwrap().push(render_db_error(&n)));
            let mut client = cluster
                .try_connect_with(&config)
                .unwrap_or_else(|e| panic!("connect as {role} to transparency: {}", error_text(&e)));
            let result = if extended {
                client.execute(*sql, &[]).map(|n| format!("ok, {n} rows"))
            } else {
                client.batch_execute(sql).map(|()| "ok".to_string())
            };
            drop(client);
            out.push_str(&format!("==== {} protocol, as {role}: {sql}\n", if extended { "extended" } else { "simple" }));
            for notice in notices.lock().unwrap().iter() {
                out.push_str(notice);
            }
            match result {
                Ok(text) => out.push_str(&format!("{text}\n")),
                Err(e) => match e.as_db_error() {
                    Some(db) => out.push_str(&render_db_error(db)),
                    None => out.push_str(&format!("client error: {e}\n")),
                },
            }
        }
    }
    out
}

/// A deadlock between two sessions' `LOCK TABLE` (a utility statement): the client gets a
/// DETAIL naming processes and relations, and the server log a longer one with each
/// process's query (`errdetail_log`), which the HINT points to. Made deterministic: the
/// second session waits first, with a long `deadlock_timeout`, so the first one (100 ms)
/// detects the deadlock and gets the error. Returns the replacements that make its pids and
/// OIDs comparable (applied to every output of this side).
fn run_deadlock_check(cluster: &Cluster, out: &mut String) -> Vec<(String, String)> {
    let session = |deadlock_timeout: &str| {
        let mut config = cluster.config("postgres", "transparency");
        config
            .application_name(APP_PROTOCOL)
            .options(&format!("-c statement_timeout=60s -c deadlock_timeout={deadlock_timeout}"));
        cluster.try_connect_with(&config).unwrap_or_else(|e| panic!("connect: {}", error_text(&e)))
    };
    let mut admin = cluster.connect_db("postgres", "transparency");
    admin.batch_execute("CREATE TABLE tr_su.dl_a (); CREATE TABLE tr_su.dl_b ()").expect("create dl_a, dl_b");
    let int = |c: &mut postgres::Client, sql: &str| -> i64 { c.query_one(sql, &[]).expect(sql).get(0) };
    let oid_a = int(&mut admin, "SELECT 'tr_su.dl_a'::regclass::oid::int8");
    let oid_b = int(&mut admin, "SELECT 'tr_su.dl_b'::regclass::oid::int8");
    let db = int(&mut admin, "SELECT oid::int8 FROM pg_database WHERE datname = current_database()");
    let mut first = session("100ms");
    let mut second = session("60s");
    let pid_first = int(&mut first, "SELECT pg_backend_pid()::int8");
    let pid_second = int(&mut second, "SELECT pg_backend_pid()::int8");
    first.batch_execute("BEGIN; LOCK tr_su.dl_a").expect("first locks dl_a");
    second.batch_execute("BEGIN; LOCK tr_su.dl_b").expect("second locks dl_b");
    let waiter = std::thread::spawn(move || {
        let result = second.batch_execute("LOCK tr_su.dl_a");
        (second, result)
    });
    let waiting = wait_until(Duration::from_secs(20), || {
        admin
            .query_one("SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted", &[&(pid_second as i32)])
            .map(|r| r.get::<_, i64>(0) > 0)
            .unwrap_or(false)
    });
    assert!(waiting, "the second session does not wait for dl_a\n{}", cluster.log_tail());
    let result = first.batch_execute("LOCK tr_su.dl_b");
    first.batch_execute("ROLLBACK").expect("rollback first");
    let (mut second, second_result) = waiter.join().expect("join the waiting session");
    second.batch_execute("ROLLBACK").expect("rollback second");
    admin.batch_execute("DROP TABLE tr_su.dl_a, tr_su.dl_b").expect("drop dl_a, dl_b");
    for (who, result) in [("first", result), ("second", second_result)] {
        out.push_str(&format!("==== deadlock, {who} session: LOCK\n"));
        match result {
            Ok(()) => out.push_str("ok\n"),
            Err(e) => match e.as_db_error() {
                Some(db) => out.push_str(&render_db_error(db)),
                None => out.push_str(&format!("client error: {e}\n")),
            },
        }
    }
    vec![
        (format!("rocess {pid_first}"), "rocess <FIRST>".into()),
        (format!("rocess {pid_second}"), "rocess <SECOND>".into()),
        (format!("relation {oid_a} of database {db}"), "relation dl_a of database <DB>".into()),
        (format!("relation {oid_b} of database {db}"), "relation dl_b of database <DB>".into()),
    ]
}

/// Every field of an error or notice, one per line.
fn render_db_error(e: &DbError) -> String {
    let mut s = format!("{} {}: {}\n", e.severity(), e.code().code(), e.message());
    let mut field = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            s.push_str(&format!("  {name}: {}\n", v.replace('\n', "\n    ")));
        }
    };
    field("detail", e.detail().map(str::to_string));
    field("hint", e.hint().map(str::to_string));
    field(
        "position",
        e.position().map(|p| match p {
            ErrorPosition::Original(n) => format!("{n}"),
            ErrorPosition::Internal { position, query } => format!("{position} in internal query {query:?}"),
        }),
    );
    field("context", e.where_().map(str::to_string));
    field("schema", e.schema().map(str::to_string));
    field("table", e.table().map(str::to_string));
    field("column", e.column().map(str::to_string));
    field("datatype", e.datatype().map(str::to_string));
    field("constraint", e.constraint().map(str::to_string));
    field("file", e.file().map(str::to_string));
    field("line", e.line().map(|l| l.to_string()));
    field("routine", e.routine().map(str::to_string));
    s
}

/// Splits the log into the records of client backends (compared) and the rest. A record is
/// a prefixed line and the unprefixed lines that continue it (multi-line messages).
fn split_log(log: &str) -> (String, String) {
    let mut compared = String::new();
    let mut other = String::new();
    let mut to_compared = false;
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("@@@ ") {
            let mut fields = rest.splitn(3, '|');
            let backend_type = fields.next().unwrap_or("");
            let _pid = fields.next();
            let tail = fields.next().unwrap_or("");
            to_compared = backend_type == "client backend";
            let normalised = format!("@@@ {backend_type}|PID|{tail}\n");
            if to_compared {
                compared.push_str(&normalised);
            } else {
                other.push_str(&normalised);
            }
        } else if to_compared {
            compared.push_str(&format!("{line}\n"));
        } else {
            other.push_str(&format!("{line}\n"));
        }
    }
    (compared, other)
}

/// What differs between any two runs whatever the library: the cluster's directory and
/// port, pids in notifications, the number in a temporary schema's name (it follows the
/// backend's slot, and the cluster with pg_oncall has two more processes).
fn normalise(cluster: &Cluster, text: &str) -> String {
    let dir = cluster.dir().to_string_lossy().into_owned();
    let port = cluster.port().to_string();
    let text = text
        .replace(&dir, "<CLUSTER_DIR>")
        .replace(&format!(".s.PGSQL.{port}"), ".s.PGSQL.<PORT>")
        .replace(&format!("port \"{port}\""), "port \"<PORT>\"")
        .replace(&format!("port {port}"), "port <PORT>");
    let text = replace_number_after(&text, "with PID ", "<PID>");
    replace_number_after(&text, "pg_temp_", "N")
}

/// Replaces the digits that follow each occurrence of `marker` by `with`.
fn replace_number_after(text: &str, marker: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        let after = i + marker.len();
        out.push_str(&rest[..after]);
        let digits = rest[after..].bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push_str(with);
        }
        rest = &rest[after + digits..];
    }
    out.push_str(rest);
    out
}

/// `diff -u` of two files, or None when they are equal.
fn unified_diff(a: &Path, b: &Path) -> Option<String> {
    let side = |p: &Path| {
        let parent = p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{parent}/{}", p.file_name().unwrap().to_string_lossy())
    };
    let out = Command::new("diff")
        .args(["-u", "--label", &side(a), "--label", &side(b)])
        .arg(a)
        .arg(b)
        .output()
        .expect("run diff");
    match out.status.code() {
        Some(0) => None,
        Some(1) => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        _ => panic!("diff {} {} failed: {}", a.display(), b.display(), String::from_utf8_lossy(&out.stderr)),
    }
}

/// The baseline (without pg_oncall) must show what the suite is about, or an empty or
/// broken run on both sides would pass.
fn assert_baseline_is_meaningful(out: &Outputs) {
    let client_must = [
        "transparency: end of script",
        "LINE 1: CREATE TABLE t_bad (a int, b nosuchtype);",
        "CONTEXT:  SQL statement \"SELECT 1 / 0\"\nPL/pgSQL function inline_code_block line 1 at PERFORM",
        "SCHEMA NAME:  the_schema",
        "CONSTRAINT NAME:  child_note_check",
        "LOCATION:  ",
        "COPY cp, line 3, column a: \"three\"",
        "You are now connected to database \"transparency\" as user \"tr_alice\".",
        "permission denied for table secret",
    ];
    let missing: Vec<&str> = client_must.iter().copied().filter(|m| !out.client.contains(m)).collect();
    assert!(missing.is_empty(), "the baseline client output lacks {missing:?}:\n{}", out.client);
    let log_must = ["ERROR:  42704: type \"nosuchtype\" does not exist", "CONTEXT:  ", "STATEMENT:  ", "LOCATION:  ", "|tr_alice|"];
    let missing: Vec<&str> = log_must.iter().copied().filter(|m| !out.log.contains(m)).collect();
    assert!(missing.is_empty(), "the baseline server log lacks {missing:?}:\n{}", out.log);
    assert!(out.protocol.contains("extended protocol") && out.protocol.contains("routine: "), "{}", out.protocol);
}
