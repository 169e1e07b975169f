//! What the simulated collectors send: findings and run updates built from a real scan of the
//! committed failing ExchangeSetup.log samples (real titles, evidence, fields and fixes), each
//! sent with its own id, host and run, and dated now (the aggregator refuses items outside its
//! clock window).

use std::sync::Arc;

use patchwatch_proto as pb;

/// Findings per run before a collector's host starts its next setup run. A cumulative update
/// that fails on one server is retried; every new run is a new row and a new "latest" run.
const BATCHES_PER_RUN: u64 = 20;

/// Templates shared by every simulated collector.
pub struct Workload {
    findings: Vec<pb::Finding>,
    run: pb::RunUpdate,
}

impl Workload {
    /// Scans the failing samples once and keeps their findings and first run as templates.
    pub fn from_samples() -> Self {
        let catalog = Arc::new(patchwatch_pipeline::Catalog::builtin());
        let text = crate::utf8_corpus(1);
        let out = patchwatch_pipeline::scan_bytes(
            catalog,
            patchwatch_pipeline::ScanContext::new(
                "TEMPLATE",
                r"C:\ExchangeSetupLogs\ExchangeSetup.log",
            ),
            &text,
        );
        let host = patchwatch_collector::convert::host_info(Some("TEMPLATE"), 0);
        let findings: Vec<pb::Finding> = out
            .findings
            .iter()
            .map(|f| patchwatch_collector::convert::finding(f, &host, None, false))
            .collect();
        let run = out
            .runs
            .iter()
            .find(|r| r.outcome == patchwatch_pipeline::Outcome::Failed)
            .or(out.runs.first())
            .map(|r| patchwatch_collector::convert::run_update(r, 0))
            .unwrap_or_default();
        assert!(
            !findings.is_empty(),
            "the failing samples yield findings (the catalog matches them)"
        );
        Self { findings, run }
    }

    /// Distinct finding templates.
    pub fn templates(&self) -> usize {
        self.findings.len()
    }

    /// Mean encoded size of a finding, bytes.
    pub fn mean_finding_bytes(&self) -> usize {
        let total: usize = self.findings.iter().map(prost::Message::encoded_len).sum();
        total / self.findings.len().max(1)
    }

    /// Batch `sequence` (1-based) of collector `collector`: `size` findings, each with an id no
    /// other batch of this run uses, and one update of the host's current run.
    pub fn batch(&self, collector: &Collector, sequence: u64, size: usize) -> pb::Batch {
        let now = patchwatch_collector::convert::now_unix_nano();
        let run_index = sequence / BATCHES_PER_RUN;
        let run_id = format!("{}-run-{run_index}", collector.host.hostname);
        let offset = (sequence * size as u64) as usize + collector.index;
        let findings = (0..size)
            .map(|k| {
                let mut f = self.findings[(offset + k) % self.findings.len()].clone();
                f.id = format!("{}-{sequence}-{k}", collector.id);
                f.host = Some(collector.host.clone());
                f.run_id.clone_from(&run_id);
                f.byte_offset = sequence * 1_000_000 + k as u64 * 512;
                f.line_number = sequence * 2_000 + k as u64;
                f.event_time_unix_nano = now;
                f.observed_time_unix_nano = now;
                f
            })
            .collect();
        let last_of_run = (sequence + 1).is_multiple_of(BATCHES_PER_RUN);
        let outcome = if last_of_run {
            self.run.outcome
        } else {
            pb::RunOutcome::InProgress as i32
        };
        let run = pb::RunUpdate {
            run_id,
            host: collector.host.hostname.clone(),
            run_index: u32::try_from(run_index).unwrap_or(u32::MAX),
            outcome,
            phase: format!("batch {sequence}"),
            started_unix_nano: collector.started,
            updated_unix_nano: now,
            last_line_unix_nano: now,
            ..self.run.clone()
        };
        pb::Batch {
            collector_id: collector.id.clone(),
            sequence,
            findings,
            run_updates: vec![run],
            host: Some(collector.host.clone()),
        }
    }
}

/// One simulated collector's identity: its id (the token's), token and host.
#[derive(Clone)]
pub struct Collector {
    /// Position in the fleet.
    pub index: usize,
    /// Collector id, as configured for its token.
    pub id: String,
    /// Bearer token.
    pub token: String,
    /// The one host it reports.
    pub host: pb::HostInfo,
    /// When its runs started (Unix ns).
    pub started: i64,
}

impl Collector {
    /// Collector `index` of a fleet; `nonce` makes tokens differ between runs.
    pub fn new(index: usize, nonce: u64) -> Self {
        let hostname = format!("EXF{index:05}");
        Self {
            index,
            id: format!("fleet-{index:05}"),
            token: format!("fleet-token-{nonce:016x}-{index:05}"),
            host: patchwatch_collector::convert::host_info(Some(&hostname), 0),
            started: patchwatch_collector::convert::now_unix_nano(),
        }
    }
}
