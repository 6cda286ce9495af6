//! Membership routes: statements PostgreSQL authorizes by the current user's *membership* in
//! a role, whatever INHERIT says (`ALTER … OWNER TO R`, `REASSIGN OWNED`, `DROP OWNED`,
//! `ALTER DEFAULT PRIVILEGES FOR ROLE R`, `CREATE SCHEMA … AUTHORIZATION R`, `GRANT … GRANTED BY
//! R`, `CREATE DATABASE … OWNER R`...). Each one using a gated role is judged like `SET ROLE R`.

use pgrx::{pg_sys, PgList, PgLogLevel, PgSqlErrorCode};

use super::audit;
use super::messages;
use super::stats::Route;
use crate::decide;
use crate::guc::{self, Enforcement};
use crate::pg::log::raise;
use crate::pg::{roles, time};

/// The roles a utility statement acts as by membership (the README's routes table lists them).
///
/// # Safety
/// `stmt` is a valid utility parse node.
unsafe fn roles_used(stmt: *mut pg_sys::Node) -> Vec<pg_sys::Oid> {
    use pg_sys::NodeTag::*;
    let mut specs: Vec<*mut pg_sys::RoleSpec> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    // SAFETY: each arm casts to the node type its tag names and reads fields of that type;
    // lists hold the element types the grammar puts there.
    unsafe {
        match (*stmt).type_ {
            T_AlterOwnerStmt => specs.push((*(stmt as *mut pg_sys::AlterOwnerStmt)).newowner),
            T_AlterTableStmt => {
                let cmds = PgList::<pg_sys::AlterTableCmd>::from_pg((*(stmt as *mut pg_sys::AlterTableStmt)).cmds);
                specs.extend(
                    cmds.iter_ptr().filter(|&c| (*c).subtype == pg_sys::AlterTableType::AT_ChangeOwner).map(|c| (*c).newowner),
                );
            }
            T_ReassignOwnedStmt => {
                let reassign = stmt as *mut pg_sys::ReassignOwnedStmt;
                specs.push((*reassign).newrole);
                specs.extend(PgList::<pg_sys::RoleSpec>::from_pg((*reassign).roles).iter_ptr());
            }
            T_DropOwnedStmt => {
                specs.extend(PgList::<pg_sys::RoleSpec>::from_pg((*(stmt as *mut pg_sys::DropOwnedStmt)).roles).iter_ptr())
            }
            T_AlterDefaultPrivilegesStmt => {
                let options = PgList::<pg_sys::DefElem>::from_pg((*(stmt as *mut pg_sys::AlterDefaultPrivilegesStmt)).options);
                for option in options.iter_ptr().filter(|&o| option_named(o, c"roles")) {
                    specs.extend(PgList::<pg_sys::RoleSpec>::from_pg((*option).arg as *mut pg_sys::List).iter_ptr());
                }
            }
            T_CreateSchemaStmt => specs.push((*(stmt as *mut pg_sys::CreateSchemaStmt)).authrole),
            T_GrantStmt => specs.push((*(stmt as *mut pg_sys::GrantStmt)).grantor),
            T_GrantRoleStmt => specs.push((*(stmt as *mut pg_sys::GrantRoleStmt)).grantor),
            T_CreateTableSpaceStmt => specs.push((*(stmt as *mut pg_sys::CreateTableSpaceStmt)).owner),
            T_CreatedbStmt => {
                let options = PgList::<pg_sys::DefElem>::from_pg((*(stmt as *mut pg_sys::CreatedbStmt)).options);
                for option in options.iter_ptr().filter(|&o| option_named(o, c"owner") && !(*o).arg.is_null()) {
                    names.push(std::ffi::CStr::from_ptr(pg_sys::defGetString(option)).to_string_lossy().into_owned());
                }
            }
            _ => {}
        }
        let mut oids: Vec<pg_sys::Oid> =
            specs.into_iter().filter(|s| !s.is_null()).filter_map(|s| roles::oid_of_spec(s)).collect();
        oids.extend(names.iter().filter_map(|n| roles::oid_of(n)));
        oids.sort_by_key(|o| o.to_u32());
        oids.dedup();
        oids
    }
}

/// # Safety
/// `option` is a valid DefElem.
unsafe fn option_named(option: *mut pg_sys::DefElem, name: &std::ffi::CStr) -> bool {
    // SAFETY: a DefElem's defname is a NUL-terminated string (or NULL).
    unsafe { !(*option).defname.is_null() && std::ffi::CStr::from_ptr((*option).defname) == name }
}

/// Judges every gated role `stmt` acts as by membership; raises on a refusal. Roles the
/// current user is itself, or could not become (PostgreSQL refuses those with its own error),
/// are not judged, nor is a superuser current user (authorized as superuser). The chains of
/// grants are the current user's, as PostgreSQL's check is; the identity is the session user's.
///
/// # Safety
/// `stmt` is a valid utility parse node.
pub unsafe fn judge_statement(stmt: *mut pg_sys::Node) {
    if guc::enforcement() == Enforcement::Off {
        return;
    }
    // SAFETY: the caller passes a valid node.
    let used = unsafe { roles_used(stmt) };
    if used.is_empty() {
        return;
    }
    let session_user = roles::session_user();
    let current_user = roles::current_user();
    if roles::is_superuser(session_user) || roles::is_superuser(current_user) {
        return;
    }
    for role_oid in used {
        if role_oid == current_user || !roles::can_set_role(current_user, role_oid) {
            continue;
        }
        let role_name = || roles::name_of(role_oid).unwrap_or_default();
        let Some(decision) = decide::may_become(current_user, role_oid, role_name, time::now()) else { continue };
        let role = role_name();
        let identity = decide::session_identity();
        if audit::judge(Route::Membership, &role, &identity, &decision) {
            raise(
                PgLogLevel::ERROR,
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                messages::membership_refused(&role, &identity),
                messages::detail(decision.reason, &role, &identity),
                messages::membership_hint(&role),
            );
        }
    }
}
