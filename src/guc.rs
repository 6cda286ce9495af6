//! The `pg_oncall.*` settings: their definitions, defaults and contexts (DESIGN.md), and typed
//! accessors. There is deliberately no token setting: the token is read from a file.

use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicU64, Ordering};

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};
use pgrx::pg_sys;

#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Enforcement {
    #[name = c"enforce"]
    Enforce,
    #[name = c"audit"]
    Audit,
    #[name = c"off"]
    Off,
}

/// Which statements of an elevation get a `pg_oncall: statement` line, as PostgreSQL's own
/// `log_statement` chooses.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogStatements {
    #[name = c"none"]
    None,
    #[name = c"ddl"]
    Ddl,
    #[name = c"mod"]
    Mod,
    #[name = c"all"]
    All,
}

/// Whether the worker syncs open incidents: `auto` when a rule has `require_incident` or
/// `annotate_incidents` is on (each needs them), else as set.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum SyncIncidents {
    #[name = c"auto"]
    Auto,
    #[name = c"on"]
    On,
    #[name = c"off"]
    Off,
}

/// "No upper bound" for `max_escalation_level`; any value above every real level.
pub const NO_MAX_LEVEL: i32 = 0;

pub static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));
pub static PAGERDUTY_API_URL: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"https://api.pagerduty.com"));
pub static PAGERDUTY_TOKEN_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static REFRESH_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(60_000);
pub static LOOKAHEAD_S: GucSetting<i32> = GucSetting::<i32>::new(12 * 3600);
pub static MAX_STALENESS_S: GucSetting<i32> = GucSetting::<i32>::new(15 * 60);
pub static MIN_ESCALATION_LEVEL: GucSetting<i32> = GucSetting::<i32>::new(1);
pub static MAX_ESCALATION_LEVEL: GucSetting<i32> = GucSetting::<i32>::new(NO_MAX_LEVEL);
pub static EMAIL_DOMAIN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static ENFORCEMENT: GucSetting<Enforcement> = GucSetting::<Enforcement>::new(Enforcement::Enforce);
pub static HTTP_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static MAX_SHIFTS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static MAX_GATED_ROLES: GucSetting<i32> = GucSetting::<i32>::new(1_000);
pub static MAX_IDENTITIES: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static LOG_STATEMENTS: GucSetting<LogStatements> = GucSetting::<LogStatements>::new(LogStatements::All);
pub static LOG_STATEMENT_MAX_LENGTH: GucSetting<i32> = GucSetting::<i32>::new(4096);
pub static ELEVATIONS_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(90 * 24 * 3600);
pub static WARN_BEFORE_END_S: GucSetting<i32> = GucSetting::<i32>::new(10 * 60);
pub static REASON: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static ELEVATION_QUEUE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1024);
pub static SYNC_INCIDENTS: GucSetting<SyncIncidents> = GucSetting::<SyncIncidents>::new(SyncIncidents::Auto);
pub static MAX_INCIDENT_ASSIGNMENTS: GucSetting<i32> = GucSetting::<i32>::new(5_000);
pub static ANNOTATE_INCIDENTS: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static PAGERDUTY_FROM_EMAIL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static PAGERDUTY_WRITE_TOKEN_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static NOTE_QUEUE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(256);

/// Bumped whenever a setting that decisions depend on changes, so cached decisions die with it.
static CONFIG_EPOCH: AtomicU64 = AtomicU64::new(0);

pub fn config_epoch() -> u64 {
    CONFIG_EPOCH.load(Ordering::Relaxed)
}

unsafe extern "C-unwind" fn string_changed(_new: *const c_char, _extra: *mut c_void) {
    CONFIG_EPOCH.fetch_add(1, Ordering::Relaxed);
}

unsafe extern "C-unwind" fn int_changed(_new: i32, _extra: *mut c_void) {
    CONFIG_EPOCH.fetch_add(1, Ordering::Relaxed);
}

pub fn register() {
    use GucContext::{Postmaster, Sighup};
    let none = GucFlags::default();
    GucRegistry::define_string_guc(
        c"pg_oncall.database",
        c"Database the pg_oncall worker connects to; it holds the extension's tables.",
        c"",
        &DATABASE,
        Postmaster,
        none,
    );
    GucRegistry::define_string_guc(
        c"pg_oncall.pagerduty_api_url",
        c"Base URL of the PagerDuty REST API.",
        c"EU accounts use https://api.eu.pagerduty.com.",
        &PAGERDUTY_API_URL,
        Sighup,
        none,
    );
    GucRegistry::define_string_guc(
        c"pg_oncall.pagerduty_token_file",
        c"File holding the PagerDuty API token, re-read on reload.",
        c"Should be owned by the server's OS user, mode 0600. There is no token setting on purpose.",
        &PAGERDUTY_TOKEN_FILE,
        Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"pg_oncall.refresh_interval",
        c"Time between PagerDuty syncs.",
        c"",
        &REFRESH_INTERVAL_MS,
        1_000,
        i32::MAX,
        Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_oncall.lookahead",
        c"How far ahead each sync fetches shifts, so access starts and ends on time while PagerDuty is unreachable.",
        c"",
        &LOOKAHEAD_S,
        60,
        90 * 24 * 3600,
        Sighup,
        GucFlags::UNIT_S,
    );
    // SAFETY: the assign hook only bumps an atomic; it cannot raise or panic.
    unsafe {
        GucRegistry::define_int_guc_with_hooks(
            c"pg_oncall.max_staleness",
            c"Once the last successful sync is older than this, PagerDuty shifts stop granting access.",
            c"",
            &MAX_STALENESS_S,
            1,
            i32::MAX,
            Sighup,
            GucFlags::UNIT_S,
            None,
            Some(int_changed),
            None,
        );
    };
    // SAFETY: the assign hook only bumps an atomic; it cannot raise or panic.
    unsafe {
        GucRegistry::define_int_guc_with_hooks(
            c"pg_oncall.min_escalation_level",
            c"Default lowest escalation level that counts as on call.",
            c"",
            &MIN_ESCALATION_LEVEL,
            1,
            i32::MAX,
            Sighup,
            none,
            None,
            Some(int_changed),
            None,
        );
    };
    // SAFETY: the assign hook only bumps an atomic; it cannot raise or panic.
    unsafe {
        GucRegistry::define_int_guc_with_hooks(
            c"pg_oncall.max_escalation_level",
            c"Default highest escalation level that counts as on call; 0 means no limit.",
            c"",
            &MAX_ESCALATION_LEVEL,
            NO_MAX_LEVEL,
            i32::MAX,
            Sighup,
            none,
            None,
            Some(int_changed),
            None,
        );
    };
    // SAFETY: the assign hook only bumps an atomic; it cannot raise or panic.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"pg_oncall.email_domain",
            c"Identity fallback: role alice stands for alice@<this domain>.",
            c"",
            &EMAIL_DOMAIN,
            Sighup,
            none,
            None,
            Some(string_changed),
            None,
        )
    };
    GucRegistry::define_enum_guc(
        c"pg_oncall.enforcement",
        c"enforce denies; audit logs would-be denials and allows; off disables the gate.",
        c"",
        &ENFORCEMENT,
        Sighup,
        none,
    );
    GucRegistry::define_int_guc(
        c"pg_oncall.http_timeout",
        c"Per-request timeout toward PagerDuty.",
        c"",
        &HTTP_TIMEOUT_MS,
        100,
        600_000,
        Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_oncall.max_shifts",
        c"Capacity of the shared-memory snapshot in shifts.",
        c"",
        &MAX_SHIFTS,
        16,
        1_000_000,
        Postmaster,
        none,
    );
    GucRegistry::define_int_guc(
        c"pg_oncall.max_gated_roles",
        c"Capacity of the shared-memory snapshot in gated roles.",
        c"",
        &MAX_GATED_ROLES,
        1,
        100_000,
        Postmaster,
        none,
    );
    GucRegistry::define_int_guc(
        c"pg_oncall.max_identities",
        c"Capacity of the shared-memory snapshot in identities.",
        c"",
        &MAX_IDENTITIES,
        1,
        1_000_000,
        Postmaster,
        none,
    );
    GucRegistry::define_enum_guc(
        c"pg_oncall.log_statements",
        c"Which statements run during an elevation are logged: none, ddl, mod or all (as log_statement).",
        c"",
        &LOG_STATEMENTS,
        Sighup,
        none,
    );
    GucRegistry::define_int_guc(
        c"pg_oncall.log_statement_max_length",
        c"Longest statement text, in bytes, that an elevation's statement line carries; longer texts are cut.",
        c"",
        &LOG_STATEMENT_MAX_LENGTH,
        0,
        1024 * 1024,
        Sighup,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pg_oncall.elevations_retention",
        c"How long oncall.elevations keeps an elevation's record.",
        c"",
        &ELEVATIONS_RETENTION_S,
        3600,
        i32::MAX,
        Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_oncall.warn_before_end",
        c"While elevated, a NOTICE tells the client once when less than this remains before the shift or the time limit ends.",
        c"",
        &WARN_BEFORE_END_S,
        0,
        i32::MAX,
        Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"pg_oncall.reason",
        c"Why you are about to assume a gated role (an incident, a ticket); logged and recorded with the elevation.",
        c"Set it before SET ROLE. Rules with require_reason refuse a switch without one.",
        &REASON,
        GucContext::Userset,
        none,
    );
    GucRegistry::define_int_guc(
        c"pg_oncall.elevation_queue_size",
        c"Elevation events a backend can hand to the worker before it records them; further ones are counted as dropped.",
        c"",
        &ELEVATION_QUEUE_SIZE,
        16,
        1_000_000,
        Postmaster,
        none,
    );
    GucRegistry::define_enum_guc(
        c"pg_oncall.sync_incidents",
        c"Whether each sync also fetches the open PagerDuty incidents: auto (when a rule has require_incident or annotate_incidents is on), on, off.",
        c"",
        &SYNC_INCIDENTS,
        Sighup,
        none,
    );
    GucRegistry::define_int_guc(
        c"pg_oncall.max_incident_assignments",
        c"Capacity of the shared-memory snapshot in incident assignments (open incidents times their assignees).",
        c"",
        &MAX_INCIDENT_ASSIGNMENTS,
        16,
        1_000_000,
        Postmaster,
        none,
    );
    GucRegistry::define_bool_guc(
        c"pg_oncall.annotate_incidents",
        c"Each new elevation of a user with open incidents puts a note on each of them.",
        c"Needs pg_oncall.pagerduty_write_token_file and pg_oncall.pagerduty_from_email.",
        &ANNOTATE_INCIDENTS,
        Sighup,
        none,
    );
    GucRegistry::define_string_guc(
        c"pg_oncall.pagerduty_from_email",
        c"Email of the PagerDuty user notes on incidents are posted as (the From header).",
        c"",
        &PAGERDUTY_FROM_EMAIL,
        Sighup,
        none,
    );
    GucRegistry::define_string_guc(
        c"pg_oncall.pagerduty_write_token_file",
        c"File holding a PagerDuty token with incidents.write, used only to post notes on incidents; re-read on reload.",
        c"Should be owned by the server's OS user, mode 0600. The sync's token stays read-only.",
        &PAGERDUTY_WRITE_TOKEN_FILE,
        Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"pg_oncall.note_queue_size",
        c"Notes on incidents waiting to be posted; when full, the oldest is dropped and counted.",
        c"",
        &NOTE_QUEUE_SIZE,
        16,
        100_000,
        Postmaster,
        none,
    );
    // SAFETY: called from _PG_init in the postmaster, after our variables are defined.
    unsafe { pg_sys::MarkGUCPrefixReserved(c"pg_oncall".as_ptr()) };
}

fn string_of(setting: &GucSetting<Option<CString>>) -> String {
    setting.get().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

pub fn database() -> String {
    string_of(&DATABASE)
}

pub fn api_url() -> String {
    string_of(&PAGERDUTY_API_URL)
}

pub fn token_file() -> String {
    string_of(&PAGERDUTY_TOKEN_FILE)
}

pub fn write_token_file() -> String {
    string_of(&PAGERDUTY_WRITE_TOKEN_FILE)
}

pub fn from_email() -> String {
    string_of(&PAGERDUTY_FROM_EMAIL).trim().to_owned()
}

/// Whether open incidents are synced, given whether some rule has `require_incident`.
pub fn incidents_wanted(a_rule_requires_them: bool) -> bool {
    match SYNC_INCIDENTS.get() {
        SyncIncidents::On => true,
        SyncIncidents::Off => false,
        SyncIncidents::Auto => a_rule_requires_them || ANNOTATE_INCIDENTS.get(),
    }
}

pub fn email_domain() -> String {
    string_of(&EMAIL_DOMAIN)
}

pub fn level_defaults() -> (i32, Option<i32>) {
    let max = MAX_ESCALATION_LEVEL.get();
    (MIN_ESCALATION_LEVEL.get(), (max != NO_MAX_LEVEL).then_some(max))
}

/// `max_staleness` in microseconds.
pub fn max_staleness_us() -> i64 {
    i64::from(MAX_STALENESS_S.get()) * 1_000_000
}

pub fn enforcement() -> Enforcement {
    ENFORCEMENT.get()
}

pub fn log_statements() -> LogStatements {
    LOG_STATEMENTS.get()
}

/// `pg_oncall.reason`, trimmed; `None` when unset or blank.
pub fn reason() -> Option<String> {
    let reason = string_of(&REASON);
    let reason = reason.trim();
    (!reason.is_empty()).then(|| reason.to_owned())
}

pub fn warn_before_end_us() -> i64 {
    i64::from(WARN_BEFORE_END_S.get()) * 1_000_000
}

/// The token in `path` (the file `setting` names), trimmed; `what` names it in errors ("token",
/// "write token"), which say what is wrong with the file, never what is in it.
pub fn read_token_file(what: &str, setting: &str, path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err(format!("no PagerDuty {what}: {setting} is not set"));
    }
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Err(format!("the PagerDuty {what} file \"{path}\" is empty")),
        Ok(text) => Ok(text.trim().to_owned()),
        Err(e) => Err(format!("cannot read the PagerDuty {what} file \"{path}\": {}", e.kind())),
    }
}
