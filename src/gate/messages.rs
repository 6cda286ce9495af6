//! What the gate says to a refused user: messages, DETAILs with the reason, and HINTs.

use oncall_core::decision::Reason;

use crate::decide::Identity;

fn email(identity: &Identity) -> &str {
    identity.email.as_deref().unwrap_or("none")
}

/// Why the rule does not admit the identity now.
pub fn detail(reason: Reason, role: &str, identity: &Identity) -> String {
    let who = identity.email.as_deref().unwrap_or("-");
    match reason {
        Reason::NoIdentity => format!(
            "Role \"{}\" has no PagerDuty identity: no oncall.identities row, its name is not an email, and pg_oncall.email_domain is not set.",
            identity.role_name
        ),
        Reason::Stale => "The on-call data is stale: the last successful PagerDuty sync is older than pg_oncall.max_staleness, so PagerDuty shifts grant nothing.".into(),
        Reason::OutsideLevels => format!("{who} is on call, but not at an escalation level the rule for role \"{role}\" admits."),
        Reason::OutsidePolicies => {
            format!("{who} is on call, but not in an escalation policy or schedule the rule for role \"{role}\" admits.")
        }
        Reason::NotLoaded => "pg_oncall has not loaded its snapshot yet.".into(),
        Reason::NoReasonGiven => format!("The rule for role \"{role}\" requires a reason for each elevation, and pg_oncall.reason is empty."),
        Reason::TimeLimit => format!("The elevation reached the time limit (max_duration) of the rule for role \"{role}\"."),
        Reason::NoIncident => format!(
            "{who} is on call, but the rule for role \"{role}\" also requires an open PagerDuty incident assigned to {who} (of a service in an escalation policy the rule names, when it names any), and there is none."
        ),
        Reason::IncidentsStale => format!(
            "The rule for role \"{role}\" requires an open PagerDuty incident, and the incident data is stale: the last successful incident sync is older than pg_oncall.max_staleness (or there was none), so incidents grant nothing."
        ),
        Reason::NotOnCall | Reason::OnCall => format!("{who} is not on call in PagerDuty now."),
    }
}

pub fn switch_refused(role: &str, identity: &Identity) -> String {
    format!("pg_oncall: permission denied to set role \"{role}\" for {} (identity {})", identity.role_name, email(identity))
}

pub const SWITCH_HINT: &str =
    "Access is granted automatically while you are on call. In an emergency a superuser can grant it with oncall.override().";

/// For a rule with `require_incident`: an override makes someone on call, not assigned.
pub const INCIDENT_HINT: &str = "The role is for responding to an incident: it opens once PagerDuty assigns you an open incident (within one sync, see oncall.status()). In an emergency without one, a superuser can change the rule (oncall.gate_role(..., require_incident => false)).";

pub fn reason_hint(role: &str) -> String {
    format!("Say why first: SET pg_oncall.reason = 'INC-1234: what you are about to do'; then SET ROLE {role}.")
}

pub fn time_limit_hint(role: &str) -> String {
    format!("Run SET ROLE NONE, then SET ROLE {role} again to start a new elevation.")
}

pub fn ends_soon(role: &str, at: &str, what: &str) -> String {
    format!("pg_oncall: your elevation to role \"{role}\" ends at {at}, when {what}")
}

pub fn membership_refused(role: &str, identity: &Identity) -> String {
    format!("pg_oncall: permission denied to act as role \"{role}\" for {} (identity {})", identity.role_name, email(identity))
}

pub fn membership_hint(role: &str) -> String {
    format!(
        "This statement uses your membership in role \"{role}\" (it hands an object to the role, or acts with the role's rights), which needs you on call as SET ROLE does. In an emergency a superuser can grant access with oncall.override()."
    )
}

pub fn access_ended(role: &str, identity: &Identity) -> String {
    format!("pg_oncall: on-call access to role \"{role}\" has ended for {} (identity {})", identity.role_name, email(identity))
}

/// Right also when the role came from the login's startup options, where RESET ROLE would
/// go back to it.
pub const ACCESS_ENDED_HINT: &str = "Run SET ROLE NONE to continue as yourself.";

pub fn login_refused(role: &str, identity: &Identity) -> String {
    format!("pg_oncall: login as role \"{role}\" refused: its identity ({}) is not on call", email(identity))
}

pub fn login_hint(role: &str) -> String {
    format!("Role \"{role}\" has gate_login set in oncall.gated_roles: it can log in only while its own identity is on call.")
}

pub fn rename_refused(role: &str) -> String {
    format!("pg_oncall: role \"{role}\" is gated and cannot be renamed")
}

pub const RENAME_DETAIL: &str = "Its rule in oncall.gated_roles names it; a rename would leave the role ungated.";

pub fn rename_hint(role: &str) -> String {
    format!(
        "Run SELECT oncall.ungate_role('{}') and commit, rename the role, then gate it again under its new name.",
        role.replace('\'', "''")
    )
}
