//! Preflight snapshots through the agent's delivery path to a real aggregator: stored like
//! other findings, with category `preflight`, and each snapshot a run of mode `preflight`, the
//! latest of which is the host's current state.

use std::time::{Duration, Instant};

use patchwatch_aggregator::model::{FindingFilter, RunFilter};
use patchwatch_collector::delivery::{self, DeliveryOptions};
use patchwatch_collector::spool::{Spool, SpoolOptions};
use patchwatch_collector::{convert, preflight};
use patchwatch_pipeline::preflight::{FakeState, Hive, RegValue};
use patchwatch_pipeline::Catalog;
use tokio_util::sync::CancellationToken;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_stored_as_preflight_findings_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let agg = TestAggregator::start(&tmp.path().join("aggregator")).await;
    let cfg = agent_config(&[], &tmp.path().join("agent"), &agg.endpoint(), "EX03");
    let host = convert::host_info(Some("EX03"), 0);
    let catalog = Catalog::builtin();
    let (spool, _) = Spool::open(SpoolOptions::new(tmp.path().join("spool"))).unwrap();

    // A snapshot with the Group Policy ExecutionPolicy, then a clean one after it was removed.
    let policy = FakeState::new().value(
        Hive::LocalMachine,
        r"SOFTWARE\Policies\Microsoft\Windows\PowerShell",
        "ExecutionPolicy",
        RegValue::String("AllSigned".into()),
    );
    let first = preflight::take(&policy, &catalog, "EX03");
    std::thread::sleep(Duration::from_millis(5));
    let second = preflight::take(&FakeState::new(), &catalog, "EX03");
    assert_ne!(first.snapshot.run_id(), second.snapshot.run_id());
    for item in preflight::items(&first, &host)
        .into_iter()
        .chain(preflight::items(&second, &host))
    {
        spool.append(&item.encode()).unwrap();
    }

    let cancel = CancellationToken::new();
    let opts = DeliveryOptions::from_config(&cfg, "preflight-test", host.clone()).unwrap();
    let sender = tokio::spawn(delivery::run(opts, spool.clone(), cancel.clone()));
    let store = agg.store();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (findings, runs) = loop {
        let findings = store
            .findings(FindingFilter {
                host: Some("EX03".into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .items;
        let runs = store
            .runs(RunFilter {
                host: Some("EX03".into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        if runs.len() == 2 && !findings.is_empty() {
            break (findings, runs);
        }
        assert!(
            Instant::now() < deadline,
            "stored {} findings and {} runs",
            findings.len(),
            runs.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), sender).await;

    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!(f.category, "preflight");
    assert_eq!(f.rule_id, "exchange.su.servicecontrol-execution-policy");
    assert_eq!(f.run_id, first.snapshot.run_id());
    assert!(f.primary);
    assert!(f.title.starts_with("Will fail with: "), "{}", f.title);
    let by_id = |id: String| runs.iter().find(|r| r.run_id == id).expect("run stored");
    let failed = by_id(first.snapshot.run_id());
    assert_eq!(
        (failed.mode.as_str(), failed.outcome.as_str()),
        ("preflight", "failed")
    );
    assert_eq!(failed.primary_finding_id, f.id);
    let clean = by_id(second.snapshot.run_id());
    assert_eq!(
        (clean.mode.as_str(), clean.outcome.as_str()),
        ("preflight", "succeeded")
    );
    // The latest preflight run is the host's state: the board reads it first.
    assert!(clean.started_time > failed.started_time, "{runs:#?}");
}

/// Elsewhere than Windows there is no registry to read: the command says so and where to run
/// it, with the error status, instead of reporting a clean server.
#[cfg(not(windows))]
#[test]
fn preflight_off_windows_is_an_error_not_a_clean_report() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_patchwatch"))
        .args(["preflight", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Windows registry"), "{err}");
}
