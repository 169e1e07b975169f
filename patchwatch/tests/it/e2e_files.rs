//! End to end on real files: an in-process agent tails a temp folder and delivers over gRPC on
//! 127.0.0.1 to a real aggregator (SQLite). Each test ends by comparing the finding ids the
//! aggregator stored with the ids of a full pipeline scan of every generation's final content:
//! none missing, none unexpected, none stored twice.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use patchwatch_collector::agent::Agent;
use patchwatch_pipeline::sample::MsiScenario;

const SETTLE: Duration = Duration::from_secs(20);

struct Rig {
    _tmp: tempfile::TempDir,
    watched: std::path::PathBuf,
    agg: TestAggregator,
    agent: Agent,
    host: String,
}

async fn rig(host: &str) -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let watched = watched_dir(tmp.path(), "ExchangeSetupLogs");
    let agg = TestAggregator::start(&tmp.path().join("aggregator")).await;
    let cfg = agent_config(
        &[&watched],
        &tmp.path().join("agent"),
        &agg.endpoint(),
        host,
    );
    let agent = start_agent(&cfg);
    Rig {
        _tmp: tmp,
        watched,
        agg,
        agent,
        host: host.to_string(),
    }
}

impl Rig {
    async fn finish(self) {
        self.agent.shutdown(Duration::from_secs(2)).await;
        let mut agg = self.agg;
        agg.stop().await;
    }
}

fn nonempty(m: &std::collections::BTreeMap<String, String>, what: &str) {
    assert!(
        m.len() >= 2,
        "{what}: the input should produce findings, got {m:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_line_appends_crlf() {
    let r = rig("E2E-APPEND").await;
    let log = r.watched.join("ExchangeSetup.log");
    // Two runs back to back, written line by line.
    let mut bytes = exchange_sample(SAMPLES[0]);
    bytes.extend(exchange_sample(SAMPLES[1]));
    append_lines(&log, &bytes).await;
    let expected = expected_files(&r.host, &[log]);
    nonempty(&expected, "two Exchange runs");
    r.agg.assert_settles(&r.host, &expected, SETTLE).await;
    r.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf16_msi_log_in_odd_chunks() {
    let r = rig("E2E-UTF16").await;
    let log = r.watched.join("MSI1a2b3.LOG");
    let bytes = msi_log(MsiScenario::ServiceControlExecutionPolicy, 3);
    // Odd sizes, so that most writes end inside a UTF-16 code unit or a CRLF.
    let sizes = [1usize, 3, 7, 2, 13, 5, 1021, 1, 4099, 9, 333];
    let (mut at, mut i) = (0, 0);
    while at < bytes.len() {
        let n = sizes[i % sizes.len()].min(bytes.len() - at);
        append(&log, &bytes[at..at + n]);
        at += n;
        i += 1;
        if i % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    let expected = expected_files(&r.host, &[log]);
    nonempty(&expected, "failing MSI log");
    r.agg.assert_settles(&r.host, &expected, SETTLE).await;
    r.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_inside_the_watched_folder() {
    let r = rig("E2E-ROTATE").await;
    let log = r.watched.join("ExchangeSetup.log");
    let old = r.watched.join("ExchangeSetup.1.log");
    let first = exchange_sample(SAMPLES[0]);
    let half = first.len() / 2;
    // The writer keeps its handle across the rename and finishes the run in the old file.
    let mut w = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    use std::io::Write;
    w.write_all(&first[..half]).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::rename(&log, &old).unwrap();
    w.write_all(&first[half..]).unwrap();
    drop(w);
    append_lines(&log, &exchange_sample(SAMPLES[1])).await;
    let expected = expected_files(&r.host, &[old, log]);
    nonempty(&expected, "two generations");
    r.agg.assert_settles(&r.host, &expected, SETTLE).await;
    r.finish().await;
}

/// Writes `sample` to `log`, waits until its findings are stored, and returns them.
async fn first_generation(
    r: &Rig,
    log: &Path,
    sample: &str,
) -> std::collections::BTreeMap<String, String> {
    append_lines(log, &exchange_sample(sample)).await;
    let expected = expected_files(&r.host, &[log.to_path_buf()]);
    nonempty(&expected, sample);
    r.agg.assert_settles(&r.host, &expected, SETTLE).await;
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate() {
    let r = rig("E2E-COPYTRUNC").await;
    let log = r.watched.join("ExchangeSetup.log");
    let mut expected = first_generation(&r, &log, SAMPLES[2]).await;
    // logrotate's copytruncate: copy to a name outside the globs, truncate in place.
    let copy = r.watched.join("ExchangeSetup.log.1");
    std::fs::copy(&log, &copy).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append_lines(&log, &exchange_sample(SAMPLES[3])).await;
    expected.extend(expected_files(&r.host, &[copy, log]));
    r.agg.assert_settles(&r.host, &expected, SETTLE).await;
    r.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_then_new_content() {
    let r = rig("E2E-TRUNC").await;
    let log = r.watched.join("ExchangeSetup.log");
    let mut expected = first_generation(&r, &log, SAMPLES[1]).await;
    // Truncated and rewritten through the same path (setup started again with /mode).
    std::fs::write(&log, b"").unwrap();
    append_lines(&log, &exchange_sample(SAMPLES[4])).await;
    expected.extend(expected_files(&r.host, &[log]));
    r.agg.assert_settles(&r.host, &expected, SETTLE).await;
    r.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_recreate() {
    let r = rig("E2E-DELETE").await;
    let log = r.watched.join("ExchangeSetup.log");
    let mut expected = first_generation(&r, &log, SAMPLES[3]).await;
    std::fs::remove_file(&log).unwrap();
    // Recreated at once: the inode may well be reused.
    append_lines(&log, &exchange_sample(SAMPLES[5])).await;
    expected.extend(expected_files(&r.host, &[log]));
    r.agg.assert_settles(&r.host, &expected, SETTLE).await;
    r.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_folder_renamed_and_recreated() {
    let r = rig("E2E-FOLDER").await;
    let log = r.watched.join("ExchangeSetup.log");
    let mut expected = first_generation(&r, &log, SAMPLES[0]).await;
    // Microsoft's advice before re-running setup: rename C:\ExchangeSetupLogs.
    let aside = r.watched.with_file_name("ExchangeSetupLogs.old");
    std::fs::rename(&r.watched, &aside).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::create_dir(&r.watched).unwrap();
    append_lines(&log, &exchange_sample(SAMPLES[2])).await;
    let msi = r.watched.join("ExchangeSetup.msilog.log");
    append(&msi, &msi_log(MsiScenario::FileInUse, 1));
    let new = expected_files(&r.host, &[log, msi]);
    nonempty(&new, "files in the new folder");
    expected.extend(new);
    r.agg.assert_settles(&r.host, &expected, SETTLE).await;
    r.finish().await;
}
