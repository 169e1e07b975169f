//! `kill -9` of the real `patchwatch agent` binary at random moments while a writer appends,
//! restarted each time on the same data directory. After the last restart the aggregator
//! (in-process, SQLite) must hold exactly the findings of a full scan of the final files:
//! checkpoints may lag the spool (replays are deduplicated by id) but must never run ahead.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use patchwatch_pipeline::sample::MsiScenario;
use rand::Rng;

const KILLS: usize = 24;

/// Appends whole CRLF lines of Exchange runs to one file and odd-sized byte chunks of a
/// UTF-16LE MSI log to another until `stop`, then finishes the MSI log.
fn writer(exchange: PathBuf, msi: PathBuf, stop: Arc<AtomicBool>) {
    let runs = all_samples();
    let lines: Vec<&[u8]> = runs.split_inclusive(|b| *b == b'\n').collect();
    let msi_bytes = msi_log(MsiScenario::ServiceControlExecutionPolicy, 40);
    let sizes = [1usize, 3, 7, 2, 13, 5, 1021, 1, 409, 9, 333];
    let (mut li, mut mi, mut k) = (0, 0, 0);
    // The Exchange runs repeat until the kills are over (each repeat at new offsets, so with
    // new ids).
    while !stop.load(Ordering::Acquire) {
        append(&exchange, lines[li % lines.len()]);
        li += 1;
        if mi < msi_bytes.len() {
            let n = sizes[k % sizes.len()].min(msi_bytes.len() - mi);
            append(&msi, &msi_bytes[mi..mi + n]);
            mi += n;
            k += 1;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    append(&msi, &msi_bytes[mi..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_and_doubles_nothing() {
    let host = "E2E-CRASH";
    let tmp = tempfile::tempdir().unwrap();
    let watched = watched_dir(tmp.path(), "ExchangeSetupLogs");
    let mut agg = TestAggregator::start(&tmp.path().join("aggregator")).await;
    let cfg = agent_config(
        &[&watched],
        &tmp.path().join("agent"),
        &agg.endpoint(),
        host,
    );
    let config = tmp.path().join("agent.toml");
    std::fs::write(&config, agent_toml(&cfg)).unwrap();
    let agent_log = tmp.path().join("agent.stderr");

    let exchange = watched.join("ExchangeSetup.log");
    let msi = watched.join("MSI5f3a1.LOG");
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let (e, m, s) = (exchange.clone(), msi.clone(), Arc::clone(&stop));
        std::thread::spawn(move || writer(e, m, s))
    };

    let started = Instant::now();
    let mut rng = patchwatch_testkit::rng::seeded("kill -9 crash test");
    for i in 0..KILLS {
        let mut child = spawn_agent(&config, &agent_log);
        // Anywhere from mid-startup to well into steady delivery.
        let ms = if i % 4 == 0 {
            rng.random_range(0..40)
        } else {
            rng.random_range(40..450)
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        child.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
        let status = child.wait().unwrap();
        assert!(!status.success(), "agent {i} should have been killed");
        // Sometimes kill it while the aggregator is restarting too.
        if i == KILLS / 2 {
            agg.stop().await;
            agg.restart().await;
        }
    }
    stop.store(true, Ordering::Release);
    w.join().unwrap();
    eprintln!(
        "{KILLS} kills in {:?}; exchange log {} bytes, MSI log {} bytes",
        started.elapsed(),
        std::fs::metadata(&exchange).unwrap().len(),
        std::fs::metadata(&msi).unwrap().len()
    );

    let expected = expected_files(host, &[exchange, msi]);
    let before = agg.stored(host).await;
    eprintln!(
        "stored before the last restart: {} of {} expected",
        before.len(),
        expected.len()
    );
    assert!(expected.len() >= 20, "inputs should produce many findings");
    assert!(
        !before.is_empty(),
        "the killed agents should have delivered something; agent log:\n{}",
        log_tail(&agent_log)
    );
    let mut last = spawn_agent(&config, &agent_log);
    let settled = tokio::time::timeout(
        Duration::from_secs(40),
        agg.assert_settles(host, &expected, Duration::from_secs(30)),
    )
    .await;
    let _ = last.kill();
    let _ = last.wait();
    if settled.is_err() {
        panic!("store did not settle; agent log:\n{}", log_tail(&agent_log));
    }
    agg.stop().await;
}
