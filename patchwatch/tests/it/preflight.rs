//! Preflight snapshots through the agent's delivery path to a real aggregator: stored like
//! other findings, with category `preflight`, and each snapshot a run of mode `preflight`, the
//! latest of which is the host's current state. A maintenance window covering the host brings
//! one more snapshot at its start, even to an idle collector.

use std::time::{Duration, Instant};

use patchwatch_aggregator::model::{FindingFilter, RunFilter};
use patchwatch_aggregator::routing::MaintenanceWindow;
use patchwatch_aggregator::store::Store;
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
    // Compared as times: RFC 3339 text drops trailing zeros (`.92Z` sorts after `.925Z`).
    let at = |t: &Option<String>| {
        let t = t.as_deref().expect("a start time");
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339")
    };
    assert!(
        at(&clean.started_time) > at(&failed.started_time),
        "{runs:#?}"
    );
}

/// The preflight runs stored for `host`, oldest first.
async fn preflight_runs(store: &dyn Store, host: &str) -> Vec<String> {
    let mut runs = store
        .runs(RunFilter {
            host: Some(host.into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    runs.retain(|r| r.mode == "preflight");
    runs.sort_by_key(|r| r.started_time.clone());
    runs.into_iter().map(|r| r.run_id).collect()
}

/// An idle collector (nothing to deliver after its first snapshot) learns from its heartbeat's
/// ack that a maintenance window covering its host has started, and takes one snapshot, which
/// reaches the store; it takes no more for the same window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_start_brings_a_snapshot_to_an_idle_collector() {
    let host_name = "EX07";
    let tmp = tempfile::tempdir().unwrap();
    let agg = TestAggregator::start(&tmp.path().join("aggregator")).await;
    let cfg = agent_config(&[], &tmp.path().join("agent"), &agg.endpoint(), host_name);
    let host = convert::host_info(Some(host_name), 0);
    let (spool, _) = Spool::open(SpoolOptions::new(tmp.path().join("spool"))).unwrap();
    let (requests, rx) = delivery::snapshot_requests();
    let mut opts = DeliveryOptions::from_config(&cfg, "window-test", host.clone()).unwrap();
    opts.heartbeat = Duration::from_millis(200);
    opts.preflight = Some(requests);
    let state = FakeState::new().value(
        Hive::LocalMachine,
        r"SOFTWARE\Policies\Microsoft\Windows\PowerShell",
        "ExecutionPolicy",
        RegValue::String("AllSigned".into()),
    );
    let task = preflight::PreflightTask::spawn(
        Box::new(state),
        preflight::TaskSetup {
            catalog: std::sync::Arc::new(Catalog::builtin()),
            spool: spool.clone(),
            host: host.clone(),
            interval: Duration::from_secs(3600),
            requests: Some(rx),
        },
    )
    .unwrap();
    let cancel = CancellationToken::new();
    let sender = tokio::spawn(delivery::run(opts, spool.clone(), cancel.clone()));
    let store = agg.store();

    // The snapshot at start, then idle heartbeats: no window, no second snapshot.
    let first = patchwatch_testkit::eventually(
        Duration::from_secs(20),
        "the snapshot at start stored",
        async || {
            let runs = preflight_runs(store.as_ref(), host_name).await;
            (!runs.is_empty()).then_some(runs)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(preflight_runs(store.as_ref(), host_name).await, first);
    assert_eq!(
        spool.first_unacked(),
        spool.next_id(),
        "nothing left to send"
    );

    // A window over the host, stored as another aggregator sharing the database would: the
    // window set reloads it within its reload interval.
    let now = time::OffsetDateTime::now_utc();
    store
        .insert_window(MaintenanceWindow {
            id: "cu15-wave-1".into(),
            name: "CU15 wave 1".into(),
            hosts: vec!["ex0*".into()],
            starts_at: now - time::Duration::minutes(1),
            ends_at: now + time::Duration::hours(2),
            require_clean_preflight: false,
        })
        .await
        .unwrap();
    let bound = patchwatch_aggregator::windows::RELOAD_INTERVAL + Duration::from_secs(10);
    let runs =
        patchwatch_testkit::eventually(bound, "a snapshot at the window's start", async || {
            let runs = preflight_runs(store.as_ref(), host_name).await;
            (runs.len() > first.len()).then_some(runs)
        })
        .await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0], first[0]);
    // Later heartbeats name the same window: no more snapshots for it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(preflight_runs(store.as_ref(), host_name).await, runs);

    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), sender).await;
    tokio::task::spawn_blocking(move || task.stop())
        .await
        .unwrap();
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
