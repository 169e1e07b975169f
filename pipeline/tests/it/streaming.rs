//! The same findings whatever the chunk boundaries (including odd byte splits of UTF-16),
//! whatever the encoding and whatever the line endings; long lines; resuming.

use std::sync::Arc;

use crate::common::{catalog, fixture, utf16be_bom, utf16le_bom};
use patchwatch_pipeline::{
    collect, Catalog, FileScanner, Finding, LogKind, ResumePoint, ScanContext, ScanOutput,
};
use proptest::prelude::*;

fn scan_chunks(bytes: &[u8], cuts: &[usize]) -> ScanOutput {
    let mut s = FileScanner::new(catalog(), ScanContext::new("EX01", "ExchangeSetup.log"));
    let mut pos = 0;
    for &c in cuts {
        let c = c.min(bytes.len());
        if c > pos {
            s.feed(&bytes[pos..c]);
            pos = c;
        }
    }
    s.feed(&bytes[pos..]);
    s.finish();
    collect(s)
}

/// What must not change with encoding or line endings: rule, line, evidence, fields, fix.
fn essence(out: &ScanOutput) -> Vec<String> {
    let mut v: Vec<String> = out
        .findings
        .iter()
        .map(|f: &Finding| {
            format!(
                "{} L{} {:?} {:?} {}",
                f.rule_id, f.line, f.evidence, f.fields, f.remediation.summary
            )
        })
        .collect();
    v.sort();
    v
}

fn ids(out: &ScanOutput) -> Vec<String> {
    let mut v: Vec<_> = out.findings.iter().map(|f| f.id.clone()).collect();
    v.sort();
    v
}

fn sample() -> String {
    String::from_utf8(
        std::fs::read(fixture("exchange/ExchangeSetup_Service_Disabled.log")).unwrap(),
    )
    .unwrap()
}

fn small_sample() -> String {
    // Long enough to exercise every path, short enough for many proptest cases.
    sample()
        .lines()
        .skip(100)
        .take(41)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn encodings_and_line_endings_give_the_same_findings() {
    let lf = sample();
    let base = scan_chunks(lf.as_bytes(), &[]);
    assert!(base.findings.len() >= 3);
    let crlf = lf.replace('\n', "\r\n");
    let cr = lf.replace('\n', "\r");
    for (name, bytes) in [
        ("crlf", crlf.clone().into_bytes()),
        ("cr", cr.into_bytes()),
        ("utf16le", utf16le_bom(&crlf)),
        ("utf16be", utf16be_bom(&crlf)),
        (
            "utf8bom",
            [&[0xEF, 0xBB, 0xBF][..], crlf.as_bytes()].concat(),
        ),
    ] {
        let out = scan_chunks(&bytes, &[]);
        assert_eq!(essence(&out), essence(&base), "{name}");
        assert_eq!(out.runs.len(), base.runs.len(), "{name}");
        assert_eq!(out.runs[0].outcome, base.runs[0].outcome, "{name}");
    }
}

#[test]
fn byte_offsets_point_at_the_line_in_the_raw_file() {
    let crlf = sample().replace('\n', "\r\n");
    for bytes in [crlf.clone().into_bytes(), utf16le_bom(&crlf)] {
        let out = scan_chunks(&bytes, &[]);
        let f = out
            .findings
            .iter()
            .find(|f| f.rule_id == "exchange.error.service-disabled")
            .unwrap();
        let unit = if bytes[0] == 0xFF { 2 } else { 1 };
        let line_text = crlf.split("\r\n").nth(f.line as usize - 1).unwrap();
        let start = f.byte_offset as usize;
        let raw: Vec<u8> = if unit == 2 {
            line_text
                .encode_utf16()
                .flat_map(|u| u.to_le_bytes())
                .collect()
        } else {
            line_text.as_bytes().to_vec()
        };
        assert_eq!(&bytes[start..start + raw.len()], &raw[..]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn chunk_boundaries_do_not_matter_utf8(cuts in prop::collection::vec(0usize..6000, 0..12), crlf in any::<bool>()) {
        let mut text = small_sample();
        if crlf { text = text.replace('\n', "\r\n"); }
        let whole = scan_chunks(text.as_bytes(), &[]);
        let mut cuts = cuts; cuts.sort();
        let split = scan_chunks(text.as_bytes(), &cuts);
        prop_assert_eq!(ids(&split), ids(&whole));
        prop_assert_eq!(essence(&split), essence(&whole));
    }

    #[test]
    fn chunk_boundaries_do_not_matter_utf16(cuts in prop::collection::vec(0usize..12000, 0..12), be in any::<bool>()) {
        let text = small_sample().replace('\n', "\r\n");
        let bytes = if be { utf16be_bom(&text) } else { utf16le_bom(&text) };
        let whole = scan_chunks(&bytes, &[]);
        let mut cuts = cuts; cuts.sort();
        let split = scan_chunks(&bytes, &cuts);
        prop_assert_eq!(ids(&split), ids(&whole));
        prop_assert_eq!(essence(&split), essence(&whole));
    }
}

#[test]
fn one_byte_at_a_time_utf16() {
    let text = small_sample().replace('\n', "\r\n");
    let bytes = utf16le_bom(&text);
    let cuts: Vec<usize> = (1..bytes.len()).collect();
    assert_eq!(
        ids(&scan_chunks(&bytes, &cuts)),
        ids(&scan_chunks(&bytes, &[]))
    );
}

#[test]
fn a_flushed_partial_last_line_is_counted_in_raw_bytes() {
    // The scanner completes a partial last line with a terminator that is not in the file;
    // the processed offset must still be the file's length, in UTF-16 too (2 bytes a unit).
    for bytes in [
        b"first line\r\npartial".to_vec(),
        utf16le_bom("first line\r\npartial"),
        utf16be_bom("first line\r\npartial \u{e9}"),
    ] {
        let mut s = FileScanner::new(catalog(), ScanContext::new("h", "x.log"));
        s.feed(&bytes);
        s.flush();
        assert_eq!(s.processed_offset(), bytes.len() as u64);
    }
}

#[test]
fn a_900_kb_line_works_and_a_3_mib_line_is_truncated_not_lost() {
    let head = "[03/11/2021 16:01:24.0361] [1] [ERROR] The service cannot be started, ";
    let long_ok = format!("{head}{}System.ComponentModel.Win32Exception: The service cannot be started, either because it is disabled or because it has no enabled devices associated with it\n", "x".repeat(900_000));
    let out = scan_chunks(long_ok.as_bytes(), &[65536, 131072, 500_000]);
    assert!(out
        .findings
        .iter()
        .any(|f| f.rule_id == "exchange.error.service-disabled"));
    assert_eq!(out.stats.truncated_lines, 0);

    let huge = format!("[03/11/2021 16:01:24.0361] [1] {}\n[03/11/2021 16:01:25.0361] [1] [ERROR] Cannot start service MSExchangeServiceHost on computer '.'.\n", "y".repeat(3 << 20));
    let out = scan_chunks(huge.as_bytes(), &[1 << 20, 2 << 20]);
    assert_eq!(out.stats.truncated_lines, 1);
    assert!(out
        .diagnostics
        .iter()
        .any(|d| d.line == 1 && d.message.contains("longer than")));
    let f = out
        .findings
        .iter()
        .find(|f| f.rule_id == "exchange.error.cannot-start-service-host")
        .expect("line after the long one still scanned");
    assert_eq!(f.line, 2);
    assert_eq!(f.byte_offset as usize, huge.find("\n").unwrap() + 1);
}

#[test]
fn invalid_utf8_is_read_through_the_legacy_code_page() {
    let log = b"[03/11/2021 16:01:24.0362] [0] Logged on user: CONTOSO\\J\xfcrgen$.\n";
    let out = scan_chunks(log, &[]);
    let f = out
        .findings
        .iter()
        .find(|f| f.rule_id == "exchange.setup.admin-name-ends-with-dollar")
        .unwrap();
    assert!(f.evidence[0].text.contains("Jürgen$"), "{:?}", f.evidence);
    assert_eq!(out.stats.legacy_lines, 1);
}

#[test]
fn resuming_from_the_resume_point_gives_the_same_findings() {
    let text = sample().replace('\n', "\r\n");
    let bytes = utf16le_bom(&text);
    let whole = scan_chunks(&bytes, &[]);
    for cut in [bytes.len() / 3, bytes.len() / 2 + 1, bytes.len() - 7] {
        let mut first = FileScanner::new(catalog(), ScanContext::new("EX01", "ExchangeSetup.log"));
        first.feed(&bytes[..cut]);
        let point = first.resume_point();
        assert!(point.offset as usize <= cut);
        let mut seen = collect(first).findings;
        let mut second = FileScanner::resume(
            Arc::clone(&catalog()),
            ScanContext::new("EX01", "ExchangeSetup.log"),
            &point,
        );
        second.feed(&bytes[point.offset as usize..]);
        second.finish();
        seen.extend(collect(second).findings);
        let mut got: Vec<_> = seen.iter().map(|f| f.id.clone()).collect();
        got.sort();
        got.dedup();
        assert_eq!(got, ids(&whole), "cut at {cut}");
    }
}

#[test]
fn a_paused_scanner_keeps_the_lines_evidence_looks_back_to() {
    // When the writer pauses, the scanner gives back its buffers and keeps only as many lines
    // as the longest `before` of any rule; a match after the pause still shows them.
    let mut b = patchwatch_pipeline::CatalogBuilder::new().with_builtin();
    b.add_str(
        "site.toml",
        r#"[[rule]]
id = "site.look-back"
title = "Looks back six lines"
severity = "low"
kinds = ["exchange_setup"]
anchors = ["CONTOSO-MAGIC"]
evidence = { before = 6, after = 0 }
remediation = { summary = "s" }
"#,
    );
    let catalog = Arc::new(b.build().expect("valid"));
    let mut ctx = ScanContext::new("h", "ExchangeSetup.log");
    ctx.kind = Some(patchwatch_pipeline::LogKind::ExchangeSetup);
    let mut s = FileScanner::new(catalog, ctx);
    let mut text = String::new();
    for i in 1..=200 {
        text.push_str(&format!("[03/06/2021 15:15:02.0001] [1] filler {i}\r\n"));
    }
    s.feed(text.as_bytes());
    s.flush_pending();
    s.feed(b"[03/06/2021 15:15:03.0001] [1] CONTOSO-MAGIC\r\n");
    s.flush();
    let f = s
        .drain_events()
        .into_iter()
        .find_map(|e| match e {
            patchwatch_pipeline::Event::Finding(f) if f.rule_id == "site.look-back" => Some(f),
            _ => None,
        })
        .expect("rule fires");
    let lines: Vec<u64> = f.evidence.iter().map(|e| e.line).collect();
    assert_eq!(lines, (195..=201).collect::<Vec<u64>>());
    assert!(
        f.evidence[0].text.ends_with("filler 195"),
        "{:?}",
        f.evidence
    );
}

/// Past a few MiB the catalog's matcher is tuned to the log being read (its Teddy layout):
/// the findings must be exactly those of a scan that never tunes (fed in pieces too small to
/// tune on).
#[test]
fn tuning_the_matcher_mid_scan_changes_no_finding() {
    use patchwatch_pipeline::sample::exchange::{rule_names, upgrade_run};
    let failing = sample();
    let rules = rule_names(&[failing.as_str()]);
    let mut text = String::new();
    let mut seed = 0;
    while text.len() < 6 << 20 {
        text.push_str(&upgrade_run(seed, 1500, &rules));
        text.push_str(&failing);
        seed += 1;
    }
    let scan = |feed: usize| {
        let catalog = Arc::new(Catalog::builtin());
        let ctx = ScanContext::new("EX01", "ExchangeSetup.log");
        let mut s = FileScanner::new(Arc::clone(&catalog), ctx);
        for piece in text.as_bytes().chunks(feed) {
            s.feed(piece);
        }
        s.finish();
        (collect(s), catalog.is_tuned(LogKind::ExchangeSetup))
    };
    let (tuned, was_tuned) = scan(1 << 20);
    let (plain, plain_tuned) = scan(32 << 10);
    assert!(was_tuned, "1 MiB pieces past 4 MiB should tune the matcher");
    assert!(!plain_tuned, "32 KiB pieces are too small to tune on");
    assert!(
        plain.findings.len() >= seed as usize,
        "{}",
        plain.findings.len()
    );
    assert_eq!(ids(&tuned), ids(&plain));
    assert_eq!(essence(&tuned), essence(&plain));
}

/// A catalog compiles a kind's matcher only when a log of that kind is matched: a scan of one
/// ExchangeSetup.log builds one matcher of four.
#[test]
fn only_the_kinds_read_get_a_matcher() {
    let catalog = Arc::new(Catalog::builtin());
    assert_eq!(catalog.built_kinds(), []);
    let bytes = std::fs::read(fixture("exchange/ExchangeSetup_Service_Disabled.log")).unwrap();
    let mut s = FileScanner::new(
        Arc::clone(&catalog),
        ScanContext::new("EX01", "ExchangeSetup.log"),
    );
    s.feed(&bytes);
    s.finish();
    assert!(!collect(s).findings.is_empty());
    assert_eq!(catalog.built_kinds(), [LogKind::ExchangeSetup]);
}

/// A restart at any line gives the findings of one whole scan, in three layouts: a run read
/// from its header, a run whose header was not seen (as in a log cut by rotation), and an ended
/// run that still takes later lines. A once-per-run rule (here the virtual directory's
/// `ManagementObjectNotFoundException`, logged several times) must not fire again after the
/// restart, and the runs must end the same way.
#[test]
fn resuming_at_any_line_of_a_failed_setup_gives_the_same_findings() {
    let log = std::fs::read(fixture("exchange/ExchangeSetup_Vdir_1.log")).unwrap();
    // The same attempt without its first two lines (its header): a run whose start was not
    // seen, as in a log cut by rotation.
    let headless: Vec<u8> = log
        .split_inclusive(|&b| b == b'\n')
        .skip(2)
        .flatten()
        .copied()
        .collect();
    // An attempt that ended, followed by lines of another without its header (as when a log
    // was appended to in pieces): the ended run takes them.
    let tail: Vec<u8> = log
        .split_inclusive(|&b| b == b'\n')
        .skip(60)
        .flatten()
        .copied()
        .collect();
    for bytes in [
        [log.as_slice(), log.as_slice()].concat(),
        [headless.as_slice(), log.as_slice()].concat(),
        [log.as_slice(), tail.as_slice()].concat(),
    ] {
        resume_everywhere(&bytes);
    }
}

/// Restarts the scan of `bytes` after each line and checks the findings against one scan.
fn resume_everywhere(bytes: &[u8]) {
    let whole = scan_chunks(bytes, &[]);
    let ctx = || ScanContext::new("EX01", "ExchangeSetup.log");
    let ends = bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1);
    for cut in ends {
        let mut first = FileScanner::new(catalog(), ctx());
        first.feed(&bytes[..cut]);
        first.flush_pending();
        let point = first.resume_point();
        // The point goes through JSON, as an agent's checkpoint does.
        let point: ResumePoint =
            serde_json::from_str(&serde_json::to_string(&point).unwrap()).unwrap();
        let before = collect(first);
        let mut second = FileScanner::resume(catalog(), ctx(), &point);
        second.feed(&bytes[point.offset as usize..]);
        second.finish();
        let after = collect(second);
        let mut got: Vec<_> = before
            .findings
            .iter()
            .chain(&after.findings)
            .map(|f| f.id.clone())
            .collect();
        got.sort();
        got.dedup();
        assert_eq!(got, ids(&whole), "restart after byte {cut}");
        // A run's last report wins, as in the aggregator's store.
        let mut runs = std::collections::BTreeMap::new();
        for r in before.runs.iter().chain(&after.runs) {
            runs.insert(r.run_id.clone(), (r.index, r.outcome, r.exit_code));
        }
        let want: std::collections::BTreeMap<_, _> = whole
            .runs
            .iter()
            .map(|r| (r.run_id.clone(), (r.index, r.outcome, r.exit_code)))
            .collect();
        assert_eq!(runs, want, "runs, restart after byte {cut}");
    }
}
