//! Rule application: the anchor hits of a region grouped into lines, structural lines handed
//! to the log model, rule matches confirmed (suppressions, regex, requirements, once per run)
//! and turned into pending findings, and the candidates for a run's primary cause.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::evidence::{FindingAt, Pending};
use super::{FileScanner, LineRef};
use crate::decode::display_line;
use crate::finding::{EvidenceLine, Finding, LogKind};
use crate::frame::{count_lines, line_end, line_start, lines, skip_terminator};
use crate::model::{self, Boundary, Line};
use crate::rules::{Rule, Target};

impl FileScanner {
    /// Matches the lines of `text[start..end]`. `end` is a line end, or the cut of a line longer
    /// than the limit (its terminator is counted when skipping reaches it).
    pub(super) fn process_region(&mut self, start: usize, end: usize) {
        if self.kind.is_none() || self.source_key.is_none() {
            if let Some((s, e)) = lines(&self.text.buf, start, end).find(|&(s, e)| e > s) {
                let first = self.text.buf[s..e].to_vec();
                self.kind
                    .get_or_insert_with(|| model::detect_kind(&first, &self.ctx.path));
                if self.source_key.is_none() {
                    let h = blake3::hash(&first[..first.len().min(1024)]);
                    self.source_key = Some(h.to_hex()[..16].to_string());
                }
            }
        }
        let mut hits = std::mem::take(&mut self.scratch.hits);
        hits.clear();
        let kind = self.kind.unwrap_or(LogKind::Plain);
        let region = &self.text.buf[start..end];
        self.catalog
            .kind_matcher(kind)
            .for_piece(region)
            .for_each(region, |p, a| hits.push((start + p, a)));
        let (mut cur, mut line, mut raw) = (start, self.text.line, self.text.raw);
        let mut i = 0;
        while i < hits.len() {
            let ls = line_start(&self.text.buf, start, hits[i].0);
            let le = line_end(&self.text.buf, hits[i].0, end);
            let mut j = i;
            while j < hits.len() && hits[j].0 < le.max(ls + 1) {
                j += 1;
            }
            line += count_lines(&self.text.buf[cur..ls]);
            raw += self.raw_len(cur, ls);
            cur = ls;
            let anchors: Vec<u32> = hits[i..j].iter().map(|h| h.1).collect();
            let at = LineRef {
                start: ls,
                end: le,
                number: line,
                offset: raw,
            };
            self.process_line(at, &anchors);
            i = j;
        }
        self.scratch.hits = hits;
        self.advance_block(end);
        let tail_lines = count_lines(&self.text.buf[cur..end]);
        self.out.stats.lines += line + tail_lines - self.text.line;
        self.text.line = line + tail_lines;
        self.text.raw = raw + self.raw_len(cur, end);
        self.text.pos = end;
        self.collect_after(start, end);
        self.note_last_time(start, end);
    }

    /// Decodes a line into a reused buffer (UTF-8 when valid, else the legacy code page).
    fn decode_line(&mut self, a: usize, b: usize) -> String {
        let mut buf = std::mem::take(&mut self.scratch.line);
        buf.clear();
        match std::str::from_utf8(&self.text.buf[a..b]) {
            Ok(s) => buf.push_str(s),
            Err(_) => {
                let (s, _) = display_line(&self.text.buf[a..b], self.ctx.fallback_encoding);
                self.out.stats.legacy_lines += 1;
                buf.push_str(&s);
            }
        }
        buf
    }

    /// Handles a line that hit `anchors` (anchor ids of the kind's matcher): structural
    /// anchors go to the run's log model, rule anchors to [`FileScanner::try_rule`].
    fn process_line(&mut self, at: LineRef, anchors: &[u32]) {
        let LineRef { number, offset, .. } = at;
        let kind = self.kind.unwrap_or(LogKind::Plain);
        // The open `[ERROR]` entry takes the lines up to this one, and this one unless it is
        // timestamped (which ends the entry).
        if self.block.is_some() {
            self.advance_block(skip_terminator(&self.text.buf, at.end));
        }
        let text = self.decode_line(at.start, at.end);
        let catalog = Arc::clone(&self.catalog);
        let mut end_outcome = None;
        let mut error_line = false;
        let mut ca_line = false;
        // A readiness setting that threw, or setup.exe's console error: an error block too.
        let mut threw_line = false;
        let mut console_error = false;
        let mut seen_rules = std::mem::take(&mut self.scratch.rules);
        seen_rules.clear();
        for &a in anchors {
            for &t in &catalog.kind_matcher(kind).targets[a as usize] {
                match t {
                    Target::Structural(si) => {
                        if model::opens_run(
                            kind,
                            si,
                            self.run.as_ref().map(|r| (&*r.model, &r.summary)),
                        ) {
                            self.close_run();
                            self.start_run(number, offset, true);
                        }
                        error_line |= si == model::s::ERROR;
                        ca_line |= si == model::s::MSI_CUSTOM_ACTION;
                        threw_line |= si == model::s::HAS_EXCEPTION;
                        console_error |= si == model::s::GENERATED;
                        let run = self.ensure_run(number, offset);
                        let l = Line {
                            number,
                            offset,
                            text: &text,
                        };
                        if let Boundary::End(o) = run.model.observe_line(si, &l, &mut run.summary) {
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
        let raw = &self.text.buf[at.start..at.end];
        let console = console_error
            && kind == LogKind::ExchangeSetup
            && crate::time::exchange_prefix(raw).is_none();
        if (error_line && self.starts_error_entry(raw))
            || console
            || (threw_line && kind == LogKind::ExchangeSetup)
        {
            let run_index = self.ensure_run(number, offset).summary.index;
            self.open_block(&at, &text, run_index, console);
        }
        // A custom action's result: the model keeps its output for the run's fallback culprit.
        if let Some((action, _)) = ca_line
            .then(|| model::msi::custom_action_result(&text))
            .flatten()
        {
            let block = self.custom_action_block(&at, action);
            let fields = model::errors::output_fields(&block);
            if let Some(run) = self.run.as_mut() {
                run.model.error_block(number, [&block, &[]], &fields);
            }
        }
        for &ri in &seen_rules {
            let rule = &catalog.rules()[ri];
            if rule.derived || !rule.applies_to(kind) {
                continue;
            }
            self.try_rule(rule, ri, &at, &text);
        }
        self.scratch.rules = seen_rules;
        // The first and the closing line of a run fix its times; the last line of each region
        // (note_last_time) keeps the end current in between.
        if let Some(run) = self
            .run
            .as_mut()
            .filter(|r| !r.ended && (r.first_time.is_none() || end_outcome.is_some()))
        {
            if let Some(t) = run.model.line_time(text.as_bytes()) {
                run.touch_time(t);
            }
        }
        if let Some(o) = end_outcome {
            if let Some(run) = self.run.as_mut() {
                run.summary.outcome = o;
            }
            self.close_run_keep(false);
        }
        self.scratch.line = text;
    }

    /// Confirms rule `ri` on `line` (decoded as `text`): once per run, suppressions, regex,
    /// requirements. A confirmed match becomes a pending finding.
    fn try_rule(&mut self, rule: &Rule, ri: usize, line: &LineRef, text: &str) {
        let (number, offset) = (line.number, line.offset);
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
        let mut fields = BTreeMap::new();
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
            .filter(|req| !run.requirement_met(*req, number, rule.lookback))
            .collect();
        if !awaiting.is_empty() && rule.lookback.is_some() {
            return;
        }
        let mut evidence = self.before_lines(line, rule.before);
        evidence.push(EvidenceLine {
            line: number,
            text: crate::cut(text),
        });
        // A custom action's result line carries the action's own output.
        if self.kind == Some(LogKind::Msi) {
            if let Some((action, _)) = model::msi::custom_action_result(text) {
                let block = self.custom_action_block(line, action);
                for (k, v) in model::errors::output_fields(&block) {
                    fields.entry(k).or_insert(v);
                }
                evidence.retain(|e| !block.iter().any(|b| b.line == e.line));
                evidence.extend(block);
                evidence.sort_by_key(|e| e.line);
            }
        }
        let at = FindingAt {
            line: number,
            offset,
            line_hash: blake3::hash(&self.text.buf[line.start..line.end]),
            text: Some(text),
        };
        let finding = self.build_finding(rule, &at, evidence, fields);
        let p = Pending {
            finding,
            after: rule.after,
            resume_pos: Some(skip_terminator(&self.text.buf, line.end)),
            awaiting,
            run_index,
            offset,
            seen_after: 0,
            next_line: number + 1,
            block: self.block_of(number),
            cut: None,
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

    /// Counts a finding that can be its run's primary cause.
    fn register_priority(&mut self, rule: &Rule, f: &Finding) {
        if let (Some(p), false, Some(run)) = (rule.priority, rule.fallback, self.run.as_mut()) {
            if run.summary.index == f.run_index {
                run.prioritized.push((p, f.line, f.id.clone()));
            }
        }
    }
}
