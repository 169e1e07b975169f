//! A finding's evidence and identity: the lines before and after its match, its id, its
//! filled-in remediation, and when it is ready to be emitted.

use std::collections::BTreeMap;

use super::{FileScanner, LineRef};
use crate::decode::display_line;
use crate::finding::{Event, EvidenceLine, Finding, LogKind};
use crate::frame::{line_start, lines};
use crate::rules::{fill, Rule};

/// Where a finding is in the file: with host, source key and rule, what its id is made of.
#[derive(Clone, Copy)]
pub(super) struct FindingAt<'a> {
    /// 1-based line number.
    pub(super) line: u64,
    /// Raw offset of the line's first byte.
    pub(super) offset: u64,
    /// Hash of the matched line's bytes (of the rule id for a derived finding).
    pub(super) line_hash: blake3::Hash,
    /// The matched line, for its time; `None` for a derived finding.
    pub(super) text: Option<&'a str>,
}

/// A finding not yet emitted: collecting lines after its match, or waiting for a rule it
/// requires to match in the same run.
pub(super) struct Pending {
    pub(super) finding: Finding,
    /// Lines to show after the match.
    pub(super) after: u32,
    /// Where the next after-line starts in the text buffer; `None` means at the next region's start.
    pub(super) resume_pos: Option<usize>,
    /// Required rules (catalog indices) that have not matched yet.
    pub(super) awaiting: Vec<usize>,
    pub(super) run_index: u32,
    /// Raw offset of the matched line: a resume point must not pass it.
    pub(super) offset: u64,
    /// After-lines looked at so far (empty ones count but are not shown).
    pub(super) seen_after: u32,
    /// Line number of the next after-line.
    pub(super) next_line: u64,
    /// First line of the `[ERROR]` entry this finding is in, while that entry is still open.
    pub(super) block: Option<u64>,
    /// Lines the entry's bound left out: not shown as after-lines either.
    pub(super) cut: Option<(u64, u64)>,
}

impl FileScanner {
    /// Up to `n` lines before `line`, for its evidence (the buffer keeps enough of them: see
    /// `max_before` and `KEEP_LINES`).
    pub(super) fn before_lines(&self, line: &LineRef, n: u32) -> Vec<EvidenceLine> {
        let number = line.number;
        let mut out = Vec::new();
        let mut pos = line.start;
        for k in 1..=u64::from(n) {
            if pos == 0 || number <= k {
                break;
            }
            let mut end = pos - 1;
            if self.text.buf[end] == b'\n' && end > 0 && self.text.buf[end - 1] == b'\r' {
                end -= 1;
            }
            let start = line_start(&self.text.buf, 0, end);
            let (s, _) = display_line(&self.text.buf[start..end], self.ctx.fallback_encoding);
            out.push(EvidenceLine {
                line: number - k,
                text: crate::cut(&s),
            });
            pos = start;
        }
        out.reverse();
        out
    }

    /// A finding of `rule` at `at` in the current run: its id, remediation (placeholders filled
    /// from `fields`, the context and the run's fields) and event time.
    pub(super) fn build_finding(
        &self,
        rule: &Rule,
        at: &FindingAt,
        evidence: Vec<EvidenceLine>,
        mut fields: BTreeMap<String, String>,
    ) -> Finding {
        let FindingAt {
            line: number,
            offset,
            line_hash,
            text,
        } = *at;
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
        h.update(line_hash.as_bytes());
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
        // The same rendering as `Rule::remediation_with`: a step whose clauses all dropped is
        // left out.
        let remediation = rule.remediation_with(lookup);
        // Titles may name fields too (a fallback is titled by the error it shows).
        let title = if rule.title.contains('{') {
            fill(&rule.title, lookup)
        } else {
            rule.title.clone()
        };
        // Run context a reader needs with the finding (who ran setup, which build).
        if let Some(rf) = run_fields {
            for key in ["user", "setup_version", "product", "product_version"] {
                if let Some(v) = rf.get(key) {
                    fields.entry(key.to_string()).or_insert_with(|| v.clone());
                }
            }
        }
        let time = text.and_then(|t| run.and_then(|r| r.model.line_time(t.as_bytes())));
        Finding {
            id,
            rule_id: rule.id.clone(),
            rule_version: rule.version,
            title,
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
    pub(super) fn collect_after(&mut self, start: usize, end: usize) {
        let fallback = self.ctx.fallback_encoding;
        for p in &mut self.pending {
            if p.seen_after >= p.after {
                continue;
            }
            let from = p.resume_pos.unwrap_or(start).clamp(start, end);
            for (s, e) in lines(&self.text.buf, from, end) {
                if p.seen_after >= p.after {
                    break;
                }
                // SetupLogReviewer counts empty context lines but does not show them; a line
                // an error block already showed (or cut) is not shown twice.
                let shown = p.finding.evidence.iter().any(|x| x.line == p.next_line)
                    || p.cut
                        .is_some_and(|(a, b)| a <= p.next_line && p.next_line <= b);
                if e > s && !shown {
                    let (t, _) = display_line(&self.text.buf[s..e], fallback);
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

    /// Emits the pending findings that have all their lines and requirements.
    pub(super) fn emit_ready(&mut self) {
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            if p.awaiting.is_empty() && p.seen_after >= p.after && p.block.is_none() {
                let p = self.pending.remove(i);
                self.emit_finding(p.finding);
            } else {
                i += 1;
            }
        }
    }

    /// Hands a finished finding out.
    pub(super) fn emit_finding(&mut self, f: Finding) {
        // Counted in `stats` only: the agent counts `patchwatch_findings_total` once, when the
        // finding is spooled (counting here too made every finding count twice).
        self.out.stats.findings += 1;
        self.out.events.push(Event::Finding(Box::new(f)));
    }
}
