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
//!   the start of an open run of a structured log; a run it falls inside is carried in it
//!   ([`CarriedRun`]). Re-reading from it rebuilds the same state and the same ids.
//!
//! This file holds the buffer (decoding, framing, compaction) and the public API; `apply`
//! turns anchor hits into rule matches, `evidence` turns matches into findings, and `runs`
//! follows the runs of the file through the log model of its kind.

mod apply;
mod blocks;
mod evidence;
mod runs;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::decode::{sniff, Detected, TextDecoder, SNIFF_LEN};
use crate::finding::{Diagnostic, Event, LogKind, RunSummary};
use crate::frame::{complete_end, line_end, line_start, skip_terminator};
use crate::rules::Catalog;
use crate::ScanContext;
use blocks::OpenBlock;
use evidence::Pending;
pub use runs::CarriedRun;
use runs::{ClosedRun, OpenRun};

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
    /// Index the next run starting at or after `offset` gets.
    pub run_index: u32,
    /// Source key used in ids (see [`ScanContext::source_key`]).
    pub source_key: Option<String>,
    /// Encoding found at the start of the file.
    pub encoding: Option<Detected>,
    /// Log kind found at the start of the file.
    pub kind: Option<LogKind>,
    /// The run `offset` falls inside, when it is not read again from its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<CarriedRun>,
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

/// The encoding, once sniffed, and the bytes read before it was.
struct Decoding {
    detected: Option<Detected>,
    /// `None` until the encoding is sniffed; bytes wait in `sniff_buf` until then.
    decoder: Option<TextDecoder>,
    sniff_buf: Vec<u8>,
}

/// Decoded text and how far it has been scanned.
struct TextBuffer {
    /// UTF-8 (or raw code-page) text: lookback lines, then lines not yet scanned.
    buf: Vec<u8>,
    /// Start of the first line not yet scanned, in `buf`.
    pos: usize,
    /// 1-based line number at `pos`.
    line: u64,
    /// Raw file offset of `pos`.
    raw: u64,
    /// The line at `pos` was cut at the line limit: skip to its end.
    skipping_long: bool,
}

/// Buffers reused across lines, to avoid an allocation per candidate line.
#[derive(Default)]
struct Scratch {
    /// Anchor hits of the region being processed: (position in text, anchor id).
    hits: Vec<(usize, u32)>,
    /// The line being processed, decoded.
    line: String,
    /// Rules hit on the line being processed.
    rules: Vec<usize>,
}

/// A complete line of the text buffer, and where it is in the file.
#[derive(Debug, Clone, Copy)]
struct LineRef {
    /// Start of the line in [`TextBuffer::buf`].
    start: usize,
    /// End of the line's text (before its terminator) in [`TextBuffer::buf`].
    end: usize,
    /// 1-based line number.
    number: u64,
    /// Raw file offset of the line's first byte.
    offset: u64,
}

/// What the scanner has produced and not yet handed out, and its counters.
#[derive(Default)]
struct Outbox {
    events: Vec<Event>,
    diagnostics: Vec<Diagnostic>,
    stats: ScanStats,
}

/// Streaming scanner of one file. Feed it raw bytes in file order; collect [`Event`]s.
pub struct FileScanner {
    catalog: Arc<Catalog>,
    ctx: ScanContext,
    /// Most evidence lines any rule shows before its match: what an idle scanner keeps.
    max_before: usize,
    decoding: Decoding,
    text: TextBuffer,
    kind: Option<LogKind>,
    source_key: Option<String>,
    /// The current run: open, or ended but still taking later lines until another starts.
    run: Option<OpenRun>,
    /// The run before the current one, while a resume point may fall inside it.
    closed: Option<ClosedRun>,
    next_run_index: u32,
    /// Findings still collecting lines after them or waiting on a required rule.
    pending: Vec<Pending>,
    /// The ExchangeSetup.log `[ERROR]` entry being collected, if any.
    block: Option<OpenBlock>,
    scratch: Scratch,
    out: Outbox,
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
            .unwrap_or(0)
            .max(blocks::LOOKBACK);
        FileScanner {
            catalog,
            ctx,
            max_before,
            decoding: Decoding {
                detected: None,
                decoder: None,
                sniff_buf: Vec::new(),
            },
            text: TextBuffer {
                buf: Vec::new(),
                pos: 0,
                line: 1,
                raw: 0,
                skipping_long: false,
            },
            kind,
            source_key,
            run: None,
            closed: None,
            next_run_index: 0,
            pending: Vec::new(),
            block: None,
            scratch: Scratch::default(),
            out: Outbox::default(),
        }
    }

    /// A scanner that continues a file from a [`ResumePoint`]; feed it bytes from `point.offset`.
    pub fn resume(catalog: Arc<Catalog>, ctx: ScanContext, point: &ResumePoint) -> FileScanner {
        let mut s = FileScanner::new(catalog, ctx);
        if point.offset > 0 {
            s.text.raw = point.offset;
            s.text.line = point.line;
            s.next_run_index = point.run_index;
            s.source_key = s.source_key.take().or_else(|| point.source_key.clone());
            s.kind = s.kind.or(point.kind);
            if let Some(d) = point.encoding {
                s.decoding.detected = Some(d);
                s.decoding.decoder = Some(TextDecoder::new(d.encoding));
            }
            if let Some(c) = &point.run {
                let run = OpenRun::carried(c, &s.catalog, &s.ctx.path);
                s.next_run_index = s.next_run_index.max(run.summary.index + 1);
                s.run = Some(run);
            }
        }
        s
    }

    /// Feeds the next bytes of the file.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.out.stats.bytes += bytes.len() as u64;
        if self.decoding.decoder.is_none() {
            self.decoding.sniff_buf.extend_from_slice(bytes);
            // Decide as soon as the evidence is there (a BOM, a first line, or enough bytes),
            // not after 4 KiB: a new log's first lines must not wait for more.
            let b = &self.decoding.sniff_buf;
            let bom = b.starts_with(&[0xFF, 0xFE])
                || b.starts_with(&[0xFE, 0xFF])
                || b.starts_with(&[0xEF, 0xBB, 0xBF]);
            if bom || sniff_len(b).is_some() {
                self.start_decoding();
            }
            return;
        }
        if let Some(d) = self.decoding.decoder.as_mut() {
            d.decode(bytes, &mut self.text.buf, false);
        }
        self.process(false);
    }

    /// The writer paused: emit findings still waiting for lines after them (their evidence
    /// stays as it is). A partial last line stays pending. Runs stay open.
    pub fn flush_pending(&mut self) {
        if self.decoding.decoder.is_none() && !self.decoding.sniff_buf.is_empty() {
            self.start_decoding();
        }
        // A paused file needs little memory: with a thousand files tailed, buffers sized for
        // a catch-up read, or the 64 lines kept while reading, would add up. Keep only what
        // evidence can look back to.
        if self.text.pos == self.text.buf.len() {
            self.compact_to(self.max_before + 1);
            self.text.buf.shrink_to_fit();
        }
        if self.scratch.hits.capacity() > 4096 {
            self.scratch.hits = Vec::new();
        }
        // An entry still open keeps what it has (like the after-lines of a finding).
        self.finish_block();
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
        if self.decoding.decoder.is_none() {
            self.start_decoding();
        }
        // The decoder is not finalized: the writer may go on, and a code unit split across
        // its writes must still join up. Only `finish` ends the byte stream.
        self.process(true);
        self.flush_pending();
    }

    /// End of a complete file: flush, then close the open run.
    pub fn finish(&mut self) {
        if self.decoding.decoder.is_none() {
            self.start_decoding();
        }
        if let Some(d) = self.decoding.decoder.as_mut() {
            d.decode(&[], &mut self.text.buf, true);
            self.out.stats.decode_replacements = d.replacements;
        }
        self.flush();
        self.close_run();
        self.pending.clear();
    }

    /// Takes the events produced so far.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.out.events)
    }

    /// Takes the diagnostics produced so far.
    pub fn drain_diagnostics(&mut self) -> Vec<Diagnostic> {
        std::mem::take(&mut self.out.diagnostics)
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
        &self.out.stats
    }

    /// Detected log kind, once known.
    pub fn kind(&self) -> Option<LogKind> {
        self.kind
    }

    /// Detected encoding, once known.
    pub fn encoding(&self) -> Option<Detected> {
        self.decoding.detected
    }

    /// The open (not ended) run, if any.
    pub fn open_run(&self) -> Option<&RunSummary> {
        self.run.as_ref().filter(|r| !r.ended).map(|r| &r.summary)
    }

    /// Raw offset up to which every complete line has been processed.
    pub fn processed_offset(&self) -> u64 {
        self.text.raw
    }

    /// Where to resume after a restart (see module docs).
    pub fn resume_point(&self) -> ResumePoint {
        let mut point = (self.text.raw, self.text.line, self.next_run_index);
        if let Some(r) = self.rewinds_run() {
            point = (r.start_offset, r.start_line, r.index);
        }
        for p in &self.pending {
            if p.offset < point.0 {
                point = (p.offset, p.finding.line, p.run_index);
            }
        }
        // An open `[ERROR]` entry is read again from its first line.
        if let Some(b) = self.block.as_ref().filter(|b| b.start_offset < point.0) {
            point = (b.start_offset, b.start_line, b.run_index);
        }
        if self.decoding.decoder.is_none() {
            point = (0, 1, 0);
        }
        // Nothing is carried at offset 0: every run starts at or after it.
        let run = self.carry_at(point.0, point.1);
        ResumePoint {
            offset: point.0,
            line: point.1,
            run_index: point.2,
            source_key: self.source_key.clone(),
            encoding: self.decoding.detected,
            kind: self.kind,
            run,
        }
    }

    fn start_decoding(&mut self) {
        let b = &self.decoding.sniff_buf;
        let d = sniff(&b[..sniff_len(b).unwrap_or(b.len())]);
        self.decoding.detected = Some(d);
        let mut dec = TextDecoder::new(d.encoding);
        let buf = std::mem::take(&mut self.decoding.sniff_buf);
        let skip = d.bom_len.min(buf.len());
        self.text.raw += skip as u64;
        dec.decode(&buf[skip..], &mut self.text.buf, false);
        self.decoding.decoder = Some(dec);
        self.process(false);
    }

    fn raw_len(&self, a: usize, b: usize) -> u64 {
        self.decoding
            .decoder
            .as_ref()
            .map_or((b - a) as u64, |d| d.raw_len(&self.text.buf[a..b]))
    }

    fn process(&mut self, eof: bool) {
        let max = self.ctx.max_line_bytes.max(16);
        loop {
            if self.text.skipping_long {
                let from = self.text.pos;
                match line_end(&self.text.buf, from, self.text.buf.len()) {
                    end if end < self.text.buf.len()
                        && (self.text.buf[end] == b'\n'
                            || end + 1 < self.text.buf.len()
                            || eof) =>
                    {
                        let after = skip_terminator(&self.text.buf, end);
                        self.text.raw += self.raw_len(from, after);
                        self.text.pos = after;
                        self.text.line += 1;
                        self.out.stats.lines += 1;
                        self.text.skipping_long = false;
                    }
                    _ => {
                        // Keep a trailing `\r`: it may be the first half of a CRLF.
                        let keep = usize::from(self.text.buf.last() == Some(&b'\r') && !eof);
                        let to = self.text.buf.len() - keep;
                        self.text.raw += self.raw_len(from, to);
                        self.text.pos = to;
                        break;
                    }
                }
            }
            if self.text.pos >= self.text.buf.len() {
                break;
            }
            let window_end = (self.text.pos + max + 1).min(self.text.buf.len());
            let window_eof = eof && window_end == self.text.buf.len();
            match complete_end(&self.text.buf[..window_end], self.text.pos, window_eof) {
                Some(end) => self.process_region(self.text.pos, end),
                None if self.text.buf.len() - self.text.pos > max => {
                    let cut = self.text.pos + max;
                    self.out.stats.truncated_lines += 1;
                    self.out.diagnostics.push(Diagnostic {
                        line: self.text.line,
                        message: format!("line longer than {max} bytes: matched its first {max} bytes, skipped the rest"),
                    });
                    metrics::counter!("patchwatch_truncated_lines_total").increment(1);
                    self.process_region(self.text.pos, cut);
                    self.text.skipping_long = true;
                }
                None if eof => {
                    // The partial last line, completed by the caller.
                    let end = self.text.buf.len();
                    self.text.buf.push(b'\n');
                    // The synthetic terminator is not in the file (2 raw bytes in UTF-16).
                    let synthetic = self.raw_len(end, end + 1);
                    self.process_region(self.text.pos, end + 1);
                    self.text.raw -= synthetic;
                    break;
                }
                None => break,
            }
        }
        self.compact();
        if let Some(d) = self.decoding.decoder.as_ref() {
            self.out.stats.decode_replacements = d.replacements;
        }
        self.send_phase();
    }

    fn compact(&mut self) {
        if self.text.pos < COMPACT_AT {
            return;
        }
        self.compact_to(KEEP_LINES);
        // Capacity is kept while data flows (re-growing it for every read costs page faults),
        // unless a long line blew it up; `flush_pending` gives it back when the writer pauses.
        if self.text.buf.capacity() > KEEP_CAPACITY
            && self.text.buf.len() < self.text.buf.capacity() / 4
        {
            self.text.buf.shrink_to(self.text.buf.len() * 2);
        }
    }

    /// Drops the text before the last `lines` lines before the scan position.
    fn compact_to(&mut self, lines: usize) {
        let floor = self.text.pos.saturating_sub(256 * 1024);
        let mut keep = self.text.pos;
        for _ in 0..lines {
            if keep <= floor {
                break;
            }
            // Step over the whole terminator: a CRLF is one line end, not two.
            let mut end = keep - 1;
            if self.text.buf[end] == b'\n' && end > floor && self.text.buf[end - 1] == b'\r' {
                end -= 1;
            }
            keep = line_start(&self.text.buf, floor, end);
        }
        self.text.buf.drain(..keep);
        self.text.pos -= keep;
        for p in &mut self.pending {
            p.resume_pos = p.resume_pos.and_then(|r| r.checked_sub(keep));
        }
        if let Some(b) = self.block.as_mut() {
            b.pos = b.pos.saturating_sub(keep);
        }
    }
}

/// How much of a file's start decides its encoding, once that much is there: its first line
/// (at least 16 bytes), at most 128 bytes. The same prefix decides however the file arrives,
/// whole or a few bytes at a time, so the encoding never depends on how reads were cut.
fn sniff_len(b: &[u8]) -> Option<usize> {
    const MIN: usize = 16;
    let max = 128.min(SNIFF_LEN);
    let k = memchr::memchr(b'\n', &b[..b.len().min(max)]).map_or(max, |i| (i + 1).max(MIN));
    (b.len() >= k).then_some(k)
}
