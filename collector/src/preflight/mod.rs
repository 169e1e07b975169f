//! Preflight on the agent: a thread that takes a snapshot of the server's state every
//! `preflight.interval`, once at start, and when the aggregator says a maintenance window
//! covering this host has started (an ack's `preflight_window`, turned into a request by the
//! delivery loop: [`crate::delivery::SnapshotRequests`]). It appends the snapshot's findings
//! and run to the spool, where they travel like every other finding (aggregator, direct
//! sinks).
//!
//! The checks are `patchwatch_pipeline::preflight`; this module adds the clock, the schedule
//! and the Windows reader ([`WindowsState`], `cfg(windows)`). Each snapshot is a run of its
//! own (`mode = "preflight"`), so a host's latest preflight run is its current state and a
//! condition that went away is simply absent from it.
//!
//! Snapshots have no replay point: records lost to spool damage are not rebuilt, the next
//! snapshot replaces them.

#[cfg(windows)]
mod certs;
#[cfg(windows)]
mod windows;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use patchwatch_pipeline::preflight::{self, CheckResult, Snapshot, SystemState, CHECKS};
use patchwatch_pipeline::{Catalog, Finding, RunSummary};
use patchwatch_proto as pb;

use crate::convert;
use crate::delivery::SpoolItem;
use crate::spool::{Spool, SpoolError};

#[cfg(windows)]
pub use windows::WindowsState;

/// How long one snapshot may wait for room in a full spool before it is given up (the next
/// one follows at the next interval).
const SPOOL_WAIT: Duration = Duration::from_secs(10);

/// The state of this machine where patchwatch can read it (Windows); `None` elsewhere.
pub fn local_state() -> Option<Box<dyn SystemState + Send>> {
    #[cfg(windows)]
    {
        Some(Box::new(WindowsState))
    }
    #[cfg(not(windows))]
    {
        None
    }
}

/// One snapshot: what each check found, the findings and the run they make.
#[derive(Debug, Clone)]
pub struct Pass {
    /// Identity (host, time).
    pub snapshot: Snapshot,
    /// Every check's outcome, found or not.
    pub results: Vec<CheckResult>,
    /// One finding per condition found.
    pub findings: Vec<Finding>,
    /// The snapshot's run.
    pub run: RunSummary,
}

/// Takes a snapshot of `state` now.
pub fn take(state: &dyn SystemState, catalog: &Catalog, host: &str) -> Pass {
    let snapshot = Snapshot {
        host: host.to_string(),
        taken_unix_ms: (convert::now_unix_nano() / 1_000_000),
    };
    let results = preflight::evaluate(state, CHECKS);
    let findings = preflight::findings(&results, catalog, &snapshot);
    let run = preflight::run_summary(&findings, &snapshot);
    Pass {
        snapshot,
        results,
        findings,
        run,
    }
}

/// The wire items of `pass`: its findings, then its run (which names its primary finding).
pub fn items(pass: &Pass, host: &pb::HostInfo) -> Vec<SpoolItem> {
    let taken = pass.snapshot.taken_unix_ms.saturating_mul(1_000_000);
    let primary = pass.run.primary_finding_id.as_deref();
    let mut out: Vec<SpoolItem> = pass
        .findings
        .iter()
        .map(|f| {
            let mut pf = convert::finding(f, host, None, primary == Some(f.id.as_str()));
            pf.labels.insert("kind".into(), preflight::CATEGORY.into());
            SpoolItem::Finding(Box::new(pf))
        })
        .collect();
    let mut run = convert::run_update(&pass.run, host.utc_offset_seconds);
    run.started_unix_nano = taken;
    run.last_line_unix_nano = taken;
    out.push(SpoolItem::RunUpdate(Box::new(run)));
    out
}

/// What the preflight thread needs.
pub struct TaskSetup {
    /// Rules whose titles and remediation the findings carry.
    pub catalog: Arc<Catalog>,
    /// Where the findings go.
    pub spool: Spool,
    /// This agent's host identity.
    pub host: pb::HostInfo,
    /// Time between snapshots.
    pub interval: Duration,
    /// Requests for a snapshot now (a maintenance window started), from
    /// [`crate::delivery::snapshot_requests`]; `None` without an aggregator.
    pub requests: Option<Receiver<()>>,
}

/// The running preflight thread; [`PreflightTask::stop`] ends it.
pub struct PreflightTask {
    stop: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PreflightTask {
    /// Starts the thread: a snapshot now, then one every `setup.interval` and one at each
    /// request.
    ///
    /// # Errors
    /// The OS refused a thread.
    pub fn spawn(
        state: Box<dyn SystemState + Send>,
        setup: TaskSetup,
    ) -> std::io::Result<PreflightTask> {
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("preflight".into())
            .spawn(move || run(state.as_ref(), &setup, &rx))?;
        Ok(PreflightTask {
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it (a snapshot under way is finished first).
    pub fn stop(mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why a snapshot is taken, for the log.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Start,
    Interval,
    Window,
}

fn run(state: &dyn SystemState, setup: &TaskSetup, stop: &Receiver<()>) {
    let mut requests = setup
        .requests
        .clone()
        .unwrap_or_else(crossbeam_channel::never);
    let mut trigger = Trigger::Start;
    loop {
        let pass = take(state, &setup.catalog, &setup.host.hostname);
        match append(&setup.spool, &items(&pass, &setup.host)) {
            Ok(()) => tracing::info!(
                message = "Preflight snapshot taken.",
                ?trigger,
                run_id = %pass.snapshot.run_id(),
                findings = pass.findings.len(),
                not_run = pass.results.iter().filter(|r| matches!(r.status, preflight::Status::Failed(_))).count()
            ),
            Err(error) => tracing::warn!(
                message = "Preflight snapshot not spooled; the next one follows at the next interval.",
                %error
            ),
        }
        for r in &pass.results {
            if let preflight::Status::Failed(e) = &r.status {
                tracing::warn!(message = "A preflight check could not run.", check = r.check.id, error = %e);
            }
        }
        // The stop sender is dropped to stop; nothing is ever sent on it.
        trigger = loop {
            crossbeam_channel::select! {
                recv(stop) -> _ => return,
                recv(requests) -> msg => match msg {
                    Ok(()) => break Trigger::Window,
                    // Delivery ended: only the schedule is left.
                    Err(_) => requests = crossbeam_channel::never(),
                },
                default(setup.interval) => break Trigger::Interval,
            }
        };
    }
}

fn append(spool: &Spool, items: &[SpoolItem]) -> Result<(), SpoolError> {
    for item in items {
        spool.append_timeout(&item.encode(), SPOOL_WAIT)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::SpoolOptions;
    use patchwatch_pipeline::preflight::{FakeState, Hive, RegValue};

    fn policy_set() -> FakeState {
        FakeState::new().value(
            Hive::LocalMachine,
            r"SOFTWARE\Policies\Microsoft\Windows\PowerShell",
            "ExecutionPolicy",
            RegValue::String("AllSigned".into()),
        )
    }

    fn spooled(spool: &Spool) -> Vec<SpoolItem> {
        spool
            .read(0, 1000, 1 << 20)
            .unwrap()
            .iter()
            .map(|r| SpoolItem::decode(&r.payload).unwrap())
            .collect()
    }

    #[test]
    fn snapshots_reach_the_spool_as_findings_and_a_run_and_the_task_stops() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(SpoolOptions::new(dir.path())).unwrap();
        let host = convert::host_info(Some("EX03"), 0);
        let task = PreflightTask::spawn(
            Box::new(policy_set()),
            TaskSetup {
                catalog: Arc::new(Catalog::builtin()),
                spool: spool.clone(),
                host: host.clone(),
                interval: Duration::from_secs(3600),
                requests: None,
            },
        )
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while spool.next_id() < 2 {
            assert!(std::time::Instant::now() < deadline, "no snapshot spooled");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Stopping does not wait for the hour-long interval.
        let t = std::time::Instant::now();
        task.stop();
        assert!(t.elapsed() < Duration::from_secs(5));
        let items = spooled(&spool);
        assert_eq!(items.len(), 2, "one finding and its run");
        let SpoolItem::Finding(f) = &items[0] else {
            panic!("first item is not a finding")
        };
        assert_eq!(f.rule_id, "exchange.su.servicecontrol-execution-policy");
        assert_eq!(f.category, preflight::CATEGORY);
        assert_eq!(f.labels["kind"], preflight::CATEGORY);
        assert!(f.primary);
        assert_eq!(f.host.as_ref().unwrap().hostname, "EX03");
        let SpoolItem::RunUpdate(r) = &items[1] else {
            panic!("second item is not a run update")
        };
        assert_eq!(r.run_id, f.run_id);
        assert_eq!(r.mode, preflight::CATEGORY);
        assert_eq!(r.outcome, pb::RunOutcome::Failed as i32);
        assert_eq!(r.primary_finding_id, f.id);
        assert!(r.started_unix_nano > 0);
    }

    #[test]
    fn a_request_takes_a_snapshot_now() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(SpoolOptions::new(dir.path())).unwrap();
        let (requests, rx) = crate::delivery::snapshot_requests();
        let task = PreflightTask::spawn(
            Box::new(policy_set()),
            TaskSetup {
                catalog: Arc::new(Catalog::builtin()),
                spool: spool.clone(),
                host: convert::host_info(Some("EX03"), 0),
                interval: Duration::from_secs(3600),
                requests: Some(rx),
            },
        )
        .unwrap();
        let wait_for = |records: u64| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while spool.next_id() < records {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{} records spooled, waiting for {records}",
                    spool.next_id()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        wait_for(2); // the snapshot at start: a finding and its run
        assert!(requests.request());
        wait_for(4); // one more, long before the hour-long interval
        let before = spool.next_id();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(spool.next_id(), before, "no snapshot without a request");
        task.stop();
        assert!(!requests.request(), "the thread is gone");
        let runs: Vec<String> = spooled(&spool)
            .into_iter()
            .filter_map(|i| match i {
                SpoolItem::RunUpdate(r) => Some(r.run_id),
                SpoolItem::Finding(_) => None,
            })
            .collect();
        assert_eq!(runs.len(), 2);
        assert_ne!(runs[0], runs[1], "each snapshot is a run of its own");
    }

    #[test]
    fn a_clean_snapshot_is_a_succeeded_run_without_findings() {
        let host = convert::host_info(Some("EX03"), 0);
        let pass = take(&FakeState::new(), &Catalog::builtin(), "EX03");
        let items = items(&pass, &host);
        assert_eq!(items.len(), 1);
        let SpoolItem::RunUpdate(r) = &items[0] else {
            panic!("not a run update")
        };
        assert_eq!(r.outcome, pb::RunOutcome::Succeeded as i32);
        assert!(r.primary_finding_id.is_empty());
        assert!(r.run_id.starts_with("preflight-EX03-"));
    }
}
