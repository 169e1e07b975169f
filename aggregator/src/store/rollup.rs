//! The fleet row's rollup: which of a host's runs say where it is now, and its state over them.
//!
//! A host writes several logs in one maintenance (ExchangeSetup.log, ServiceControl.log, one
//! Windows Installer log per session); the latest run of each file says where that log stands.
//! Files the agent last saw change long before the host's latest activity belong to an earlier
//! maintenance and no longer count, so an old failure does not outlive the next patch.

use std::collections::HashMap;

use super::RunRow;
use crate::model::{outcome_name, state_rank, CauseRecord, RunRecord};

/// A file's run counts as current when the agent saw it change within this span of the host's
/// latest run change: a maintenance (setup, its Windows Installer sessions and services)
/// takes hours, the next one comes weeks later.
pub(crate) const CURRENT_SPAN_NS: i64 = 3 * 24 * 3600 * 1_000_000_000;

/// One host's current runs, worst and active first (failed, stalled, in progress, succeeded;
/// within a state the most recently changed first). `runs` holds the latest run of each of
/// the host's files.
pub(crate) fn current_runs(mut runs: Vec<RunRow>) -> Vec<RunRow> {
    let newest = runs.iter().map(|r| r.updated_ns).max().unwrap_or(0);
    runs.retain(|r| r.updated_ns >= newest.saturating_sub(CURRENT_SPAN_NS));
    runs.sort_by(|a, b| {
        state_rank(outcome_name(a.outcome))
            .cmp(&state_rank(outcome_name(b.outcome)))
            .then(b.updated_ns.cmp(&a.updated_ns))
            .then(a.run_id.cmp(&b.run_id))
    });
    runs
}

/// The path the agent's preflight task records for its runs (`pipeline::preflight::SOURCE`):
/// a prediction from the server's state, not a setup run, so it has a place of its own on the
/// row ([`crate::model::HostRecord::preflight`]) and no say in the host's state.
pub(crate) const PREFLIGHT_SOURCE: &str = "preflight";

/// The current runs of every host, from the latest run of each (host, file), and each host's
/// latest preflight run.
pub(crate) fn current_by_host(
    file_runs: Vec<RunRow>,
) -> (HashMap<String, Vec<RunRow>>, HashMap<String, RunRow>) {
    let mut by_host: HashMap<String, Vec<RunRow>> = HashMap::new();
    let mut preflight = HashMap::new();
    for r in file_runs {
        if r.source_path == PREFLIGHT_SOURCE {
            preflight.insert(r.host.clone(), r);
            continue;
        }
        by_host.entry(r.host.clone()).or_default().push(r);
    }
    let current = by_host
        .into_iter()
        .map(|(h, runs)| (h, current_runs(runs)))
        .collect();
    (current, preflight)
}

/// Each host's state as a [`state_rank`], from the latest run of each of its files (as
/// [`current_by_host`] takes them): the rank of its worst current run, the same rule that
/// makes [`crate::model::HostRecord::state`]. Hosts without a current run are absent (their
/// state is `unspecified`, rank 4).
///
/// The fleet page orders, filters and counts hosts by this rank, so the stores keep it in
/// `hosts.state_rank`, recomputed for the hosts a batch touches inside its transaction. The
/// alternatives, at 10,000 hosts: in SQL per request, the rollup is the latest run of every
/// (host, file), a correlated anti-join over every run (23 ms on SQLite for that query alone,
/// `BENCHMARKS.md`), then the span rule per host, on every page view and live refresh; a
/// computed list cached for a second still pays the whole fleet's queries and assembly (most
/// of the ~0.45 s `/fleet/rows` took, `benches/src/bin/fleet_page.rs`) once a second under
/// ingest, on the workers ingest needs. Kept on ingest, it costs a batch one indexed read of
/// its host's runs (measured in the same bench), and a page is an index range scan.
pub(crate) fn state_ranks(file_runs: Vec<RunRow>) -> HashMap<String, u8> {
    current_by_host(file_runs)
        .0
        .into_iter()
        .filter_map(|(host, runs)| {
            let worst = runs.first()?;
            Some((host, state_rank(outcome_name(worst.outcome))))
        })
        .collect()
}

/// Whether a run needs a cause shown: it failed or stalled.
pub(crate) fn needs_cause(r: &RunRow) -> bool {
    matches!(outcome_name(r.outcome), "failed" | "stalled")
}

/// What the cause query needs: the primary finding ids of the runs that name one, and the
/// runs that need a cause but name none (their most severe finding stands in).
pub(crate) fn cause_keys<'a>(
    current: impl Iterator<Item = &'a RunRow>,
) -> (Vec<String>, Vec<String>) {
    let (mut ids, mut runs) = (Vec::new(), Vec::new());
    for r in current.filter(|r| needs_cause(r)) {
        if r.primary_finding_id.is_empty() {
            runs.push(r.run_id.clone());
        } else {
            ids.push(r.primary_finding_id.clone());
        }
    }
    (ids, runs)
}

/// A finding row of the cause query: id, run, rule, title, severity number, seq.
pub(crate) type CauseRow = (String, String, String, String, i32, i64);

/// Each failed or stalled run's cause, most severe first, else in `current` order: the finding the run names, else
/// its most severe finding (the earliest of equals). A run whose primary finding is not
/// stored (yet) has none.
pub(crate) fn causes(current: &[RunRecord], rows: &[CauseRow]) -> Vec<CauseRecord> {
    let mut causes: Vec<CauseRecord> = current
        .iter()
        .filter(|r| matches!(r.outcome.as_str(), "failed" | "stalled"))
        .filter_map(|r| {
            let named = rows
                .iter()
                .find(|f| !r.primary_finding_id.is_empty() && f.0 == r.primary_finding_id);
            let found = named.or_else(|| {
                rows.iter()
                    .filter(|f| r.primary_finding_id.is_empty() && f.1 == r.run_id)
                    .max_by(|a, b| a.4.cmp(&b.4).then(b.5.cmp(&a.5)))
            })?;
            Some(CauseRecord {
                run_id: r.run_id.clone(),
                finding_id: found.0.clone(),
                rule_id: found.2.clone(),
                title: found.3.clone(),
                severity: crate::model::severity_name(found.4)
                    .unwrap_or("unspecified")
                    .to_owned(),
                primary: named.is_some(),
            })
        })
        .collect();
    // The most severe cause leads (stable: otherwise in run order).
    causes.sort_by_key(|c| std::cmp::Reverse(crate::model::severity_number(&c.severity)));
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, path: &str, outcome: i32, updated_ns: i64) -> RunRow {
        RunRow {
            run_id: id.into(),
            host: "EX01".into(),
            source_path: path.into(),
            log_kind: 1,
            run_index: 0,
            outcome,
            mode: String::new(),
            product: String::new(),
            target_build: String::new(),
            installed_build: String::new(),
            phase: String::new(),
            exit_code: None,
            primary_finding_id: String::new(),
            started_ns: 0,
            updated_ns,
            last_line_ns: 0,
        }
    }

    const HOUR: i64 = 3600 * 1_000_000_000;

    #[test]
    fn a_failure_outranks_a_later_run_of_another_log() {
        let runs = current_runs(vec![
            run("svc", "ServiceControl.log", 2, 10 * HOUR),
            run("setup", "ExchangeSetup.log", 3, 9 * HOUR),
            run("msi", "MSI1.LOG", 1, 8 * HOUR),
            run("stuck", "MSI2.LOG", 4, 7 * HOUR),
        ]);
        let order: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(order, ["setup", "stuck", "msi", "svc"]);
    }

    #[test]
    fn runs_of_an_earlier_maintenance_do_not_count() {
        let runs = current_runs(vec![
            run("old-msi", "MSI0.LOG", 3, 0),
            run("now", "ExchangeSetup.log", 2, 40 * 24 * HOUR),
        ]);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].run_id, "now");
    }

    #[test]
    fn a_run_without_a_named_cause_shows_its_worst_finding() {
        let mut failed: RunRecord = run("r1", "ExchangeSetup.log", 3, 1).into();
        failed.primary_finding_id = String::new();
        let mut named: RunRecord = run("r2", "MSI1.LOG", 3, 1).into();
        named.primary_finding_id = "p".into();
        let ok: RunRecord = run("r3", "MSI2.LOG", 2, 1).into();
        let rows: Vec<CauseRow> = vec![
            ("a".into(), "r1".into(), "x".into(), "A".into(), 3, 1),
            ("b".into(), "r1".into(), "y".into(), "B".into(), 5, 2),
            ("c".into(), "r1".into(), "z".into(), "C".into(), 5, 3),
            ("p".into(), "r2".into(), "w".into(), "P".into(), 3, 4),
        ];
        let got = causes(&[failed, named, ok], &rows);
        let ids: Vec<(&str, bool)> = got
            .iter()
            .map(|c| (c.finding_id.as_str(), c.primary))
            .collect();
        assert_eq!(ids, [("b", false), ("p", true)]);
    }
}
