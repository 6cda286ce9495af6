//! Compiles the C parts of `src/pg/` (hooks.c, grants.c, port.c) against the server headers of the PostgreSQL major
//! selected by the `pgNN` feature, found the way pgrx finds them (PGRX_PG_CONFIG_PATH, else
//! pgrx's config.toml).

use pgrx_pg_config::{PgConfig, Pgrx};

fn main() {
    println!("cargo:rerun-if-changed=src/pg/hooks.c");
    println!("cargo:rerun-if-changed=src/pg/grants.c");
    println!("cargo:rerun-if-changed=src/pg/port.c");
    println!("cargo:rerun-if-env-changed=PGRX_PG_CONFIG_PATH");
    let majors: Vec<u16> = [15u16, 16, 17, 18].into_iter().filter(|m| std::env::var(format!("CARGO_FEATURE_PG{m}")).is_ok()).collect();
    let [major] = majors[..] else { panic!("build: enable exactly one of the features pg15, pg16, pg17, pg18 (found {majors:?})") };
    let pg_config = match std::env::var("PGRX_PG_CONFIG_PATH") {
        Ok(path) => PgConfig::new_with_defaults(path.into()),
        Err(_) => Pgrx::from_config()
            .and_then(|pgrx| pgrx.get(&format!("pg{major}")))
            .unwrap_or_else(|e| panic!("build: no pg_config for pg{major}: {e} (run make setup)")),
    };
    let found = pg_config.major_version().unwrap_or_else(|e| panic!("build: {e}"));
    assert_eq!(found, major, "build: the pg_config found is PostgreSQL {found}, but feature pg{major} is enabled");
    let include = pg_config.includedir_server().unwrap_or_else(|e| panic!("build: {e}"));
    cc::Build::new()
        .file("src/pg/hooks.c")
        .file("src/pg/grants.c")
        .file("src/pg/port.c")
        .include(include)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-missing-field-initializers")
        .compile("pg_oncall_hooks");
}
