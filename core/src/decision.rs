//! Access decisions: which PagerDuty identity a PostgreSQL role stands for, whether that
//! identity is on call now under a gate rule (and, for `require_incident` rules, assigned to an
//! open incident), until when, and until when that answer holds.
//! Pure functions over borrowed shift and incident data; times are `i64` microseconds on any one
//! epoch.

use std::borrow::Cow;

/// Where a shift came from; only PagerDuty rows go stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    PagerDuty,
    Manual,
}

impl Source {
    pub fn from_name(name: &str) -> Option<Source> {
        match name {
            "pagerduty" => Some(Source::PagerDuty),
            "manual" => Some(Source::Manual),
            _ => None,
        }
    }
}

/// One shift of the identity being decided, borrowed from wherever shifts are kept.
#[derive(Clone, Copy, Debug)]
pub struct ShiftView<'a> {
    pub source: Source,
    pub escalation_policy_id: Option<&'a str>,
    pub schedule_id: Option<&'a str>,
    pub escalation_level: Option<i32>,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
}

/// Escalation levels that count as on call, already resolved from the rule and the GUC defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelBounds {
    pub min: i32,
    pub max: Option<i32>,
}

impl LevelBounds {
    /// A rule's own bounds win; a NULL bound falls back to the configured default.
    pub fn resolve(rule_min: Option<i32>, rule_max: Option<i32>, default_min: i32, default_max: Option<i32>) -> LevelBounds {
        LevelBounds { min: rule_min.unwrap_or(default_min), max: rule_max.or(default_max) }
    }

    fn admits(&self, level: i32) -> bool {
        level >= self.min && self.max.is_none_or(|max| level <= max)
    }
}

/// A gate rule: `None` filters mean "any".
#[derive(Clone, Copy, Debug)]
pub struct Rule<'a, S: AsRef<str>> {
    pub escalation_policy_ids: Option<&'a [S]>,
    pub schedule_ids: Option<&'a [S]>,
    pub levels: LevelBounds,
}

/// The rule `check_oncall_access()` uses: any policy, any schedule, default levels.
pub fn any_policy_rule(levels: LevelBounds) -> Rule<'static, &'static str> {
    Rule { escalation_policy_ids: None, schedule_ids: None, levels }
}

/// Why access was or was not granted; the text goes into DETAIL lines and audit logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    OnCall,
    NoIdentity,
    NotOnCall,
    Stale,
    OutsideLevels,
    OutsidePolicies,
    NotLoaded,
    /// The rule needs `pg_oncall.reason` and none was given (decided by the gate, not here).
    NoReasonGiven,
    /// The elevation reached the rule's `max_duration` (decided by the gate, not here).
    TimeLimit,
    /// A `require_incident` rule, on call, but no open incident assigned that the rule admits.
    NoIncident,
    /// A `require_incident` rule, on call, but the last successful incident sync is older than
    /// `max_staleness` (or there was none): incidents grant nothing.
    IncidentsStale,
}

impl Reason {
    pub fn text(self) -> &'static str {
        match self {
            Reason::OnCall => "on call",
            Reason::NoIdentity => "no identity",
            Reason::NotOnCall => "not on call",
            Reason::Stale => "data stale",
            Reason::OutsideLevels => "outside escalation levels",
            Reason::OutsidePolicies => "outside escalation policies or schedules",
            Reason::NotLoaded => "snapshot not loaded",
            Reason::NoReasonGiven => "no reason given",
            Reason::TimeLimit => "time limit reached",
            Reason::NoIncident => "no open incident assigned",
            Reason::IncidentsStale => "incident data stale",
        }
    }
}

/// When an on-call stretch ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    Open,
    At(i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: Reason,
    /// For an allowed decision: the end of the continuous on-call stretch that covers now.
    pub until: Option<Until>,
    /// The earliest future instant at which this answer could change with the same data
    /// (a shift starting or ending, the data going stale); `None` means no such instant.
    pub valid_until: Option<i64>,
    /// For an allowed decision: when access ends if nothing changes (the stretch ends, or the
    /// PagerDuty rows it rests on go stale); `None` means not foreseeably.
    pub lapses_at: Option<i64>,
}

impl Decision {
    pub fn deny(reason: Reason) -> Decision {
        Decision { allowed: false, reason, until: None, valid_until: None, lapses_at: None }
    }

    /// Both decisions must allow (a role that inherits several gated roles answers to every
    /// rule): the first denial wins; otherwise the earlier end and the earlier expiry.
    pub fn and(self, other: Decision) -> Decision {
        if !self.allowed {
            return Decision { valid_until: earliest(self.valid_until, other.valid_until), ..self };
        }
        if !other.allowed {
            return Decision { valid_until: earliest(self.valid_until, other.valid_until), ..other };
        }
        let until = match (self.until, other.until) {
            (Some(Until::At(a)), Some(Until::At(b))) => Some(Until::At(a.min(b))),
            (Some(Until::At(a)), _) | (_, Some(Until::At(a))) => Some(Until::At(a)),
            (a, b) => a.or(b),
        };
        Decision {
            allowed: true,
            reason: Reason::OnCall,
            until,
            valid_until: earliest(self.valid_until, other.valid_until),
            lapses_at: earliest(self.lapses_at, other.lapses_at),
        }
    }
}

/// Normalizes an email for comparison: PagerDuty compares addresses case-insensitively.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The PagerDuty identity of a role: its `oncall.identities` row, else the role name when it
/// is an email, else `role@email_domain`, else none (never on call).
pub fn identity_for<'a>(role_name: &'a str, mapped_email: Option<&'a str>, email_domain: &str) -> Option<Cow<'a, str>> {
    if let Some(email) = mapped_email {
        return Some(Cow::Borrowed(email));
    }
    if role_name.contains('@') {
        return Some(Cow::Borrowed(role_name));
    }
    let domain = email_domain.trim().trim_start_matches('@');
    if domain.is_empty() || role_name.is_empty() {
        return None;
    }
    Some(Cow::Owned(format!("{role_name}@{domain}")))
}

/// The instant after which PagerDuty rows stop granting: `None` when there never was a
/// successful sync (PagerDuty rows are stale from the start).
pub fn stale_at(last_success: Option<i64>, max_staleness: i64) -> Option<i64> {
    last_success.map(|t| t.saturating_add(max_staleness.max(0)))
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Miss {
    NotActive,
    Levels,
    Policies,
    Stale,
}

fn filter_admits<S: AsRef<str>>(filter: Option<&[S]>, id: Option<&str>, source: Source) -> bool {
    let Some(allowed) = filter else { return true };
    match id {
        Some(id) => allowed.iter().any(|a| a.as_ref() == id),
        // A manual row without a policy/schedule is meant to match any rule's filter.
        None => source == Source::Manual,
    }
}

fn is_active(shift: &ShiftView, now: i64) -> bool {
    shift.starts_at.is_none_or(|s| s <= now) && shift.ends_at.is_none_or(|e| now < e)
}

/// Why `shift` does not grant under `rule` at `now` (`None`: it grants).
fn miss<S: AsRef<str>>(shift: &ShiftView, rule: &Rule<S>, now: i64, stale_at: Option<i64>) -> Option<Miss> {
    if !is_active(shift, now) {
        return Some(Miss::NotActive);
    }
    if !rule.levels.admits(shift.escalation_level.unwrap_or(1)) {
        return Some(Miss::Levels);
    }
    if !filter_admits(rule.escalation_policy_ids, shift.escalation_policy_id, shift.source)
        || !filter_admits(rule.schedule_ids, shift.schedule_id, shift.source)
    {
        return Some(Miss::Policies);
    }
    if shift.source == Source::PagerDuty && stale_at.is_none_or(|t| now >= t) {
        return Some(Miss::Stale);
    }
    None
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Decides whether the identity whose shifts are `shifts` is on call under `rule` at `now`.
/// `shifts` must hold only that identity's shifts (the caller looks them up by email).
pub fn decide<'a, S: AsRef<str>>(shifts: &[ShiftView<'a>], rule: &Rule<S>, now: i64, stale_at: Option<i64>) -> Decision {
    let mut valid_until: Option<i64> = None;
    let mut worst_miss = Miss::NotActive;
    let mut allowed = false;
    let mut uses_pagerduty = false;
    for shift in shifts {
        for boundary in [shift.starts_at, shift.ends_at].into_iter().flatten() {
            if boundary > now {
                valid_until = earliest(valid_until, Some(boundary));
            }
        }
        uses_pagerduty |= shift.source == Source::PagerDuty;
        match miss(shift, rule, now, stale_at) {
            None => allowed = true,
            Some(m) => worst_miss = worst_miss.max(m),
        }
    }
    if uses_pagerduty {
        if let Some(t) = stale_at.filter(|&t| t > now) {
            valid_until = earliest(valid_until, Some(t));
        }
    }
    if !allowed {
        let reason = match worst_miss {
            Miss::NotActive => Reason::NotOnCall,
            Miss::Levels => Reason::OutsideLevels,
            Miss::Policies => Reason::OutsidePolicies,
            Miss::Stale => Reason::Stale,
        };
        return Decision { allowed: false, reason, until: None, valid_until, lapses_at: None };
    }
    let until = stretch_end(shifts, rule, now, stale_at);
    let stretch_ends = match until {
        Until::At(t) => Some(t),
        Until::Open => None,
    };
    // Manual rows never go stale; a grant resting on PagerDuty rows alone lapses with them.
    let manual_grants = shifts.iter().any(|s| s.source == Source::Manual && miss(s, rule, now, stale_at).is_none());
    let lapses_at = if manual_grants { stretch_ends } else { earliest(stretch_ends, stale_at) };
    Decision { allowed: true, reason: Reason::OnCall, until: Some(until), valid_until, lapses_at }
}

/// The end of the continuous on-call stretch covering `now`: shifts that grant and start
/// before the current stretch ends extend it (a handover to oneself is not an end).
fn stretch_end<S: AsRef<str>>(shifts: &[ShiftView], rule: &Rule<S>, now: i64, stale_at: Option<i64>) -> Until {
    let grants_at = |s: &ShiftView, at: i64| miss(s, rule, at, stale_at).is_none();
    let mut end = now;
    // Each pass extends `end` or stops; at most one pass per shift.
    for _ in 0..=shifts.len() {
        let stretch_end = end;
        for shift in shifts.iter().filter(|s| grants_at(s, stretch_end)) {
            match shift.ends_at {
                None => return Until::Open,
                Some(e) => end = end.max(e),
            }
        }
        if end == stretch_end {
            break;
        }
    }
    Until::At(end)
}

/// An open (triggered or acknowledged) incident assigned to the identity being decided,
/// borrowed from wherever incidents are kept.
#[derive(Clone, Copy, Debug)]
pub struct IncidentView<'a> {
    pub id: &'a str,
    /// The escalation policy of the incident's service; `None` when PagerDuty sent none.
    pub escalation_policy_id: Option<&'a str>,
}

/// The ids of the incidents among `assigned` that count for a rule naming `policies`: every one
/// when the rule names none (`None`), else those of a service whose escalation policy it names
/// (an incident without a policy matches no list). Deduplicated, in `assigned`'s order.
pub fn incidents_for_rule<'a, S: AsRef<str>>(assigned: &[IncidentView<'a>], policies: Option<&[S]>) -> Vec<&'a str> {
    let mut ids: Vec<&'a str> = Vec::new();
    for incident in assigned {
        let admitted = match policies {
            None => true,
            Some(list) => incident.escalation_policy_id.is_some_and(|p| list.iter().any(|a| a.as_ref() == p)),
        };
        if admitted && !ids.contains(&incident.id) {
            ids.push(incident.id);
        }
    }
    ids
}

/// A `require_incident` rule on top of the on-call decision under it: being on call is not
/// enough, the identity must also be assigned to `admitting` (> 0) open incidents the rule
/// admits (see [`incidents_for_rule`]), and the incident data must be fresh
/// (`incidents_stale_at`, from [`stale_at`] of the last successful incident sync).
///
/// A refusal says which condition failed: the on-call one first, then stale incident data, then
/// no incident. An incident is resolved only by a later sync (a new snapshot), so the answer
/// holds until the on-call answer changes or the incident data goes stale.
pub fn require_incident(on_call: Decision, admitting: usize, now: i64, incidents_stale_at: Option<i64>) -> Decision {
    if !on_call.allowed {
        return on_call;
    }
    let fresh_until = incidents_stale_at.filter(|&t| t > now);
    let valid_until = earliest(on_call.valid_until, fresh_until);
    if fresh_until.is_none() {
        return Decision { allowed: false, reason: Reason::IncidentsStale, until: None, valid_until: on_call.valid_until, lapses_at: None };
    }
    if admitting == 0 {
        return Decision { allowed: false, reason: Reason::NoIncident, until: None, valid_until, lapses_at: None };
    }
    Decision { valid_until, lapses_at: earliest(on_call.lapses_at, fresh_until), ..on_call }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;
    const S: i64 = 1_000_000;
    const NOW: i64 = 1_000 * H;

    fn levels() -> LevelBounds {
        LevelBounds { min: 1, max: None }
    }

    fn pd(policy: &'static str, level: i32, starts: Option<i64>, ends: Option<i64>) -> ShiftView<'static> {
        ShiftView {
            source: Source::PagerDuty,
            escalation_policy_id: Some(policy),
            schedule_id: Some("SCHED"),
            escalation_level: Some(level),
            starts_at: starts,
            ends_at: ends,
        }
    }

    fn manual(starts: Option<i64>, ends: Option<i64>) -> ShiftView<'static> {
        ShiftView {
            source: Source::Manual,
            escalation_policy_id: None,
            schedule_id: None,
            escalation_level: None,
            starts_at: starts,
            ends_at: ends,
        }
    }

    fn fresh() -> Option<i64> {
        Some(NOW + 10 * 60 * S)
    }

    fn any() -> Rule<'static, &'static str> {
        any_policy_rule(levels())
    }

    #[test]
    fn identity_prefers_mapping_then_email_role_then_domain() {
        assert_eq!(identity_for("alice", Some("a@x.com"), "ex.com").as_deref(), Some("a@x.com"));
        assert_eq!(identity_for("bob@x.com", None, "ex.com").as_deref(), Some("bob@x.com"));
        assert_eq!(identity_for("carol", None, "ex.com").as_deref(), Some("carol@ex.com"));
        assert_eq!(identity_for("carol", None, "@ex.com").as_deref(), Some("carol@ex.com"));
        assert_eq!(identity_for("carol", None, ""), None);
        assert_eq!(identity_for("carol", None, "  "), None);
    }

    #[test]
    fn emails_compare_case_insensitively() {
        assert_eq!(normalize_email(" Alice@Example.COM\n"), "alice@example.com");
    }

    #[test]
    fn shift_that_started_a_second_ago_grants_and_one_that_ended_does_not() {
        let started = [pd("P1", 1, Some(NOW - S), Some(NOW + H))];
        let d = decide(&started, &any(), NOW, fresh());
        assert!(d.allowed);
        assert_eq!(d.until, Some(Until::At(NOW + H)));

        let ended = [pd("P1", 1, Some(NOW - H), Some(NOW - S))];
        let d = decide(&ended, &any(), NOW, fresh());
        assert!(!d.allowed);
        assert_eq!(d.reason, Reason::NotOnCall);

        let ends_now = [pd("P1", 1, Some(NOW - H), Some(NOW))];
        assert!(!decide(&ends_now, &any(), NOW, fresh()).allowed, "end is exclusive");
        let starts_now = [pd("P1", 1, Some(NOW), Some(NOW + H))];
        assert!(decide(&starts_now, &any(), NOW, fresh()).allowed, "start is inclusive");
        let starts_in_a_second = [pd("P1", 1, Some(NOW + S), Some(NOW + H))];
        let d = decide(&starts_in_a_second, &any(), NOW, fresh());
        assert!(!d.allowed);
        assert_eq!(d.valid_until, Some(NOW + S));
    }

    #[test]
    fn open_ended_shifts() {
        let d = decide(&[pd("P1", 1, None, None)], &any(), NOW, fresh());
        assert!(d.allowed);
        assert_eq!(d.until, Some(Until::Open));
        assert!(decide(&[manual(None, Some(NOW + S))], &any(), NOW, None).allowed);
        assert!(decide(&[manual(Some(NOW - S), None)], &any(), NOW, None).allowed);
        assert!(!decide(&[manual(Some(NOW + S), None)], &any(), NOW, None).allowed);
    }

    #[test]
    fn levels_below_and_above_bounds() {
        let shift = [pd("P1", 3, None, None)];
        let bounded = |min, max| any_policy_rule(LevelBounds { min, max });
        assert!(decide(&shift, &bounded(1, None), NOW, fresh()).allowed);
        assert!(decide(&shift, &bounded(3, Some(3)), NOW, fresh()).allowed);
        let d = decide(&shift, &bounded(1, Some(2)), NOW, fresh());
        assert_eq!((d.allowed, d.reason), (false, Reason::OutsideLevels));
        let d = decide(&shift, &bounded(4, None), NOW, fresh());
        assert_eq!((d.allowed, d.reason), (false, Reason::OutsideLevels));
    }

    #[test]
    fn rule_levels_fall_back_to_defaults() {
        assert_eq!(LevelBounds::resolve(None, None, 1, Some(2)), LevelBounds { min: 1, max: Some(2) });
        assert_eq!(LevelBounds::resolve(Some(2), None, 1, None), LevelBounds { min: 2, max: None });
        assert_eq!(LevelBounds::resolve(None, Some(5), 1, Some(2)), LevelBounds { min: 1, max: Some(5) });
    }

    #[test]
    fn manual_row_without_level_counts_as_level_one() {
        let rule = any_policy_rule(LevelBounds { min: 2, max: None });
        let d = decide(&[manual(None, None)], &rule, NOW, None);
        assert_eq!(d.reason, Reason::OutsideLevels);
        assert!(decide(&[manual(None, None)], &any(), NOW, None).allowed);
    }

    #[test]
    fn policy_and_schedule_filters() {
        let policies = ["P1", "P2"];
        let rule = Rule { escalation_policy_ids: Some(&policies[..]), schedule_ids: None, levels: levels() };
        assert!(decide(&[pd("P2", 1, None, None)], &rule, NOW, fresh()).allowed);
        let d = decide(&[pd("P9", 1, None, None)], &rule, NOW, fresh());
        assert_eq!((d.allowed, d.reason), (false, Reason::OutsidePolicies));
        assert!(decide(&[manual(None, None)], &rule, NOW, None).allowed, "manual NULL policy matches any filter");

        let schedules = ["OTHER"];
        let rule = Rule { escalation_policy_ids: None, schedule_ids: Some(&schedules[..]), levels: levels() };
        assert_eq!(decide(&[pd("P1", 1, None, None)], &rule, NOW, fresh()).reason, Reason::OutsidePolicies);
        let mut direct = pd("P1", 1, None, None);
        direct.schedule_id = None;
        assert!(!decide(&[direct], &rule, NOW, fresh()).allowed, "a PagerDuty row without schedule misses a schedule filter");
        let empty: [&str; 0] = [];
        let rule = Rule { escalation_policy_ids: Some(&empty[..]), schedule_ids: None, levels: levels() };
        assert!(!decide(&[pd("P1", 1, None, None)], &rule, NOW, fresh()).allowed, "an empty list admits nothing");
    }

    #[test]
    fn stale_pagerduty_rows_grant_nothing_but_manual_rows_do() {
        let last_success = NOW - 20 * 60 * S;
        let stale = stale_at(Some(last_success), 15 * 60 * S);
        let d = decide(&[pd("P1", 1, None, None)], &any(), NOW, stale);
        assert_eq!((d.allowed, d.reason), (false, Reason::Stale));
        assert!(decide(&[manual(None, None)], &any(), NOW, stale).allowed);
        let d = decide(&[pd("P1", 1, None, None)], &any(), NOW, None);
        assert_eq!(d.reason, Reason::Stale, "never synced is stale");
        let d = decide(&[pd("P1", 1, None, None)], &any(), NOW, fresh());
        assert!(d.allowed);
        assert_eq!(d.valid_until, fresh(), "the answer expires when the data goes stale");
    }

    #[test]
    fn no_shifts_means_not_on_call_forever() {
        let d = decide(&[], &any(), NOW, fresh());
        assert_eq!(d, Decision { allowed: false, reason: Reason::NotOnCall, until: None, valid_until: None, lapses_at: None });
    }

    #[test]
    fn valid_until_is_the_next_boundary() {
        let shifts = [
            pd("P1", 1, Some(NOW - H), Some(NOW + 2 * H)),
            pd("P1", 1, Some(NOW + H), Some(NOW + 3 * H)),
            pd("P1", 1, Some(NOW - 5 * H), Some(NOW - 4 * H)),
        ];
        let d = decide(&shifts, &any(), NOW, Some(NOW + 10 * H));
        assert!(d.allowed);
        assert_eq!(d.valid_until, Some(NOW + H));
    }

    #[test]
    fn back_to_back_shifts_form_one_stretch() {
        let shifts = [
            pd("P1", 1, Some(NOW + H), Some(NOW + 2 * H)),
            pd("P1", 1, Some(NOW - H), Some(NOW + H)),
            pd("P2", 1, Some(NOW + 2 * H), Some(NOW + 3 * H)),
            pd("P1", 1, Some(NOW + 4 * H), Some(NOW + 5 * H)),
        ];
        let d = decide(&shifts, &any(), NOW, Some(NOW + 10 * H));
        assert_eq!(d.until, Some(Until::At(NOW + 3 * H)));
    }

    #[test]
    fn and_needs_both_and_keeps_the_earliest_expiry() {
        let allow = |until: i64, valid: i64| Decision {
            allowed: true,
            reason: Reason::OnCall,
            until: Some(Until::At(until)),
            valid_until: Some(valid),
            lapses_at: Some(until),
        };
        let open = Decision { allowed: true, reason: Reason::OnCall, until: Some(Until::Open), valid_until: None, lapses_at: None };
        let deny = Decision { allowed: false, reason: Reason::OutsideLevels, until: None, valid_until: Some(NOW + H), lapses_at: None };
        let both = allow(NOW + 3 * H, NOW + 2 * H).and(allow(NOW + H, NOW + 5 * H));
        assert_eq!(both, allow(NOW + H, NOW + 2 * H));
        assert_eq!(open.and(allow(NOW + H, NOW + H)), allow(NOW + H, NOW + H));
        assert_eq!(open.and(open), open);
        let denied = allow(NOW + 3 * H, NOW + 2 * H).and(deny);
        assert_eq!((denied.allowed, denied.reason, denied.valid_until), (false, Reason::OutsideLevels, Some(NOW + H)));
        let denied = deny.and(open);
        assert_eq!((denied.allowed, denied.reason), (false, Reason::OutsideLevels));
    }

    #[test]
    fn access_lapses_when_the_stretch_ends_or_its_pagerduty_rows_go_stale() {
        let d = decide(&[pd("P1", 1, None, None)], &any(), NOW, fresh());
        assert_eq!((d.until, d.lapses_at), (Some(Until::Open), fresh()), "a permanent PagerDuty shift lapses with the data");
        let d = decide(&[pd("P1", 1, None, Some(NOW + S))], &any(), NOW, fresh());
        assert_eq!(d.lapses_at, Some(NOW + S), "the shift ends first");
        let d = decide(&[manual(None, None), pd("P1", 1, None, None)], &any(), NOW, fresh());
        assert_eq!(d.lapses_at, None, "a manual row does not go stale");
        assert_eq!(decide(&[manual(None, Some(NOW + H))], &any(), NOW, None).lapses_at, Some(NOW + H));
    }

    #[test]
    fn stale_reason_wins_over_others() {
        let shifts = [pd("P1", 1, None, None), pd("P9", 9, None, None)];
        let policies = ["P1"];
        let rule = Rule { escalation_policy_ids: Some(&policies[..]), schedule_ids: None, levels: levels() };
        assert_eq!(decide(&shifts, &rule, NOW, Some(NOW - S)).reason, Reason::Stale);
    }

    fn assigned(id: &'static str, policy: Option<&'static str>) -> IncidentView<'static> {
        IncidentView { id, escalation_policy_id: policy }
    }

    #[test]
    fn incidents_count_for_a_rule_only_of_the_policies_it_names() {
        let incidents = [assigned("PINC1", Some("P1")), assigned("PINC2", Some("P2")), assigned("PINC3", None), assigned("PINC1", Some("P1"))];
        let none: Option<&[&str]> = None;
        assert_eq!(incidents_for_rule(&incidents, none), ["PINC1", "PINC2", "PINC3"], "no policies named: every incident, once");
        assert_eq!(incidents_for_rule(&incidents, Some(&["P2", "P9"][..])), ["PINC2"]);
        assert_eq!(incidents_for_rule(&incidents, Some(&["P9"][..])), Vec::<&str>::new());
        let empty: [&str; 0] = [];
        assert_eq!(incidents_for_rule(&incidents, Some(&empty[..])), Vec::<&str>::new(), "an empty list admits nothing");
        assert_eq!(incidents_for_rule(&[], none), Vec::<&str>::new());
    }

    #[test]
    fn require_incident_needs_on_call_an_incident_and_fresh_incident_data() {
        let on_call = decide(&[pd("P1", 1, Some(NOW - H), Some(NOW + 2 * H))], &any(), NOW, Some(NOW + 3 * H));
        assert!(on_call.allowed);
        let incidents_fresh = Some(NOW + H);

        let d = require_incident(on_call, 1, NOW, incidents_fresh);
        assert!(d.allowed);
        assert_eq!(d.until, Some(Until::At(NOW + 2 * H)), "the on-call stretch still says when the shift ends");
        assert_eq!(d.valid_until, Some(NOW + H), "the answer expires when the incident data goes stale");
        assert_eq!(d.lapses_at, Some(NOW + H), "access lapses with the incident data");

        let d = require_incident(on_call, 0, NOW, incidents_fresh);
        assert_eq!((d.allowed, d.reason, d.reason.text()), (false, Reason::NoIncident, "no open incident assigned"));
        assert_eq!(d.valid_until, Some(NOW + H), "turns into a stale-data refusal then");

        for stale in [None, Some(NOW), Some(NOW - S)] {
            let d = require_incident(on_call, 1, NOW, stale);
            assert_eq!((d.allowed, d.reason), (false, Reason::IncidentsStale), "{stale:?}");
        }
    }

    #[test]
    fn require_incident_reports_the_on_call_refusal_first() {
        let not_on_call = decide(&[pd("P1", 1, Some(NOW + H), Some(NOW + 2 * H))], &any(), NOW, fresh());
        let d = require_incident(not_on_call, 1, NOW, fresh());
        assert_eq!(d, not_on_call, "not on call: that is the reason, whatever the incidents");
        let stale = decide(&[pd("P1", 1, None, None)], &any(), NOW, Some(NOW - S));
        assert_eq!(require_incident(stale, 0, NOW, None).reason, Reason::Stale);
    }

    #[test]
    fn a_manual_override_still_needs_an_incident() {
        let overridden = decide(&[manual(Some(NOW - S), Some(NOW + H))], &any(), NOW, None);
        assert!(overridden.allowed, "on call by the override");
        assert_eq!(require_incident(overridden, 0, NOW, fresh()).reason, Reason::NoIncident);
        assert_eq!(require_incident(overridden, 1, NOW, None).reason, Reason::IncidentsStale, "PagerDuty down: no incident is known");
        let d = require_incident(overridden, 1, NOW, Some(NOW + 2 * H));
        assert!(d.allowed);
        assert_eq!(d.lapses_at, Some(NOW + H), "the override ends before the incident data goes stale");
    }
}
