//! Agent direct-to-SIEM (`[sinks]`), in process, against real destinations on loopback: a JSON
//! Lines file, a webhook receiver that can be switched down, and a real aggregator (SQLite).
//! Each sink reads the spool from its own cursor, so one destination being down holds up
//! neither the other sinks nor the aggregator, and it gets everything once it is back.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use patchwatch_collector::config::AgentConfig;
use patchwatch_collector::siem::consumer_name;
use patchwatch_collector::spool::DEFAULT_CONSUMER;
use patchwatch_testkit::eventually;
use patchwatch_testkit::webhook::*;

fn with_sinks(cfg: &mut AgentConfig, toml_text: &str) {
    let sinks: patchwatch_sinks::SinksConfig = toml::from_str(toml_text).unwrap();
    cfg.sinks = sinks.sinks;
    cfg.validate().expect("config with sinks validates");
}

/// Writes sample `sample` as `name` in `dir` and returns the ids it must produce.
fn write_log(dir: &Path, name: &str, sample: &str, host: &str) -> BTreeMap<String, String> {
    let log = dir.join(name);
    let bytes = exchange_sample(sample);
    std::fs::write(&log, &bytes).unwrap();
    let expected = expected_ids(host, &log, &bytes);
    assert!(!expected.is_empty(), "{sample} yields findings");
    expected
}

/// Waits (20 s at most) until the JSON Lines file `out` holds exactly the ids of `expected`;
/// returns them in file order, duplicates kept.
async fn jsonl_settles(out: &Path, expected: &BTreeMap<String, String>) -> Vec<String> {
    assert_ids_settle(
        "jsonl",
        || jsonl_ids(out),
        expected,
        Duration::from_secs(20),
    )
    .await
}

fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_reach_a_direct_sink_with_the_aggregator_down() {
    let host = "EXSIEM01";
    let tmp = tempfile::tempdir().unwrap();
    let watched = watched_dir(tmp.path(), "logs");
    let out = tmp.path().join("siem.jsonl");
    // Nothing listens here: every finding stays in the spool for the aggregator.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = agent_config(
        &[&watched],
        &tmp.path().join("data"),
        &format!("http://{dead}"),
        host,
    );
    with_sinks(&mut cfg, &jsonl_toml("local", &out));
    let agent = start_agent(&cfg);
    let expected = write_log(&watched, "ExchangeSetup.log", SAMPLES[0], host);

    let got = jsonl_settles(&out, &expected).await;
    assert_eq!(got.len(), expected.len(), "each once when nothing failed");
    let spool = agent.spool().clone();
    eventually(
        Duration::from_secs(5),
        "the sink cursor reaches the spool end",
        async || (spool.position(&consumer_name("local")) == Some(spool.next_id())).then_some(()),
    )
    .await;
    assert_eq!(
        spool.position(DEFAULT_CONSUMER),
        Some(0),
        "still spooled for the aggregator"
    );
    assert_eq!(
        spool.first_unacked(),
        0,
        "nothing trimmed before the aggregator has it"
    );
    agent.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_only_agent_consumes_and_trims_the_spool_and_resumes_after_restart() {
    let host = "EXSIEM02";
    let tmp = tempfile::tempdir().unwrap();
    let watched = watched_dir(tmp.path(), "logs");
    let out = tmp.path().join("siem.jsonl");
    let data = tmp.path().join("data");
    let mut cfg = agent_config(&[&watched], &data, "", host);
    cfg.aggregator.endpoint = String::new();
    // Small segments so that trimming shows in the file count.
    cfg.spool.segment_bytes = 4096;
    cfg.spool.max_bytes = 1024 * 1024;
    with_sinks(&mut cfg, &jsonl_toml("local", &out));
    assert!(!cfg.aggregator_enabled());

    let agent = start_agent(&cfg);
    let mut expected = BTreeMap::new();
    for (i, sample) in SAMPLES[..4].iter().enumerate() {
        expected.extend(write_log(&watched, &format!("Setup{i}.log"), sample, host));
    }
    jsonl_settles(&out, &expected).await;
    let spool = agent.spool().clone();
    eventually(Duration::from_secs(5), "the spool drains", async || {
        (spool.first_unacked() == spool.next_id()).then_some(())
    })
    .await;
    assert!(
        spool.next_id() >= expected.len() as u64,
        "every finding went through the spool"
    );
    let spool_dir = data.join("spool");
    assert!(
        segment_files(&spool_dir) <= 1 && !spool_dir.join(format!("{:020}.seg", 0)).exists(),
        "consumed segments are deleted"
    );
    agent.shutdown(Duration::from_secs(1)).await;

    // After a restart the sink resumes after its cursor: new findings only, nothing twice.
    let before = jsonl_ids(&out).len();
    let agent = start_agent(&cfg);
    expected.extend(write_log(&watched, "Setup9.log", SAMPLES[4], host));
    let got = jsonl_settles(&out, &expected).await;
    assert_eq!(
        got.len(),
        expected.len(),
        "nothing resent after a clean stop"
    );
    assert!(got.len() > before);
    agent.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_sink_and_a_down_aggregator_do_not_hold_each_other_up() {
    let host = "EXSIEM03";
    let tmp = tempfile::tempdir().unwrap();
    let watched = watched_dir(tmp.path(), "logs");
    let out = tmp.path().join("siem.jsonl");
    let mut agg = TestAggregator::start(&tmp.path().join("aggregator")).await;
    let hook = Webhook::start(false).await;
    let mut cfg = agent_config(&[&watched], &tmp.path().join("data"), &agg.endpoint(), host);
    with_sinks(
        &mut cfg,
        &format!("{}{}", hook.sink_toml("hook"), jsonl_toml("local", &out)),
    );
    let agent = start_agent(&cfg);
    let spool = agent.spool().clone();

    // 1. Webhook down: the aggregator and the JSON Lines sink still get everything.
    let mut expected = write_log(&watched, "ExchangeSetup.log", SAMPLES[0], host);
    agg.assert_settles(host, &expected, Duration::from_secs(20))
        .await;
    jsonl_settles(&out, &expected).await;
    assert!(
        hook.ids().is_empty(),
        "the webhook accepted nothing while down"
    );
    assert!(hook.refused() > 0, "the webhook sink kept trying");
    assert!(
        spool.position(&consumer_name("hook")) < Some(spool.next_id()),
        "the webhook's cursor is behind"
    );
    assert!(
        spool.first_unacked() < spool.next_id(),
        "its records stay on disk"
    );

    // 2. Webhook back: it gets everything it missed; then the spool drains.
    hook.set_up(true);
    assert_ids_settle("webhook", || hook.ids(), &expected, Duration::from_secs(20)).await;
    eventually(Duration::from_secs(10), "the spool drains", async || {
        (spool.first_unacked() == spool.next_id()).then_some(())
    })
    .await;

    // 3. Aggregator down: both sinks still get new findings; the aggregator catches up after.
    agg.stop().await;
    let more = write_log(&watched, "ExchangeSetup2.log", SAMPLES[1], host);
    expected.extend(more);
    assert_ids_settle("webhook", || hook.ids(), &expected, Duration::from_secs(20)).await;
    jsonl_settles(&out, &expected).await;
    assert!(spool.position(DEFAULT_CONSUMER) < Some(spool.next_id()));
    agg.restart().await;
    agg.assert_settles(host, &expected, Duration::from_secs(30))
        .await;
    agent.shutdown(Duration::from_secs(2)).await;
    agg.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_pauses_reading_and_drops_nothing_for_a_down_sink() {
    let host = "EXSIEM04";
    let tmp = tempfile::tempdir().unwrap();
    let watched = watched_dir(tmp.path(), "logs");
    let hook = Webhook::start(false).await;
    let mut cfg = agent_config(&[&watched], &tmp.path().join("data"), "", host);
    cfg.aggregator.endpoint = String::new();
    // Room for a few dozen findings only: the inputs below need several times that.
    cfg.spool.segment_bytes = 8 * 1024;
    cfg.spool.max_bytes = 16 * 1024;
    with_sinks(&mut cfg, &hook.sink_toml("hook"));
    let agent = start_agent(&cfg);
    let spool = agent.spool().clone();
    // Every sample five times over in one file: each repeat at new offsets, so with new ids.
    let log = watched.join("ExchangeSetup.log");
    let mut bytes = Vec::new();
    for _ in 0..5 {
        for sample in SAMPLES {
            bytes.extend(exchange_sample(sample));
        }
    }
    std::fs::write(&log, &bytes).unwrap();
    let expected = expected_ids(host, &log, &bytes);
    // The spool fills up and stays full: reading pauses, nothing is dropped.
    let deadline = Instant::now() + Duration::from_secs(20);
    while spool.used_bytes() + 4096 <= cfg.spool.max_bytes {
        assert!(
            Instant::now() < deadline,
            "spool did not fill: {} bytes, {} records, {} findings expected",
            spool.used_bytes(),
            spool.next_id(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spooled = spool.next_id();
    assert!(
        (spooled as usize) < expected.len(),
        "the spool holds only part of the findings ({spooled} of {})",
        expected.len()
    );
    assert!(hook.ids().is_empty());
    // The sink comes back: it drains the spool, reading resumes, and every finding arrives.
    hook.set_up(true);
    assert_ids_settle("webhook", || hook.ids(), &expected, Duration::from_secs(40)).await;
    assert!(spool.next_id() > spooled, "reading resumed after the pause");
    agent.shutdown(Duration::from_secs(1)).await;
}
