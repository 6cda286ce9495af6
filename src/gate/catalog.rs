//! Utility statements that would make the gate's rules lie or make PostgreSQL switch roles on
//! its own: renaming a gated role (refused), DROP EXTENSION (the gate ends at commit), and
//! creating a function whose SET clause names a gated role (created without switching).

use std::ffi::CStr;

use pgrx::{pg_sys, PgList, PgLogLevel, PgSqlErrorCode};

use super::messages;
use crate::decide;
use crate::guc;
use crate::pg::log::raise;
use crate::pg::roles;
use crate::snapshot;
use crate::sync::signal::{self, CommitAction};

/// Renaming a gated role would leave its rule behind under the old name: refused, for
/// superusers too (they can ungate, rename and gate again).
///
/// # Safety
/// `stmt` is a valid utility parse node.
pub unsafe fn refuse_renaming_a_gated_role(stmt: *mut pg_sys::Node) {
    // SAFETY: a RenameStmt by its tag; `subname` is the role's old name for OBJECT_ROLE.
    let old = unsafe {
        if (*stmt).type_ != pg_sys::NodeTag::T_RenameStmt {
            return;
        }
        let rename = stmt as *mut pg_sys::RenameStmt;
        if (*rename).renameType != pg_sys::ObjectType::OBJECT_ROLE || (*rename).subname.is_null() {
            return;
        }
        CStr::from_ptr((*rename).subname).to_string_lossy().into_owned()
    };
    let oid = roles::oid_of(&old).unwrap_or(pg_sys::InvalidOid);
    if snapshot::read(|v| v.gated_role(oid, &old).is_some()).unwrap_or(false) {
        raise(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            messages::rename_refused(&old),
            messages::RENAME_DETAIL.into(),
            messages::rename_hint(&old),
        );
    }
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

/// Whether `stmt` may drop the extension (DROP EXTENSION, DROP SCHEMA … CASCADE) in the
/// worker's database; then [`after_drop`] looks again once it ran.
///
/// # Safety
/// `stmt` is a valid utility parse node.
pub unsafe fn may_drop_extension(stmt: *mut pg_sys::Node) -> bool {
    // SAFETY: reads the node's tag.
    let is_drop = unsafe { (*stmt).type_ == pg_sys::NodeTag::T_DropStmt };
    is_drop && in_worker_database() && extension_exists()
}

/// The extension is gone: nothing is gated once this transaction commits.
pub fn after_drop() {
    if !extension_exists() {
        signal::at_commit(CommitAction::Clear);
    }
}

/// Whether `stmt` creates a function or procedure whose SET clause makes a gated role
/// current. PostgreSQL applies such a clause while it validates the body, which would make
/// creating the function a switch (logged, refused off call) and run the language's validator
/// as that role; the caller has PostgreSQL skip the validation instead, as it does with
/// `check_function_bodies = off`. The body is checked at the first call.
///
/// # Safety
/// `stmt` is a valid utility parse node.
pub unsafe fn creates_function_setting_gated_role(stmt: *mut pg_sys::Node) -> bool {
    // SAFETY: a CreateFunctionStmt by its tag; its "set" options hold VariableSetStmts.
    unsafe {
        if (*stmt).type_ != pg_sys::NodeTag::T_CreateFunctionStmt {
            return false;
        }
        let options = PgList::<pg_sys::DefElem>::from_pg((*(stmt as *mut pg_sys::CreateFunctionStmt)).options);
        let found = options.iter_ptr().any(|option| {
            if (*option).defname.is_null() || CStr::from_ptr((*option).defname) != c"set" || (*option).arg.is_null() {
                return false;
            }
            let set = (*option).arg as *mut pg_sys::VariableSetStmt;
            if (*set).name.is_null() || CStr::from_ptr((*set).name) != c"role" {
                return false;
            }
            let value = pg_sys::ExtractSetVariableArgs(set);
            if value.is_null() {
                return false;
            }
            let name = CStr::from_ptr(value).to_string_lossy().into_owned();
            roles::oid_of(&name).is_some_and(|oid| {
                decide::is_gated(oid, &name) || decide::session_user_may_assume(oid, || name.clone(), crate::pg::time::now()).is_some()
            })
        });
        found
    }
}

/// Turns `check_function_bodies` off until [`restore_settings`] (or the statement's abort);
/// returns the GUC nesting level to restore.
pub fn skip_body_validation() -> i32 {
    // SAFETY: a GUC nesting level and a session-source, save-action assignment of a core
    // user setting, exactly what a function's SET clause does around its body.
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"check_function_bodies".as_ptr(),
            c"off".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        level
    }
}

pub fn restore_settings(level: i32) {
    // SAFETY: pops the nesting level `skip_body_validation` opened, restoring the value.
    unsafe { pg_sys::AtEOXact_GUC(true, level) };
}
