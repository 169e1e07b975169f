//! Agent direct-to-SIEM (`[sinks]`): with the aggregator down, findings still reach a sink
//! (a JSON Lines file here), each once, while they wait in the spool for the aggregator.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use patchwatch_collector::agent::Agent;
use patchwatch_pipeline::Catalog;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_reach_a_direct_sink_with_the_aggregator_down() {
    let tmp = tempfile::tempdir().unwrap();
    let watched = tmp.path().join("logs");
    std::fs::create_dir(&watched).unwrap();
    let out = tmp.path().join("siem.jsonl");
    // Nothing listens here: every finding stays in the spool.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = agent_config(
        &[&watched],
        &tmp.path().join("data"),
        &format!("http://{dead}"),
        "EXSIEM01",
    );
    let sinks: patchwatch_sinks::SinksConfig = toml::from_str(&format!(
        "[sinks.local]\ntype = \"jsonl\"\npath = {out:?}\n[sinks.local.batch]\ntimeout_ms = 50\n"
    ))
    .unwrap();
    cfg.sinks = sinks.sinks;
    let agent = Agent::start(
        &cfg,
        Arc::new(Catalog::builtin()),
        &tokio::runtime::Handle::current(),
    )
    .expect("agent starts");
    let log = watched.join("ExchangeSetup.log");
    let bytes = exchange_sample(SAMPLES[0]);
    std::fs::write(&log, &bytes).unwrap();
    let expected = ids(&expected_ids("EXSIEM01", &log, &bytes));
    assert!(!expected.is_empty());

    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        let got: Vec<String> = std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter_map(|v| {
                v["finding"]["id"]
                    .as_str()
                    .or(v["id"].as_str())
                    .map(str::to_owned)
            })
            .collect();
        if got.len() >= expected.len() || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let unique: std::collections::BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(unique, expected, "every finding reached the sink");
    assert_eq!(got.len(), expected.len(), "each once");
    assert!(
        agent.spool().next_id() > agent.spool().first_unacked(),
        "still spooled for the aggregator"
    );
    agent.shutdown(Duration::from_millis(100)).await;
}
