//! In-server tests (`cargo pgrx test`): the catalog's constraints, privileges and every SQL
//! function's answer to bad input, in a rolled-back transaction of a cluster that preloads us.
//! Behaviour that needs commits, the worker or several sessions is tested in `e2e/`.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn fails(sql: &str) -> bool {
        PgTryBuilder::new(|| Spi::run(sql).is_err()).catch_others(|_| true).execute()
    }

    fn bool_of(sql: &str) -> Option<bool> {
        Spi::get_one::<bool>(sql).expect("query failed")
    }

    #[pg_test]
    fn library_is_preloaded_and_worker_registered() {
        let libs = Spi::get_one::<String>("SHOW shared_preload_libraries").unwrap().unwrap();
        assert!(libs.contains("pg_oncall"));
        assert_eq!(
            Spi::get_one::<String>("SELECT current_setting('pg_oncall.enforcement')").unwrap().as_deref(),
            Some("enforce")
        );
    }

    #[pg_test]
    fn there_is_no_token_setting() {
        assert!(fails("SHOW pg_oncall.pagerduty_token"));
        assert!(fails("SET pg_oncall.pagerduty_token = 'x'"), "the prefix is reserved");
    }

    #[pg_test]
    fn shifts_reject_nonsense() {
        assert!(fails("INSERT INTO oncall.shifts (source, email) VALUES ('elsewhere', 'a@x.com')"));
        assert!(fails("INSERT INTO oncall.shifts (source, email) VALUES ('manual', '')"));
        assert!(fails("INSERT INTO oncall.shifts (source, email) VALUES ('manual', '   ')"));
        assert!(fails("INSERT INTO oncall.shifts (source, email) VALUES ('manual', NULL)"));
        assert!(fails("INSERT INTO oncall.shifts (source, email) VALUES (NULL, 'a@x.com')"));
        assert!(fails("INSERT INTO oncall.shifts (source, email, escalation_level) VALUES ('manual', 'a@x.com', -1)"));
        assert!(fails(
            "INSERT INTO oncall.shifts (source, email, starts_at, ends_at) VALUES ('manual', 'a@x.com', now(), now())"
        ));
        assert!(fails(
            "INSERT INTO oncall.shifts (source, email, starts_at, ends_at) VALUES ('manual', 'a@x.com', now(), now() - '1h'::interval)"
        ));
        assert!(fails("INSERT INTO oncall.shifts (source, email) VALUES ('manual', repeat('a', 10000) || '@x.com')"));
        Spi::run("INSERT INTO oncall.shifts (source, email) VALUES ('manual', 'a@x.com')").unwrap();
        Spi::run("INSERT INTO oncall.shifts (source, email, starts_at) VALUES ('manual', 'a@x.com', now())").unwrap();
    }

    #[pg_test]
    fn gated_roles_reject_nonsense() {
        Spi::run("CREATE ROLE gate_target NOLOGIN").unwrap();
        assert!(fails("SELECT oncall.gate_role('no_such_role_anywhere')"));
        assert!(fails("SELECT oncall.gate_role(NULL)"));
        assert!(fails("SELECT oncall.gate_role('gate_target', min_escalation_level => 0)"));
        assert!(fails("SELECT oncall.gate_role('gate_target', min_escalation_level => -3)"));
        assert!(fails("SELECT oncall.gate_role('gate_target', min_escalation_level => 3, max_escalation_level => 2)"));
        assert!(fails("SELECT oncall.gate_role('gate_target', escalation_policy_ids => '{}')"));
        assert!(fails("SELECT oncall.gate_role('gate_target', escalation_policy_ids => ARRAY[NULL]::text[])"));
        assert!(fails("SELECT oncall.gate_role('gate_target', escalation_policy_ids => ARRAY[repeat('P', 10000)])"));
        Spi::run("SELECT oncall.gate_role('gate_target', escalation_policy_ids => '{PT20YPA}', gate_login => true)").unwrap();
        // Replacing a rule resets omitted arguments to their defaults.
        Spi::run("SELECT oncall.gate_role('gate_target', min_escalation_level => 2)").unwrap();
        let row = Spi::get_two::<bool, bool>(
            "SELECT escalation_policy_ids IS NULL, gate_login FROM oncall.gated_roles WHERE role_name = 'gate_target'",
        )
        .unwrap();
        assert_eq!(row, (Some(true), Some(false)));
        assert_eq!(bool_of("SELECT oncall.ungate_role('gate_target')"), Some(true));
        assert_eq!(bool_of("SELECT oncall.ungate_role('gate_target')"), Some(false));
    }

    #[pg_test]
    fn identities_reject_nonsense() {
        assert!(fails("INSERT INTO oncall.identities VALUES ('alice', '')"));
        assert!(fails("INSERT INTO oncall.identities VALUES ('alice', NULL)"));
        Spi::run("INSERT INTO oncall.identities VALUES ('alice', 'alice@example.com')").unwrap();
        assert!(fails("INSERT INTO oncall.identities VALUES ('alice', 'other@example.com')"));
    }

    #[pg_test]
    fn override_checks_its_arguments_and_keeps_the_reason() {
        assert!(fails("SELECT oncall.override(NULL, '1h', 'incident')"));
        assert!(fails("SELECT oncall.override('', '1h', 'incident')"));
        assert!(fails("SELECT oncall.override('a@x.com', '-1h', 'incident')"));
        assert!(fails("SELECT oncall.override('a@x.com', '0', 'incident')"));
        assert!(fails("SELECT oncall.override('a@x.com', '1h', NULL)"));
        assert!(fails("SELECT oncall.override('a@x.com', '1h', ' ')"));
        Spi::run("SELECT oncall.override('a@x.com', '1h', 'INC-42 database down')").unwrap();
        let row = Spi::get_two::<String, bool>(
            "SELECT reason, ends_at BETWEEN now() + '59min'::interval AND clock_timestamp() + '1h'::interval
               FROM oncall.shifts WHERE source = 'manual' AND email = 'a@x.com'",
        )
        .unwrap();
        assert_eq!(row, (Some("INC-42 database down".into()), Some(true)));
    }

    #[pg_test]
    fn decision_functions_take_bad_input_calmly() {
        assert_eq!(bool_of("SELECT oncall.check_oncall_access(NULL::name)"), None);
        assert_eq!(bool_of("SELECT oncall.check_oncall_access('')"), Some(true), "superusers are not gated");
        assert_eq!(bool_of("SELECT oncall.check_oncall_access(repeat('r', 10000))"), Some(true));
        assert_eq!(bool_of("SELECT oncall.check_oncall_access('no such role')"), Some(true));
        assert_eq!(bool_of("SELECT oncall.is_on_call(NULL)"), None);
        assert_eq!(bool_of("SELECT oncall.is_on_call('')"), Some(false));
        assert_eq!(bool_of("SELECT oncall.is_on_call(repeat('x', 10000))"), Some(false));
        assert_eq!(bool_of("SELECT oncall.is_on_call('nobody@example.com', NULL, NULL)"), Some(false));
        assert_eq!(bool_of("SELECT oncall.is_on_call('nobody@example.com', -5, '{}')"), Some(false));
        assert_eq!(bool_of("SELECT oncall.check_oncall_access()"), Some(false), "postgres has no identity");
        let who = Spi::get_two::<String, bool>(r#"SELECT "session_user"::text, on_call FROM oncall.whoami()"#).unwrap();
        assert_eq!(who, (Some("postgres".into()), Some(false)));
    }

    #[pg_test]
    fn privileges_follow_the_design() {
        Spi::run("CREATE ROLE plain_user NOLOGIN").unwrap();
        let can = |what: &str| bool_of(&format!("SELECT has_function_privilege('plain_user', '{what}', 'EXECUTE')"));
        for public in [
            "oncall.check_oncall_access()",
            "oncall.check_oncall_access(name)",
            "oncall.is_on_call(text, int, text[])",
            "oncall.whoami()",
        ] {
            assert_eq!(can(public), Some(true), "{public}");
        }
        for admin in [
            "oncall.refresh(boolean, interval)",
            "oncall.override(text, interval, text, text)",
            "oncall.gate_role(name, text[], text[], int, int, boolean, boolean, interval, boolean)",
            "oncall.ungate_role(name)",
            "oncall.status()",
            "oncall.stats()",
        ] {
            assert_eq!(can(admin), Some(false), "{admin}");
        }
        for table in ["oncall.gated_roles", "oncall.identities", "oncall.shifts", "oncall.incidents", "oncall.sync_state"] {
            assert_eq!(
                bool_of(&format!("SELECT has_table_privilege('plain_user', '{table}', 'SELECT')")),
                Some(false),
                "{table}"
            );
        }
    }

    #[pg_test]
    fn functions_are_stable_and_parallel_safe() {
        let props = Spi::get_two::<String, String>(
            "SELECT provolatile::text, proparallel::text FROM pg_proc
              WHERE oid = 'oncall.check_oncall_access()'::regprocedure",
        )
        .unwrap();
        assert_eq!(props, (Some("s".into()), Some("s".into())));
    }

    #[pg_test]
    fn status_without_token_says_so() {
        let row = Spi::get_two::<bool, bool>("SELECT token_configured, stale FROM oncall.status()").unwrap();
        assert_eq!(row, (Some(false), Some(true)));
    }

    #[pg_test]
    fn doctor_reports_an_inheriting_member_and_the_fix_clears_it() {
        Spi::run("CREATE ROLE doc_admin NOLOGIN; CREATE ROLE doc_member LOGIN INHERIT; GRANT doc_admin TO doc_member").unwrap();
        Spi::run("INSERT INTO oncall.identities VALUES ('doc_member', 'doc@example.com')").unwrap();
        Spi::run("SELECT oncall.gate_role('doc_admin')").unwrap();
        let inherits = "SELECT count(*) FROM oncall.doctor() WHERE object = 'role doc_member' AND problem LIKE '%inherits%'";
        assert_eq!(Spi::get_one::<i64>(inherits).unwrap(), Some(1));
        Spi::run("ALTER ROLE doc_member NOINHERIT").unwrap();
        assert_eq!(Spi::get_one::<i64>(inherits).unwrap(), Some(0));
    }
}
