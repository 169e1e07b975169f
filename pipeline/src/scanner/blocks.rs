//! Multi-line errors carried whole: an ExchangeSetup.log `[ERROR]` entry (its timestamped line
//! and every continuation line up to the next timestamped one), and a failed custom action's
//! own output (from the first line naming the action to its `CustomAction X ... N` line).
//!
//! Both are bounded at [`MAX_LINES`] lines and [`MAX_BYTES`] bytes; what is left out is
//! counted and marked (`… (N more lines)`). An `[ERROR]` entry is collected forwards, one line
//! at a time, only while it is open (it starts on a structural `[ERROR]` line, so no other line
//! is looked at); a custom action's block is read backwards from the text buffer, which keeps
//! [`LOOKBACK`] lines before the scan position, when its result line is seen. Neither depends
//! on how the input was split into reads.

use std::collections::BTreeMap;

use super::{FileScanner, LineRef};
use crate::decode::display_line;
use crate::finding::{EvidenceLine, LogKind};
use crate::frame::{line_start, lines, skip_terminator};
use crate::model::errors;

/// Most lines an error block shows.
pub(super) const MAX_LINES: usize = 64;
/// Most bytes of text an error block shows.
pub(super) const MAX_BYTES: usize = 16 << 10;
/// Lines a custom action's block may reach back: the text buffer always keeps this many before
/// the scan position (see `KEEP_LINES` and `flush_pending`).
pub(super) const LOOKBACK: usize = MAX_LINES - 2;

/// An ExchangeSetup.log `[ERROR]` entry being collected.
pub(super) struct OpenBlock {
    pub(super) start_line: u64,
    pub(super) start_offset: u64,
    pub(super) run_index: u32,
    /// Where the next line to look at starts in the text buffer.
    pub(super) pos: usize,
    next_line: u64,
    body: BlockBody,
    /// The two lines before the entry (context for the run's fallback, not the entry).
    before: Vec<EvidenceLine>,
    /// The task named by `Ending processing X` on the line that ended the entry.
    ended_task: Option<String>,
    /// setup.exe's console error: no timestamped line follows, so it ends with the line that
    /// closes its quoted message (`...".`).
    console: bool,
}

/// True when a console error's line closes its quoted message.
fn closes_console_error(t: &str) -> bool {
    t.trim_end().ends_with("\".")
}

/// Lines kept, bytes used, and what was left out.
#[derive(Default)]
struct BlockBody {
    lines: Vec<EvidenceLine>,
    bytes: usize,
    /// Lines left out past the bound, and the first of them.
    more: u64,
    first_more: u64,
}

impl BlockBody {
    fn push(&mut self, line: u64, text: String) {
        if self.more == 0 && self.lines.len() < MAX_LINES && self.bytes + text.len() <= MAX_BYTES {
            self.bytes += text.len();
            self.lines.push(EvidenceLine { line, text });
        } else {
            if self.more == 0 {
                self.first_more = line;
            }
            self.more += 1;
        }
    }
}

/// A finished error block.
pub(super) struct Block {
    pub(super) start_line: u64,
    /// Shown lines, plus a final `… (N more lines)` mark when some were left out.
    pub(super) evidence: Vec<EvidenceLine>,
    /// Lines left out: `(first, last)`.
    pub(super) omitted: Option<(u64, u64)>,
    /// What the error says (see [`errors::error_fields`]).
    pub(super) fields: BTreeMap<String, String>,
}

/// The mark that ends a cut block.
fn more_mark(line: u64, n: u64) -> EvidenceLine {
    EvidenceLine {
        line,
        text: format!("… ({n} more lines)"),
    }
}

impl Block {
    /// Adds the block to a finding's evidence (its own context lines, the matched line among
    /// them) and its fields where the finding has none of that name.
    pub(super) fn merge_into(
        &self,
        evidence: &mut Vec<EvidenceLine>,
        fields: &mut BTreeMap<String, String>,
    ) {
        let omitted = |l: u64| self.omitted.is_some_and(|(a, b)| a <= l && l <= b);
        evidence.retain(|e| !omitted(e.line));
        for e in &self.evidence {
            if !evidence.iter().any(|x| x.line == e.line) {
                evidence.push(e.clone());
            }
        }
        evidence.sort_by_key(|e| e.line);
        for (k, v) in &self.fields {
            fields.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

impl FileScanner {
    /// Opens an `[ERROR]` entry at `line` (a timestamped ExchangeSetup.log line with the tag, a
    /// readiness setting that threw, or setup.exe's console error when `console`).
    pub(super) fn open_block(&mut self, line: &LineRef, text: &str, run_index: u32, console: bool) {
        self.finish_block();
        let mut body = BlockBody::default();
        body.push(line.number, crate::cut(text));
        let before = self.before_lines(line, 2);
        self.block = Some(OpenBlock {
            before,
            ended_task: None,
            console,
            start_line: line.number,
            start_offset: line.offset,
            run_index,
            pos: skip_terminator(&self.text.buf, line.end),
            next_line: line.number + 1,
            body,
        });
        if console && closes_console_error(text) {
            self.finish_block();
        }
    }

    /// Gives the open entry the complete lines of `text[..upto]` it has not seen; a
    /// timestamped line ends it.
    pub(super) fn advance_block(&mut self, upto: usize) {
        let Some(b) = self.block.as_mut() else {
            return;
        };
        let fallback = self.ctx.fallback_encoding;
        let mut ended = false;
        for (s, e) in lines(&self.text.buf, b.pos.min(upto), upto) {
            let raw = &self.text.buf[s..e];
            if crate::time::exchange_prefix(raw).is_some() {
                // `[time] [2] Ending processing initialize-DomainPermissions` names the task.
                let (t, _) = display_line(raw, fallback);
                b.ended_task = t
                    .split_once("] Ending processing ")
                    .map(|(_, task)| task.trim().to_string());
                ended = true;
                break;
            }
            // Empty lines count but are not shown (as SetupLogReviewer does).
            let mut closes = false;
            if e > s {
                let (t, _) = display_line(raw, fallback);
                closes = b.console && closes_console_error(&t);
                b.body.push(b.next_line, crate::cut(&t));
            }
            b.next_line += 1;
            if closes {
                ended = true;
                break;
            }
        }
        b.pos = upto;
        if ended {
            self.finish_block();
        }
    }

    /// Ends the open entry: its findings get it, and the run's model sees it.
    pub(super) fn finish_block(&mut self) {
        let Some(b) = self.block.take() else {
            return;
        };
        let BlockBody {
            mut lines,
            more,
            first_more,
            ..
        } = b.body;
        let mut fields = errors::error_fields(&lines);
        const BEGAN: &str = "] Beginning processing ";
        let began = b.before.iter().find_map(|e| {
            memchr::memmem::find(e.text.as_bytes(), BEGAN.as_bytes())
                .map(|i| e.text[i + BEGAN.len()..].trim().to_string())
        });
        if let Some(task) = b.ended_task.or(began) {
            fields.entry("task".into()).or_insert(task);
        }
        let end_line = b.next_line - 1;
        let omitted = (more > 0).then_some((first_more, end_line));
        if more > 0 {
            lines.push(more_mark(first_more, more));
        }
        let block = Block {
            start_line: b.start_line,
            evidence: lines,
            omitted,
            fields,
        };
        for p in &mut self.pending {
            if p.block == Some(block.start_line) && p.run_index == b.run_index {
                block.merge_into(&mut p.finding.evidence, &mut p.finding.fields);
                p.block = None;
                p.cut = block.omitted;
            }
        }
        if let Some(run) = self.run.as_mut().filter(|r| r.summary.index == b.run_index) {
            run.model.error_block(
                block.start_line,
                [&b.before, &block.evidence],
                &block.fields,
            );
        }
        self.emit_ready();
    }

    /// The open entry that line `number` belongs to, if any (by its first line).
    pub(super) fn block_of(&self, number: u64) -> Option<u64> {
        self.block
            .as_ref()
            .filter(|b| b.start_line <= number && number < b.next_line.max(b.start_line + 1))
            .map(|b| b.start_line)
    }

    /// True when an ExchangeSetup.log line starts an `[ERROR]` entry: `[time] [n] [ERROR] ...`.
    pub(super) fn starts_error_entry(&self, raw: &[u8]) -> bool {
        self.kind == Some(LogKind::ExchangeSetup)
            && crate::time::exchange_prefix(raw).is_some()
            && raw
                .get(26..)
                .and_then(|r| memchr::memmem::find(&r[..r.len().min(24)], b"] [ERROR]"))
                .is_some()
    }

    /// A failed custom action's output: the lines from the first one naming `action` (within
    /// [`LOOKBACK`] lines, and not before the run's first line) to its result `line`. When the
    /// action's start is further back, the block shows the last lines before the result after
    /// a mark saying how many were left out.
    pub(super) fn custom_action_block(&self, line: &LineRef, action: &str) -> Vec<EvidenceLine> {
        let floor_line = self.run.as_ref().map_or(1, |r| r.summary.start_line);
        let fallback = self.ctx.fallback_encoding;
        // (line number, start, end) of the lines before `line`, newest first.
        let mut back: Vec<(u64, usize, usize)> = Vec::new();
        let mut bytes = 0;
        let mut pos = line.start;
        let mut number = line.number;
        while back.len() < LOOKBACK && pos > 0 && number > floor_line {
            let mut end = pos - 1;
            if self.text.buf[end] == b'\n' && end > 0 && self.text.buf[end - 1] == b'\r' {
                end -= 1;
            }
            let start = line_start(&self.text.buf, 0, end);
            bytes += end - start;
            if bytes > MAX_BYTES {
                break;
            }
            number -= 1;
            back.push((number, start, end));
            pos = start;
        }
        let name = action.as_bytes();
        let start_at = back
            .iter()
            .rposition(|&(_, s, e)| memchr::memmem::find(&self.text.buf[s..e], name).is_some());
        let mut out = Vec::new();
        let keep = match start_at {
            Some(i) => &back[..=i],
            None => {
                if let Some(&(first, _, _)) = back.last() {
                    if first > floor_line {
                        out.push(EvidenceLine {
                            line: first - 1,
                            text: format!("… (earlier lines of {action} not shown)"),
                        });
                    }
                }
                &back[..]
            }
        };
        for &(n, s, e) in keep.iter().rev() {
            if e > s {
                let (t, _) = display_line(&self.text.buf[s..e], fallback);
                out.push(EvidenceLine {
                    line: n,
                    text: crate::cut(&t),
                });
            }
        }
        out
    }
}
