//! DESIGN.md guarantee 8: no code but pg_oncall's runs inside pg_oncall (issue 9, "Foreign
//! code runs as superuser").
//!
//! | case | test |
//! |---|---|
//! | `GRANT CREATE ON SCHEMA public TO PUBLIC` (a cluster upgraded from PG ≤ 14); a non-superuser plants exact-match operators, functions and aggregates in `public` for what pg_oncall's SQL and worker call; a superuser runs every `oncall.*` function, writes every table, the worker syncs, reloads and restarts, the extension is dropped and created again: none of the planted code ever runs | `planted_operators_and_functions_in_public_never_run` |
//! | the same, with the superuser's `search_path = public, pg_catalog` (public first) | `planted_code_never_runs_even_with_public_first_in_search_path` |

use e2e::*;
use fake_pagerduty::oncall;

/// (operator, left type, right type, result type, pg_catalog expression over a and b)
const OPERATORS: &[(&str, &str, &str, &str)] = &[
    ("=", "text", "text", "boolean"),
    ("<>", "text", "text", "boolean"),
    ("=", "name", "name", "boolean"),
    ("=", "name", "text", "boolean"),
    ("=", "text", "name", "boolean"),
    ("<>", "name", "name", "boolean"),
    ("=", "oid", "oid", "boolean"),
    ("=", "boolean", "boolean", "boolean"),
    ("=", "integer", "integer", "boolean"),
    ("<=", "integer", "integer", "boolean"),
    (">=", "integer", "integer", "boolean"),
    (">", "timestamptz", "timestamptz", "boolean"),
    ("<", "timestamptz", "timestamptz", "boolean"),
    ("<=", "timestamptz", "timestamptz", "boolean"),
    (">=", "timestamptz", "timestamptz", "boolean"),
    ("<=", "interval", "interval", "boolean"),
    (">", "interval", "interval", "boolean"),
    ("+", "timestamptz", "interval", "timestamptz"),
    ("*", "numeric", "integer", "numeric"),
    ("+", "bigint", "integer", "bigint"),
    ("||", "text", "text", "text"),
    ("~~", "text", "text", "boolean"),
    ("=", "text[]", "text[]", "boolean"),
    ("@>", "text[]", "text[]", "boolean"),
];

/// (name, argument types, result type, pg_catalog call)
const FUNCTIONS: &[(&str, &str, &str, &str)] = &[
    ("btrim", "text", "text", "pg_catalog.btrim($1)"),
    ("lower", "text", "text", "pg_catalog.lower($1)"),
    ("ltrim", "text, text", "text", "pg_catalog.ltrim($1, $2)"),
    ("replace", "text, text, text", "text", "pg_catalog.replace($1, $2, $3)"),
    ("string_to_array", "text, text", "text[]", "pg_catalog.string_to_array($1, $2)"),
    ("current_setting", "text", "text", "pg_catalog.current_setting($1)"),
    ("current_setting", "text, boolean", "text", "pg_catalog.current_setting($1, $2)"),
    ("array_position", "text[], text", "integer", "pg_catalog.array_position($1, $2)"),
    ("array_ndims", "text[]", "integer", "pg_catalog.array_ndims($1)"),
    ("array_to_string", "text[], text", "text", "pg_catalog.array_to_string($1, $2)"),
    ("octet_length", "text", "integer", "pg_catalog.octet_length($1)"),
    ("now", "", "timestamptz", "pg_catalog.now()"),
    ("clock_timestamp", "", "timestamptz", "pg_catalog.clock_timestamp()"),
    ("quote_literal", "text", "text", "pg_catalog.quote_literal($1)"),
    ("quote_ident", "text", "text", "pg_catalog.quote_ident($1)"),
    ("format", "text, text", "text", "pg_catalog.format($1, $2)"),
    ("format", "text, text, text", "text", "pg_catalog.format($1, $2, $3)"),
    ("format", "text, name", "text", "pg_catalog.format($1, $2)"),
    ("concat_ws", "text, text, text", "text", "pg_catalog.concat_ws($1, $2, $3)"),
    ("strpos", "text, text", "integer", "pg_catalog.strpos($1, $2)"),
    ("pg_has_role", "oid, oid, text", "boolean", "pg_catalog.pg_has_role($1, $2, $3)"),
    ("current_database", "", "name", "pg_catalog.current_database()"),
    ("pg_reload_conf", "", "boolean", "pg_catalog.pg_reload_conf()"),
];

/// The planted objects, created by `mallory`, a plain login role: each records its own call in
/// `public.tripwire` (PUBLIC may insert) and with a WARNING in the log, then does what the
/// pg_catalog object does (so nothing else breaks).
fn plant_sql() -> String {
    let mut sql = String::from(
        "CREATE TABLE public.tripwire (what text, by_user text DEFAULT current_user, at timestamptz DEFAULT pg_catalog.clock_timestamp());
         GRANT INSERT ON public.tripwire TO PUBLIC;
         CREATE FUNCTION public.tw(what text) RETURNS void LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO public.tripwire (what) VALUES (what);
             RAISE WARNING 'TRIPWIRE % ran as %', what, current_user;
         END $$;
         GRANT EXECUTE ON FUNCTION public.tw(text) TO PUBLIC;\n",
    );
    for (i, (op, left, right, result)) in OPERATORS.iter().enumerate() {
        sql.push_str(&format!(
            "CREATE FUNCTION public.tw_op{i}(a {left}, b {right}) RETURNS {result} LANGUAGE plpgsql AS $$
             BEGIN PERFORM public.tw('operator {op}({left}, {right})'); RETURN a OPERATOR(pg_catalog.{op}) b; END $$;
             CREATE OPERATOR public.{op} (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = public.tw_op{i});\n"
        ));
    }
    for (name, args, result, call) in FUNCTIONS {
        let params: Vec<String> = args.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect();
        let volatility = if *name == "pg_reload_conf" { "VOLATILE" } else { "STABLE" };
        sql.push_str(&format!(
            "CREATE FUNCTION public.{name}({}) RETURNS {result} LANGUAGE plpgsql {volatility} AS $$
             BEGIN PERFORM public.tw('function {name}({args})'); RETURN {call}; END $$;\n",
            params.join(", ")
        ));
    }
    sql.push_str(
        "CREATE FUNCTION public.unnest(text[]) RETURNS SETOF text LANGUAGE plpgsql STABLE AS $$
         BEGIN PERFORM public.tw('function unnest(text[])'); RETURN QUERY SELECT pg_catalog.unnest($1); END $$;
         CREATE FUNCTION public.tw_count_sf(bigint) RETURNS bigint LANGUAGE plpgsql AS $$
         BEGIN PERFORM public.tw('aggregate count(*)'); RETURN $1 OPERATOR(pg_catalog.+) 1; END $$;
         CREATE AGGREGATE public.count(*) (SFUNC = public.tw_count_sf, STYPE = bigint, INITCOND = '0');
         CREATE FUNCTION public.tw_bool_and_sf(boolean, boolean) RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN PERFORM public.tw('aggregate bool_and(boolean)'); RETURN $1 AND $2; END $$;
         CREATE AGGREGATE public.bool_and(boolean) (SFUNC = public.tw_bool_and_sf, STYPE = boolean, INITCOND = 'true');
         CREATE FUNCTION public.tw_array_agg_sf(text[], text) RETURNS text[] LANGUAGE plpgsql AS $$
         BEGIN PERFORM public.tw('aggregate array_agg(text)'); RETURN pg_catalog.array_append($1, $2); END $$;
         CREATE AGGREGATE public.array_agg(text) (SFUNC = public.tw_array_agg_sf, STYPE = text[], INITCOND = '{}');\n",
    );
    sql
}

fn tripped(t: &mut Team) -> Vec<String> {
    t.admin
        .query("SELECT what || ' (as ' || by_user || ')' FROM public.tripwire ORDER BY at", &[])
        .unwrap_or_else(|e| panic!("read tripwire: {}", error_text(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn foreign_code_case(search_path: &str) {
    let mut t = team(&[]);
    t.fake.set_oncalls(vec![oncall(BOB_EMAIL, "P1", 1), oncall("dave@example.com", "P2", 2)]);
    ok(t.admin.batch_execute("GRANT CREATE ON SCHEMA public TO PUBLIC; CREATE ROLE mallory LOGIN"), "public writable, mallory");
    let mut mallory = t.connect_as("mallory");
    ok(mallory.batch_execute(&plant_sql()), "mallory plants her objects");
    // The tripwires work: plain SQL that resolves to them records them.
    ok(t.admin.batch_execute("SELECT 2.5::numeric * 2"), "control");
    let control = tripped(&mut t);
    assert!(control.iter().any(|w| w.contains("operator *(numeric, integer)")), "the control statement trips: {control:?}");
    ok(t.admin.batch_execute("TRUNCATE public.tripwire"), "reset the tripwire");
    let offset = t.cluster.log_len();

    // A superuser uses every oncall.* function, with `search_path` as given.
    let mut su = t.cluster.connect();
    ok(su.batch_execute(&format!("SET search_path = {search_path}")), "search_path");
    let calls = [
        "SELECT oncall.refresh()",
        "SELECT oncall.refresh(wait => true, timeout => '20s')",
        "SELECT oncall.refresh(wait => false)",
        "SELECT oncall.gate_role('prod_admin', escalation_policy_ids => '{P1}', schedule_ids => '{S1}', min_escalation_level => 1, max_escalation_level => 2, gate_login => false)",
        "SELECT oncall.gate_role('prod_admin')",
        "SELECT oncall.gate_role('mallory', gate_login => true)",
        "SELECT oncall.ungate_role('mallory')",
        "SELECT oncall.override('bob@example.com', '1 hour', 'INC-8: planted code test', 'P1')",
        "SELECT oncall.override(' carol@example.com ', '5 minutes', 'INC-8')",
        "SELECT * FROM oncall.status()",
        "SELECT * FROM oncall.stats()",
        "SELECT * FROM oncall.doctor()",
        "SELECT * FROM oncall._findings()",
        "SELECT * FROM oncall.whoami()",
        "SELECT oncall.check_oncall_access()",
        "SELECT oncall.check_oncall_access('prod_admin')",
        "SELECT oncall.is_on_call('alice@example.com')",
        "SELECT oncall.is_on_call('alice@example.com', 1, '{P1,P2}')",
        "SELECT oncall._is_stale(NULL)",
    ];
    for sql in calls {
        ok(su.batch_execute(sql), &format!("superuser: {sql}"));
    }
    // Every table written (plain statements: nothing in them resolves to a planted object
    // under the default search_path, as the control above shows for an explicit one).
    let mut admin = t.cluster.connect();
    let writes = [
        "INSERT INTO oncall.identities VALUES ('mallory', 'Mallory@Example.com ')",
        "UPDATE oncall.identities SET email = 'mallory@example.com' WHERE role_name = 'mallory'",
        "DELETE FROM oncall.identities WHERE role_name = 'mallory'",
        "INSERT INTO oncall.shifts (source, email, escalation_policy_id, escalation_level, starts_at, ends_at)
              VALUES ('manual', 'erin@example.com', 'P1', 2, '2020-01-01', '2999-01-01')",
        "UPDATE oncall.shifts SET reason = 'edited' WHERE email = 'erin@example.com'",
        "DELETE FROM oncall.shifts WHERE email = 'erin@example.com'",
        "INSERT INTO oncall.gated_roles (role_name, escalation_policy_ids) VALUES ('mallory', '{P1, P2}')",
        "UPDATE oncall.gated_roles SET schedule_ids = '{S9}', min_escalation_level = 1 WHERE role_name = 'mallory'",
        "DELETE FROM oncall.gated_roles WHERE role_name = 'mallory'",
        "UPDATE oncall.sync_state SET last_success_at = last_success_at",
    ];
    for sql in writes {
        ok(admin.batch_execute(sql), &format!("superuser: {sql}"));
    }
    // The worker reloads after those commits, syncs again, and restarts.
    ok(admin.batch_execute("INSERT INTO oncall.shifts (source, email) VALUES ('manual', 'reload-probe@example.com')"), "probe");
    assert!(wait_until(PATIENCE, || is_on_call(&mut admin, "reload-probe@example.com")), "the worker reloaded");
    ok(admin.batch_execute("SELECT oncall.refresh()"), "sync");
    drop((su, admin, mallory));
    t.cluster.restart();
    let mut admin = t.cluster.connect();
    ok(admin.batch_execute("SELECT oncall.refresh()"), "sync after restart");
    assert!(is_on_call(&mut admin, BOB_EMAIL), "the synced shift is loaded");
    // DROP and CREATE EXTENSION again (the script runs with mallory's objects in place).
    ok(admin.batch_execute("DROP EXTENSION pg_oncall; CREATE EXTENSION pg_oncall"), "re-create the extension");
    ok(admin.batch_execute("INSERT INTO oncall.shifts (source, email) VALUES ('manual', 'after-recreate@example.com')"), "probe");
    assert!(wait_until(PATIENCE, || is_on_call(&mut admin, "after-recreate@example.com")), "the worker loads the new extension");
    ok(admin.batch_execute("SELECT oncall.refresh()"), "sync into the new extension");
    t.admin = admin;

    let ran = tripped(&mut t);
    assert!(ran.is_empty(), "planted code ran inside pg_oncall:\n{}", ran.join("\n"));
    let log = t.cluster.log_since(offset);
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("TRIPWIRE")).collect();
    assert!(warnings.is_empty(), "planted code ran (log):\n{}", warnings.join("\n"));
}

#[test]
fn planted_operators_and_functions_in_public_never_run() {
    foreign_code_case("\"$user\", public");
}

#[test]
fn planted_code_never_runs_even_with_public_first_in_search_path() {
    foreign_code_case("public, pg_catalog");
}
