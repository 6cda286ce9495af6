//! Audit lines: one LOG line per decision (SQLSTATE OC000, no STATEMENT or CONTEXT lines), in
//! the stable `key=value` form of DESIGN.md. Denials are always logged; an allow is logged the
//! first time in a session for a role and shift, and only counted after that.

use std::cell::RefCell;

use oncall_core::audit;
use oncall_core::decision::{Decision, Until};

use super::stats::{self, Route, Verdict};
use crate::decide::Identity;
use crate::guc::{self, Enforcement};
use crate::pg::{hooks, time};

thread_local! {
    /// (role, end of the stretch on call) of the allows this session has logged.
    static LOGGED_ALLOWS: RefCell<Vec<(String, Option<Until>)>> = const { RefCell::new(Vec::new()) };
}

fn shift_end_text(until: Option<Until>) -> String {
    match until {
        Some(Until::At(t)) => time::format(t),
        Some(Until::Open) => "open".into(),
        None => "-".into(),
    }
}

fn first_allow(role: &str, until: Option<Until>) -> bool {
    LOGGED_ALLOWS.with_borrow_mut(|logged| {
        if logged.iter().any(|(r, u)| r == role && *u == until) {
            return false;
        }
        logged.push((role.to_owned(), until));
        true
    })
}

/// What a switch adds to its line: the elevation it starts and the reason the user gave
/// (`pg_oncall.reason`).
#[derive(Default)]
pub struct Elevation {
    pub id: Option<u64>,
    pub justification: Option<String>,
}

fn emit(
    verdict: Verdict,
    route: Route,
    role: &str,
    identity: &Identity,
    reason: &str,
    until: Option<Until>,
    elevation: &Elevation,
) {
    stats::count(route, verdict);
    if verdict == Verdict::Allow && !first_allow(role, until) {
        return;
    }
    let shift_end = shift_end_text(until);
    let id = elevation.id.map(|id| id.to_string());
    let mut fields = vec![
        ("role", role),
        ("session_user", identity.role_name.as_str()),
        ("identity", identity.email.as_deref().unwrap_or("-")),
        ("route", route.name()),
        ("reason", reason),
        ("shift_end", shift_end.as_str()),
    ];
    if let Some(id) = &id {
        fields.push(("elevation", id));
    }
    if let Some(justification) = &elevation.justification {
        fields.push(("justification", justification));
    }
    hooks::audit_line(&audit::line(verdict.name(), &fields));
}

/// The verdict on a decision under `pg_oncall.enforcement`.
pub fn verdict(decision: &Decision) -> Verdict {
    match (decision.allowed, guc::enforcement()) {
        (true, _) => Verdict::Allow,
        (false, Enforcement::Enforce) => Verdict::Deny,
        (false, _) => Verdict::AuditDeny,
    }
}

/// Logs and counts a decision on a gated role; true when it must be refused (a denial under
/// `enforce`; `audit` only logs it).
pub fn judge(route: Route, role: &str, identity: &Identity, decision: &Decision) -> bool {
    judge_switch(route, role, identity, decision, &Elevation::default())
}

/// [`judge`] for a switch, whose line names the elevation it starts.
pub fn judge_switch(route: Route, role: &str, identity: &Identity, decision: &Decision, elevation: &Elevation) -> bool {
    let verdict = verdict(decision);
    emit(verdict, route, role, identity, decision.reason.text(), decision.until, elevation);
    verdict == Verdict::Deny
}

/// A superuser is not gated, but its use of a gated role is logged.
pub fn superuser_allowed(route: Route, role: &str, identity: &Identity, elevation: &Elevation) {
    emit(Verdict::Allow, route, role, identity, "superuser", None, elevation);
}
