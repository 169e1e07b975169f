//! The fleet page at fleet scale, without the fleet: a real store (SQLite by default, or
//! PostgreSQL) filled through the store API with N hosts (default 10,000), each with the runs of
//! a maintenance (ExchangeSetup.log, two Windows Installer logs, ServiceControl.log, a
//! preflight) and findings on the ones that failed, served by `patchwatch_aggregator::serve` in
//! this process; then `GET /` and `GET /fleet/rows` (and the paged and filtered views) are timed
//! over loopback HTTP, one request at a time, with bytes and p50 / p99 / max latency.
//!
//! ```text
//! cargo build --release -p patchwatch-benches --bin fleet_page
//! target/release/fleet_page [--hosts 10000] [--requests 20] [--store sqlite|postgres]
//!     [--ingest false]
//! ```
//!
//! `--ingest true` keeps one writer storing single-host batches (a run update and ten
//! findings each, as collectors send them) while the pages are timed, and reports how many it
//! stored; without it the pages are timed on an idle store. Before the pages, 2,000 such
//! batches are written one at a time and their mean write time reported: what each batch costs
//! the store. `--store postgres` needs `PATCHWATCH_PG_URL` (`.ci/setup-postgres.sh`); the run
//! gets a database of its own, dropped afterwards.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use patchwatch_aggregator::model::{HostInfoRecord, NewFinding, NewHost, NewRun, ValidBatch};
use patchwatch_aggregator::store::Store;
use patchwatch_benches::arg;
use patchwatch_benches::fleet::server::ScratchDatabase;
use tokio_util::sync::CancellationToken;

/// Hosts per batch while filling the store.
const FILL_BATCH: usize = 100;

/// Nanoseconds in an hour.
const HOUR: i64 = 3_600_000_000_000;

fn number<T: std::str::FromStr>(name: &str, default: &str) -> Result<T> {
    let v = arg(name, default);
    v.parse()
        .map_err(|_| anyhow::anyhow!("{name}: {v:?} is not a number"))
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

/// The outcome of host `i`'s setup run: one in fifty failed, one in fifty stalled, one in ten
/// in progress, the rest succeeded.
fn outcome(i: usize) -> i32 {
    match (i % 50, i % 10) {
        (0, _) => 3,
        (1, _) => 4,
        (_, 2) => 1,
        _ => 2,
    }
}

fn host_name(i: usize) -> String {
    format!("EX{i:05}")
}

fn finding(id: String, host: &str, run: &str, severity: i32, at: i64) -> NewFinding {
    NewFinding {
        title: format!("Finding {id}"),
        id,
        host: host.to_owned(),
        rule_id: "exchange.error.service-start".into(),
        rule_version: 1,
        severity,
        category: "setup".into(),
        primary: false,
        log_kind: 1,
        source_path: r"C:\ExchangeSetupLogs\ExchangeSetup.log".into(),
        byte_offset: 4096,
        line_number: 77,
        run_id: run.to_owned(),
        event_ns: at,
        observed_ns: at,
        detail_json: "{}".into(),
    }
}

/// Host `i`: its identity, its runs (one per log file) and, when its setup failed, the
/// findings that say why.
fn host_batch(i: usize, now: i64, batch: &mut ValidBatch) {
    let host = host_name(i);
    batch.hosts.push(NewHost {
        info: HostInfoRecord {
            hostname: host.clone(),
            fqdn: format!("{}.contoso.local", host.to_lowercase()),
            os: "Windows Server 2019".into(),
            agent_version: "0.9.0".into(),
            time_zone: "UTC".into(),
            utc_offset_seconds: 0,
        },
    });
    let at = now - (i as i64 % 600) * 60_000_000_000;
    let setup = outcome(i);
    let files: [(&str, i32, i32); 5] = [
        (r"C:\ExchangeSetupLogs\ExchangeSetup.log", 1, setup),
        (r"C:\Windows\Temp\MSI1a2b3.LOG", 2, 2),
        (r"C:\Windows\Temp\MSI4c5d6.LOG", 2, 2),
        (r"C:\ExchangeSetupLogs\ServiceControl.log", 3, 2),
        ("preflight", 4, 2),
    ];
    for (n, (path, kind, outcome)) in files.into_iter().enumerate() {
        let run_id = format!("{host}-run-{n}");
        let primary = if outcome == 3 {
            let id = format!("{host}-f-0");
            batch
                .findings
                .push(finding(id.clone(), &host, &run_id, 5, at));
            for k in 1..3 {
                batch
                    .findings
                    .push(finding(format!("{host}-f-{k}"), &host, &run_id, 3, at));
            }
            id
        } else {
            String::new()
        };
        batch.runs.push(NewRun {
            run_id,
            host: host.clone(),
            source_path: path.into(),
            log_kind: kind,
            run_index: 0,
            outcome,
            mode: if kind == 4 { "preflight" } else { "Upgrade" }.into(),
            product: "Microsoft Exchange Server 2019".into(),
            target_build: "15.2.1544.4".into(),
            installed_build: "15.2.1258.12".into(),
            phase: "Mailbox role: Transport service".into(),
            exit_code: None,
            primary_finding_id: primary,
            started_ns: at - 2 * HOUR,
            updated_ns: at - n as i64,
            last_line_ns: at - n as i64,
        });
    }
}

/// One collector's batch for host `i`: its setup run moves on, with ten findings.
fn ingest_batch(i: usize, hosts: usize, seq: u64, now: i64) -> ValidBatch {
    let host = host_name(i % hosts);
    let run_id = format!("{host}-run-0");
    let at = now + seq as i64 * 1_000;
    ValidBatch {
        collector_id: format!("{host}-collector"),
        received_ns: at,
        hosts: Vec::new(),
        findings: (0..10)
            .map(|k| finding(format!("{host}-i-{seq}-{k}"), &host, &run_id, 2, at))
            .collect(),
        runs: vec![NewRun {
            run_id,
            host,
            source_path: r"C:\ExchangeSetupLogs\ExchangeSetup.log".into(),
            log_kind: 1,
            outcome: if seq.is_multiple_of(7) { 3 } else { 1 },
            phase: format!("Step {seq}"),
            updated_ns: at,
            last_line_ns: at,
            ..NewRun::default()
        }],
    }
}

/// Latencies of one page, in request order.
struct Timing {
    path: String,
    bytes: usize,
    status: u16,
    latencies: Vec<Duration>,
}

impl Timing {
    fn quantile(&self, q: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1;
        l[i]
    }
}

async fn time_page(client: &reqwest::Client, base: &str, path: &str, n: usize) -> Result<Timing> {
    let mut t = Timing {
        path: path.to_owned(),
        bytes: 0,
        status: 0,
        latencies: Vec::with_capacity(n),
    };
    for _ in 0..n {
        let started = Instant::now();
        let resp = client.get(format!("{base}{path}")).send().await?;
        t.status = resp.status().as_u16();
        let body = resp.bytes().await?;
        t.latencies.push(started.elapsed());
        t.bytes = body.len();
    }
    Ok(t)
}

async fn run() -> Result<()> {
    let hosts: usize = number("--hosts", "10000")?;
    let requests: usize = number("--requests", "20")?;
    let ingest: bool = number("--ingest", "false")?;
    let store = arg("--store", "sqlite");
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().display().to_string().replace('\\', "/");
    let (backend, pg) = match store.as_str() {
        "sqlite" => (
            "[store]\nbackend = \"sqlite\"\n[store.sqlite]\nsynchronous = \"normal\"\n".to_owned(),
            None,
        ),
        "postgres" => {
            let db = ScratchDatabase::create("pw_fleet_page").await?;
            (
                format!(
                    "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = {:?}\n",
                    db.url
                ),
                Some(db),
            )
        }
        other => bail!("--store {other}: sqlite or postgres"),
    };
    let toml = format!(
        "data_dir = {data_dir:?}\n[grpc]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n{backend}"
    );
    let config = patchwatch_aggregator::Config::parse(&toml, "fleet_page.toml")?;
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let shutdown = CancellationToken::new();
    let running = patchwatch_aggregator::serve(config, grpc, http, shutdown.clone()).await?;
    let store: Arc<dyn Store> = running.store();
    let base = format!("http://{}", running.http_addr());

    let now = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos())?;
    let started = Instant::now();
    for chunk in (0..hosts).collect::<Vec<_>>().chunks(FILL_BATCH) {
        let mut batch = ValidBatch {
            collector_id: "fill".into(),
            received_ns: now,
            ..ValidBatch::default()
        };
        for &i in chunk {
            host_batch(i, now, &mut batch);
        }
        store.write_batch(batch).await?;
    }
    println!(
        "fleet page: {hosts} hosts ({} runs) stored in {:.1} s on {}, load {}",
        hosts * 5,
        started.elapsed().as_secs_f64(),
        store.backend(),
        loadavg()
    );

    // What one collector batch costs the store, one at a time.
    let per_batch = Instant::now();
    let mut seq = 0u64;
    for i in 0..2_000 {
        seq += 1;
        store
            .write_batch(ingest_batch(i * 7, hosts, seq, now))
            .await?;
    }
    println!(
        "single-host batches (1 run update, 10 findings): {:.0} µs each (mean of 2,000)",
        per_batch.elapsed().as_secs_f64() * 1e6 / 2_000.0
    );

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = ingest.then(|| {
        let (store, stop, written) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&written));
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let seq = 1_000_000 + i as u64;
                if store
                    .write_batch(ingest_batch(i * 13, hosts, seq, now))
                    .await
                    .is_ok()
                {
                    written.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    });

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let pages = [
        "/",
        "/fleet/rows",
        "/?page=50",
        "/?state=failed",
        "/?q=ex0123",
        "/fleet/rows?page=50",
    ];
    let timed_from = Instant::now();
    let mut timings = Vec::new();
    for path in pages {
        // One untimed request warms the connection and the caches.
        time_page(&client, &base, path, 1).await?;
        timings.push(time_page(&client, &base, path, requests).await?);
    }
    let timed_for = timed_from.elapsed();
    stop.store(true, Ordering::Relaxed);
    if let Some(w) = writer {
        w.await?;
        println!(
            "while timing: {} single-host batches stored ({:.0}/s)",
            written.load(Ordering::Relaxed),
            written.load(Ordering::Relaxed) as f64 / timed_for.as_secs_f64()
        );
    }
    println!("load after: {}", loadavg());
    println!("| request | status | bytes | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    for t in &timings {
        println!(
            "| `GET {}` | {} | {} | {} | {} | {} |",
            t.path,
            t.status,
            t.bytes,
            ms(t.quantile(0.5)),
            ms(t.quantile(0.99)),
            ms(t.quantile(1.0)),
        );
    }
    shutdown.cancel();
    running.wait().await?;
    if let Some(db) = pg {
        db.drop().await?;
    }
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
