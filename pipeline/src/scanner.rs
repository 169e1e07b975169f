//! [`FileScanner`]: the streaming path from raw file bytes to [`Event`]s.
//!
//! Invariants:
//! - Only complete lines are matched. A line is complete when its terminator is seen (a trailing
//!   `\r` waits for the next byte), on [`FileScanner::flush`], or when it exceeds the line limit
//!   (then its first `max_line_bytes` are matched and the rest skipped, counted as truncated).
//! - The automaton runs over whole regions of complete lines; line boundaries and numbers are
//!   computed only around hits.
//! - Results do not depend on how the input is split into [`FileScanner::feed`] calls.
//! - [`FileScanner::resume_point`] never passes a line whose findings are not yet emitted, nor
//!   the start of an open run: re-reading from it rebuilds the same state and the same ids.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::decode::{display_line, sniff, Detected, TextDecoder, SNIFF_LEN};
use crate::finding::{
    Diagnostic, Event, EvidenceLine, Finding, LogKind, Outcome, Remediation, RunSummary,
};
use crate::frame::{complete_end, count_lines, line_end, line_start, lines, skip_terminator};
use crate::model::{self, Boundary, Line, RunData};
use crate::rules::{fill, Catalog, Rule, Target};
use crate::ScanContext;

/// Lines kept before the scan position so that evidence can look back across chunks.
const KEEP_LINES: usize = 64;
/// Compact the text buffer once this much has been scanned (an agent keeps one scanner per
/// tracked file, so an idle file should not hold more than its lookback lines).
const COMPACT_AT: usize = 64 << 10;

/// Text buffer capacity kept between reads while a file is being read (see `compact`).
const KEEP_CAPACITY: usize = 8 << 20;

/// Where to restart reading a file so that nothing is lost or changed (see module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePoint {
    /// Raw byte offset in the file.
    pub offset: u64,
    /// 1-based line number at `offset`.
    pub line: u64,
    /// Index the run starting at `offset` gets.
    pub run_index: u32,
    /// Source key used in ids (see [`ScanContext::source_key`]).
    pub source_key: Option<String>,
    /// Encoding found at the start of the file.
    pub encoding: Option<Detected>,
    /// Log kind found at the start of the file.
    pub kind: Option<LogKind>,
}

/// Counters of one scanner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanStats {
    /// Raw bytes fed.
    pub bytes: u64,
    /// Complete lines seen.
    pub lines: u64,
    /// Lines longer than the limit.
    pub truncated_lines: u64,
    /// Invalid UTF-16 code units replaced.
    pub decode_replacements: u64,
    /// Lines shown through the legacy code page because they were not valid UTF-8.
    pub legacy_lines: u64,
    /// Findings emitted.
    pub findings: u64,
}

struct OpenRun {
    summary: RunSummary,
    data: RunData,
    /// Started by a header line (not implied by the first line of a file).
    explicit: bool,
    ended: bool,
    /// Rule index → lines where it matched (confirmed) in this run.
    hits: HashMap<usize, Vec<u64>>,
    /// (priority, line, finding id) of prioritized findings, fallbacks excluded.
    prioritized: Vec<(u32, u64, String)>,
    phase_sent: Option<String>,
    /// Times of the first and last timestamped lines, written into `summary` only when it
    /// is emitted (formatting on every line would cost more than matching it).
    first_time: Option<crate::time::NaiveTime>,
    last_time: Option<crate::time::NaiveTime>,
}

struct Pending {
    finding: Finding,
    after: u32,
    /// Where the next after-line starts in `text`; `None` means at the next region's start.
    resume_pos: Option<usize>,
    awaiting: Vec<usize>,
    run_index: u32,
    offset: u64,
    /// After-lines looked at so far (empty ones count but are not shown).
    seen_after: u32,
    /// Line number of the next after-line.
    next_line: u64,
}

/// Streaming scanner of one file. Feed it raw bytes in file order; collect [`Event`]s.
pub struct FileScanner {
    /// Most evidence lines any rule shows before its match: what an idle scanner keeps.
    max_before: usize,
    catalog: Arc<Catalog>,
    ctx: ScanContext,
    detected: Option<Detected>,
    decoder: Option<TextDecoder>,
    sniff_buf: Vec<u8>,
    text: Vec<u8>,
    scan_pos: usize,
    scan_line: u64,
    scan_raw: u64,
    skipping_long: bool,
    kind: Option<LogKind>,
    source_key: Option<String>,
    run: Option<OpenRun>,
    next_run_index: u32,
    pending: Vec<Pending>,
    hits: Vec<(usize, u32)>,
    /// Reused for the line being processed, to avoid an allocation per candidate line.
    line_buf: String,
    /// Reused list of rules hit on the line being processed.
    rule_buf: Vec<usize>,
    events: Vec<Event>,
    diagnostics: Vec<Diagnostic>,
    stats: ScanStats,
}

impl FileScanner {
    /// A scanner for a file read from its first byte.
    pub fn new(catalog: Arc<Catalog>, ctx: ScanContext) -> FileScanner {
        let kind = ctx.kind;
        let source_key = ctx.source_key.clone();
        let max_before = catalog
            .rules()
            .iter()
            .map(|r| r.before as usize)
            .max()
            .unwrap_or(0);
        FileScanner {
            max_before,
            catalog,
            ctx,
            detected: None,
            decoder: None,
            sniff_buf: Vec::new(),
            text: Vec::new(),
            scan_pos: 0,
            scan_line: 1,
            scan_raw: 0,
            skipping_long: false,
            kind,
            source_key,
            run: None,
            next_run_index: 0,
            pending: Vec::new(),
            hits: Vec::new(),
            line_buf: String::new(),
            rule_buf: Vec::new(),
            events: Vec::new(),
            diagnostics: Vec::new(),
            stats: ScanStats::default(),
        }
    }

    /// A scanner that continues a file from a [`ResumePoint`]; feed it bytes from `point.offset`.
    pub fn resume(catalog: Arc<Catalog>, ctx: ScanContext, point: &ResumePoint) -> FileScanner {
        let mut s = FileScanner::new(catalog, ctx);
        if point.offset > 0 {
            s.scan_raw = point.offset;
            s.scan_line = point.line;
            s.next_run_index = point.run_index;
            s.source_key = s.source_key.take().or_else(|| point.source_key.clone());
            s.kind = s.kind.or(point.kind);
            if let Some(d) = point.encoding {
                s.detected = Some(d);
                s.decoder = Some(TextDecoder::new(d.encoding));
            }
        }
        s
    }

    /// Feeds the next bytes of the file.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.stats.bytes += bytes.len() as u64;
        if self.decoder.is_none() {
            self.sniff_buf.extend_from_slice(bytes);
            // Decide as soon as the evidence is there (a BOM, a first line, or enough bytes),
            // not after 4 KiB: a new log's first lines must not wait for more.
            let b = &self.sniff_buf;
            let bom = b.starts_with(&[0xFF, 0xFE])
                || b.starts_with(&[0xFE, 0xFF])
                || b.starts_with(&[0xEF, 0xBB, 0xBF]);
            let first_line = b.len() >= 16 && memchr::memchr(b'\n', b).is_some();
            if bom || first_line || b.len() >= 128.min(SNIFF_LEN) {
                self.start_decoding();
            }
            return;
        }
        if let Some(d) = self.decoder.as_mut() {
            d.decode(bytes, &mut self.text, false);
        }
        self.process(false);
    }

    /// The writer paused: emit findings still waiting for lines after them (their evidence
    /// stays as it is). A partial last line stays pending. Runs stay open.
    pub fn flush_pending(&mut self) {
        if self.decoder.is_none() && !self.sniff_buf.is_empty() {
            self.start_decoding();
        }
        // A paused file needs little memory: with a thousand files tailed, buffers sized for
        // a catch-up read, or the 64 lines kept while reading, would add up. Keep only what
        // evidence can look back to.
        if self.scan_pos == self.text.len() {
            self.compact_to(self.max_before + 1);
            self.text.shrink_to_fit();
        }
        if self.hits.capacity() > 4096 {
            self.hits = Vec::new();
        }
        let pending = std::mem::take(&mut self.pending);
        for p in pending {
            if p.awaiting.is_empty() {
                self.emit_finding(p.finding);
            } else {
                self.pending.push(p);
            }
        }
    }

    /// The writer went quiet for good (or the file ended): also treat a partial last line as
    /// complete. Runs stay open.
    pub fn flush(&mut self) {
        if self.decoder.is_none() {
            self.start_decoding();
        }
        // The decoder is not finalized: the writer may go on, and a code unit split across
        // its writes must still join up. Only `finish` ends the byte stream.
        self.process(true);
        self.flush_pending();
    }

    /// End of a complete file: flush, then close the open run.
    pub fn finish(&mut self) {
        if self.decoder.is_none() {
            self.start_decoding();
        }
        if let Some(d) = self.decoder.as_mut() {
            d.decode(&[], &mut self.text, true);
            self.stats.decode_replacements = d.replacements;
        }
        self.flush();
        self.close_run();
        self.pending.clear();
    }

    /// Takes the events produced so far.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Takes the diagnostics produced so far.
    pub fn drain_diagnostics(&mut self) -> Vec<Diagnostic> {
        std::mem::take(&mut self.diagnostics)
    }

    /// The file was renamed: later findings carry the new path.
    pub fn set_path(&mut self, path: impl Into<String>) {
        self.ctx.path = path.into();
    }

    /// The scan context.
    pub fn context(&self) -> &ScanContext {
        &self.ctx
    }

    /// Counters.
    pub fn stats(&self) -> &ScanStats {
        &self.stats
    }

    /// Detected log kind, once known.
    pub fn kind(&self) -> Option<LogKind> {
        self.kind
    }

    /// Detected encoding, once known.
    pub fn encoding(&self) -> Option<Detected> {
        self.detected
    }

    /// The open (not ended) run, if any.
    pub fn open_run(&self) -> Option<&RunSummary> {
        self.run.as_ref().filter(|r| !r.ended).map(|r| &r.summary)
    }

    /// Raw offset up to which every complete line has been processed.
    pub fn processed_offset(&self) -> u64 {
        self.scan_raw
    }

    /// Where to resume after a restart (see module docs).
    pub fn resume_point(&self) -> ResumePoint {
        let mut point = (self.scan_raw, self.scan_line, self.next_run_index);
        if let Some(r) = self.run.as_ref().filter(|r| r.explicit && !r.ended) {
            point = (
                r.summary.start_offset,
                r.summary.start_line,
                r.summary.index,
            );
        }
        for p in &self.pending {
            if p.offset < point.0 {
                point = (p.offset, p.finding.line, p.run_index);
            }
        }
        if self.decoder.is_none() {
            point = (0, 1, 0);
        }
        ResumePoint {
            offset: point.0,
            line: point.1,
            run_index: point.2,
            source_key: self.source_key.clone(),
            encoding: self.detected,
            kind: self.kind,
        }
    }

    fn start_decoding(&mut self) {
        let d = sniff(&self.sniff_buf);
        self.detected = Some(d);
        let mut dec = TextDecoder::new(d.encoding);
        let buf = std::mem::take(&mut self.sniff_buf);
        let skip = d.bom_len.min(buf.len());
        self.scan_raw += skip as u64;
        dec.decode(&buf[skip..], &mut self.text, false);
        self.decoder = Some(dec);
        self.process(false);
    }

    fn raw_len(&self, a: usize, b: usize) -> u64 {
        self.decoder
            .as_ref()
            .map_or((b - a) as u64, |d| d.raw_len(&self.text[a..b]))
    }

    fn process(&mut self, eof: bool) {
        let max = self.ctx.max_line_bytes.max(16);
        loop {
            if self.skipping_long {
                let from = self.scan_pos;
                match line_end(&self.text, from, self.text.len()) {
                    end if end < self.text.len()
                        && (self.text[end] == b'\n' || end + 1 < self.text.len() || eof) =>
                    {
                        let after = skip_terminator(&self.text, end);
                        self.scan_raw += self.raw_len(from, after);
                        self.scan_pos = after;
                        self.scan_line += 1;
                        self.stats.lines += 1;
                        self.skipping_long = false;
                    }
                    _ => {
                        // Keep a trailing `\r`: it may be the first half of a CRLF.
                        let keep = usize::from(self.text.last() == Some(&b'\r') && !eof);
                        let to = self.text.len() - keep;
                        self.scan_raw += self.raw_len(from, to);
                        self.scan_pos = to;
                        break;
                    }
                }
            }
            if self.scan_pos >= self.text.len() {
                break;
            }
            let window_end = (self.scan_pos + max + 1).min(self.text.len());
            let window_eof = eof && window_end == self.text.len();
            match complete_end(&self.text[..window_end], self.scan_pos, window_eof) {
                Some(end) => self.process_region(self.scan_pos, end),
                None if self.text.len() - self.scan_pos > max => {
                    let cut = self.scan_pos + max;
                    self.stats.truncated_lines += 1;
                    self.diagnostics.push(Diagnostic {
                        line: self.scan_line,
                        message: format!("line longer than {max} bytes: matched its first {max} bytes, skipped the rest"),
                    });
                    metrics::counter!("patchwatch_truncated_lines_total").increment(1);
                    self.process_region(self.scan_pos, cut);
                    self.skipping_long = true;
                }
                None if eof => {
                    // The partial last line, completed by the caller.
                    let end = self.text.len();
                    self.text.push(b'\n');
                    // The synthetic terminator is not in the file (2 raw bytes in UTF-16).
                    let synthetic = self.raw_len(end, end + 1);
                    self.process_region(self.scan_pos, end + 1);
                    self.scan_raw -= synthetic;
                    break;
                }
                None => break,
            }
        }
        self.compact();
        if let Some(d) = self.decoder.as_ref() {
            self.stats.decode_replacements = d.replacements;
        }
        self.send_phase();
    }

    /// Matches the lines of `text[start..end]`. `end` is a line end, or the cut of a line longer
    /// than the limit (its terminator is counted when skipping reaches it).
    fn process_region(&mut self, start: usize, end: usize) {
        if self.kind.is_none() || self.source_key.is_none() {
            if let Some((s, e)) = lines(&self.text, start, end).find(|&(s, e)| e > s) {
                let first = self.text[s..e].to_vec();
                self.kind
                    .get_or_insert_with(|| model::detect_kind(&first, &self.ctx.path));
                if self.source_key.is_none() {
                    let h = blake3::hash(&first[..first.len().min(1024)]);
                    self.source_key = Some(h.to_hex()[..16].to_string());
                }
            }
        }
        let mut hits = std::mem::take(&mut self.hits);
        hits.clear();
        let kind = self.kind.unwrap_or(LogKind::Plain);
        let region = &self.text[start..end];
        self.catalog
            .kind_matcher(kind)
            .for_piece(region)
            .for_each(region, |p, a| hits.push((start + p, a)));
        let (mut cur, mut line, mut raw) = (start, self.scan_line, self.scan_raw);
        let mut i = 0;
        while i < hits.len() {
            let ls = line_start(&self.text, start, hits[i].0);
            let le = line_end(&self.text, hits[i].0, end);
            let mut j = i;
            while j < hits.len() && hits[j].0 < le.max(ls + 1) {
                j += 1;
            }
            line += count_lines(&self.text[cur..ls]);
            raw += self.raw_len(cur, ls);
            cur = ls;
            let anchors: Vec<u32> = hits[i..j].iter().map(|h| h.1).collect();
            self.process_line(ls, le, line, raw, &anchors);
            i = j;
        }
        self.hits = hits;
        let tail_lines = count_lines(&self.text[cur..end]);
        self.stats.lines += line + tail_lines - self.scan_line;
        self.scan_line = line + tail_lines;
        self.scan_raw = raw + self.raw_len(cur, end);
        self.scan_pos = end;
        self.collect_after(start, end);
        self.note_last_time(start, end);
    }

    fn note_last_time(&mut self, start: usize, end: usize) {
        let (Some(kind), Some(run)) = (self.kind, self.run.as_mut()) else {
            return;
        };
        if run.ended {
            return;
        }
        let mut e = end;
        // Walk back over a few lines to find one with a time (continuation lines have none).
        for _ in 0..8 {
            if e <= start {
                return;
            }
            let le = if matches!(self.text[e - 1], b'\n' | b'\r') {
                e - 1
            } else {
                e
            };
            let ls = line_start(&self.text, start, le);
            if let Some(t) = model::line_time(kind, &self.text[ls..le], &run.data) {
                touch_time(run, t);
                return;
            }
            e = ls;
        }
    }

    /// Decodes a line into a reused buffer (UTF-8 when valid, else the legacy code page).
    fn decode_line(&mut self, a: usize, b: usize) -> String {
        let mut buf = std::mem::take(&mut self.line_buf);
        buf.clear();
        match std::str::from_utf8(&self.text[a..b]) {
            Ok(s) => buf.push_str(s),
            Err(_) => {
                let (s, _) = display_line(&self.text[a..b], self.ctx.fallback_encoding);
                self.stats.legacy_lines += 1;
                buf.push_str(&s);
            }
        }
        buf
    }

    fn process_line(&mut self, ls: usize, le: usize, number: u64, offset: u64, anchors: &[u32]) {
        let kind = self.kind.unwrap_or(LogKind::Plain);
        let text = self.decode_line(ls, le);
        let catalog = Arc::clone(&self.catalog);
        let mut end_outcome = None;
        let mut seen_rules = std::mem::take(&mut self.rule_buf);
        seen_rules.clear();
        for &a in anchors {
            for &t in &catalog.kind_matcher(kind).targets[a as usize] {
                match t {
                    Target::Structural(si) => {
                        if model::opens_run(
                            kind,
                            si,
                            self.run.as_ref().map(|r| (&r.data, &r.summary)),
                        ) {
                            self.close_run();
                            self.start_run(number, offset, true);
                        }
                        let run = self.ensure_run(number, offset);
                        let l = Line {
                            number,
                            offset,
                            text: &text,
                        };
                        if let Boundary::End(o) =
                            model::on_structural(kind, si, &l, &mut run.data, &mut run.summary)
                        {
                            end_outcome = Some(o);
                        }
                    }
                    Target::Rule(ri) => {
                        if !seen_rules.contains(&ri) {
                            seen_rules.push(ri);
                        }
                    }
                }
            }
        }
        for &ri in &seen_rules {
            let rule = &catalog.rules()[ri];
            if rule.derived || !rule.applies_to(kind) {
                continue;
            }
            self.try_rule(rule, ri, ls, le, number, offset, &text);
        }
        self.rule_buf = seen_rules;
        // The first and the closing line of a run fix its times; the last line of each region
        // (note_last_time) keeps the end current in between.
        if let Some(run) = self
            .run
            .as_mut()
            .filter(|r| !r.ended && (r.first_time.is_none() || end_outcome.is_some()))
        {
            if let Some(t) = model::line_time(kind, text.as_bytes(), &run.data) {
                touch_time(run, t);
            }
        }
        if let Some(o) = end_outcome {
            if let Some(run) = self.run.as_mut() {
                run.summary.outcome = o;
            }
            self.close_run_keep(false);
        }
        self.line_buf = text;
    }

    #[allow(clippy::too_many_arguments)]
    fn try_rule(
        &mut self,
        rule: &Rule,
        ri: usize,
        ls: usize,
        le: usize,
        number: u64,
        offset: u64,
        text: &str,
    ) {
        // Cheapest check first: a rule that fires once per run is often anchored on lines
        // that repeat (every `[ERROR]`), and its regex need not run again.
        if rule.once_per_run && self.run.as_ref().is_some_and(|r| r.hits.contains_key(&ri)) {
            return;
        }
        if !rule.suppress.is_empty() {
            let low = text.to_ascii_lowercase();
            if rule
                .suppress
                .iter()
                .any(|s| memchr::memmem::find(low.as_bytes(), s).is_some())
            {
                return;
            }
        }
        let mut fields = std::collections::BTreeMap::new();
        if let Some(re) = &rule.regex {
            let Some(caps) = re.captures(text.as_bytes()) else {
                return;
            };
            for name in re.capture_names().flatten() {
                if let Some(m) = caps.name(name) {
                    fields.insert(
                        name.to_string(),
                        String::from_utf8_lossy(m.as_bytes()).into_owned(),
                    );
                }
            }
        }
        let run = self.ensure_run(number, offset);
        let run_index = run.summary.index;
        if rule.once_per_run && run.hits.contains_key(&ri) {
            return;
        }
        run.hits.entry(ri).or_default().push(number);
        let awaiting: Vec<usize> = rule
            .requires
            .iter()
            .copied()
            .filter(|req| !requirement_met(run, *req, number, rule.lookback))
            .collect();
        if !awaiting.is_empty() && rule.lookback.is_some() {
            return;
        }
        let line_bytes_hash = blake3::hash(&self.text[ls..le]);
        let mut evidence = self.before_lines(ls, number, rule.before);
        evidence.push(EvidenceLine {
            line: number,
            text: crate::cut(text),
        });
        let finding = self.build_finding(
            rule,
            number,
            offset,
            line_bytes_hash.as_bytes(),
            evidence,
            fields,
            Some(text),
        );
        let p = Pending {
            finding,
            after: rule.after,
            resume_pos: Some(skip_terminator(&self.text, le)),
            awaiting,
            run_index,
            offset,
            seen_after: 0,
            next_line: number + 1,
        };
        if p.awaiting.is_empty() {
            self.register_priority(rule, &p.finding);
        }
        self.pending.push(p);
        self.release_awaiting(ri);
        self.emit_ready();
    }

    /// Findings parked on a requirement that rule `ri` (just matched) satisfies.
    fn release_awaiting(&mut self, ri: usize) {
        let catalog = Arc::clone(&self.catalog);
        let mut released = Vec::new();
        for p in &mut self.pending {
            if let Some(pos) = p.awaiting.iter().position(|&r| r == ri) {
                p.awaiting.remove(pos);
                if p.awaiting.is_empty() {
                    released.push(p.finding.clone());
                }
            }
        }
        for f in released {
            if let Some(rule) = catalog.get(&f.rule_id) {
                self.register_priority(rule, &f);
            }
        }
    }

    fn register_priority(&mut self, rule: &Rule, f: &Finding) {
        if let (Some(p), false, Some(run)) = (rule.priority, rule.fallback, self.run.as_mut()) {
            if run.summary.index == f.run_index {
                run.prioritized.push((p, f.line, f.id.clone()));
            }
        }
    }

    fn before_lines(&self, ls: usize, number: u64, n: u32) -> Vec<EvidenceLine> {
        let mut out = Vec::new();
        let mut pos = ls;
        for k in 1..=u64::from(n) {
            if pos == 0 || number <= k {
                break;
            }
            let mut end = pos - 1;
            if self.text[end] == b'\n' && end > 0 && self.text[end - 1] == b'\r' {
                end -= 1;
            }
            let start = line_start(&self.text, 0, end);
            let (s, _) = display_line(&self.text[start..end], self.ctx.fallback_encoding);
            out.push(EvidenceLine {
                line: number - k,
                text: crate::cut(&s),
            });
            pos = start;
        }
        out.reverse();
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn build_finding(
        &self,
        rule: &Rule,
        number: u64,
        offset: u64,
        line_hash: &[u8],
        evidence: Vec<EvidenceLine>,
        mut fields: std::collections::BTreeMap<String, String>,
        text: Option<&str>,
    ) -> Finding {
        let run = self.run.as_ref();
        let kind = self.kind.unwrap_or(LogKind::Plain);
        let mut h = blake3::Hasher::new();
        for part in [
            "patchwatch-finding-v1",
            &self.ctx.host,
            self.source_key.as_deref().unwrap_or(""),
            &rule.id,
        ] {
            h.update(part.as_bytes());
            h.update(&[0]);
        }
        h.update(&offset.to_le_bytes());
        h.update(line_hash);
        let id = h.finalize().to_hex()[..32].to_string();
        let run_fields = run.map(|r| &r.summary.fields);
        let lookup = |name: &str| -> Option<String> {
            if let Some(v) = fields.get(name) {
                return Some(v.clone());
            }
            if name == "host" {
                return Some(self.ctx.host.clone());
            }
            if name == "path" {
                return Some(self.ctx.path.clone());
            }
            run_fields.and_then(|f| f.get(name).cloned())
        };
        let remediation = Remediation {
            summary: fill(&rule.remediation.summary, lookup),
            steps: rule
                .remediation
                .steps
                .iter()
                .map(|s| fill(s, lookup))
                .collect(),
            links: rule
                .remediation
                .links
                .iter()
                .map(|s| fill(s, lookup))
                .collect(),
        };
        // Run context a reader needs with the finding (who ran setup, which build).
        if let Some(rf) = run_fields {
            for key in ["user", "setup_version", "product", "product_version"] {
                if let Some(v) = rf.get(key) {
                    fields.entry(key.to_string()).or_insert_with(|| v.clone());
                }
            }
        }
        let time =
            text.and_then(|t| run.and_then(|r| model::line_time(kind, t.as_bytes(), &r.data)));
        Finding {
            id,
            rule_id: rule.id.clone(),
            rule_version: rule.version,
            title: rule.title.clone(),
            category: rule.category.clone(),
            severity: rule.severity,
            host: self.ctx.host.clone(),
            path: self.ctx.path.clone(),
            log_kind: kind,
            byte_offset: offset,
            line: number,
            run_id: run.map(|r| r.summary.run_id.clone()).unwrap_or_default(),
            run_index: run.map_or(0, |r| r.summary.index),
            event_time: time.map(|t| t.to_iso()),
            event_time_unix_nano: time.map(|t| t.unix_nanos(self.ctx.utc_offset_seconds)),
            evidence,
            fields,
            remediation,
            priority: rule.priority,
        }
    }

    /// Gives pending findings the lines after them, from the region just processed.
    fn collect_after(&mut self, start: usize, end: usize) {
        let fallback = self.ctx.fallback_encoding;
        for p in &mut self.pending {
            if p.seen_after >= p.after {
                continue;
            }
            let from = p.resume_pos.unwrap_or(start).clamp(start, end);
            for (s, e) in lines(&self.text, from, end) {
                if p.seen_after >= p.after {
                    break;
                }
                // SetupLogReviewer counts empty context lines but does not show them.
                if e > s {
                    let (t, _) = display_line(&self.text[s..e], fallback);
                    p.finding.evidence.push(EvidenceLine {
                        line: p.next_line,
                        text: crate::cut(&t),
                    });
                }
                p.seen_after += 1;
                p.next_line += 1;
            }
            p.resume_pos = None;
        }
        self.emit_ready();
    }

    fn emit_ready(&mut self) {
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            if p.awaiting.is_empty() && p.seen_after >= p.after {
                let p = self.pending.remove(i);
                self.emit_finding(p.finding);
            } else {
                i += 1;
            }
        }
    }

    fn emit_finding(&mut self, f: Finding) {
        self.stats.findings += 1;
        metrics::counter!("patchwatch_findings_total", "rule" => f.rule_id.clone()).increment(1);
        self.events.push(Event::Finding(Box::new(f)));
    }

    fn ensure_run(&mut self, number: u64, offset: u64) -> &mut OpenRun {
        if self.run.is_none() {
            self.start_run(number, offset, false);
        }
        self.run.as_mut().expect("run just opened")
    }

    fn start_run(&mut self, number: u64, offset: u64, explicit: bool) {
        let index = self.next_run_index;
        self.next_run_index += 1;
        let mut h = blake3::Hasher::new();
        h.update(b"patchwatch-run-v1\0");
        h.update(self.ctx.host.as_bytes());
        h.update(&[0]);
        h.update(self.source_key.as_deref().unwrap_or("").as_bytes());
        h.update(&offset.to_le_bytes());
        let summary = RunSummary {
            run_id: h.finalize().to_hex()[..32].to_string(),
            index,
            host: self.ctx.host.clone(),
            path: self.ctx.path.clone(),
            log_kind: self.kind.unwrap_or(LogKind::Plain),
            start_offset: offset,
            start_line: number,
            started: None,
            last_time: None,
            duration_seconds: None,
            outcome: Outcome::InProgress,
            exit_code: None,
            mode: None,
            product: None,
            target_build: None,
            installed_build: None,
            phase: None,
            primary_finding_id: None,
            fields: Default::default(),
        };
        self.events.push(Event::Run(Box::new(summary.clone())));
        self.run = Some(OpenRun {
            summary,
            data: RunData::default(),
            explicit,
            ended: false,
            hits: HashMap::new(),
            prioritized: Vec::new(),
            phase_sent: None,
            first_time: None,
            last_time: None,
        });
    }

    /// Ends the open run: derived checks, primary cause, final run event. The run stays
    /// current (later lines attach to it) until another one starts.
    fn close_run_keep(&mut self, interrupted: bool) {
        let Some(mut run) = self.run.take() else {
            return;
        };
        if run.ended {
            self.run = Some(run);
            return;
        }
        let kind = self.kind.unwrap_or(LogKind::Plain);
        // A run cut short (by the next run, or the end of a complete file) that logged errors
        // failed; one without errors is left in progress, since its log may simply stop there.
        if interrupted
            && run.summary.outcome == Outcome::InProgress
            && (!run.prioritized.is_empty() || model::has_errors(kind, &run.data))
        {
            run.summary.outcome = Outcome::Failed;
        }
        let derived = model::finalize(kind, &run.data, &mut run.summary);
        let catalog = Arc::clone(&self.catalog);
        let has_priority = !run.prioritized.is_empty()
            || derived.iter().any(|d| {
                catalog
                    .get(d.rule_id)
                    .is_some_and(|r| r.priority.is_some() && !r.fallback)
            });
        self.run = Some(run);
        for d in derived {
            let Some(rule) = catalog.get(d.rule_id) else {
                tracing::warn!(rule = d.rule_id, "Derived rule missing from the catalog.");
                continue;
            };
            if rule.fallback && has_priority {
                continue;
            }
            let line_hash = blake3::hash(d.rule_id.as_bytes());
            let f = self.build_finding(
                rule,
                d.line,
                d.offset,
                line_hash.as_bytes(),
                d.evidence,
                d.fields,
                None,
            );
            if let Some(run) = self.run.as_mut() {
                if let Some(p) = rule.priority {
                    run.prioritized.push((p, f.line, f.id.clone()));
                }
            }
            self.emit_finding(f);
        }
        let Some(run) = self.run.as_mut() else {
            return;
        };
        run.ended = true;
        materialize(run);
        if run.summary.outcome != Outcome::Succeeded {
            run.summary.primary_finding_id = run
                .prioritized
                .iter()
                .min_by_key(|(p, l, _)| (*p, *l))
                .map(|(_, _, id)| id.clone());
        }
        let summary = run.summary.clone();
        self.events.push(Event::Run(Box::new(summary)));
    }

    fn close_run(&mut self) {
        // Findings waiting on a requirement that never came in this run are dropped with it.
        if let Some(idx) = self.run.as_ref().map(|r| r.summary.index) {
            self.pending
                .retain(|p| p.run_index != idx || p.awaiting.is_empty());
        }
        self.close_run_keep(true);
    }

    fn send_phase(&mut self) {
        if let Some(run) = self.run.as_mut().filter(|r| !r.ended) {
            if run.summary.phase != run.phase_sent {
                run.phase_sent = run.summary.phase.clone();
                materialize(run);
                let s = run.summary.clone();
                self.events.push(Event::Run(Box::new(s)));
            }
        }
    }

    fn compact(&mut self) {
        if self.scan_pos < COMPACT_AT {
            return;
        }
        self.compact_to(KEEP_LINES);
        // Capacity is kept while data flows (re-growing it for every read costs page faults),
        // unless a long line blew it up; `flush_pending` gives it back when the writer pauses.
        if self.text.capacity() > KEEP_CAPACITY && self.text.len() < self.text.capacity() / 4 {
            self.text.shrink_to(self.text.len() * 2);
        }
    }

    /// Drops the text before the last `lines` lines before the scan position.
    fn compact_to(&mut self, lines: usize) {
        let floor = self.scan_pos.saturating_sub(256 * 1024);
        let mut keep = self.scan_pos;
        for _ in 0..lines {
            if keep <= floor {
                break;
            }
            // Step over the whole terminator: a CRLF is one line end, not two.
            let mut end = keep - 1;
            if self.text[end] == b'\n' && end > floor && self.text[end - 1] == b'\r' {
                end -= 1;
            }
            keep = line_start(&self.text, floor, end);
        }
        self.text.drain(..keep);
        self.scan_pos -= keep;
        for p in &mut self.pending {
            p.resume_pos = p.resume_pos.and_then(|r| r.checked_sub(keep));
        }
    }
}

/// Records a line's time as the run's last time (and first, if none yet).
fn touch_time(run: &mut OpenRun, t: crate::time::NaiveTime) {
    run.first_time.get_or_insert(t);
    run.last_time = Some(t);
}

/// Writes the run's times into its summary, before the summary is emitted.
fn materialize(run: &mut OpenRun) {
    if let (Some(first), Some(last)) = (run.first_time, run.last_time) {
        run.summary.started = Some(first.to_iso());
        run.summary.last_time = Some(last.to_iso());
        run.summary.duration_seconds = Some(last.epoch_seconds() - first.epoch_seconds());
    }
}

fn requirement_met(run: &OpenRun, req: usize, line: u64, lookback: Option<u64>) -> bool {
    run.hits.get(&req).is_some_and(|lines| match lookback {
        Some(n) => lines.iter().any(|&l| l <= line && line - l <= n),
        None => !lines.is_empty(),
    })
}
