//! This backend's decisions: the session user's identity and whether it is on call (for
//! `check_oncall_access()`) or may use a gated role (for the gate, `require_incident` rules
//! included), answered from the snapshot and cached until the snapshot, a setting or a role
//! changes, or the next shift boundary passes; and which open incidents an elevation is about.

use std::cell::RefCell;

use oncall_core::decision::{self, Decision, IncidentView, LevelBounds, Reason, Rule, ShiftView};
use oncall_core::membership;
use pgrx::pg_sys;

use crate::guc;
use crate::pg::roles;
use crate::snapshot::{self, RoleEntry, View};

/// Who the session user is to PagerDuty.
#[derive(Clone)]
pub struct Identity {
    pub role_name: String,
    pub email: Option<String>,
}

/// What a cached answer depends on besides the clock: the snapshot, the settings, the roles
/// and memberships in the catalog, and who the session user is.
#[derive(Clone, Copy, PartialEq, Eq)]
struct CacheKey {
    generation: u64,
    config_epoch: u64,
    catalog_epoch: u64,
    session_user: pg_sys::Oid,
}

impl CacheKey {
    fn current() -> CacheKey {
        CacheKey {
            generation: snapshot::generation(),
            config_epoch: guc::config_epoch(),
            catalog_epoch: roles::catalog_epoch(),
            session_user: roles::session_user(),
        }
    }
}

struct CachedDecision {
    key: CacheKey,
    rule: RuleKey,
    decided_at: i64,
    /// `None`: the role is not gated (valid until the snapshot changes).
    decision: Option<Decision>,
}

impl CachedDecision {
    fn answers(&self, key: &CacheKey, rule: RuleKey, now: i64) -> bool {
        self.key == *key
            && self.rule == rule
            && now >= self.decided_at
            && self.decision.and_then(|d| d.valid_until).is_none_or(|t| now < t)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RuleKey {
    AnyPolicy,
    /// `member` becoming `role`.
    Role { member: pg_sys::Oid, role: pg_sys::Oid },
}

const CACHED_DECISIONS: usize = 8;

#[derive(Default)]
struct Cache {
    identity: Option<(CacheKey, Identity)>,
    decisions: Vec<CachedDecision>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The identity of the session user, cached per snapshot generation and settings epoch.
/// Needs a transaction (it reads the role name once); the gate calls it only from one.
pub fn session_identity() -> Identity {
    let key = CacheKey::current();
    if let Some(identity) = CACHE.with_borrow(|c| c.identity.as_ref().filter(|(k, _)| *k == key).map(|(_, i)| i.clone())) {
        return identity;
    }
    let role_name = roles::name_of(key.session_user).unwrap_or_default();
    let identity = identity_of(&role_name);
    CACHE.with_borrow_mut(|c| c.identity = Some((key, identity.clone())));
    identity
}

/// The identity of any role (the login gate decides for the role logging in).
pub fn identity_of(role_name: &str) -> Identity {
    let mapped = snapshot::read(|view| view.identity_email(role_name).map(str::to_owned)).flatten();
    let domain = guc::email_domain();
    let email = decision::identity_for(role_name, mapped.as_deref(), &domain).map(|e| decision::normalize_email(&e));
    Identity { role_name: role_name.to_owned(), email }
}

fn level_bounds(rule_min: Option<i32>, rule_max: Option<i32>) -> LevelBounds {
    let (default_min, default_max) = guc::level_defaults();
    LevelBounds::resolve(rule_min, rule_max, default_min, default_max)
}

fn stale_at(view: &View) -> Option<i64> {
    decision::stale_at(view.last_sync_success, guc::max_staleness_us())
}

fn shift_views<'v>(view: &View<'v>, email: &str) -> Vec<ShiftView<'v>> {
    view.shifts_of(email).iter().map(|s| s.view()).collect()
}

/// When the incident data stops granting (incidents follow the shifts' staleness rule).
fn incidents_stale_at(view: &View) -> Option<i64> {
    decision::stale_at(view.incidents_last_success, guc::max_staleness_us())
}

fn incident_views<'v>(view: &View<'v>, email: &str) -> Vec<IncidentView<'v>> {
    view.incidents_of(email).iter().map(|i| i.view()).collect()
}

/// Decides for `email` under a role's rule, inside the snapshot read.
pub fn decide_for_role(view: &View, role: &RoleEntry, email: Option<&str>, now: i64) -> Decision {
    let Some(email) = email else { return Decision::deny(Reason::NoIdentity) };
    let policies = view.ids(role.escalation_policy_ids);
    let rule = Rule {
        escalation_policy_ids: policies,
        schedule_ids: view.ids(role.schedule_ids),
        levels: level_bounds(role.min_escalation_level, role.max_escalation_level),
    };
    let on_call = decision::decide(&shift_views(view, email), &rule, now, stale_at(view));
    if !role.require_incident {
        return on_call;
    }
    let admitting = decision::incidents_for_rule(&incident_views(view, email), policies).len();
    decision::require_incident(on_call, admitting, now, incidents_stale_at(view))
}

/// The open incidents assigned to `email` (all of them with `rules` empty, else those each rule
/// admits, see `incidents_for_rule`); `None` when no incident data is fresh (never synced, not
/// synced, or stale): unknown, not none.
fn assigned_incidents(view: &View, rules: &[&RoleEntry], email: Option<&str>, now: i64) -> Option<Vec<String>> {
    incidents_stale_at(view).filter(|&t| now < t)?;
    let Some(email) = email else { return Some(Vec::new()) };
    let assigned = incident_views(view, email);
    let mut ids: Vec<String> = Vec::new();
    let every_policy: Option<&[snapshot::FixedStr<{ snapshot::ID_LEN }>]> = None;
    let lists: Vec<_> =
        if rules.is_empty() { vec![every_policy] } else { rules.iter().map(|r| view.ids(r.escalation_policy_ids)).collect() };
    for policies in lists {
        for id in decision::incidents_for_rule(&assigned, policies) {
            if !ids.iter().any(|known| known == id) {
                ids.push(id.to_owned());
            }
        }
    }
    Some(ids)
}

/// The open incidents assigned to the session user (for `whoami()`).
pub fn session_incidents(email: Option<&str>, now: i64) -> Option<Vec<String>> {
    snapshot::read(|view| assigned_incidents(view, &[], email, now)).flatten()
}

/// The open incidents an elevation into `role_oid` by `email` is about: those of the services
/// whose escalation policies its rules name (every one when a rule names none). Needs a
/// transaction.
pub fn elevation_incidents(role_oid: pg_sys::Oid, email: Option<&str>, now: i64) -> Option<Vec<String>> {
    let name = roles::name_of(role_oid).unwrap_or_default();
    let inherited = if snapshot::read(|view| view.gated_role(role_oid, &name).is_some()).unwrap_or(false) {
        Vec::new()
    } else {
        inherited_gated_roles(role_oid)
    };
    snapshot::read(|view| {
        let rules: Vec<&RoleEntry> = match view.gated_role(role_oid, &name) {
            Some(rule) => vec![rule],
            None => inherited.iter().filter_map(|&g| view.gated_role(g, "")).collect(),
        };
        if rules.is_empty() {
            return None;
        }
        assigned_incidents(view, &rules, email, now)
    })
    .flatten()
}

fn decide_any_policy(view: &View, email: Option<&str>, now: i64) -> Decision {
    let Some(email) = email else { return Decision::deny(Reason::NoIdentity) };
    let rule = decision::any_policy_rule(level_bounds(None, None));
    decision::decide(&shift_views(view, email), &rule, now, stale_at(view))
}

fn cached(key: &CacheKey, rule: RuleKey, now: i64) -> Option<Option<Decision>> {
    CACHE.with_borrow(|c| c.decisions.iter().find(|d| d.answers(key, rule, now)).map(|d| d.decision))
}

fn remember(key: CacheKey, rule: RuleKey, now: i64, decision: Option<Decision>) {
    CACHE.with_borrow_mut(|c| {
        c.decisions.retain(|d| d.rule != rule && d.key == key);
        if c.decisions.len() >= CACHED_DECISIONS {
            c.decisions.remove(0);
        }
        c.decisions.push(CachedDecision { key, rule, decided_at: now, decision });
    });
}

/// Is the session user on call now under the default rule (any policy, default levels)?
pub fn session_user_on_call(now: i64) -> Decision {
    let key = CacheKey::current();
    if let Some(Some(decision)) = cached(&key, RuleKey::AnyPolicy, now) {
        return decision;
    }
    let identity = session_identity();
    let decision = snapshot::read(|view| decide_any_policy(view, identity.email.as_deref(), now))
        .unwrap_or(Decision::deny(Reason::NotLoaded));
    remember(key, RuleKey::AnyPolicy, now, Some(decision));
    decision
}

/// May the session user make `role` its current role now? `None` when that is not gated.
/// When no snapshot was ever published, nothing is known to be gated: see the security model.
/// `role_name` is asked for only on a cache miss (the snapshot matches roles by OID, then name).
pub fn session_user_may_assume(role_oid: pg_sys::Oid, role_name: impl FnOnce() -> String, now: i64) -> Option<Decision> {
    may_become(roles::session_user(), role_oid, role_name, now)
}

/// May `member` (the session user for SET ROLE, the current user for a statement PostgreSQL
/// authorizes by membership) use `role` now, judged by the session user's identity? `None`
/// when that is not gated. Three kinds of rule apply, all of which must allow:
/// - `role`'s own rule, when it is gated;
/// - the rules of the gated roles whose privileges `role` inherits (SET ROLE to it would
///   hand out their privileges);
/// - when every chain of grants from `member` to `role` passes through gated roles, the rules
///   of those gates (one admitting chain is enough): becoming `role` uses their membership.
pub fn may_become(member: pg_sys::Oid, role_oid: pg_sys::Oid, role_name: impl FnOnce() -> String, now: i64) -> Option<Decision> {
    let key = CacheKey::current();
    let rule_key = RuleKey::Role { member, role: role_oid };
    if let Some(decision) = cached(&key, rule_key, now) {
        return decision;
    }
    let identity = session_identity();
    let email = identity.email.as_deref();
    let name = role_name();
    let direct = snapshot::read(|view| view.gated_role(role_oid, &name).map(|role| decide_for_role(view, role, email, now)));
    let own = match direct {
        Some(Some(decision)) => Some(decision),
        Some(None) => decide_inherited(role_oid, email, now),
        None => None,
    };
    let gates = membership::through_gates(member, role_oid, roles::grants_of, |gate| {
        let gate_name = roles::name_of(gate).unwrap_or_default();
        snapshot::read(|view| view.gated_role(gate, &gate_name).map(|rule| decide_for_role(view, rule, email, now))).flatten()
    });
    let decision = match (own, gates) {
        (Some(a), Some(b)) => Some(a.and(b)),
        (a, b) => a.or(b),
    };
    remember(key, rule_key, now, decision);
    decision
}

/// The gated roles whose privileges `role_oid` holds without being one of them (INHERIT,
/// directly or through other roles). A superuser role has every role's privileges: it is not
/// gated (see the security model).
fn inherited_gated_roles(role_oid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    if role_oid == pg_sys::InvalidOid || roles::is_superuser(role_oid) {
        return Vec::new();
    }
    let gated: Vec<pg_sys::Oid> = snapshot::read(|view| view.roles().iter().map(|r| r.oid).collect()).unwrap_or_default();
    gated.into_iter().filter(|&g| g != pg_sys::InvalidOid && g != role_oid && roles::has_privileges_of(role_oid, g)).collect()
}

/// The rules of the gated roles whose privileges `role_oid` inherits, all of which must allow.
fn decide_inherited(role_oid: pg_sys::Oid, email: Option<&str>, now: i64) -> Option<Decision> {
    let inherited = inherited_gated_roles(role_oid);
    if inherited.is_empty() {
        return None;
    }
    snapshot::read(|view| {
        inherited
            .iter()
            .filter_map(|&g| view.gated_role(g, ""))
            .map(|role| decide_for_role(view, role, email, now))
            .reduce(Decision::and)
    })
    .flatten()
}

/// What the rules of a gated role ask of an elevation beyond being on call.
#[derive(Clone, Copy, Default)]
pub struct Limits {
    pub require_reason: bool,
    /// µs; the shortest of the rules that apply.
    pub max_duration: Option<i64>,
}

/// The limits of `role_oid`'s own rule, or of every gated role it inherits. Needs a transaction.
pub fn limits(role_oid: pg_sys::Oid) -> Limits {
    let name = roles::name_of(role_oid).unwrap_or_default();
    let direct = snapshot::read(|view| view.gated_role(role_oid, &name).map(|r| (r.require_reason, r.max_duration))).flatten();
    let rules: Vec<(bool, Option<i64>)> = match direct {
        Some(rule) => vec![rule],
        None => {
            let inherited = inherited_gated_roles(role_oid);
            snapshot::read(|view| {
                inherited.iter().filter_map(|&g| view.gated_role(g, "")).map(|r| (r.require_reason, r.max_duration)).collect()
            })
            .unwrap_or_default()
        }
    };
    rules.into_iter().fold(Limits::default(), |acc, (require_reason, max_duration)| Limits {
        require_reason: acc.require_reason || require_reason,
        max_duration: match (acc.max_duration, max_duration) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
    })
}

/// Whether using `role_oid` is gated: by its own rule, or by those of the gated roles it inherits.
pub fn is_gated(role_oid: pg_sys::Oid, name: &str) -> bool {
    snapshot::read(|view| view.gated_role(role_oid, name).is_some()).unwrap_or(false)
        || !inherited_gated_roles(role_oid).is_empty()
}

/// `oncall.is_on_call(email, min_level, policies)`: for policies that name a person.
pub fn email_on_call(email: &str, min_level: Option<i32>, policies: Option<&[String]>, now: i64) -> bool {
    let email = decision::normalize_email(email);
    snapshot::read(|view| {
        let rule = Rule { escalation_policy_ids: policies, schedule_ids: None, levels: level_bounds(min_level, None) };
        decision::decide(&shift_views(view, &email), &rule, now, stale_at(view)).allowed
    })
    .unwrap_or(false)
}
