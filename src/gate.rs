//! The gate: every route into a gated role passes the `role` setting's check hook, which we
//! wrap; ProcessUtility names the SET ROLE route and, with ExecutorStart, re-checks every
//! statement run as a gated role; ClientAuthentication refuses logins as `gate_login` roles.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};

use oncall_core::decision::{Decision, Reason, Until};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode};

use crate::access::{self, Identity};
use crate::guc::{self, Enforcement};
use crate::raise;
use crate::snapshot;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    SetRole,
    SetConfig,
    FunctionSet,
    StartupOption,
    RoleDefault,
    Statement,
    Login,
}

impl Route {
    /// Index into `snapshot::ROUTES`.
    fn index(self) -> usize {
        match self {
            Route::SetRole => 0,
            Route::SetConfig => 1,
            Route::FunctionSet => 2,
            Route::StartupOption => 3,
            Route::RoleDefault => 4,
            Route::Statement => 5,
            Route::Login => 6,
        }
    }

    fn name(self) -> &'static str {
        snapshot::ROUTES[self.index()]
    }
}

#[derive(Clone, Copy)]
enum Verdict {
    Allow,
    Deny,
    AuditDeny,
}

impl Verdict {
    fn index(self) -> usize {
        match self {
            Verdict::Allow => 0,
            Verdict::Deny => 1,
            Verdict::AuditDeny => 2,
        }
    }
}

/// PostgreSQL 15's `role_auth_extra` (src/backend/commands/variable.c), which its `role`
/// check hook leaves in `*extra`.
#[repr(C)]
struct RoleAuthExtra {
    roleid: pg_sys::Oid,
    is_superuser: bool,
}

static mut ORIGINAL_ROLE_CHECK: pg_sys::GucStringCheckHook = None;
static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;
static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;
static mut PREV_CLIENT_AUTHENTICATION: ClientAuthenticationHook = None;

type ClientAuthenticationHook = Option<unsafe extern "C-unwind" fn(port: *mut c_void, status: c_int)>;

unsafe extern "C" {
    /// Not in pgrx's PG15 bindings (libpq/auth.h).
    static mut ClientAuthentication_hook: ClientAuthenticationHook;
}

/// `offsetof(Port, user_name)` for the major built against (x86_64), from `libpq/libpq-be.h`:
/// 15 (and 16, whose headers are not at hand here) have `canAcceptConnections` before
/// `database_name`; 17 dropped it (checked: 328); 18 added `local_host[64]` after
/// `remote_port` (checked with offsetof: 392).
const fn port_user_name_offset() -> usize {
    if cfg!(any(feature = "pg15", feature = "pg16")) {
        336
    } else if cfg!(feature = "pg17") {
        328
    } else {
        392
    }
}
const STATUS_OK: c_int = 0;

thread_local! {
    /// Set while ProcessUtility runs `SET ROLE` / `RESET ROLE`, to name the route.
    static IN_SET_ROLE: Cell<bool> = const { Cell::new(false) };
}

/// Installs the hooks; called from `_PG_init` in the postmaster.
pub fn install() {
    // SAFETY: _PG_init runs once in the postmaster before any backend forks. The GUC array is
    // fully built by then (InitializeGUCOptions precedes preloading); we replace one function
    // pointer and keep the original, which our hook always calls first. Previous hooks are
    // saved and chained, as pg_stat_statements does.
    unsafe {
        let mut wrapped = false;
        for &var in guc_variables() {
            if CStr::from_ptr((*var).name) == c"role" && (*var).vartype == pg_sys::config_type::PGC_STRING {
                let setting = var as *mut pg_sys::config_string;
                ORIGINAL_ROLE_CHECK = (*setting).check_hook;
                (*setting).check_hook = Some(check_role);
                wrapped = true;
                break;
            }
        }
        if !wrapped {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                "pg_oncall: the \"role\" setting was not found; refusing to start without a gate"
            );
        }
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
        PREV_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
        PREV_CLIENT_AUTHENTICATION = ClientAuthentication_hook;
        ClientAuthentication_hook = Some(client_authentication);
    }
}

/// Every GUC's `config_generic` (PostgreSQL 16 returns the count through an out-parameter and
/// dropped `GetNumConfigOptions`).
///
/// # Safety
/// The GUC array must be built (true from `_PG_init` on) and not be grown while the slice lives.
unsafe fn guc_variables() -> &'static [*mut pg_sys::config_generic] {
    #[cfg(feature = "pg15")]
    // SAFETY: per the caller; the array holds GetNumConfigOptions() entries.
    unsafe {
        let vars = pg_sys::get_guc_variables();
        std::slice::from_raw_parts(vars, pg_sys::GetNumConfigOptions() as usize)
    }
    #[cfg(not(feature = "pg15"))]
    // SAFETY: per the caller; get_guc_variables stores the array's length in `count`.
    unsafe {
        let mut count: c_int = 0;
        let vars = pg_sys::get_guc_variables(&mut count);
        std::slice::from_raw_parts(vars, count as usize)
    }
}

fn session_user_is_superuser() -> bool {
    // SAFETY: superuser_arg reads a syscache; callers are inside a transaction.
    unsafe { pg_sys::superuser_arg(pg_sys::GetSessionUserId()) }
}

/// A `key=value` field of an audit line: bare when safe, else quoted with escapes, so that no
/// role name or email can forge a field or a line.
fn field(value: &str) -> String {
    let bare = !value.is_empty()
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "@._-+:".contains(c));
    if bare {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn shift_end_text(decision: &Decision) -> String {
    match decision.until {
        Some(Until::At(t)) => {
            let ts = access::pg_from_unix(t);
            // SAFETY: timestamptz_to_str formats into a static buffer, copied at once.
            unsafe { CStr::from_ptr(pg_sys::timestamptz_to_str(ts)) }.to_string_lossy().into_owned()
        }
        Some(Until::Open) => "open".into(),
        None => "-".into(),
    }
}

fn audit(verdict: Verdict, route: Route, role: &str, identity: &Identity, reason: &str, decision: &Decision) {
    let word = ["allow", "deny", "audit_deny"][verdict.index()];
    log_one_line(&format!(
        "pg_oncall: {word} role={} session_user={} identity={} route={} reason={} shift_end={}",
        field(role),
        field(&identity.role_name),
        field(identity.email.as_deref().unwrap_or("-")),
        route.name(),
        field(reason),
        field(&shift_end_text(decision)),
    ));
    snapshot::count_decision(route.index(), verdict.index());
}

/// A LOG line without the `STATEMENT:` line PostgreSQL would append (LOG outranks
/// `log_min_error_statement`): one decision, one line, as a SIEM expects.
fn log_one_line(message: &str) {
    unsafe extern "C-unwind" {
        // Not in pgrx's bindings (it wraps them in ereport!); plain elog.h entry points.
        fn errstart(elevel: c_int, domain: *const c_char) -> bool;
        fn errfinish(filename: *const c_char, lineno: c_int, funcname: *const c_char);
    }
    let Ok(text) = CString::new(message) else { return };
    // SAFETY: the elog.h protocol: errstart, then the message and flags, then errfinish, which
    // at LOG level returns. errmsg_internal copies `text` before it is dropped.
    unsafe {
        if errstart(pg_sys::LOG as c_int, std::ptr::null()) {
            pg_sys::errmsg_internal(c"%s".as_ptr(), text.as_ptr());
            pg_sys::errhidestmt(true);
            drop(text);
            errfinish(c"gate.rs".as_ptr(), line!() as c_int, c"audit".as_ptr());
        }
    }
}

/// Logs and counts a decision on a gated role; true when it must be refused (a denial under
/// `enforce`; `audit` only logs it).
fn judge(route: Route, role: &str, identity: &Identity, decision: &Decision) -> bool {
    let verdict = match (decision.allowed, guc::enforcement()) {
        (true, _) => Verdict::Allow,
        (false, Enforcement::Enforce) => Verdict::Deny,
        (false, _) => Verdict::AuditDeny,
    };
    audit(verdict, route, role, identity, decision.reason.text(), decision);
    matches!(verdict, Verdict::Deny)
}

fn detail(reason: Reason, role: &str, identity: &Identity) -> String {
    let who = identity.email.as_deref().unwrap_or("-");
    match reason {
        Reason::NoIdentity => format!(
            "Role \"{}\" has no PagerDuty identity: no oncall.identities row, its name is not an email, and pg_oncall.email_domain is not set.",
            identity.role_name
        ),
        Reason::Stale => "The on-call data is stale: the last successful PagerDuty sync is older than pg_oncall.max_staleness, so PagerDuty shifts grant nothing.".into(),
        Reason::OutsideLevels => format!("{who} is on call, but not at an escalation level the rule for role \"{role}\" admits."),
        Reason::OutsidePolicies => format!("{who} is on call, but not in an escalation policy or schedule the rule for role \"{role}\" admits."),
        Reason::NotLoaded => "pg_oncall has not loaded its snapshot yet.".into(),
        Reason::NotOnCall | Reason::OnCall => format!("{who} is not on call in PagerDuty now."),
    }
}

const HINT_SWITCH: &str = "Access is granted automatically while you are on call. In an emergency a superuser can grant it with oncall.override().";

/// The decision for a switch into `role`, logged and counted; `Err(message parts)` to refuse.
fn decide_switch(role_oid: pg_sys::Oid, role: &str, source: SwitchSource) -> Result<(), (String, String)> {
    let enforcement = guc::enforcement();
    if enforcement == Enforcement::Off {
        return Ok(());
    }
    if session_user_is_superuser() {
        if snapshot::read(|v| v.gated_role(role_oid, role).is_some()).unwrap_or(false) {
            let identity = access::session_identity();
            let superuser = Decision { allowed: true, reason: Reason::OnCall, until: None, valid_until: None };
            audit(Verdict::Allow, source.route(), role, &identity, "superuser", &superuser);
        }
        return Ok(());
    }
    let Some(decision) = access::session_user_may_assume(role_oid, || role.to_owned(), access::now()) else { return Ok(()) };
    let identity = access::session_identity();
    if !judge(source.route(), role, &identity, &decision) {
        return Ok(());
    }
    let message = format!(
        "pg_oncall: permission denied to set role \"{role}\" for {} (identity {})",
        identity.role_name,
        identity.email.as_deref().unwrap_or("none")
    );
    Err((message, detail(decision.reason, role, &identity)))
}

/// Where a switch came from; a session-level one is told apart only when it gets logged.
#[derive(Clone, Copy)]
enum SwitchSource {
    Known(Route),
    Session,
}

impl SwitchSource {
    fn of(source: pg_sys::GucSource::Type) -> Option<SwitchSource> {
        use pg_sys::GucSource::*;
        match source {
            PGC_S_CLIENT => Some(SwitchSource::Known(Route::StartupOption)),
            PGC_S_GLOBAL | PGC_S_DATABASE | PGC_S_USER | PGC_S_DATABASE_USER => {
                Some(SwitchSource::Known(Route::RoleDefault))
            }
            PGC_S_SESSION if IN_SET_ROLE.get() => Some(SwitchSource::Known(Route::SetRole)),
            PGC_S_SESSION => Some(SwitchSource::Session),
            // Defaults, files, ALTER ROLE validation (PGC_S_TEST): not a switch.
            _ => None,
        }
    }

    fn route(self) -> Route {
        match self {
            SwitchSource::Known(route) => route,
            SwitchSource::Session if in_function_set_clause() => Route::FunctionSet,
            SwitchSource::Session => Route::SetConfig,
        }
    }
}

/// A function's `SET` clause opens a GUC nesting level without a subtransaction; set_config()
/// does not. (set_config() run inside a function that has a SET clause of its own is therefore
/// counted as function_set: the label, not the decision, is approximate there.)
fn in_function_set_clause() -> bool {
    // SAFETY: opening and at once closing an empty GUC nesting level changes no setting; it
    // only reveals the current level, which guc.c keeps private.
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::AtEOXact_GUC(true, level);
        level - 1 > pg_sys::GetCurrentTransactionNestLevel()
    }
}

fn pstrdup(text: &str) -> *mut c_char {
    let c = CString::new(text.replace('\0', "")).unwrap_or_default();
    // SAFETY: copies into the current memory context, which outlives the check hook's report.
    unsafe { pg_sys::pstrdup(c.as_ptr()) }
}

#[pg_guard]
unsafe extern "C-unwind" fn check_role(newval: *mut *mut c_char, extra: *mut *mut c_void, source: pg_sys::GucSource::Type) -> bool {
    // SAFETY: PostgreSQL's own check runs first and fills `*extra` with its role_auth_extra
    // (roleid is InvalidOid for "none"); parallel workers restore the leader's choice and
    // backend start sets "none": neither is a user's switch.
    unsafe {
        if let Some(original) = ORIGINAL_ROLE_CHECK {
            if !original(newval, extra, source) {
                return false;
            }
        }
        if pg_sys::InitializingParallelWorker || (*extra).is_null() || !pg_sys::IsTransactionState() {
            return true;
        }
        let role_oid = (*(*extra as *const RoleAuthExtra)).roleid;
        if role_oid == pg_sys::InvalidOid {
            return true;
        }
        let Some(source) = SwitchSource::of(source) else { return true };
        let role = CStr::from_ptr(*newval).to_string_lossy().into_owned();
        match decide_switch(role_oid, &role, source) {
            Ok(()) => true,
            Err((message, detail)) => {
                pg_sys::GUC_check_errcode(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE as i32);
                pg_sys::GUC_check_errmsg_string = pstrdup(&message);
                pg_sys::GUC_check_errdetail_string = pstrdup(&detail);
                pg_sys::GUC_check_errhint_string = pstrdup(HINT_SWITCH);
                false
            }
        }
    }
}

/// Refuses the statement when the current role (set via `role`) is gated and the session
/// user is no longer on call. Costs one variable read when no role is set.
fn recheck_current_role() {
    // SAFETY: reads backend-local variables.
    let (role_oid, in_parallel_worker) = unsafe { (access::unguarded::GetCurrentRoleId(), pg_sys::ParallelWorkerNumber >= 0) };
    if role_oid == pg_sys::InvalidOid || in_parallel_worker || guc::enforcement() == Enforcement::Off {
        return;
    }
    if session_user_is_superuser() {
        return;
    }
    let Some(decision) = access::session_user_may_assume(role_oid, || role_name(role_oid), access::statement_now()) else { return };
    if decision.allowed {
        return;
    }
    let role = role_name(role_oid);
    let identity = access::session_identity();
    if !judge(Route::Statement, &role, &identity, &decision) {
        return;
    }
    raise(
        PgLogLevel::ERROR,
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "pg_oncall: on-call access to role \"{role}\" has ended for {} (identity {})",
            identity.role_name,
            identity.email.as_deref().unwrap_or("none")
        ),
        detail(decision.reason, &role, &identity),
        "Run RESET ROLE to continue as yourself.".into(),
    );
}

fn role_name(oid: pg_sys::Oid) -> String {
    // SAFETY: syscache lookup; noerr returns NULL for a dropped role.
    let name = unsafe { pg_sys::GetUserNameFromId(oid, true) };
    if name.is_null() {
        return String::new();
    }
    // SAFETY: a palloc'd NUL-terminated string.
    unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
}

fn extension_exists() -> bool {
    // SAFETY: syscache lookup in a transaction; missing_ok.
    unsafe { pg_sys::get_extension_oid(c"pg_oncall".as_ptr(), true) != pg_sys::InvalidOid }
}

fn in_worker_database() -> bool {
    // SAFETY: reads this backend's database; get_database_name returns a palloc'd copy or NULL.
    let name = unsafe { pg_sys::get_database_name(pg_sys::MyDatabaseId) };
    // SAFETY: a non-null result is a NUL-terminated string.
    !name.is_null() && unsafe { CStr::from_ptr(name) }.to_bytes() == guc::database().as_bytes()
}

/// Renaming a gated role would leave its rule behind under the old name: refuse it, for
/// superusers too (they can ungate, rename and gate again).
fn refuse_renaming_a_gated_role(stmt: *mut pg_sys::Node) {
    // SAFETY: `stmt` is a RenameStmt (checked by the caller); `subname` is its old name.
    let (old, oid) = unsafe {
        let rename = stmt as *mut pg_sys::RenameStmt;
        if (*rename).renameType != pg_sys::ObjectType::OBJECT_ROLE || (*rename).subname.is_null() {
            return;
        }
        // Syscache lookup in a transaction; missing_ok.
        let oid = pg_sys::get_role_oid((*rename).subname, true);
        (CStr::from_ptr((*rename).subname).to_string_lossy().into_owned(), oid)
    };
    if snapshot::read(|v| v.gated_role(oid, &old).is_some()).unwrap_or(false) {
        raise(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("pg_oncall: role \"{old}\" is gated and cannot be renamed"),
            "Its rule in oncall.gated_roles names it; a rename would leave the role ungated.".into(),
            format!("Run SELECT oncall.ungate_role('{old}') and commit, rename the role, then gate it again under its new name."),
        );
    }
}

/// `SET`/`RESET` of any setting (so `RESET ROLE` always works), transaction control and
/// `DISCARD` are never refused: they cannot use the role's privileges.
unsafe fn is_exempt(stmt: *mut pg_sys::Node) -> (bool, bool) {
    // SAFETY: `stmt` is a valid parse node; we read its tag and, for VariableSetStmt, its name.
    unsafe {
        match (*stmt).type_ {
            pg_sys::NodeTag::T_VariableSetStmt => {
                let name = (*(stmt as *mut pg_sys::VariableSetStmt)).name;
                let is_role = !name.is_null() && CStr::from_ptr(name) == c"role";
                (true, is_role)
            }
            pg_sys::NodeTag::T_TransactionStmt | pg_sys::NodeTag::T_DiscardStmt => (true, false),
            _ => (false, false),
        }
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: arguments are passed through unchanged to the previous hook or the standard
    // implementation; the flag is reset whether the statement succeeds or raises.
    unsafe {
        let stmt = (*pstmt).utilityStmt;
        let (exempt, sets_role) = is_exempt(stmt);
        if !exempt {
            recheck_current_role();
        }
        if (*stmt).type_ == pg_sys::NodeTag::T_RenameStmt {
            refuse_renaming_a_gated_role(stmt);
        }
        // DROP EXTENSION, or DROP SCHEMA … CASCADE, in the worker's database ends the gate.
        let may_drop_extension = (*stmt).type_ == pg_sys::NodeTag::T_DropStmt && in_worker_database() && extension_exists();
        let run = || match PREV_PROCESS_UTILITY {
            Some(prev) => prev(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc),
            None => pg_sys::standard_ProcessUtility(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc),
        };
        if sets_role {
            reset_route_on_abort();
            IN_SET_ROLE.set(true);
            run();
            IN_SET_ROLE.set(false);
        } else {
            run();
        }
        if may_drop_extension && !extension_exists() {
            snapshot::at_commit(snapshot::CommitAction::Clear);
        }
    }
}

/// A refused `SET ROLE` raises out of ProcessUtility: (sub)transaction abort clears the flag.
fn reset_route_on_abort() {
    thread_local! { static REGISTERED: Cell<bool> = const { Cell::new(false) }; }
    if REGISTERED.replace(true) {
        return;
    }
    // SAFETY: registers process-lifetime callbacks once per backend.
    unsafe {
        pg_sys::RegisterXactCallback(Some(clear_route_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(clear_route_subxact), std::ptr::null_mut());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn clear_route_xact(_event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    IN_SET_ROLE.set(false);
}

#[pg_guard]
unsafe extern "C-unwind" fn clear_route_subxact(
    _event: pg_sys::SubXactEvent::Type,
    _mysubid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    IN_SET_ROLE.set(false);
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: c_int) {
    recheck_current_role();
    // SAFETY: chained with the arguments we were given.
    unsafe {
        match PREV_EXECUTOR_START {
            Some(prev) => prev(query_desc, eflags),
            None => pg_sys::standard_ExecutorStart(query_desc, eflags),
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn client_authentication(port: *mut c_void, status: c_int) {
    // SAFETY: the previous hook runs first with the same arguments; `port` is the live Port
    // of this connection, whose user_name (a palloc'd C string) sits at the offset checked
    // against this major's libpq-be.h.
    let user = unsafe {
        if let Some(prev) = PREV_CLIENT_AUTHENTICATION {
            prev(port, status);
        }
        if status != STATUS_OK || port.is_null() {
            return;
        }
        let name = *((port as *const u8).add(port_user_name_offset()) as *const *const c_char);
        if name.is_null() {
            return;
        }
        CStr::from_ptr(name).to_string_lossy().into_owned()
    };
    if guc::enforcement() == Enforcement::Off {
        return;
    }
    // No database is selected yet: decide from shared memory only. Most logins are not of a
    // gate_login role: they cost one lookup, and no identity.
    let gates_login = snapshot::read(|view| view.gated_role_by_name(&user).is_some_and(|role| role.gate_login));
    if gates_login != Some(true) {
        return;
    }
    let identity = access::identity_of(&user);
    let now = access::now();
    let decision = snapshot::read(|view| {
        view.gated_role_by_name(&user)
            .filter(|role| role.gate_login)
            .map(|role| access::decide_for_role(view, role, identity.email.as_deref(), now))
    })
    .flatten();
    let Some(decision) = decision else { return };
    if !judge(Route::Login, &user, &identity, &decision) {
        return;
    }
    raise(
        PgLogLevel::FATAL,
        PgSqlErrorCode::ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        format!(
            "pg_oncall: login as role \"{user}\" refused: its identity ({}) is not on call",
            identity.email.as_deref().unwrap_or("none")
        ),
        detail(decision.reason, &user, &identity),
        format!("Role \"{user}\" has gate_login set in oncall.gated_roles: it can log in only while its own identity is on call."),
    );
}
