//! Load benchmark (not a timed test): N concurrent collector streams over loopback into the
//! SQLite store; reports findings per second acknowledged and ack latency percentiles.
//!
//! ```text
//! cargo bench -p patchwatch-aggregator --bench ingest -- \
//!     [--streams 8] [--batches 50] [--batch-size 500] [--inflight 4] [--sync full|normal]
//! ```
//!
//! Latency is measured per batch from the moment the client hands it to its stream until its
//! ack arrives, so it includes queueing behind the stream's other in-flight batches. Client
//! and server share the process (and the machine's cores); CPU time is reported for both
//! together, so "per core" figures are conservative for the server alone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use patchwatch_aggregator::config::SqliteSync;
use patchwatch_aggregator::{serve, Config};
use patchwatch_proto::ingest_client::IngestClient;
use patchwatch_proto::{Batch, Finding, HostInfo, Remediation, RunUpdate};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

struct Args {
    streams: usize,
    batches: usize,
    batch_size: usize,
    inflight: usize,
    sync: SqliteSync,
}

fn args() -> Args {
    let mut a = Args {
        streams: 8,
        batches: 50,
        batch_size: 500,
        inflight: 4,
        sync: SqliteSync::Full,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_default();
        match flag.as_str() {
            "--streams" => a.streams = value().parse().expect("--streams N"),
            "--batches" => a.batches = value().parse().expect("--batches N"),
            "--batch-size" => a.batch_size = value().parse().expect("--batch-size N"),
            "--inflight" => a.inflight = value().parse().expect("--inflight N"),
            "--sync" => {
                a.sync = match value().as_str() {
                    "normal" => SqliteSync::Normal,
                    _ => SqliteSync::Full,
                }
            }
            _ => {} // cargo bench passes --bench; ignore what is not ours.
        }
    }
    a
}

fn host(n: usize) -> HostInfo {
    HostInfo {
        hostname: format!("EXCH{n:03}"),
        fqdn: format!("exch{n:03}.contoso.local"),
        os: "Windows Server 2019".into(),
        agent_version: "0.1.0".into(),
        time_zone: "UTC".into(),
        utc_offset_seconds: 0,
    }
}

/// A realistic finding: two evidence lines, captured fields, a three-step fix, ~700 bytes.
fn finding(stream: usize, seq: usize, i: usize) -> Finding {
    Finding {
        id: format!("s{stream}-b{seq}-f{i}-{:016x}", (stream * 1_000_003 + seq * 1009 + i) as u64 * 0x9E37_79B9),
        rule_id: format!("EXCH-{:03}", i % 40),
        rule_version: 1,
        title: "Service MSExchangeTransport failed to start".into(),
        severity: (i % 5) as i32 + 1,
        host: Some(host(stream)),
        log_kind: 1,
        source_path: r"C:\ExchangeSetupLogs\ExchangeSetup.log".into(),
        byte_offset: (seq * 100_000 + i * 200) as u64,
        line_number: (seq * 1000 + i) as u64,
        run_id: format!("EXCH{stream:03}-run-1"),
        event_time_unix_nano: 1_763_700_000_000_000_000,
        observed_time_unix_nano: 1_763_700_000_000_000_000 + (seq * 1000 + i) as i64,
        evidence: vec![
            "[11/21/2025 06:01:12.0456] [2] [ERROR] The following error was generated when \"$error.Clear(); Start-SetupService -ServiceName MSExchangeTransport\" was run:".into(),
            "[11/21/2025 06:01:12.0457] [2] [ERROR] Service 'MSExchangeTransport' failed to reach status 'Running' on this server.".into(),
        ],
        fields: [("service".to_owned(), "MSExchangeTransport".to_owned())].into_iter().collect(),
        remediation: Some(Remediation {
            summary: "Start the service by hand and read the System event log.".into(),
            steps: vec!["Open services.msc.".into(), "Start the service.".into(), "Resume setup.".into()],
            links: vec!["https://learn.microsoft.com/en-us/troubleshoot/exchange/setup/".into()],
        }),
        category: "service".into(),
        ..Finding::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    patchwatch_testkit::cpu_seconds(std::process::id())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let a = args();
    let dir = tempfile::tempdir()?;
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.grpc.listen = "127.0.0.1:0".parse()?;
    config.http.listen = "127.0.0.1:0".parse()?;
    config.grpc.max_inflight_batches = a.inflight.max(1);
    config.store.sqlite.synchronous = a.sync;
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let shutdown = CancellationToken::new();
    let agg = serve(config, grpc, http, shutdown.clone()).await?;
    let addr = agg.grpc_addr();

    eprintln!(
        "ingest bench: {} streams x {} batches x {} findings, {} in flight per stream, synchronous={:?}",
        a.streams, a.batches, a.batch_size, a.inflight, a.sync
    );
    // Build every batch before the clock starts.
    let work: Vec<Vec<Batch>> = (0..a.streams)
        .map(|s| {
            (0..a.batches)
                .map(|b| Batch {
                    collector_id: format!("bench-{s}"),
                    sequence: b as u64 + 1,
                    findings: (0..a.batch_size).map(|i| finding(s, b, i)).collect(),
                    run_updates: vec![RunUpdate {
                        run_id: format!("EXCH{s:03}-run-1"),
                        host: format!("EXCH{s:03}"),
                        outcome: 1,
                        phase: format!("batch {b}"),
                        updated_unix_nano: b as i64 + 1,
                        ..RunUpdate::default()
                    }],
                    host: Some(host(s)),
                })
                .collect()
        })
        .collect();

    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for batches in work {
        let inflight = a.inflight;
        tasks.push(tokio::spawn(async move {
            let mut client = IngestClient::connect(format!("http://{addr}")).await?;
            let (tx, rx) = mpsc::channel::<Batch>(inflight + 1);
            let mut acks = client.ingest(ReceiverStream::new(rx)).await?.into_inner();
            let mut sent_at: HashMap<u64, Instant> = HashMap::new();
            let mut latencies = Vec::with_capacity(batches.len());
            let total = batches.len();
            let mut next = batches.into_iter();
            let mut outstanding = 0;
            loop {
                while outstanding < inflight {
                    let Some(b) = next.next() else { break };
                    sent_at.insert(b.sequence, Instant::now());
                    tx.send(b).await?;
                    outstanding += 1;
                }
                if latencies.len() == total {
                    break;
                }
                let ack = acks
                    .message()
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("stream closed early"))?;
                anyhow::ensure!(ack.rejected.is_empty(), "rejections: {:?}", ack.rejected);
                latencies.push(sent_at[&ack.sequence].elapsed());
                outstanding -= 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = start.elapsed();
    let cpu = cpu_seconds() - cpu0;
    latencies.sort();

    let findings = (a.streams * a.batches * a.batch_size) as f64;
    let rate = findings / elapsed.as_secs_f64();
    let stored = agg
        .store()
        .findings(patchwatch_aggregator::model::FindingFilter {
            limit: 1,
            ..Default::default()
        })
        .await?;
    assert!(!stored.items.is_empty(), "findings were stored");
    println!(
        "findings acked:        {findings:.0} in {:.2} s",
        elapsed.as_secs_f64()
    );
    println!("throughput:            {rate:.0} findings/s");
    println!(
        "process CPU:           {cpu:.2} s (client + server) = {:.0} findings per CPU-second",
        findings / cpu.max(1e-9)
    );
    println!(
        "ack latency (batch of {}): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        a.batch_size,
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.90).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    shutdown.cancel();
    agg.wait().await?;
    Ok(())
}
