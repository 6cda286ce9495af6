//! The text of pg_oncall's audit records: log lines `pg_oncall: <word> key=value ...`, with
//! values quoted and escaped so that no role name, email, reason or statement can forge a field
//! or a line; and the note an elevation puts on the user's PagerDuty incidents.

/// One audit line from its decision word and its fields, in order.
pub fn line(word: &str, fields: &[(&str, &str)]) -> String {
    let mut out = format!("pg_oncall: {word}");
    for (key, value) in fields {
        out.push(' ');
        out.push_str(key);
        out.push('=');
        out.push_str(&field(value));
    }
    out
}

/// A value: bare when it is a plain token, else double-quoted with `"`, `\`, line breaks and
/// every other control character escaped. An empty value is `""`.
pub fn field(value: &str) -> String {
    let bare = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "@._-+:".contains(c));
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
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Cuts `text` to at most `max_bytes` bytes on a character boundary; true when it was cut.
pub fn truncate(text: &str, max_bytes: usize) -> (&str, bool) {
    if text.len() <= max_bytes {
        return (text, false);
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

/// The note an elevation puts on each of the user's open incidents (DESIGN.md, "Notes on the
/// incident"): `alice@example.com assumed prod_admin on <cluster>/<database> at <time>; reason:
/// …`. The time is `at_us` (µs since 1970) in UTC to the millisecond, RFC 3339, so that readers
/// in every time zone agree and two elevations of one user within a second still differ (the
/// worker recognises a note it may already have posted by its text). Without a reason:
/// `reason: none given`.
pub fn incident_note(identity: &str, role: &str, cluster: &str, database: &str, at_us: i64, reason: Option<&str>) -> String {
    let at = chrono::DateTime::from_timestamp_micros(at_us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| "an unknown time".into());
    let reason = reason.map(str::trim).filter(|r| !r.is_empty()).unwrap_or("none given");
    format!("{identity} assumed {role} on {cluster}/{database} at {at}; reason: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tokens_stay_bare() {
        assert_eq!(field("alice@example.com"), "alice@example.com");
        assert_eq!(field("prod_admin"), "prod_admin");
        assert_eq!(field("2026-12-01"), "2026-12-01");
    }

    #[test]
    fn anything_else_is_quoted_and_escaped() {
        assert_eq!(field(""), "\"\"");
        assert_eq!(field("not on call"), "\"not on call\"");
        assert_eq!(field("a\"b"), "\"a\\\"b\"");
        assert_eq!(field("a\\b"), "\"a\\\\b\"");
        assert_eq!(field("x\ny"), "\"x\\ny\"");
        assert_eq!(field("x\ry"), "\"x\\ry\"");
        assert_eq!(field("x\u{1b}[31m"), "\"x\\u{1b}[31m\"");
        assert_eq!(field("x\u{2028}y"), "\"x\\u{2028}y\"");
    }

    #[test]
    fn a_hostile_value_cannot_add_a_field_or_a_line() {
        let forged = "bob identity=alice@example.com\n2026-12-01 LOG:  pg_oncall: allow role=prod_admin";
        let text = line("deny", &[("role", "prod_admin"), ("session_user", forged), ("route", "set_role")]);
        assert_eq!(text.lines().count(), 1);
        let keys: Vec<String> = keys_of(&text);
        assert_eq!(keys, ["role", "session_user", "route"], "{text}");
    }

    /// The keys of a line as a reader that honours the quoting sees them.
    fn keys_of(line: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut rest = line.strip_prefix("pg_oncall: ").unwrap();
        rest = &rest[rest.find(' ').unwrap() + 1..];
        while !rest.is_empty() {
            let eq = rest.find('=').unwrap();
            keys.push(rest[..eq].to_owned());
            rest = &rest[eq + 1..];
            let end = if let Some(quoted) = rest.strip_prefix('"') {
                let mut i = 0;
                let bytes = quoted.as_bytes();
                while bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i + 2
            } else {
                rest.find(' ').unwrap_or(rest.len())
            };
            rest = rest[end..].trim_start();
        }
        keys
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("abc", 5), ("abc", false));
        assert_eq!(truncate("abcdef", 3), ("abc", true));
        assert_eq!(truncate("aé", 2), ("a", true));
    }

    #[test]
    fn incident_note_text() {
        let at = 1_796_120_103_123_456; // 2026-12-01T10:15:03.123456Z
        assert_eq!(
            incident_note("alice@example.com", "prod_admin", "main", "shop", at, Some("INC-1234: disk full on db-3")),
            "alice@example.com assumed prod_admin on main/shop at 2026-12-01T10:15:03.123Z; reason: INC-1234: disk full on db-3"
        );
        assert!(incident_note("a@x", "r", "c", "d", at, None).ends_with("; reason: none given"));
        assert!(incident_note("a@x", "r", "c", "d", at, Some("  ")).ends_with("; reason: none given"));
    }
}
