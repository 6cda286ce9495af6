//! Membership through gated roles: a role S can become R along grants; when every such path
//! passes through a gated role G, becoming R uses G's membership, so G's rule decides. Pure:
//! the grants and the gates' verdicts come from the caller.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

use crate::decision::{Decision, Reason, Until};

/// The verdict on `from` reaching role `to` through the roles it is granted (`grants_of(role)`:
/// the roles `role` is a direct member of, by grants it may use to become them), where a gated
/// role on the way (`gate(role)` is `Some`) may be passed only if its rule admits `from`.
///
/// `None` when `to` is reachable without passing any gated role (or not reachable at all:
/// PostgreSQL refuses that itself); else whether some path passes only gates that admit, with
/// the earliest expiry of every gate consulted (any of them can change the answer).
pub fn through_gates<R: Copy + Eq + Hash>(
    from: R,
    to: R,
    mut grants_of: impl FnMut(R) -> Vec<R>,
    mut gate: impl FnMut(R) -> Option<Decision>,
) -> Option<Decision> {
    // Roles reachable from `from` without passing a gated role; the gated ones at the border.
    let mut free: HashSet<R> = HashSet::from([from]);
    let mut border: Vec<(R, Decision)> = Vec::new();
    let mut queue = VecDeque::from([from]);
    while let Some(role) = queue.pop_front() {
        for next in grants_of(role) {
            if next == to {
                return None;
            }
            if !free.insert(next) {
                continue;
            }
            match gate(next) {
                None => queue.push_back(next),
                Some(decision) => border.push((next, decision)),
            }
        }
    }
    // Beyond the border: through admitting gates only, and through any gate (to tell "denied"
    // from "unreachable").
    let mut valid_until: Option<i64> = None;
    let mut until: Option<Until> = None;
    let mut lapses_at: Option<i64> = None;
    let mut denied: Option<Reason> = None;
    let mut seen: HashSet<R> = free.clone();
    let mut admitted: VecDeque<R> = VecDeque::new();
    let mut refused: VecDeque<R> = VecDeque::new();
    for (role, decision) in border {
        valid_until = earliest(valid_until, decision.valid_until);
        if decision.allowed {
            until = later(until, decision.until);
            lapses_at = if admitted.is_empty() { decision.lapses_at } else { latest(lapses_at, decision.lapses_at) };
            admitted.push_back(role);
        } else {
            denied.get_or_insert(decision.reason);
            refused.push_back(role);
        }
    }
    // Through admitting gates first; a refusing gate met on the way is set aside.
    while let Some(role) = admitted.pop_front() {
        for next in grants_of(role) {
            if next == to {
                return Some(Decision { allowed: true, reason: Reason::OnCall, until, valid_until, lapses_at });
            }
            if !seen.insert(next) {
                continue;
            }
            match gate(next) {
                Some(decision) if !decision.allowed => {
                    valid_until = earliest(valid_until, decision.valid_until);
                    denied.get_or_insert(decision.reason);
                    refused.push_back(next);
                }
                Some(decision) => {
                    valid_until = earliest(valid_until, decision.valid_until);
                    admitted.push_back(next);
                }
                None => admitted.push_back(next),
            }
        }
    }
    // Then through any gate, only to tell "refused" from "not reachable at all".
    let mut reachable_through_refused = false;
    while let Some(role) = refused.pop_front() {
        for next in grants_of(role) {
            if next == to {
                reachable_through_refused = true;
            } else if seen.insert(next) {
                if let Some(decision) = gate(next) {
                    valid_until = earliest(valid_until, decision.valid_until);
                }
                refused.push_back(next);
            }
        }
    }
    reachable_through_refused.then(|| Decision { allowed: false, reason: denied.unwrap_or(Reason::NotOnCall), until: None, valid_until, lapses_at: None })
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// The later of two lapses (none is the latest).
fn latest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        _ => None,
    }
}

/// The later of two stretch ends (an open one is the latest).
fn later(a: Option<Until>, b: Option<Until>) -> Option<Until> {
    match (a, b) {
        (Some(Until::Open), _) | (_, Some(Until::Open)) => Some(Until::Open),
        (Some(Until::At(x)), Some(Until::At(y))) => Some(Until::At(x.max(y))),
        (x, y) => x.or(y),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn allow(until: i64) -> Decision {
        Decision { allowed: true, reason: Reason::OnCall, until: Some(Until::At(until)), valid_until: Some(until), lapses_at: Some(until) }
    }

    fn deny() -> Decision {
        Decision { allowed: false, reason: Reason::NotOnCall, until: None, valid_until: Some(50), lapses_at: None }
    }

    /// `edges`: member → roles; `gates`: gated role → decision.
    fn check(edges: &[(u32, u32)], gates: &[(u32, Decision)], from: u32, to: u32) -> Option<Decision> {
        let graph: HashMap<u32, Vec<u32>> = edges.iter().fold(HashMap::new(), |mut g, &(m, r)| {
            g.entry(m).or_default().push(r);
            g
        });
        let gates: HashMap<u32, Decision> = gates.iter().copied().collect();
        through_gates(from, to, |r| graph.get(&r).cloned().unwrap_or_default(), |r| gates.get(&r).copied())
    }

    const S: u32 = 1;
    const T: u32 = 2;
    const G: u32 = 10;
    const H: u32 = 11;
    const X: u32 = 20;

    #[test]
    fn a_direct_grant_needs_no_gate() {
        assert_eq!(check(&[(S, T)], &[], S, T), None);
        assert_eq!(check(&[(S, X), (X, T)], &[], S, T), None);
    }

    #[test]
    fn a_role_granted_to_a_gated_role_answers_to_its_gate() {
        let off = check(&[(S, G), (G, T)], &[(G, deny())], S, T).expect("gated");
        assert!(!off.allowed);
        assert_eq!(off.valid_until, Some(50));
        let on = check(&[(S, G), (G, T)], &[(G, allow(100))], S, T).expect("gated");
        assert!(on.allowed);
        assert_eq!(on.until, Some(Until::At(100)));
    }

    #[test]
    fn a_free_path_beside_the_gate_wins() {
        assert_eq!(check(&[(S, G), (G, T), (S, X), (X, T)], &[(G, deny())], S, T), None);
    }

    #[test]
    fn one_admitting_gate_is_enough() {
        let d = check(&[(S, G), (G, T), (S, H), (H, T)], &[(G, deny()), (H, allow(100))], S, T).expect("gated");
        assert!(d.allowed);
        assert_eq!(d.valid_until, Some(50), "the refusing gate may start admitting: the answer expires with it");
        assert_eq!(d.lapses_at, Some(100), "access lapses with the admitting gate");
    }

    #[test]
    fn every_gate_on_a_chain_must_admit() {
        let edges = [(S, G), (G, X), (X, H), (H, T)];
        assert!(!check(&edges, &[(G, allow(100)), (H, deny())], S, T).unwrap().allowed);
        assert!(!check(&edges, &[(G, deny()), (H, allow(100))], S, T).unwrap().allowed);
        assert!(check(&edges, &[(G, allow(100)), (H, allow(200))], S, T).unwrap().allowed);
    }

    #[test]
    fn unreachable_is_not_ours_to_decide() {
        assert_eq!(check(&[(S, G)], &[(G, deny())], S, T), None);
    }

    #[test]
    fn cycles_end() {
        let d = check(&[(S, G), (G, X), (X, G), (X, T)], &[(G, deny())], S, T).expect("gated");
        assert!(!d.allowed);
    }
}
