//! patchwatch-pipeline: reads Exchange setup and Windows Installer logs, in any encoding, and
//! says what went wrong, why, and how to fix it.
//!
//! # Brief overview
//! - [`decode`] sniffs the encoding (BOM, BOM-less UTF-16, UTF-8 with a legacy code page
//!   fallback) and transcodes UTF-16 to UTF-8 in chunks.
//! - [`matcher`] finds every rule anchor in whole buffers with a two-stage Aho-Corasick search.
//! - [`rules`] holds the rule format, its validation and the embedded built-in [`Catalog`].
//! - The log models (ExchangeSetup.log, MSI, ServiceControl.log) split files into runs and run
//!   the checks that need a whole run; [`FileScanner`] ties it all together and emits
//!   [`Event`]s: [`Finding`]s and [`RunSummary`] updates.
//!
//! This crate opens no sockets, reads no clock and knows nothing of tokio, gRPC or storage.
//! It reads one kind of file only: a rule file named to [`CatalogBuilder::add_file`], kept for
//! callers that load rules by path ([`CatalogBuilder::add_str`] takes the text instead).
//!
//! ```
//! use std::sync::Arc;
//! use patchwatch_pipeline::{Catalog, Event, FileScanner, ScanContext};
//!
//! let catalog = Arc::new(Catalog::builtin());
//! let mut scanner = FileScanner::new(catalog, ScanContext::new("EX01", "ExchangeSetup.log"));
//! scanner.feed(b"[03/11/2021 16:01:24.0362] [1] [ERROR] The service cannot be started, either because it is disabled\n");
//! scanner.finish();
//! let n = scanner.drain_events().iter().filter(|e| matches!(e, Event::Finding(_))).count();
//! assert!(n >= 1);
//! ```

#![deny(missing_docs)]

pub mod decode;
mod finding;
mod frame;
pub mod matcher;
mod model;
pub mod msi_codes;
pub mod preflight;
pub mod rules;
pub mod sample;
mod scanner;
mod time;

pub use finding::{
    Diagnostic, Event, EvidenceLine, Finding, LogKind, Outcome, Remediation, RunSummary, Severity,
};
pub use model::STRUCTURAL_ANCHORS;
pub use rules::{Catalog, CatalogBuilder, Rule, RulesError};
pub use scanner::{CarriedRun, FileScanner, ResumePoint, ScanStats};

/// Evidence lines are cut to this many characters (a real line can be 900 KB long).
pub const MAX_EVIDENCE_CHARS: usize = 4096;

/// Default limit on line length: longer lines are truncated, flagged and counted.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// What a scanner needs to know about its file.
#[derive(Debug, Clone)]
pub struct ScanContext {
    /// Host the file is on; part of finding ids.
    pub host: String,
    /// Path as shown to users.
    pub path: String,
    /// Offset from UTC, in seconds, of the zone the log's naive timestamps are assumed to be in.
    pub utc_offset_seconds: i32,
    /// Code page for lines that are not valid UTF-8 (default windows-1252).
    pub fallback_encoding: &'static encoding_rs::Encoding,
    /// Line length limit in bytes.
    pub max_line_bytes: usize,
    /// Force a log kind instead of detecting it.
    pub kind: Option<LogKind>,
    /// Identifies the file's content in ids; by default a hash of its first line, so that the
    /// same bytes give the same ids whatever the path (rotation keeps ids stable).
    pub source_key: Option<String>,
}

impl ScanContext {
    /// A context with defaults: UTC, windows-1252, 1 MiB lines, detected kind.
    pub fn new(host: impl Into<String>, path: impl Into<String>) -> ScanContext {
        ScanContext {
            host: host.into(),
            path: path.into(),
            utc_offset_seconds: 0,
            fallback_encoding: encoding_rs::WINDOWS_1252,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            kind: None,
            source_key: None,
        }
    }
}

/// Cuts text for display to [`MAX_EVIDENCE_CHARS`] characters, marking the cut.
pub(crate) fn cut(s: &str) -> String {
    if s.len() <= MAX_EVIDENCE_CHARS {
        return s.to_string();
    }
    match s.char_indices().nth(MAX_EVIDENCE_CHARS) {
        Some((i, _)) => format!("{}… [{} more bytes]", &s[..i], s.len() - i),
        None => s.to_string(),
    }
}

/// Everything a complete scan of one byte buffer produced.
#[derive(Debug, Clone, Default)]
pub struct ScanOutput {
    /// Findings, in emission order.
    pub findings: Vec<Finding>,
    /// Final state of each run, by index.
    pub runs: Vec<RunSummary>,
    /// Input problems that did not stop the scan.
    pub diagnostics: Vec<Diagnostic>,
    /// Counters.
    pub stats: ScanStats,
    /// Detected kind.
    pub kind: Option<LogKind>,
}

/// Scans a whole buffer (a complete file) in one call.
pub fn scan_bytes(catalog: std::sync::Arc<Catalog>, ctx: ScanContext, bytes: &[u8]) -> ScanOutput {
    let mut s = FileScanner::new(catalog, ctx);
    // Fed in 1 MiB pieces, as a reader would: the decoded text of a piece stays in cache while
    // it is matched (one 16 MiB feed scanned at a third of the speed).
    for piece in bytes.chunks(1 << 20) {
        s.feed(piece);
    }
    s.finish();
    collect(s)
}

/// Collects a finished scanner's events into a [`ScanOutput`] (the last update of each run wins).
pub fn collect(mut s: FileScanner) -> ScanOutput {
    let mut b = OutputBuilder::default();
    b.absorb(&mut s);
    b.finish(&s)
}

/// Builds a [`ScanOutput`] from a scanner's events as they come, so a long scan need not keep
/// every run update until the end: each update replaces the run's earlier state in place
/// (one hash lookup, not a search of all runs).
#[derive(Debug, Default)]
pub struct OutputBuilder {
    out: ScanOutput,
    run_index: std::collections::HashMap<String, usize>,
}

impl OutputBuilder {
    /// Takes the scanner's pending events and diagnostics.
    pub fn absorb(&mut self, s: &mut FileScanner) {
        self.out.diagnostics.extend(s.drain_diagnostics());
        for e in s.drain_events() {
            self.push(e);
        }
    }

    /// Adds one event.
    pub fn push(&mut self, e: Event) {
        match e {
            Event::Finding(f) => self.out.findings.push(*f),
            Event::Run(r) => match self.run_index.get(&r.run_id) {
                Some(&i) => self.out.runs[i] = *r,
                None => {
                    self.run_index.insert(r.run_id.clone(), self.out.runs.len());
                    self.out.runs.push(*r);
                }
            },
        }
    }

    /// The output, with the finished scanner's counters and kind.
    pub fn finish(mut self, s: &FileScanner) -> ScanOutput {
        self.out.stats = s.stats().clone();
        self.out.kind = s.kind();
        self.out
    }
}

/// Which rules a pasted error message matches (all rules, including explain-only ones).
pub fn explain(catalog: &std::sync::Arc<Catalog>, text: &str) -> Vec<Finding> {
    let mut ctx = ScanContext::new("", "<pasted text>");
    ctx.kind = Some(LogKind::Plain);
    let mut seen = std::collections::HashSet::new();
    scan_bytes(std::sync::Arc::clone(catalog), ctx, text.as_bytes())
        .findings
        .into_iter()
        .filter(|f| seen.insert(f.rule_id.clone()))
        .collect()
}
