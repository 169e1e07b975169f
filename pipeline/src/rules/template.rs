//! Remediation templates: `{name}` placeholders, `{name|default}` and optional `[...]` clauses.
//!
//! - `{name}` is the value of a capture or run field.
//! - `{name|text}` is the value, or `text` when the value is unknown.
//! - `[text with {name}]` is an optional clause: rendered without its brackets when every
//!   placeholder in it (those without a default) has a value, dropped whole otherwise. Square
//!   brackets with no placeholder inside are literal text, so `[Rule:X]` needs no escaping.
//!   `[text with {name}|other text]` renders `other text` instead of dropping the clause.
//!   Clauses do not nest.
//! - `{name.exit_message}`, `.exit_cause`, `.exit_fix`, `.exit_class` read the value of `name`
//!   as an msiexec return value and give its documented meaning, cause and fix
//!   ([`crate::msi_codes`]); `.msi_message`, `.msi_cause`, `.msi_fix`, `.msi_class` do the same
//!   for an `Error NNNN.` / `Note: 1: NNNN` message number. Unknown codes count as no value.
//! - A bare `{name}` with no value renders as nothing (built-in rules never leave one outside a
//!   clause: the test suite checks it with [`bare_placeholders`]).
//!
//! A dropped piece takes a neighbouring space with it, so no doubled spaces or a space before
//! punctuation are left; rendered text never shows a placeholder or an "unknown" marker.

/// A placeholder name: letters, digits, `_` and `.` (`setting.X`).
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._".contains(c))
        // `{8}` in a regex-like text is a repetition, not a placeholder.
        && !s.chars().all(|c| c.is_ascii_digit())
}

/// One `{...}` at the start of `s` (which starts with `{`): (name, default, length).
fn parse_placeholder(s: &str) -> Option<(&str, Option<&str>, usize)> {
    let end = s.find('}')?;
    let inner = &s[1..end];
    let (name, default) = match inner.split_once('|') {
        Some((n, d)) => (n, Some(d)),
        None => (inner, None),
    };
    is_name(name).then_some((name, default, end + 1))
}

/// The `{name}` and `{name|default}` placeholder names in a template.
pub(crate) fn placeholders(t: &str) -> impl Iterator<Item = &str> {
    t.match_indices('{')
        .filter_map(|(i, _)| parse_placeholder(&t[i..]).map(|(n, _, _)| n))
}

/// Placeholders outside optional clauses and without a default: these render as nothing when
/// their value is unknown.
pub fn bare_placeholders(t: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth_clause = false;
    let mut i = 0;
    while i < t.len() {
        let rest = &t[i..];
        if rest.starts_with('[') && clause_at(rest).is_some() {
            depth_clause = true;
        } else if rest.starts_with(']') {
            depth_clause = false;
        } else if rest.starts_with('{') {
            if let Some((name, default, len)) = parse_placeholder(rest) {
                if !depth_clause && default.is_none() {
                    out.push(name.to_string());
                }
                i += len;
                continue;
            }
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    out
}

/// If `s` (starting with `[`) opens an optional clause, its body (between the brackets).
fn clause_at(s: &str) -> Option<&str> {
    let close = s.find(']')?;
    let body = &s[1..close];
    (!body.contains('[') && placeholders(body).next().is_some()).then_some(body)
}

/// The suffixes that read a value as a Windows Installer code.
pub const CODE_SUFFIXES: &[&str] = &[
    "exit_message",
    "exit_cause",
    "exit_fix",
    "exit_class",
    "msi_message",
    "msi_cause",
    "msi_fix",
    "msi_class",
];

/// `name.suffix` with a [`CODE_SUFFIXES`] suffix: the base name.
pub(crate) fn code_base(name: &str) -> Option<&str> {
    let (base, suffix) = name.rsplit_once('.')?;
    CODE_SUFFIXES.contains(&suffix).then_some(base)
}

/// The value of a `{name.suffix}` placeholder, from the code in `name`'s value.
fn code_value(name: &str, lookup: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let base = code_base(name)?;
    let code: u32 = lookup(base)?.trim().parse().ok()?;
    let suffix = &name[base.len() + 1..];
    let entry = if suffix.starts_with("exit_") {
        crate::msi_codes::exit(code)
    } else {
        crate::msi_codes::message(code).or_else(|| crate::msi_codes::exit(code))
    }?;
    Some(match &suffix[suffix.find('_').map_or(0, |i| i + 1)..] {
        "message" => entry.message_with(&[]),
        "cause" => entry.cause.clone(),
        "fix" => entry.fix.clone(),
        _ => entry.class.replace('_', " "),
    })
}

/// A clause body `main|alternative`: the first `|` outside a placeholder.
fn split_alternative(body: &str) -> (&str, Option<&str>) {
    let mut depth = 0u32;
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            '|' if depth == 0 => return (&body[..i], Some(&body[i + 1..])),
            _ => {}
        }
    }
    (body, None)
}

/// Renders a template (see the module doc) with values from `lookup`.
pub fn fill(t: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    // Most steps and links name no value: no need to walk them character by character.
    if !t.contains('{') {
        return t.to_owned();
    }
    let mut out = String::with_capacity(t.len());
    let full = |name: &str| lookup(name).or_else(|| code_value(name, &lookup));
    render(t, &full, &mut out, false);
    out
}

/// Renders `t` into `out`; in a clause, returns false as soon as a required value is missing.
fn render(
    t: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
    clause: bool,
) -> bool {
    let mut i = 0;
    while i < t.len() {
        let rest = &t[i..];
        if !clause && rest.starts_with('[') {
            if let Some(body) = clause_at(rest) {
                let (main, alternative) = split_alternative(body);
                let mut piece = String::new();
                if render(main, lookup, &mut piece, true) {
                    out.push_str(&piece);
                } else if let Some(alt) = alternative {
                    render(alt, lookup, out, false);
                } else {
                    dropped(out, &rest[body.len() + 2..]);
                }
                i += body.len() + 2;
                continue;
            }
        }
        if rest.starts_with('{') {
            if let Some((name, default, len)) = parse_placeholder(rest) {
                match lookup(name).filter(|v| !v.trim().is_empty()) {
                    Some(v) => out.push_str(&v),
                    None => match default {
                        Some(d) => out.push_str(d),
                        None if clause => return false,
                        None => dropped(out, &rest[len..]),
                    },
                }
                i += len;
                continue;
            }
        }
        // Literal text up to the next bracket or brace, in one piece; a bracket or brace that
        // opened nothing is literal too.
        let skip = usize::from(rest.starts_with(['[', '{']));
        let run = rest[skip..]
            .find(['[', '{'])
            .map_or(rest.len(), |n| n + skip);
        out.push_str(&rest[..run]);
        i += run;
    }
    true
}

/// After dropping a piece: the spaces before it go when what follows starts with a space or
/// punctuation (or nothing), so "run {x} now" and "run {x}." leave no doubled space or " .".
fn dropped(out: &mut String, next: &str) {
    if out.ends_with(' ')
        && (next.is_empty() || next.starts_with([' ', '.', ',', ';', ':', ')', '!', '?']))
    {
        let kept = out.trim_end_matches(' ').len();
        out.truncate(kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(t: &str, known: &[(&str, &str)]) -> String {
        fill(t, |n| {
            known
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn values_defaults_and_clauses() {
        let t = "[{product} ]{operation|installation} ended[ with status {exit_code}].";
        assert_eq!(r(t, &[]), "installation ended.");
        assert_eq!(
            r(
                t,
                &[
                    ("product", "Contoso"),
                    ("exit_code", "1612"),
                    ("operation", "repair")
                ]
            ),
            "Contoso repair ended with status 1612."
        );
        assert_eq!(r("Restart {host}.", &[]), "Restart.");
        assert_eq!(r("in[ site {s}| its site].", &[]), "in its site.");
        assert_eq!(r("in[ site {s}| its site].", &[("s", "A")]), "in site A.");
        assert_eq!(r("Run it on {host} now", &[]), "Run it on now");
        assert_eq!(
            r("keep [Rule:X] and {not a name} and {8} and {", &[]),
            "keep [Rule:X] and {not a name} and {8} and {"
        );
    }

    #[test]
    fn codes_read_from_the_table() {
        let s = r("[{rc.exit_message}][ {rc.exit_fix}]", &[("rc", "1602")]);
        assert!(s.starts_with("The user canceled installation."), "{s}");
        assert_eq!(r("x[ {rc.msi_cause}]", &[("rc", "99999")]), "x");
    }

    #[test]
    fn bare_placeholders_are_listed() {
        assert_eq!(
            bare_placeholders("[for {a} ]{b|x} {c} [d] {e}"),
            vec!["c".to_string(), "e".to_string()]
        );
    }
}
