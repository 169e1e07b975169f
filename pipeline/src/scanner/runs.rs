//! The runs of a file: opening one (explicitly at a header, or implied by the first line),
//! following its phase and times, and closing it (derived checks, primary cause, final update).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::evidence::FindingAt;
use super::FileScanner;
use crate::finding::{Event, LogKind, Outcome, RunSummary};
use crate::frame::line_start;
use crate::model::{self, LogModel};
use crate::rules::Catalog;
use crate::time::NaiveTime;

/// The current run of a file, with what the scanner and the log model track about it.
pub(super) struct OpenRun {
    /// The run as last reported, except for its times (see `materialize`).
    pub(super) summary: RunSummary,
    /// The log model of the file's kind, with its state for this run.
    pub(super) model: Box<dyn LogModel>,
    /// Started by a header line (not implied by the first line of a file).
    pub(super) explicit: bool,
    /// Its end was seen (or it was closed); later lines still attach to it.
    pub(super) ended: bool,
    /// Rule index → lines where it matched (confirmed) in this run.
    pub(super) hits: HashMap<usize, Vec<u64>>,
    /// (priority, line, finding id) of prioritized findings, fallbacks excluded.
    pub(super) prioritized: Vec<(u32, u64, String)>,
    /// The phase last reported in a run event.
    phase_sent: Option<String>,
    /// Times of the first and last timestamped lines, written into `summary` only when it
    /// is emitted (formatting on every line would cost more than matching it).
    pub(super) first_time: Option<NaiveTime>,
    last_time: Option<NaiveTime>,
}

/// A run as a resumed scanner takes it over without reading it again: who it is, whether it
/// ended, and which rules matched in it before the resume point (so that a rule that fires
/// once per run does not fire again, and a requirement met before stays met).
///
/// Only runs whose log model keeps nothing that matters are carried: ended runs, and open
/// runs of plain text. An open run of a structured log is read again from its first line
/// instead, since its model's state (phase, errors, settings) decides how it closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedRun {
    summary: RunSummary,
    explicit: bool,
    ended: bool,
    /// Rule id → the last line before the resume point where it matched.
    hits: BTreeMap<String, u64>,
}

/// What is kept of a run after the next one started, while findings of it may still be pending
/// (a resume point can then fall inside it).
pub(super) struct ClosedRun {
    summary: RunSummary,
    explicit: bool,
    hits: HashMap<usize, Vec<u64>>,
}

impl OpenRun {
    /// The run `carried` continues, for a scanner resumed after it; its model starts afresh.
    pub(super) fn carried(c: &CarriedRun, catalog: &Catalog, path: &str) -> OpenRun {
        let mut summary = c.summary.clone();
        // The file may have been renamed since.
        summary.path = path.to_string();
        let hits = c
            .hits
            .iter()
            .filter_map(|(id, &line)| Some((catalog.index_of(id)?, vec![line])))
            .collect();
        OpenRun {
            model: model::new_model(summary.log_kind),
            phase_sent: summary.phase.clone(),
            summary,
            explicit: c.explicit,
            ended: c.ended,
            hits,
            prioritized: Vec::new(),
            first_time: None,
            last_time: None,
        }
    }

    /// Records a line's time as the run's last time (and first, if none yet).
    pub(super) fn touch_time(&mut self, t: NaiveTime) {
        self.first_time.get_or_insert(t);
        self.last_time = Some(t);
        self.model.saw_time(t);
    }

    /// Writes the run's times into its summary, before the summary is emitted.
    fn materialize(&mut self) {
        if let (Some(first), Some(last)) = (self.first_time, self.last_time) {
            self.summary.started = Some(first.to_iso());
            self.summary.last_time = Some(last.to_iso());
            self.summary.duration_seconds = Some(last.epoch_seconds() - first.epoch_seconds());
        }
    }

    /// True when rule `req` matched in this run; with a `lookback`, at most that many lines
    /// before `line`.
    pub(super) fn requirement_met(&self, req: usize, line: u64, lookback: Option<u64>) -> bool {
        self.hits.get(&req).is_some_and(|lines| match lookback {
            Some(n) => lines.iter().any(|&l| l <= line && line - l <= n),
            None => !lines.is_empty(),
        })
    }
}

/// The run state to carry for a resume at `line`: its hits before that line, by rule id.
fn carry(
    catalog: &Catalog,
    summary: &RunSummary,
    explicit: bool,
    ended: bool,
    hits: &HashMap<usize, Vec<u64>>,
    line: u64,
) -> CarriedRun {
    let hits = hits
        .iter()
        .filter_map(|(&ri, lines)| {
            let last = lines.iter().copied().filter(|&l| l < line).max()?;
            Some((catalog.rules()[ri].id.clone(), last))
        })
        .collect();
    CarriedRun {
        summary: summary.clone(),
        explicit,
        ended,
        hits,
    }
}

impl FileScanner {
    /// True when the current run is read again from its first line on a resume (see
    /// [`CarriedRun`]).
    pub(super) fn rewinds_run(&self) -> Option<&RunSummary> {
        self.run
            .as_ref()
            .filter(|r| !r.ended && (r.explicit || r.summary.log_kind != LogKind::Plain))
            .map(|r| &r.summary)
    }

    /// The run a scanner resumed at raw `offset` (line `line`) must continue without reading
    /// its start: the current run or the one before it, when `offset` lies inside it.
    pub(super) fn carry_at(&self, offset: u64, line: u64) -> Option<CarriedRun> {
        if let Some(r) = self.run.as_ref() {
            if offset > r.summary.start_offset {
                return Some(carry(
                    &self.catalog,
                    &r.summary,
                    r.explicit,
                    r.ended,
                    &r.hits,
                    line,
                ));
            }
        }
        let p = self.closed.as_ref()?;
        let before_current = self
            .run
            .as_ref()
            .is_none_or(|r| offset < r.summary.start_offset);
        (before_current && offset > p.summary.start_offset)
            .then(|| carry(&self.catalog, &p.summary, p.explicit, true, &p.hits, line))
    }

    /// Keeps the open run's last time current with the last timestamped line of
    /// `text[start..end]` (the region just processed).
    pub(super) fn note_last_time(&mut self, start: usize, end: usize) {
        let (Some(_), Some(run)) = (self.kind, self.run.as_mut()) else {
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
            let le = if matches!(self.text.buf[e - 1], b'\n' | b'\r') {
                e - 1
            } else {
                e
            };
            let ls = line_start(&self.text.buf, start, le);
            if let Some(t) = run.model.line_time(&self.text.buf[ls..le]) {
                run.touch_time(t);
                return;
            }
            e = ls;
        }
    }

    /// The current run, opening an implicit one (a file's lines before any header).
    pub(super) fn ensure_run(&mut self, number: u64, offset: u64) -> &mut OpenRun {
        if self.run.is_none() {
            self.start_run(number, offset, false);
        }
        self.run.as_mut().expect("run just opened")
    }

    /// Opens run number `next_run_index` at line `number`, raw offset `offset`, and reports it.
    pub(super) fn start_run(&mut self, number: u64, offset: u64, explicit: bool) {
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
        self.out.events.push(Event::Run(Box::new(summary.clone())));
        let model = model::new_model(summary.log_kind);
        // Its findings may still be pending, so a resume point can fall inside it.
        self.closed = self.run.take().map(|r| ClosedRun {
            summary: r.summary,
            explicit: r.explicit,
            hits: r.hits,
        });
        self.run = Some(OpenRun {
            summary,
            model,
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
    pub(super) fn close_run_keep(&mut self, interrupted: bool) {
        let Some(mut run) = self.run.take() else {
            return;
        };
        if run.ended {
            self.run = Some(run);
            return;
        }
        // A run cut short (by the next run, or the end of a complete file) that logged errors
        // failed; one without errors is left in progress, since its log may simply stop there.
        if interrupted
            && run.summary.outcome == Outcome::InProgress
            && (!run.prioritized.is_empty() || run.model.has_errors())
        {
            run.summary.outcome = Outcome::Failed;
        }
        let derived = run.model.derived_findings(&mut run.summary);
        let catalog = Arc::clone(&self.catalog);
        // A fallback shows only when nothing that would outrank it names the cause: the best
        // priority among the run's findings and its other derived findings.
        let best = run
            .prioritized
            .iter()
            .map(|(p, _, _)| *p)
            .chain(derived.iter().filter_map(|d| {
                catalog
                    .get(d.rule_id)
                    .filter(|r| !r.fallback)
                    .and_then(|r| r.priority)
            }))
            .min();
        self.run = Some(run);
        for d in derived {
            let Some(rule) = catalog.get(d.rule_id) else {
                tracing::warn!(rule = d.rule_id, "Derived rule missing from the catalog.");
                continue;
            };
            if rule.fallback && best.is_some_and(|b| rule.priority.is_none_or(|p| b <= p)) {
                continue;
            }
            // A derived finding has no line of its own: the rule id stands in for its bytes.
            let at = FindingAt {
                line: d.line,
                offset: d.offset,
                line_hash: blake3::hash(d.rule_id.as_bytes()),
                text: None,
            };
            let f = self.build_finding(rule, &at, d.evidence, d.fields);
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
        run.materialize();
        if run.summary.outcome != Outcome::Succeeded {
            run.summary.primary_finding_id = run
                .prioritized
                .iter()
                .min_by_key(|(p, l, _)| (*p, *l))
                .map(|(_, _, id)| id.clone());
        }
        let summary = run.summary.clone();
        self.out.events.push(Event::Run(Box::new(summary)));
    }

    /// Closes the current run, cut short (by the next run or the end of a complete file).
    pub(super) fn close_run(&mut self) {
        // Findings waiting on a requirement that never came in this run are dropped with it.
        if let Some(idx) = self.run.as_ref().map(|r| r.summary.index) {
            self.pending
                .retain(|p| p.run_index != idx || p.awaiting.is_empty());
        }
        self.close_run_keep(true);
    }

    /// Reports the open run again when its phase changed.
    pub(super) fn send_phase(&mut self) {
        if let Some(run) = self.run.as_mut().filter(|r| !r.ended) {
            if run.summary.phase != run.phase_sent {
                run.phase_sent = run.summary.phase.clone();
                run.materialize();
                let s = run.summary.clone();
                self.out.events.push(Event::Run(Box::new(s)));
            }
        }
    }
}
