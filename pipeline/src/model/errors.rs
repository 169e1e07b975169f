//! What a multi-line error says: the exception types, the message and the task that was
//! running, read from an ExchangeSetup.log `[ERROR]` entry or a custom action's output block.
//!
//! Only the lines of one error reach these functions (at most a block's bound), never the
//! lines of a whole log.

use crate::finding::EvidenceLine;
use std::collections::BTreeMap;

/// Spans of the .NET exception type names on `t`, qualified or not
/// (`System.Management.Automation.CommandNotFoundException`), left to right.
///
/// A name is a dotted run of identifiers whose last one ends in `Exception` (and is longer
/// than that), standing alone: what the regex
/// `(?:^|[^\w.])((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*Exception)\b` finds (the tests hold it to
/// that), at the speed of a SIMD search for `Exception`: the regex was a tenth of a scan of
/// failed setups.
fn exceptions(t: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    const WORD: &str = "Exception";
    let b = t.as_bytes();
    let mut finder = memchr::memmem::find_iter(b, WORD.as_bytes()).peekable();
    std::iter::from_fn(move || loop {
        let at = finder.next()?;
        // The token (a maximal run of word characters and dots) holding this occurrence.
        let start = t[..at]
            .char_indices()
            .rev()
            .take_while(|&(_, c)| is_word(c) || c == '.')
            .last()
            .map_or(at, |(i, _)| i);
        let token_end = t[at..]
            .char_indices()
            .find(|&(_, c)| !(is_word(c) || c == '.'))
            .map_or(t.len(), |(i, _)| at + i);
        // The longest name of the token wins (the regex is greedy); later occurrences of
        // `Exception` in the same token are spent with it.
        let mut best = None;
        let mut end = at + WORD.len();
        loop {
            if t[end..].chars().next().is_none_or(|c| !is_word(c)) && is_name(&t[start..end]) {
                best = Some(end);
            }
            match finder.peek() {
                Some(&next) if next + WORD.len() <= token_end => {
                    end = next + WORD.len();
                    finder.next();
                }
                _ => break,
            }
        }
        if let Some(end) = best {
            return Some((start, end));
        }
    })
}

/// `\w` as the regex crate reads it, near enough for type names in logs.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Dotted identifiers, the last ending in `Exception` with something before it.
fn is_name(s: &str) -> bool {
    let ident = |p: &str| {
        p.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && p.chars().all(is_word)
    };
    let last = s.rsplit('.').next().unwrap_or(s);
    last.len() > "Exception".len() && s.split('.').all(ident)
}

/// Titles and messages longer than this are cut with `…`.
const MAX_TEXT: usize = 240;

/// Cuts `s` to [`MAX_TEXT`] characters, marking the cut.
pub(crate) fn short(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}…", s[..i].trim_end()),
        None => s.to_string(),
    }
}

/// The fields of an error entry (ExchangeSetup.log `[ERROR]` entry, first line first):
/// `exception`, `inner_exceptions`, `error_message`, `task`, and `error_title`, the error in
/// one line (`CommandNotFoundException: The term ...`).
pub(crate) fn error_fields(lines: &[EvidenceLine]) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    let Some(first) = lines.first() else {
        return f;
    };
    // `The following error was generated when "$error.Clear(); <script>" was run: "<error>".`
    const GENERATED: &str = "The following error was generated when \"";
    let head = first
        .text
        .find("[ERROR] ")
        .map(|i| &first.text[i + "[ERROR] ".len()..])
        // setup.exe's console: `.\setup.exe : The following error ...` from a PowerShell host.
        .or_else(|| first.text.find(GENERATED).map(|i| &first.text[i..]))
        .unwrap_or(first.text.as_str());
    if let Some(script) = head.strip_prefix(GENERATED) {
        let mut body = script
            .trim_start()
            .trim_start_matches("$error.Clear();")
            .trim();
        // PowerShell's own error record (`At line:2 char:1`, `+ ...`) is not the script.
        let mut rest = lines[1..]
            .iter()
            .map(|l| l.text.trim())
            .filter(|l| !l.starts_with("At line:") && !l.starts_with('+'));
        while body.is_empty() || body.starts_with('"') {
            match rest.next() {
                Some(l) if !l.starts_with("\" was run") => body = l,
                _ => break,
            }
        }
        let task = body.split(" was run").next().unwrap_or(body);
        let task = task.trim_end_matches(['"', ';']).trim();
        if !task.is_empty() && !task.starts_with('"') {
            f.insert("task".into(), short(task));
        }
    }
    let mut exception: Option<(String, String)> = None;
    let mut inner: Vec<String> = Vec::new();
    for l in lines {
        let t = l.text.as_str();
        // Inner exceptions follow `--->`; the outermost is the first type with a message.
        // memmem, not `str::find`: this runs on every line of every entry, and `find` builds
        // its searcher each time.
        if let Some(i) = memchr::memmem::find(t.as_bytes(), b"--->") {
            let rest = &t[i + 4..];
            if let Some((a, b)) = exceptions(rest).next() {
                let name = rest[a..b].to_string();
                if !inner.contains(&name) {
                    inner.push(name);
                }
            }
            if exception.is_some() {
                continue;
            }
        }
        if exception.is_some() || t.trim_start().starts_with("at ") {
            continue;
        }
        for (a, b) in exceptions(t) {
            if let Some(msg) = t[b..].strip_prefix(": ") {
                let msg = msg.trim().trim_end_matches("\".").trim_end_matches('"');
                exception = Some((t[a..b].to_string(), msg.to_string()));
                break;
            }
        }
    }
    let message = match &exception {
        Some((_, msg)) if !msg.is_empty() => Some(msg.clone()),
        _ if !head.starts_with(GENERATED) && !head.trim().is_empty() => Some(head.to_string()),
        _ => None,
    };
    if let Some((e, _)) = &exception {
        f.insert("exception".into(), e.clone());
    }
    if !inner.is_empty() {
        f.insert("inner_exceptions".into(), inner.join(", "));
    }
    if let Some(m) = &message {
        f.insert("error_message".into(), short(m));
    }
    let title = match (&exception, &message) {
        (Some((e, _)), Some(m)) => format!("{}: {}", short_type(e), m),
        (Some((e, _)), None) => short_type(e).to_string(),
        (None, Some(m)) => m.clone(),
        (None, None) => String::new(),
    };
    if !title.is_empty() {
        f.insert("error_title".into(), short(&title));
    }
    f
}

/// The first exception type on `t` that is followed by its message (`X.YException: ...`).
pub(crate) fn exception_type(t: &str) -> Option<String> {
    exceptions(t)
        .find(|&(_, b)| t[b..].starts_with(": "))
        .map(|(a, b)| t[a..b].to_string())
}

/// `CommandNotFoundException` from `System.Management.Automation.CommandNotFoundException`.
pub(crate) fn short_type(t: &str) -> &str {
    t.rsplit('.').next().unwrap_or(t)
}

/// The fields of a custom action's output block: `exception` (the first .NET or PowerShell
/// exception type it printed) and `action_error` (its first line carrying an HRESULT or error
/// code, e.g. `CAQuietExec:  Error 0x80070001: Command line returned an error.`).
pub(crate) fn output_fields(lines: &[EvidenceLine]) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    for l in lines {
        let t = l.text.as_str();
        if t.starts_with("MSI (") {
            continue;
        }
        if !f.contains_key("action_error") && has_hresult(t) {
            f.insert("action_error".into(), short(t));
        }
        if !f.contains_key("exception") {
            if let Some((a, b)) = exceptions(t).next() {
                f.insert("exception".into(), t[a..b].to_string());
            }
        }
    }
    f
}

/// True when `t` holds an HRESULT-like `0x8xxxxxxx`.
fn has_hresult(t: &str) -> bool {
    let b = t.as_bytes();
    memchr::memmem::find_iter(b, b"0x").any(|i| {
        let h = &b[i + 2..];
        h.len() >= 8 && h[..8].iter().all(u8::is_ascii_hexdigit) && h[0] == b'8'
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition [`exceptions`] is held to.
    fn by_regex(t: &str) -> Vec<(usize, usize)> {
        let re =
            regex::Regex::new(r"(?:^|[^\w.])((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*Exception)\b").unwrap();
        re.captures_iter(t)
            .map(|c| c.get(1).unwrap())
            .map(|m| (m.start(), m.end()))
            .collect()
    }

    #[test]
    fn exception_names_are_found_as_the_regex_finds_them() {
        for t in [
            "System.Management.Automation.CommandNotFoundException: The term",
            "---> System.IO.IOException: x ---> Foo.BarException",
            "System.Exception: no",
            "A.FooException.BarException: both",
            "A.1x.FooException, .FooException _Under_Exception",
            "FooExceptionBar FooException_ FooException.",
            "ÄFooException éBarException Microsoft.Exchange.DataException",
        ] {
            assert_eq!(exceptions(t).collect::<Vec<_>>(), by_regex(t), "{t}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn exception_names_match_the_regex_on_any_text(
            parts in prop::collection::vec(
                prop::sample::select(vec![
                    "Exception", "Foo", "x", "1", "_", ".", " ", ":", "é", "Ex", "ception",
                    "System.", "-->", "\t",
                ]),
                0..24,
            )
        ) {
            let t: String = parts.concat();
            prop_assert_eq!(exceptions(&t).collect::<Vec<_>>(), by_regex(&t), "{}", t);
        }
    }

    fn ev(lines: &[&str]) -> Vec<EvidenceLine> {
        lines
            .iter()
            .enumerate()
            .map(|(i, t)| EvidenceLine {
                line: i as u64 + 1,
                text: t.to_string(),
            })
            .collect()
    }

    #[test]
    fn a_generated_error_gives_task_exception_and_message() {
        let f = error_fields(&ev(&[
            "[12/17/2021 16:51:06.0806] [1] [ERROR] The following error was generated when \"$error.Clear();",
            "          & $RoleBinPath\\ServiceControl.ps1 -Operation:DisableServices;",
            "        \" was run: \"System.Management.Automation.CommandNotFoundException: The term 'where.exe' is not recognized as the name of a cmdlet.",
            "   at System.Management.Automation.CommandDiscovery.LookupCommandInfo(String commandName)\".",
        ]));
        assert_eq!(
            f["exception"],
            "System.Management.Automation.CommandNotFoundException"
        );
        assert_eq!(
            f["error_message"],
            "The term 'where.exe' is not recognized as the name of a cmdlet."
        );
        assert_eq!(
            f["task"],
            "& $RoleBinPath\\ServiceControl.ps1 -Operation:DisableServices"
        );
        assert!(f["error_title"].starts_with("CommandNotFoundException: The term 'where.exe'"));
        assert!(!f.contains_key("inner_exceptions"));
    }

    #[test]
    fn inner_exceptions_follow_arrows_and_a_plain_error_is_its_message() {
        let f = error_fields(&ev(&[
            "[03/11/2021 16:01:24.0362] [1] [ERROR] The following error was generated when \"$error.Clear(); Start-SetupService -ServiceName MSExchangeServiceHost\" was run: \"Microsoft.Exchange.Configuration.Tasks.ServiceDisabledException: The service is disabled. ---> System.ComponentModel.Win32Exception: The service cannot be started\".",
        ]));
        assert_eq!(
            f["exception"],
            "Microsoft.Exchange.Configuration.Tasks.ServiceDisabledException"
        );
        assert_eq!(
            f["inner_exceptions"],
            "System.ComponentModel.Win32Exception"
        );
        assert_eq!(
            f["task"],
            "Start-SetupService -ServiceName MSExchangeServiceHost"
        );
        let f = error_fields(&ev(&[
            "[03/11/2021 16:01:24.0362] [1] [ERROR] The service cannot be started, either because it is disabled",
        ]));
        assert_eq!(
            f["error_message"],
            "The service cannot be started, either because it is disabled"
        );
        assert!(!f.contains_key("exception"));
    }

    #[test]
    fn output_fields_find_the_hresult_line_in_any_language() {
        let f = output_fields(&ev(&[
            "MSI (s) (60:A0) [06:21:13:123]: Invoking remote custom action. Entrypoint: CAQuietExec",
            "CAQuietExec: エラー 0x80070001: コマンド ・ ラインにエラーが返されます。",
            "CAQuietExec:  File C:\\x.ps1 cannot be loaded. + FullyQualifiedErrorId : UnauthorizedAccess, System.Management.Automation.PSSecurityException",
        ]));
        assert!(f["action_error"].contains("0x80070001"));
        assert_eq!(
            f["exception"],
            "System.Management.Automation.PSSecurityException"
        );
    }
}
