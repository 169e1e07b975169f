//! An aggregator killed with SIGKILL mid-stream loses nothing it acknowledged, on SQLite and on
//! PostgreSQL. The aggregator runs in a child process (this test binary re-run as
//! `child_aggregator`), so the kill is real: no destructor, no flush, no graceful shutdown.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;
use patchwatch_aggregator::config::StoreBackend;
use patchwatch_aggregator::model::FindingFilter;
use patchwatch_aggregator::store;

const CHILD_CONFIG: &str = "PATCHWATCH_CRASH_CHILD_CONFIG";

/// The child side: runs an aggregator from the TOML in `PATCHWATCH_CRASH_CHILD_CONFIG`, prints
/// its gRPC address, and serves until killed (at most two minutes). A no-op in a normal run.
#[test]
fn child_aggregator() {
    let Ok(text) = std::env::var(CHILD_CONFIG) else {
        return;
    };
    let config = patchwatch_aggregator::Config::parse(&text, "child").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (agg, _shutdown) = start(config).await;
        println!("GRPC={}", agg.grpc_addr());
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(config_toml: &str) -> (Killed, std::net::SocketAddr) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            // The test's path in the one integration-test binary.
            "crash::child_aggregator",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_CONFIG, config_toml)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        // The harness prints "test crash::child_aggregator ... " before the child's own output.
        if let Some((_, addr)) = line.split_once("GRPC=") {
            return (child, addr.trim().parse().unwrap());
        }
    }
    panic!("the child aggregator did not report its address");
}

fn toml_for(config: &patchwatch_aggregator::Config) -> String {
    let mut s = format!("data_dir = {:?}\n", config.data_dir.display().to_string());
    if config.store.backend == StoreBackend::Postgres {
        s.push_str(&format!(
            "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = {:?}\npool_size = 4\n",
            config
                .store
                .postgres
                .url
                .as_ref()
                .unwrap()
                .resolve("store.postgres.url")
                .unwrap()
                .expose()
        ));
    }
    s
}

backend_tests! {
    sigkill_mid_stream_loses_nothing_acked => sigkill_mid_stream_loses_nothing_acked;
}

async fn sigkill_mid_stream_loses_nothing_acked(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (mut child, addr) = spawn_child(&toml_for(&config));

    let mut client = client(addr).await;
    let mut stream = CollectorStream::open(&mut client).await.unwrap();
    let tx = stream.tx.clone();
    let sender = tokio::spawn(async move {
        for seq in 1..=400u64 {
            if tx
                .send(batch("c1", seq, "EXCH01", &format!("k{seq}"), 5))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let mut acked = BTreeSet::new();
    while acked.len() < 60 {
        let ack = stream.next().await.expect("ack").expect("open");
        acked.insert(ack.sequence);
    }
    // Kill while batches are in flight; acks already received must be durable.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    while let Ok(Some(ack)) = stream.next().await {
        acked.insert(ack.sequence); // Acks that were already on the wire count too.
    }
    sender.abort();

    let store = store::open(&config)
        .await
        .expect("the store reopens after a crash");
    let mut stored = BTreeSet::new();
    let mut cursor = None;
    loop {
        let page = store
            .findings(FindingFilter {
                limit: 1000,
                before_seq: cursor,
                ..FindingFilter::default()
            })
            .await
            .unwrap();
        stored.extend(page.items.into_iter().map(|f| f.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    for seq in &acked {
        for i in 0..5 {
            assert!(
                stored.contains(&format!("k{seq}-{i}")),
                "acked batch {seq} lost finding {i}"
            );
        }
    }
    assert!(acked.len() < 400, "the kill came mid-stream");
    store.close().await;
}
