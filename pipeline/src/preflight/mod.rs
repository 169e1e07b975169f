//! Preflight: the known failures a server's current state predicts, found before an update
//! runs.
//!
//! Each check ([`checks::CHECKS`]) is data: a condition, what to read, and the catalog rule of
//! the failure it predicts. [`evaluate`] reads a [`SystemState`] and [`findings`] turns what
//! it found into ordinary [`Finding`]s with that rule's id, remediation and priority, category
//! [`CATEGORY`], titled "Will fail with: <rule title>".
//!
//! Why here: the checks and their evaluation are pure (no IO of their own; everything goes
//! through the [`SystemState`] trait) and need the catalog, so they sit beside the rules and
//! are tested on any OS with [`FakeState`]. The collector owns the Windows reader, the clock
//! and the schedule.
//!
//! Clearing: each evaluation is one snapshot, a run of its own (`run_id` from the caller,
//! [`run_summary`]): its findings carry that run id, and a host's latest preflight run
//! supersedes the previous ones. A condition that is gone is absent from the next snapshot;
//! a clean snapshot is a succeeded run without findings.

pub mod checks;
mod state;

use std::collections::BTreeMap;

pub use checks::{Check, Probe, RegProbe, RegTest, Status, CHECKS};
pub use state::{Certificate, FakeState, Hive, RegValue, StateError, SystemState};

use crate::{Catalog, EvidenceLine, Finding, LogKind, Outcome, RunSummary, Severity};

/// Category of every preflight finding and `mode` of its run: how the aggregator and its
/// board tell predictions from failures that happened.
pub const CATEGORY: &str = "preflight";

/// The path recorded in preflight findings and runs (they come from no file).
pub const SOURCE: &str = "preflight";

/// What one check found.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// The check.
    pub check: &'static Check,
    /// Its outcome.
    pub status: Status,
}

/// Evaluates every check of `checks` against `state`.
pub fn evaluate(state: &dyn SystemState, checks: &'static [Check]) -> Vec<CheckResult> {
    let exchange = checks::exchange_install_path(state);
    checks
        .iter()
        .map(|check| CheckResult {
            check,
            status: match &exchange {
                Ok(path) => checks::evaluate(check, state, path.as_deref()),
                Err(e) => Status::Failed(e.clone()),
            },
        })
        .collect()
}

/// Identity of one preflight snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Host name, part of finding ids.
    pub host: String,
    /// When it was taken, Unix milliseconds (the caller's clock).
    pub taken_unix_ms: i64,
}

impl Snapshot {
    /// The snapshot's run id: `preflight-<host>-<ms>`, unique per host and time.
    pub fn run_id(&self) -> String {
        format!("{CATEGORY}-{}-{}", self.host, self.taken_unix_ms)
    }
}

/// The findings of `results`: one per check that found its condition. A check whose rule is
/// not in `catalog` still reports, with its condition as the title and no remediation.
pub fn findings(results: &[CheckResult], catalog: &Catalog, snap: &Snapshot) -> Vec<Finding> {
    let run_id = snap.run_id();
    results
        .iter()
        .filter_map(|r| {
            let Status::Found { facts, fields } = &r.status else {
                return None;
            };
            Some(finding(r.check, facts, fields, catalog, snap, &run_id))
        })
        .collect()
}

fn finding(
    check: &Check,
    facts: &[String],
    found: &BTreeMap<String, String>,
    catalog: &Catalog,
    snap: &Snapshot,
    run_id: &str,
) -> Finding {
    let rule = catalog.get(check.rule_id);
    let mut fields = found.clone();
    fields.insert("check".into(), check.id.into());
    fields.insert("condition".into(), check.condition.into());
    fields.insert("predicts".into(), check.rule_id.into());
    let lookup = |name: &str| -> Option<String> {
        if name == "host" {
            return Some(snap.host.clone());
        }
        fields.get(name).cloned()
    };
    let (title, remediation, rule_version, priority) = match rule {
        Some(rule) => (
            format!("Will fail with: {}", rule.title),
            rule.remediation_with(lookup),
            rule.version,
            rule.priority,
        ),
        None => (check.condition.to_string(), Default::default(), 1, None),
    };
    let mut h = blake3::Hasher::new();
    for part in ["patchwatch-preflight-v1", &snap.host, run_id, check.id] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    let mut evidence = vec![EvidenceLine {
        line: 1,
        text: check.condition.to_string(),
    }];
    evidence.extend(facts.iter().enumerate().map(|(i, f)| EvidenceLine {
        line: i as u64 + 2,
        text: f.clone(),
    }));
    Finding {
        id: h.finalize().to_hex()[..32].to_string(),
        rule_id: check.rule_id.to_string(),
        rule_version,
        title,
        category: CATEGORY.into(),
        severity: check.severity,
        host: snap.host.clone(),
        path: SOURCE.into(),
        log_kind: LogKind::Plain,
        byte_offset: 0,
        line: 0,
        run_id: run_id.to_string(),
        run_index: 0,
        event_time: None,
        event_time_unix_nano: Some(snap.taken_unix_ms.saturating_mul(1_000_000)),
        evidence,
        fields,
        remediation,
        priority,
    }
}

/// The run of a snapshot: `failed` when a finding is at least [`Severity::High`] (the update
/// is predicted to fail), else `succeeded`; the most severe finding is its primary.
pub fn run_summary(findings: &[Finding], snap: &Snapshot) -> RunSummary {
    let worst = findings.iter().max_by_key(|f| {
        (
            f.severity,
            std::cmp::Reverse(f.priority.unwrap_or(u32::MAX)),
        )
    });
    let failing = worst.is_some_and(|f| f.severity >= Severity::High);
    let mut fields = BTreeMap::new();
    fields.insert("findings".into(), findings.len().to_string());
    RunSummary {
        run_id: snap.run_id(),
        index: 0,
        host: snap.host.clone(),
        path: SOURCE.into(),
        log_kind: LogKind::Plain,
        start_offset: 0,
        start_line: 0,
        started: None,
        last_time: None,
        duration_seconds: None,
        outcome: if failing {
            Outcome::Failed
        } else {
            Outcome::Succeeded
        },
        exit_code: None,
        mode: Some(CATEGORY.into()),
        product: None,
        target_build: None,
        installed_build: None,
        phase: None,
        primary_finding_id: worst.filter(|_| failing).map(|f| f.id.clone()),
        fields,
    }
}

#[cfg(test)]
mod tests;
