//! Windows Installer logs (`msi-log.md`): a run is a `=== Verbose logging started` session, or
//! a `=== Logging started` one in non-verbose logs; its outcome is the last
//! `MainEngineThread is returning N` or `... success or error status: N.` (0, 3010 and 1641 are
//! success). The culprit of a failure is found by rules (custom action, `Error NNNN`, launch
//! condition); this model adds the outcome itself, and the fallback culprit when no rule named
//! one (the first failed custom action with its output, else the first `Error NNNN`).
//!
//! Localized logs: the phrases of `phrases.rs` are read like their English forms; a language
//! not in that table still gives an outcome and a culprit from what stays the same in every
//! language: `MainEngineThread is returning N`, a `Windows Installer ...: N` status line, and a
//! custom action's `CustomAction <name> <words> <code>` result line.

use std::collections::BTreeMap;

use super::errors::short;
use super::phrases::{self, Key, PHRASES};
use super::{between, find_ci, s, Boundary, Derived, Line, LogModel};
use crate::finding::{EvidenceLine, Outcome};
use crate::time::{clock, locale_date, Clock, Date, DayClock, NaiveTime};
use crate::RunSummary;

/// What the MSI model remembers about one run.
#[derive(Debug, Default)]
pub(crate) struct MsiRun {
    /// Started by a `=== Verbose logging started` header.
    verbose: bool,
    /// Started by a header at all (an excerpt may begin after it).
    headed: bool,
    /// The first product messages (`Product: X -- <message>`, any language), bounded: a
    /// launch condition's text and the outcome the user saw.
    product_lines: Vec<(EvidenceLine, u64)>,
    /// Date from the run header: the lines carry only a clock time.
    clock: DayClock,
    exit_code: Option<(i64, EvidenceLine, u64)>,
    summary_line: Option<(EvidenceLine, u64)>,
    failed_action: Option<String>,
    /// The first custom action that failed: name, code, result line and its offset.
    failed_ca: Option<(String, i64, EvidenceLine, u64)>,
    /// That action's output block and what it says (from the scanner).
    ca_block: Option<(Vec<EvidenceLine>, BTreeMap<String, String>)>,
    /// The first `Error NNNN.` dialog (any language): number, message, line, offset.
    first_error: Option<(i64, String, EvidenceLine, u64)>,
    /// `Return value N` of the last `Action ended ...: INSTALL.` line.
    top_level: Option<i64>,
}

impl LogModel for MsiRun {
    fn observe_line(&mut self, anchor: usize, line: &Line, sum: &mut RunSummary) -> Boundary {
        on_line(self, anchor, line, sum)
    }

    /// The engine's `=== Logging started` inside a running verbose session is not a new run.
    fn absorbs_start(&self, anchor: usize, sum: &RunSummary) -> bool {
        anchor == s::MSI_START && self.verbose && sum.outcome == Outcome::InProgress
    }

    /// True once an action failed (`Return value 3`, a custom action's error code), unless the
    /// log states a successful exit code.
    fn has_errors(&self) -> bool {
        match &self.exit_code {
            Some((c, _, _)) => !is_success(*c),
            None => self.failed_action.is_some(),
        }
    }

    fn derived_findings(&self, sum: &mut RunSummary) -> Vec<Derived> {
        let mut out = finalize(self, sum);
        if sum.outcome == Outcome::Failed {
            out.extend(culprit(self, sum));
            out.extend(launch_condition_message(self, sum));
        }
        out
    }

    /// The output block of a custom action's result line (`start_line` is that line).
    fn error_block(
        &mut self,
        start_line: u64,
        evidence: [&[EvidenceLine]; 2],
        fields: &BTreeMap<String, String>,
    ) {
        let is_failed_ca = self
            .failed_ca
            .as_ref()
            .is_some_and(|(_, _, l, _)| l.line == start_line);
        if is_failed_ca && self.ca_block.is_none() {
            self.ca_block = Some((evidence.concat(), fields.clone()));
        }
    }

    fn line_time(&self, line: &[u8]) -> Option<NaiveTime> {
        line_time(line, &self.clock)
    }

    fn saw_time(&mut self, t: NaiveTime) {
        self.clock.record(t);
    }
}

/// Product messages a run keeps (a failed run shows a handful).
const MAX_PRODUCT_LINES: usize = 16;

/// The message of a product line: the text after ` -- `.
fn product_message(t: &str) -> &str {
    t.split_once(" -- ").map_or("", |(_, m)| m.trim())
}

/// True when a product message is the outcome or an error dialog, not a package's own text.
fn is_outcome_message(m: &str) -> bool {
    let short = m.chars().count() <= 60;
    m.starts_with("Error ")
        || m.starts_with("Erreur ")
        || m.starts_with("エラー ")
        || (short
            && [
                "Installation",
                "Removal",
                "Configuration",
                "インストール",
                "削除",
                "構成",
            ]
            .iter()
            .any(|w| m.contains(w)))
}

/// The outcome the last product message states (`Product: X -- Installation completed
/// successfully.`, English), if any.
fn product_outcome(m: &MsiRun) -> Option<Outcome> {
    let (e, _) = m.product_lines.iter().rev().find(|(e, _)| {
        let msg = product_message(&e.text);
        is_outcome_message(msg) && !msg.starts_with("Error ")
    })?;
    let msg = product_message(&e.text);
    if find_ci(msg, "completed successfully").is_some() {
        Some(Outcome::Succeeded)
    } else if find_ci(msg, "failed").is_some() {
        Some(Outcome::Failed)
    } else {
        None
    }
}

/// A failed `LaunchConditions`: the package's own message (`Product: X -- <message>`), which
/// names the condition (a build, a prerequisite) better than the action's result line.
fn launch_condition_message(m: &MsiRun, sum: &RunSummary) -> Option<Derived> {
    let failed = m.failed_action.as_deref()?;
    if !failed.eq_ignore_ascii_case("LaunchConditions") {
        return None;
    }
    let (line, offset) = m
        .product_lines
        .iter()
        .find(|(e, _)| !is_outcome_message(product_message(&e.text)))?;
    let mut fields = sum.fields.clone();
    fields.insert("message".into(), short(product_message(&line.text)));
    Some(Derived {
        rule_id: "msi.launch-condition-message",
        line: line.line,
        offset: *offset,
        evidence: vec![line.clone()],
        fields,
    })
}

/// True for the exit codes Windows Installer treats as success.
pub(crate) fn is_success(code: i64) -> bool {
    matches!(code, 0 | 3010 | 1641)
}

fn outcome(m: &MsiRun) -> Outcome {
    match &m.exit_code {
        Some((c, _, _)) if is_success(*c) => Outcome::Succeeded,
        Some(_) => Outcome::Failed,
        None if m.failed_action.is_some() => Outcome::Failed,
        None => Outcome::Succeeded,
    }
}

fn on_line(m: &mut MsiRun, anchor: usize, line: &Line, sum: &mut RunSummary) -> Boundary {
    let t = line.text;
    match anchor {
        s::MSI_VERBOSE_START | s::MSI_START => {
            let verbose = anchor == s::MSI_VERBOSE_START;
            // The engine's own `=== Logging started` inside a verbose session is not a new run.
            if !verbose && m.verbose && sum.outcome == Outcome::InProgress {
                return Boundary::None;
            }
            if let Some((date, time)) = header_stamp(t.as_bytes()) {
                m.clock.start(date, time);
            }
            m.verbose = verbose;
            m.headed = true;
            if let Some(p) = between(t, "Calling process: ", " ===") {
                sum.fields.insert("calling_process".into(), p.to_string());
            }
            return Boundary::Start;
        }
        // Without its header (an excerpt) the log may be verbose: the client's outcome lines
        // follow the engine's `=== Logging stopped`, so the run goes on to the end.
        s::MSI_STOP if !m.verbose && m.headed => return Boundary::End(outcome(m)),
        s::MSI_VERBOSE_STOP => return Boundary::End(outcome(m)),
        s::MSI_RETURNING | s::MSI_STATUS => {
            let marker = if anchor == s::MSI_RETURNING {
                "is returning "
            } else {
                "error status: "
            };
            let code = find_ci(t, marker).and_then(|i| {
                let d: String = t[i + marker.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                d.parse::<i64>().ok()
            });
            if let Some(c) = code {
                m.exit_code = Some((c, line.evidence(), line.offset));
                sum.exit_code = Some(c);
                sum.fields.insert("exit_code".into(), c.to_string());
            }
        }
        s::MSI_ACTION_START => {
            if let Some(name) = t
                .split_once(": ")
                .map(|(_, r)| r.trim().trim_end_matches('.'))
            {
                if !name.is_empty() && t.starts_with("Action start") {
                    // One per action: reuse the allocation.
                    match &mut sum.phase {
                        Some(p) => {
                            p.clear();
                            p.push_str(name);
                        }
                        None => sum.phase = Some(name.to_string()),
                    }
                    set_running_action(sum, name);
                }
            }
        }
        // A deferred custom action runs inside InstallFinalize: its schedule line names it.
        s::MSI_CA_SCHEDULE => {
            if let Some(name) = between(t, "CustomActionSchedule(Action=", ",") {
                if !name.is_empty() {
                    set_running_action(sum, name);
                }
            }
        }
        s::MSI_RETURN_3 if m.failed_action.is_none() && t.starts_with("Action ended") => {
            if let Some(name) = t
                .split_once(": ")
                .and_then(|(_, r)| r.split_once(". Return"))
                .map(|(n, _)| n)
            {
                m.failed_action = Some(name.to_string());
                sum.fields.insert("failed_action".into(), name.to_string());
            }
        }
        s::MSI_TOP_LEVEL_END if t.starts_with("Action ended") => {
            m.top_level = t
                .rsplit_once("Return value ")
                .and_then(|(_, v)| v.trim_end_matches(['.', ' ']).parse().ok());
        }
        s::MSI_PROPERTY => {
            for (prop, field) in [
                ("ProductName", "product"),
                ("ProductVersion", "product_version"),
                ("ProductCode", "product_code"),
            ] {
                if let Some(v) = t
                    .strip_prefix("Property(S): ")
                    .and_then(|r| r.strip_prefix(prop))
                    .and_then(|r| r.strip_prefix(" = "))
                {
                    sum.fields.insert(field.into(), v.trim().to_string());
                    match field {
                        "product" => sum.product = Some(v.trim().to_string()),
                        "product_version" => sum.target_build = Some(v.trim().to_string()),
                        _ => {}
                    }
                }
            }
        }
        s::MSI_SUMMARY => {
            let op = ["installed", "reconfigured", "removed"]
                .into_iter()
                .find(|v| find_ci(t, &format!("Windows Installer {v} the product")).is_some());
            if let Some(op) = op {
                let op = match op {
                    "installed" => "install",
                    "reconfigured" => "reconfigure",
                    _ => "remove",
                };
                sum.mode = Some(op.to_string());
                sum.fields.insert("operation".into(), op.to_string());
            }
            if let Some(p) = between(t, "Product Name: ", ". Product Version") {
                sum.product = Some(p.to_string());
                sum.fields.insert("product".into(), p.to_string());
            }
            if let Some(v) = between(t, "Product Version: ", ". ") {
                sum.target_build = Some(v.to_string());
                sum.fields.insert("product_version".into(), v.to_string());
            }
            m.summary_line = Some((line.evidence(), line.offset));
        }
        s::MSI_CUSTOM_ACTION => {
            if let Some((name, code)) = custom_action_result(t) {
                // An action whose failure is ignored says so (in English) and ends with
                // `Return value 1`; a translated one is settled by the exit code, if any.
                if code != 0
                    && m.failed_ca.is_none()
                    && find_ci(t, "translated to success").is_none()
                {
                    m.failed_ca = Some((name.to_string(), code, line.evidence(), line.offset));
                    if m.failed_action.is_none() {
                        m.failed_action = Some(name.to_string());
                        sum.fields.insert("failed_action".into(), name.to_string());
                    }
                }
            }
        }
        s::MSI_INSTALLER => {
            if let Some(c) = trailing_status(t) {
                set_exit(m, c, line, sum);
            }
        }
        s::MSI_PRODUCT | s::MSI_PRODUCT_JA
            if m.product_lines.len() < MAX_PRODUCT_LINES && t.contains(" -- ") =>
        {
            m.product_lines.push((line.evidence(), line.offset));
        }
        s::MSI_ERROR_DIALOG if !t.starts_with("Property(") => {
            note_error(m, t, "-- Error ", line);
        }
        a if a >= s::MSI_PHRASE => {
            if let Some(p) = PHRASES.get(a - s::MSI_PHRASE) {
                on_phrase(m, p, line, sum);
            }
        }
        _ => {}
    }
    Boundary::None
}

/// A line that hit a localized phrase.
fn on_phrase(m: &mut MsiRun, p: &phrases::Phrase, line: &Line, sum: &mut RunSummary) {
    let t = line.text;
    match p.key {
        Key::ReturnValue => {
            if phrases::number_after(t, p.text) == Some(3) && m.failed_action.is_none() {
                // `操作終了 16:40:01: LaunchConditions。 戻り値 3。`: the action is between the
                // time's `: ` and the phrase.
                let before = &t[..t.find(p.text).unwrap_or(0)];
                if let Some(name) = before.rsplit(": ").next().filter(|n| !n.is_empty()) {
                    m.failed_action = Some(name.to_string());
                    sum.fields.insert("failed_action".into(), name.to_string());
                }
            }
        }
        Key::FinalStatus => {
            if let Some(c) = phrases::number_after(t, p.text) {
                set_exit(m, c, line, sum);
                m.summary_line = Some((line.evidence(), line.offset));
            }
        }
        Key::ErrorPrefix => note_error(m, t, p.text, line),
        Key::Message => {
            if let (Some(code), None) = (p.code, &m.first_error) {
                m.first_error = Some((code, t.trim().to_string(), line.evidence(), line.offset));
            }
        }
        Key::ProductSuccess => {}
    }
}

/// Records the action that started last (`running_action`): the output that follows is its
/// own, so a rule about that output can name it.
fn set_running_action(sum: &mut RunSummary, name: &str) {
    match sum.fields.get_mut("running_action") {
        Some(v) => {
            v.clear();
            v.push_str(name);
        }
        None => {
            sum.fields.insert("running_action".into(), name.to_string());
        }
    }
}

/// Records the run's exit code from a status line.
fn set_exit(m: &mut MsiRun, c: i64, line: &Line, sum: &mut RunSummary) {
    m.exit_code = Some((c, line.evidence(), line.offset));
    sum.exit_code = Some(c);
    sum.fields.insert("exit_code".into(), c.to_string());
}

/// Records the first `<prefix>NNNN. message` error dialog of the run.
fn note_error(m: &mut MsiRun, t: &str, prefix: &str, line: &Line) {
    if m.first_error.is_some() {
        return;
    }
    if let Some(code) = phrases::number_after(t, prefix) {
        let i = t.find(prefix).unwrap_or(0) + prefix.len();
        let msg = t[i..]
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start_matches(['.', '。'])
            .trim();
        m.first_error = Some((code, msg.to_string(), line.evidence(), line.offset));
    }
}

/// The status number ending a `Windows Installer <words>: N.` line in any language: the last
/// word, after a colon (`: 1603.`, ` : 1603.`, `: 1603。`).
fn trailing_status(t: &str) -> Option<i64> {
    let t = t.trim_end().trim_end_matches(['.', '。']).trim_end();
    let digits = t.len() - t.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits > 10 {
        return None;
    }
    let before = t[..t.len() - digits].trim_end();
    if !before.ends_with(':') && !before.ends_with('：') {
        return None;
    }
    t[t.len() - digits..].parse().ok()
}

/// The fallback culprit of a failed run: the first failed custom action with its output,
/// else the first error dialog, titled by what it says (the `msi.failed.*` rules, shown only
/// when no rule with a better priority names the cause).
fn culprit(m: &MsiRun, sum: &RunSummary) -> Option<Derived> {
    let mut fields = sum.fields.clone();
    if let Some((name, code, line, offset)) = &m.failed_ca {
        fields.insert("action".into(), name.clone());
        fields.insert("code".into(), code.to_string());
        let mut evidence = vec![line.clone()];
        if let Some((block, block_fields)) = &m.ca_block {
            evidence = block.clone();
            if !evidence.iter().any(|e| e.line == line.line) {
                evidence.push(line.clone());
            }
            for (k, v) in block_fields {
                fields.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        add_code_advice(&mut fields, *code);
        return Some(Derived {
            rule_id: "msi.failed.custom-action",
            line: line.line,
            offset: *offset,
            evidence,
            fields,
        });
    }
    let (code, message, line, offset) = m.first_error.as_ref()?;
    fields.insert("error_code".into(), code.to_string());
    if !message.is_empty() {
        fields.insert("error_message".into(), short(message));
    }
    let title = if message.is_empty() {
        format!("Error {code}")
    } else {
        format!("Error {code}: {message}")
    };
    fields.insert("error_title".into(), short(&title));
    add_code_advice(&mut fields, *code);
    Some(Derived {
        rule_id: "msi.failed.error",
        line: line.line,
        offset: *offset,
        evidence: vec![line.clone()],
        fields,
    })
}

/// What the documented Windows Installer codes table says about `code`: its class, cause
/// and fix (`error_class`, `cause`, `fix`, `code_message`).
fn add_code_advice(fields: &mut BTreeMap<String, String>, code: i64) {
    let Some(c) = u32::try_from(code).ok().and_then(crate::msi_codes::lookup) else {
        return;
    };
    fields.insert("error_class".into(), c.class.clone());
    fields.insert("cause".into(), c.cause.clone());
    fields.insert("fix".into(), c.fix.clone());
    fields.insert("code_message".into(), c.message_with(&[]));
}

fn finalize(m: &MsiRun, sum: &mut RunSummary) -> Vec<Derived> {
    if sum.outcome == Outcome::InProgress {
        sum.outcome = match m.exit_code {
            Some(_) => outcome(m),
            // A client-side tail may have no status line, only what the user was told; a log
            // cut before it (or Wine's, which writes none) may still end its top-level action.
            None => product_outcome(m)
                .or(match m.top_level {
                    Some(1) => Some(Outcome::Succeeded),
                    Some(3) => Some(Outcome::Failed),
                    _ => None,
                })
                .unwrap_or(Outcome::InProgress),
        };
    }
    let Some((code, ev, off)) = &m.exit_code else {
        return Vec::new();
    };
    let mut evidence = Vec::new();
    if let Some((s, _)) = &m.summary_line {
        evidence.push(s.clone());
    }
    // What the user was told (`Product: X -- Installation failed.`).
    if let Some((e, _)) = m
        .product_lines
        .iter()
        .rev()
        .find(|(e, _)| is_outcome_message(product_message(&e.text)))
    {
        evidence.push(e.clone());
    }
    evidence.push(ev.clone());
    evidence.sort_by_key(|e| e.line);
    evidence.dedup();
    let fields: BTreeMap<String, String> = sum.fields.clone();
    let rule_id = match code {
        3010 | 1641 => "msi.reboot-required",
        c if is_success(*c) => return Vec::new(),
        _ => "msi.install-failed",
    };
    let (line, offset) = m
        .summary_line
        .as_ref()
        .map(|(e, o)| (e.line, *o))
        .unwrap_or((ev.line, *off));
    vec![Derived {
        rule_id,
        line,
        offset,
        evidence,
        fields,
    }]
}

/// Date and time of a `=== Verbose logging started: 31.01.2022  21:24:31 ...` or
/// `=== Logging stopped: 2020/2/10  21:12:04 ===` line.
fn header_stamp(line: &[u8]) -> Option<(Date, Option<Clock>)> {
    if !line.starts_with(b"=== ") {
        return None;
    }
    let colon = memchr::memmem::find(line, b": ")?;
    let mut words = line[colon + 2..]
        .split(|&c| c == b' ')
        .filter(|w| !w.is_empty());
    let date = locale_date(words.next()?)?;
    Some((date, words.next().and_then(clock)))
}

/// Time of an engine line `MSI (s) (D0:A0) [21:24:36:744]: ...`, of an action line
/// `Action ended 21:24:37: ...` (or a translated one with the time as its second or third
/// word, `操作終了 16:40:01: ...`), on the run's header date moved on past midnight; or the
/// date and time of a `=== ... logging started/stopped` line.
fn line_time(line: &[u8], day: &DayClock) -> Option<NaiveTime> {
    if line.starts_with(b"=== ") {
        let ((y, mo, d), (h, mi, s, ms)) = match header_stamp(line)? {
            (date, Some(time)) => (date, time),
            _ => return None,
        };
        return Some(NaiveTime {
            y,
            mo,
            d,
            h,
            mi,
            s,
            ms,
        });
    }
    if line.starts_with(b"MSI (") {
        let at = memchr::memchr(b'[', &line[..line.len().min(24)])? + 1;
        return day.at(clock(&line[at..])?);
    }
    // Action lines: the time, followed by a colon, is the second or third word.
    let head = &line[..line.len().min(64)];
    memchr::memchr_iter(b' ', head)
        .take(2)
        .find_map(|sp| {
            let word = line[sp + 1..].split(|&c| c == b' ').next()?;
            (word.len() >= 8 && word.ends_with(b":")).then(|| clock(word))?
        })
        .and_then(|c| day.at(c))
}

/// A custom action's result line in any language: `CustomAction <name> <words> <code> ...`
/// (`CustomAction X returned actual error code 1603 (note ...)`, or translated,
/// `CustomAction X 1603 の実際のエラー コードが返されます...`): the action and the first number
/// after its name.
pub(crate) fn custom_action_result(line: &str) -> Option<(&str, i64)> {
    let rest = line.strip_prefix("CustomAction ")?;
    let (name, rest) = rest.split_once(' ')?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
    {
        return None;
    }
    let code = first_number(rest)?;
    Some((name, code))
}

/// The first whole number in `s` (digits not joined to letters, e.g. not `0x8007`).
fn first_number(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            let j = i + b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if j == b.len() || !b[j].is_ascii_alphanumeric() {
                return s[i..j].parse().ok();
            }
            i = j;
        } else {
            i += 1;
        }
    }
    None
}
