//! Property tests in place of fuzzing (`cargo fuzz` needs a nightly compiler that CI does not
//! have): arbitrary bytes and structured mutations of real logs and rule files into the
//! decoder, the framer, the three log models and the rule-file parser. Nothing panics, errors
//! name the file, rule and field, and the result never depends on how the input is split.
//!
//! Case counts are small (the whole module runs in seconds); proptest prints the failing
//! input and its seed, and found cases are kept as unit tests at the end.

use std::sync::Arc;

use crate::common::{catalog, fixture, utf16le_bom};
use patchwatch_pipeline::decode::{display_line, sniff};
use patchwatch_pipeline::{
    collect, CatalogBuilder, FileScanner, LogKind, RulesError, ScanContext, ScanOutput,
};
use proptest::prelude::*;

/// Real input of each log model: what mutations start from.
fn seeds() -> Vec<(LogKind, &'static str, Vec<u8>)> {
    static SEEDS: std::sync::OnceLock<Vec<(LogKind, &'static str, Vec<u8>)>> =
        std::sync::OnceLock::new();
    SEEDS
        .get_or_init(|| {
            let read = |rel: &str| std::fs::read(fixture(rel)).unwrap();
            let exchange = read("exchange/ExchangeSetup_Service_Disabled.log");
            let msi = read("real/msi/collectdwin-error1920-service-start.excerpt.log");
            let msi16 = utf16le_bom(&String::from_utf8_lossy(&msi));
            let sc = patchwatch_pipeline::sample::service_control_log("01/02/2024", 3600, true);
            vec![
                (LogKind::ExchangeSetup, "ExchangeSetup.log", exchange),
                (LogKind::Msi, "MSI1a2b.LOG", msi),
                (LogKind::Msi, "MSI1a2b.LOG", msi16),
                (
                    LogKind::ServiceControl,
                    "ServiceControl.log",
                    sc.into_bytes(),
                ),
            ]
        })
        .clone()
}

/// An edit of a real log: what a torn write, a bit flip or a stray encoding does to it.
#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Flip(usize, u8),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let junk = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..40),
        prop::sample::select(vec![
            b"\r".to_vec(),
            b"\n".to_vec(),
            b"\r\r\n".to_vec(),
            vec![0],
            vec![0xFF, 0xFE],
            vec![0xEF, 0xBB, 0xBF],
            vec![0xD8, 0x00],
            b"[01/01/2024 00:00:00.0000] [0] ".to_vec(),
            b"=== Logging started: ".to_vec(),
        ]),
    ];
    prop_oneof![
        (any::<usize>(), junk).prop_map(|(at, b)| Edit::Insert(at, b)),
        (any::<usize>(), 1usize..300).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Flip(at, b)),
        (any::<usize>(), 1usize..2000).prop_map(|(at, n)| Edit::Duplicate(at, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len().max(1);
        match e {
            Edit::Insert(at, b) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            Edit::Flip(at, b) => {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] ^= b;
                }
            }
            Edit::Duplicate(at, n) => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                let copy = bytes[at.min(end)..end].to_vec();
                bytes.splice(end..end, copy);
            }
        }
    }
    bytes
}

/// Scans `bytes` fed in pieces cut at `cuts` (any order, any values).
fn scan(kind: Option<LogKind>, path: &str, bytes: &[u8], cuts: &[usize]) -> ScanOutput {
    let mut ctx = ScanContext::new("EX01", path);
    ctx.kind = kind;
    let mut s = FileScanner::new(catalog(), ctx);
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pos = 0;
    for c in cuts {
        s.feed(&bytes[pos..c]);
        pos = c;
    }
    s.feed(&bytes[pos..]);
    s.finish();
    collect(s)
}

/// What must not depend on chunking: every finding (id, rule, line), the runs, the counts.
fn essence(out: &ScanOutput) -> (Vec<String>, Vec<String>, u64, u64, usize) {
    let mut f: Vec<String> = out
        .findings
        .iter()
        .map(|f| format!("{} {} L{}", f.id, f.rule_id, f.line))
        .collect();
    f.sort();
    let runs = out
        .runs
        .iter()
        .map(|r| format!("{:?}", r.outcome))
        .collect();
    (
        f,
        runs,
        out.stats.lines,
        out.stats.bytes,
        out.diagnostics.len(),
    )
}

/// Lines of a buffer without NUL or BOM bytes, framed independently: LF, CRLF or a lone CR
/// ends a line, and a last line without an end counts.
fn reference_lines(bytes: &[u8]) -> u64 {
    let mut n = 0;
    let mut i = 0;
    let mut open = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                n += 1;
                open = false;
                i += 1;
            }
            b'\r' | b'\n' => {
                n += 1;
                open = false;
            }
            _ => open = true,
        }
        i += 1;
    }
    n + u64::from(open)
}

fn kinds() -> impl Strategy<Value = Option<LogKind>> {
    prop::sample::select(vec![
        None,
        Some(LogKind::ExchangeSetup),
        Some(LogKind::Msi),
        Some(LogKind::ServiceControl),
        Some(LogKind::Plain),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    /// Any bytes, any model: no panic, every byte counted, and the same result in pieces.
    #[test]
    fn arbitrary_bytes_scan_the_same_in_any_pieces(
        kind in kinds(),
        bytes in prop::collection::vec(any::<u8>(), 0..3000),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let whole = scan(kind, "x.log", &bytes, &[]);
        prop_assert_eq!(whole.stats.bytes, bytes.len() as u64);
        let pieces = scan(kind, "x.log", &bytes, &cuts);
        prop_assert_eq!(essence(&whole), essence(&pieces));
    }

    /// The framer against an independent one, on text without NULs or BOM bytes (which
    /// would make the decoder read UTF-16): the same number of lines, however it is cut.
    #[test]
    fn framing_counts_every_line_once(
        bytes in prop::collection::vec(
            prop_oneof![4 => 0x20u8..0x7F, 1 => Just(b'\r'), 1 => Just(b'\n'), 1 => 0x80u8..0xFE],
            0..2000,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let out = scan(Some(LogKind::Plain), "x.log", &bytes, &cuts);
        prop_assert_eq!(out.stats.lines, reference_lines(&bytes));
    }

    /// Real logs of each model, damaged: no panic, and the same result in pieces.
    #[test]
    fn damaged_real_logs_scan_the_same_in_any_pieces(
        which in 0usize..4,
        edits in prop::collection::vec(edit(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 1..8),
        forced in any::<bool>(),
    ) {
        let (kind, path, base) = seeds().swap_remove(which);
        let bytes = apply(base, &edits);
        let kind = forced.then_some(kind);
        let whole = scan(kind, path, &bytes, &[]);
        let pieces = scan(kind, path, &bytes, &cuts);
        prop_assert_eq!(essence(&whole), essence(&pieces));
    }

    /// The encoding sniffer and the display decoder take any bytes.
    #[test]
    fn sniff_and_display_take_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let d = sniff(&bytes);
        prop_assert!(d.bom_len <= bytes.len());
        let (text, _) = display_line(&bytes, encoding_rs::WINDOWS_1252);
        if let Ok(s) = std::str::from_utf8(&bytes) {
            prop_assert_eq!(text, s);
        }
    }
}

/// The built-in rule files, to be damaged.
fn rule_files() -> Vec<(&'static str, &'static str)> {
    patchwatch_pipeline::rules::BUILTIN.to_vec()
}

/// Loads one rule file on its own; returns the error, if any.
fn load(name: &str, text: &str) -> Option<RulesError> {
    let mut b = CatalogBuilder::new();
    b.add_str(name, text);
    b.build().err()
}

/// Every error names the file; a value error names rule and field too; a syntax error says
/// where (TOML errors carry line and column).
fn check_error(name: &str, e: &RulesError) -> Result<(), TestCaseError> {
    let shown = e.to_string();
    prop_assert!(
        shown.starts_with(name),
        "error does not name the file: {shown}"
    );
    match e {
        RulesError::Invalid { rule, field, .. } => {
            prop_assert!(!field.is_empty(), "no field: {shown}");
            prop_assert!(shown.contains(&format!("`{rule}`")), "no rule: {shown}");
        }
        RulesError::Syntax { message, .. } => {
            prop_assert!(
                message.contains("line "),
                "syntax error without a line: {shown}"
            );
        }
        _ => {}
    }
    Ok(())
}

/// Edits of a rule file's text: what a hand edit gets wrong.
#[derive(Debug, Clone)]
enum RuleEdit {
    DropLine(usize),
    /// Replaces the value after the `=` of a line with another (wrong type, empty, junk).
    Value(usize, String),
    DuplicateLine(usize),
    Insert(usize, String),
}

fn rule_edit() -> impl Strategy<Value = RuleEdit> {
    let value = prop_oneof![
        Just("\"\"".to_owned()),
        Just("42".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("\"(\"".to_owned()),
        Just("\"{unclosed\"".to_owned()),
        Just("\"nonsense-severity\"".to_owned()),
        "\"[ -~]{0,20}\"",
        "[ -~]{0,12}",
    ];
    prop_oneof![
        any::<usize>().prop_map(RuleEdit::DropLine),
        (any::<usize>(), value).prop_map(|(l, v)| RuleEdit::Value(l, v)),
        any::<usize>().prop_map(RuleEdit::DuplicateLine),
        (any::<usize>(), "[ -~]{0,30}").prop_map(|(l, s)| RuleEdit::Insert(l, s)),
    ]
}

fn edit_rules(text: &str, edits: &[RuleEdit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for e in edits {
        let n = lines.len().max(1);
        match e {
            RuleEdit::DropLine(l) if !lines.is_empty() => {
                lines.remove(l % n);
            }
            RuleEdit::Value(l, v) if !lines.is_empty() => {
                let line = &mut lines[l % n];
                if let Some(eq) = line.find('=') {
                    line.truncate(eq + 1);
                    line.push(' ');
                    line.push_str(v);
                }
            }
            RuleEdit::DuplicateLine(l) if !lines.is_empty() => {
                let copy = lines[l % n].clone();
                lines.insert(l % n, copy);
            }
            RuleEdit::Insert(l, s) => lines.insert(l % (lines.len() + 1), s.clone()),
            _ => {}
        }
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    /// Any text as a rule file: an error naming the file, never a panic.
    #[test]
    fn arbitrary_rule_files_give_named_errors(text in "\\PC{0,400}") {
        if let Some(e) = load("fuzz.toml", &text) {
            check_error("fuzz.toml", &e)?;
        }
    }

    /// Hand-edit damage to the real rule files: loaded, or refused with file, rule, field or
    /// line named.
    #[test]
    fn damaged_rule_files_give_named_errors(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec(rule_edit(), 1..4),
    ) {
        let files = rule_files();
        let (name, text) = files[which.index(files.len())];
        let text = edit_rules(text, &edits);
        if let Some(e) = load(name, &text) {
            check_error(name, &e)?;
        }
    }
}

/// A rule file that loads matches on every line of a real log, and its summary keeps its
/// literal brackets (an optional clause needs a placeholder).
#[test]
fn a_rule_on_every_line_with_an_odd_summary_scans() {
    let text = r#"
[[rule]]
id = "fuzz.odd"
title = "Odd"
severity = "high"
category = "services"
kinds = ["exchange_setup"]
anchors = ["] [0] "]
[rule.remediation]
summary = "Odd [text] here."
"#;
    let mut b = CatalogBuilder::new();
    b.add_str("odd.toml", text);
    let catalog = match b.build() {
        Ok(c) => Arc::new(c),
        Err(e) => panic!("{e}"),
    };
    let (kind, path, bytes) = seeds().swap_remove(0);
    let mut ctx = ScanContext::new("EX01", path);
    ctx.kind = Some(kind);
    let mut s = FileScanner::new(catalog, ctx);
    s.feed(&bytes);
    s.finish();
    let out = collect(s);
    assert!(out.findings.iter().any(|f| f.rule_id == "fuzz.odd"));
    assert!(out
        .findings
        .iter()
        .filter(|f| f.rule_id == "fuzz.odd")
        .all(|f| f.remediation.summary == "Odd [text] here."));
}

/// Found case: a broken BOM (`FF 0D 0D 0A FE`) before misaligned UTF-16. The encoding was
/// sniffed from the first 16 bytes when they came alone but from 4 KiB when the file came
/// whole: 4 lines and a failed run in pieces, 32 lines and no run whole.
#[test]
fn a_broken_bom_decodes_the_same_whole_and_in_pieces() {
    let (_, path, base) = seeds().swap_remove(2);
    let bytes = apply(
        base,
        &[
            Edit::Insert(468, vec![b'\r']),
            Edit::Insert(1, b"\r\r\n".to_vec()),
        ],
    );
    let whole = scan(None, path, &bytes, &[]);
    for cut in [1, 5, 16, 17, 100, 127, 128, 129] {
        assert_eq!(
            essence(&scan(None, path, &bytes, &[cut])),
            essence(&whole),
            "cut at {cut}"
        );
    }
}
