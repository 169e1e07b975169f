//! A setup run that stops writing (the NGen/CRL time-out of known-issues B12) is reported as
//! stalled: one `collector.run-stalled` finding and a run update with the STALLED outcome; when
//! it writes again it is in progress again.

use std::time::{Duration, Instant};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_in_progress_run_is_reported_stalled_once_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("ExchangeSetupLogs");
    std::fs::create_dir_all(&logs).unwrap();
    let agg = TestAggregator::start(&tmp.path().join("agg")).await;
    let host = "E2E-STALL";
    let mut cfg = agent_config(&[&logs], &tmp.path().join("agent"), &agg.endpoint(), host);
    cfg.stall_threshold = std::time::Duration::from_secs(2).into();
    let agent = start_agent(&cfg);
    let log = logs.join("ExchangeSetup.log");
    append(
        &log,
        b"[11/21/2026 09:00:00.0001] [0] **********************************************\r\n\
[11/21/2026 09:00:00.0002] [0] Starting Microsoft Exchange Server 2019 Setup\r\n\
[11/21/2026 09:00:00.0003] [0] Setup version: 15.2.1544.4.\r\n\
[11/21/2026 09:00:05.0001] [1] Creating Native images for .Net assemblies.\r\n",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let stalled = loop {
        let stored = agg.stored(host).await;
        let stalled: Vec<String> = stored
            .values()
            .filter(|w| w.starts_with("collector.run-stalled"))
            .cloned()
            .collect();
        if !stalled.is_empty() {
            break stalled;
        }
        assert!(
            Instant::now() < deadline,
            "no stalled finding; stored: {stored:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The run is shown as stalled, and the report is not repeated while nothing changes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stored = agg.stored(host).await;
    assert_eq!(
        stored
            .values()
            .filter(|w| w.starts_with("collector.run-stalled"))
            .count(),
        stalled.len()
    );
    assert_eq!(stalled.len(), 1, "{stalled:?}");
    let runs = agg.store_runs(host).await;
    assert!(
        runs.iter().any(|o| o == "stalled"),
        "run outcomes: {runs:?}"
    );

    // The run writes again (no new phase): the stall ends by itself.
    append(
        &log,
        b"[11/21/2026 09:20:00.0001] [1] Native images for .Net assemblies were created.\r\n",
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let runs = agg.store_runs(host).await;
        if runs.iter().all(|o| o == "in_progress") && !runs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {runs:?} after the run wrote again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent.shutdown(Duration::from_secs(2)).await;
}
