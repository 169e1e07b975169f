//! End to end with the aggregator away: findings wait in the agent's spool and arrive, once
//! each, when it is back on the same port; with a tiny spool, reading pauses instead of
//! dropping.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use patchwatch_pipeline::sample::MsiScenario;

const SETTLE: Duration = Duration::from_secs(20);

/// Writes every sample as its own file plus three MSI logs; returns the paths.
fn write_many(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (i, s) in SAMPLES.iter().enumerate() {
        let p = dir.join(format!("ExchangeSetup{i}.log"));
        append(&p, &exchange_sample(s));
        files.push(p);
    }
    let scenarios = [
        MsiScenario::ServiceControlExecutionPolicy,
        MsiScenario::FileInUse,
        MsiScenario::RebootRequired,
    ];
    for (i, sc) in scenarios.into_iter().enumerate() {
        let p = dir.join(format!("MSI{i:05x}.LOG"));
        append(&p, &msi_log(sc, 2));
        files.push(p);
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_down_then_back() {
    let host = "E2E-AGGDOWN";
    let tmp = tempfile::tempdir().unwrap();
    let watched = watched_dir(tmp.path(), "logs");
    let mut agg = TestAggregator::start(&tmp.path().join("aggregator")).await;
    let cfg = agent_config(
        &[&watched],
        &tmp.path().join("agent"),
        &agg.endpoint(),
        host,
    );
    let agent = start_agent(&cfg);

    let first = watched.join("ExchangeSetup.log");
    append_lines(&first, &exchange_sample(SAMPLES[0])).await;
    let mut expected = expected_files(host, std::slice::from_ref(&first));
    agg.assert_settles(host, &expected, SETTLE).await;

    agg.stop().await;
    let more = write_many(&watched);
    append_lines(&first, &exchange_sample(SAMPLES[1])).await;
    // While it is down, the findings wait in the spool, unacknowledged.
    let deadline = Instant::now() + Duration::from_secs(10);
    let spool = agent.spool();
    let mut spooled = 0;
    while Instant::now() < deadline {
        spooled = spool.next_id() - spool.first_unacked();
        if spooled > 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(spooled > 20, "only {spooled} records waiting in the spool");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    agg.restart().await;
    expected.extend(expected_files(host, &more));
    expected.extend(expected_files(host, &[first]));
    agg.assert_settles(host, &expected, SETTLE).await;
    assert_eq!(
        agent.spool().first_unacked(),
        agent.spool().next_id(),
        "everything acknowledged"
    );
    agent.shutdown(Duration::from_secs(2)).await;
    agg.stop().await;
}

/// Sum over the checkpoint file's entries of their offsets (bytes durably consumed).
fn checkpointed(data_dir: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(data_dir.join("checkpoints.json")) else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_str(&text).expect("checkpoint file is JSON");
    v["entries"]
        .as_array()
        .map(|es| es.iter().filter_map(|e| e["offset"].as_u64()).sum())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spool_pauses_reading_then_delivers_everything() {
    let host = "E2E-FULLSPOOL";
    let tmp = tempfile::tempdir().unwrap();
    let watched = watched_dir(tmp.path(), "logs");
    let mut agg = TestAggregator::start(&tmp.path().join("aggregator")).await;
    let data = tmp.path().join("agent");
    let mut cfg = agent_config(&[&watched], &data, &agg.endpoint(), host);
    cfg.spool.max_bytes = 16 * 1024;
    cfg.spool.segment_bytes = 8 * 1024;
    agg.stop().await;
    let agent = start_agent(&cfg);
    let files = write_many(&watched);
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();

    // Wait for the spool to stop growing: full, with the reader blocked behind it.
    let spool = agent.spool();
    let mut last = (u64::MAX, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = spool.next_id();
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_millis(1500) {
            break;
        }
        assert!(Instant::now() < deadline, "spool never stopped growing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let used = spool.used_bytes();
    let consumed = checkpointed(&data);
    eprintln!(
        "spool paused at {} records, {used} of {} bytes; checkpoints at {consumed} of {total} bytes",
        spool.next_id(),
        cfg.spool.max_bytes
    );
    assert!(used <= cfg.spool.max_bytes, "spool over its limit: {used}");
    assert!(
        used > cfg.spool.max_bytes / 2,
        "spool should be nearly full, is at {used}"
    );
    assert!(
        consumed < total,
        "reading should have paused before the end ({consumed} of {total})"
    );

    agg.restart().await;
    let expected = expected_files(host, &files);
    agg.assert_settles(host, &expected, Duration::from_secs(40))
        .await;
    agent.shutdown(Duration::from_secs(2)).await;
    agg.stop().await;
}
