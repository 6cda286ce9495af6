//! The server log and pg_oncall's audit lines (DESIGN.md guarantee 5), parsed.
//!
//! Every harness cluster logs with [`LOG_LINE_PREFIX`], which carries each line's SQLSTATE
//! (`%e`): pg_oncall's own audit lines carry [`AUDIT_SQLSTATE`], which its emit_log_hook denies
//! to anything else, so a line *claiming* to be a decision (any user can `RAISE LOG` that text)
//! is told from a genuine one.

use crate::cluster::{wait_until, Cluster};

/// The harness's `log_line_prefix`: `2026-… UTC [pid] SQLSTATE user@db `.
pub const LOG_LINE_PREFIX: &str = "%m [%p] %e %q%u@%d ";
/// The SQLSTATE of pg_oncall's audit lines.
pub const AUDIT_SQLSTATE: &str = "OC000";

/// One line of the server log with its SQLSTATE and its message.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub sqlstate: String,
    /// `LOG`, `ERROR`, `CONTEXT`, `STATEMENT`...; "" for a continuation line.
    pub severity: String,
    pub message: String,
    pub raw: String,
}

/// Parses a log written with [`LOG_LINE_PREFIX`]. Continuation lines (a tab first: PostgreSQL
/// continues a multi-line message so) are kept as their own entries with severity "".
pub fn log_lines(log: &str) -> Vec<LogLine> {
    log.lines()
        .map(|l| {
            if !l.starts_with("20") {
                return LogLine { sqlstate: String::new(), severity: String::new(), message: l.to_owned(), raw: l.to_owned() };
            }
            let after_pid = l.find("] ").map(|i| &l[i + 2..]).unwrap_or("");
            let (sqlstate, rest) = after_pid.split_once(' ').unwrap_or(("", after_pid));
            let (severity, message) = match rest.find(":  ") {
                Some(i) => {
                    let head = &rest[..i];
                    let severity = head.rsplit(' ').next().unwrap_or(head);
                    (severity.to_owned(), rest[i + 3..].to_owned())
                }
                None => (String::new(), rest.to_owned()),
            };
            LogLine { sqlstate: sqlstate.to_owned(), severity, message, raw: l.to_owned() }
        })
        .collect()
}

const DECISION_PREFIXES: [&str; 3] = ["pg_oncall: allow ", "pg_oncall: deny ", "pg_oncall: audit_deny "];

/// Every log line after `offset` whose message *claims* to be a decision (`pg_oncall: allow|
/// deny|audit_deny …`), genuine or forged. "No decision was logged" is checked on these.
pub fn decision_log_lines(cluster: &Cluster, offset: usize) -> Vec<LogLine> {
    log_lines(&cluster.log_since(offset)).into_iter().filter(|l| DECISION_PREFIXES.iter().any(|p| l.message.starts_with(p))).collect()
}

/// A parsed audit line: decision word, key=value fields in order (values unescaped), SQLSTATE.
#[derive(Debug, Clone)]
pub struct Audit {
    pub decision: String,
    pub fields: Vec<(String, String)>,
    pub sqlstate: String,
}

impl Audit {
    /// The field's value ("" when absent).
    pub fn get(&self, key: &str) -> &str {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("")
    }
}

/// The fields every decision line starts with, in this order (DESIGN.md guarantee 5).
pub const AUDIT_KEYS: [&str; 6] = ["role", "session_user", "identity", "route", "reason", "shift_end"];

/// Parses a decision line strictly: the decision word, then well-formed `key=value` fields
/// (a value bare, or double-quoted with `\"`, `\\`, `\n`, `\r` and `\u{…}` escapes), the first
/// six being [`AUDIT_KEYS`] in order; later fields (a switch's `elevation=`, `justification=`)
/// must be well-formed too. Panics on any other shape.
#[track_caller]
pub fn parse_audit(line: &LogLine) -> Audit {
    let text = &line.message;
    let body = text.strip_prefix("pg_oncall: ").unwrap_or_else(|| panic!("not a pg_oncall line: {text:?}"));
    let (decision, mut rest) = body.split_once(' ').unwrap_or_else(|| panic!("audit line without fields: {text:?}"));
    assert!(["allow", "deny", "audit_deny"].contains(&decision), "decision word: {text:?}");
    let mut fields = Vec::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').unwrap_or_else(|| panic!("field without '=' in {text:?}"));
        assert!(!key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "a bad key {key:?} in {text:?}");
        let mut value = String::new();
        let remaining;
        if let Some(quoted) = after.strip_prefix('"') {
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, 'r')) => value.push('\r'),
                        Some((_, 'u')) => {
                            let hex: String = chars.by_ref().map(|(_, c)| c).take_while(|&c| c != '}').collect();
                            let hex = hex.strip_prefix('{').unwrap_or_else(|| panic!("bad \\u escape in {text:?}"));
                            let c = u32::from_str_radix(hex, 16).ok().and_then(char::from_u32);
                            value.push(c.unwrap_or_else(|| panic!("bad \\u escape in {text:?}")));
                        }
                        Some((_, c)) => value.push(c),
                        None => panic!("dangling escape in {text:?}"),
                    },
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.unwrap_or_else(|| panic!("unterminated quoted value in {text:?}"));
            remaining = &quoted[end..];
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            value.push_str(&after[..end]);
            remaining = &after[end..];
        }
        fields.push((key.to_owned(), value));
        rest = match remaining.strip_prefix(' ') {
            Some(r) => r,
            None => {
                assert!(remaining.is_empty(), "junk after a value in {text:?}");
                remaining
            }
        };
    }
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert!(keys.len() >= AUDIT_KEYS.len() && keys[..AUDIT_KEYS.len()] == AUDIT_KEYS, "the key=value fields of {text:?}");
    Audit { decision: decision.to_owned(), fields, sqlstate: line.sqlstate.clone() }
}

/// The genuine audit lines (SQLSTATE OC000) after `offset`, parsed.
pub fn audits(cluster: &Cluster, offset: usize) -> Vec<Audit> {
    decision_log_lines(cluster, offset).iter().filter(|l| l.sqlstate == AUDIT_SQLSTATE).map(parse_audit).collect()
}

/// The genuine audit lines after `offset` of `route`.
pub fn audits_on(cluster: &Cluster, offset: usize, route: &str) -> Vec<Audit> {
    audits(cluster, offset).into_iter().filter(|a| a.get("route") == route).collect()
}

/// Waits (up to [`crate::PATIENCE`]) for a genuine audit line after `offset` with this
/// decision, route, session user and role, and returns it.
#[track_caller]
pub fn expect_audit(cluster: &Cluster, offset: usize, decision: &str, route: &str, session_user: &str, role: &str) -> Audit {
    let mut found = None;
    wait_until(crate::PATIENCE, || {
        found = audits(cluster, offset).into_iter().find(|a| {
            a.decision == decision && a.get("route") == route && a.get("session_user") == session_user && a.get("role") == role
        });
        found.is_some()
    });
    found.unwrap_or_else(|| {
        panic!("no genuine `{decision} … route={route}` line for {session_user} → {role} in the log\n{}", cluster.log_since(offset))
    })
}

/// Waits until at least `n` genuine audit lines after `offset` satisfy `f`; returns them all.
pub fn wait_for_audits(cluster: &Cluster, offset: usize, n: usize, f: impl Fn(&Audit) -> bool) -> Vec<Audit> {
    let mut got = Vec::new();
    wait_until(crate::PATIENCE, || {
        got = audits(cluster, offset).into_iter().filter(|a| f(a)).collect();
        got.len() >= n
    });
    got
}

/// The `pg_oncall: statement …` lines after `offset` (an elevation's statement audit), from
/// `statement ` on.
pub fn statement_lines(cluster: &Cluster, offset: usize) -> Vec<String> {
    cluster
        .log_since(offset)
        .lines()
        .filter_map(|l| l.find("pg_oncall: statement ").map(|i| l[i + "pg_oncall: ".len()..].to_owned()))
        .collect()
}
