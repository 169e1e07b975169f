//! Fleet-scale ingest benchmark: N simulated collectors (default 1,000), each with its own
//! token and host, stream findings and run updates over gRPC with TLS into the real
//! `patchwatch aggregator` binary on SQLite or PostgreSQL, while one reader loads the fleet
//! page, `/api/v1/hosts` and `/api/v1/findings`. See `patchwatch_benches::fleet`.
//!
//! ```text
//! cargo build --release -p patchwatch -p patchwatch-benches
//! target/release/fleet [--collectors 1000] [--duration 30s] [--rate 50000] [--batch 50]
//!     [--inflight 4] [--connections 0] [--gzip false] [--store sqlite|postgres]
//!     [--sqlite-sync full] [--max-streams N] [--configured-hosts false]
//!     [--client-threads 1] [--in-process false] [--keep-data false]
//! ```
//!
//! `--store postgres` needs `PATCHWATCH_PG_URL` (`.ci/setup-postgres.sh`); the run gets a
//! database of its own, dropped afterwards. The aggregator binary is looked up next to this
//! one (override with `PATCHWATCH_BIN`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use patchwatch_benches::arg;
use patchwatch_benches::fleet::server::{self, Aggregator, Backend, Pki};
use patchwatch_benches::fleet::workload::{Collector, Workload};
use patchwatch_benches::fleet::{self, Options, Target};

fn duration(name: &str, default: &str) -> Result<Duration> {
    let v = arg(name, default);
    humantime::parse_duration(&v).with_context(|| format!("{name} {v}"))
}

fn number<T: std::str::FromStr>(name: &str, default: &str) -> Result<T> {
    let v = arg(name, default);
    v.parse()
        .map_err(|_| anyhow::anyhow!("{name}: {v:?} is not a number"))
}

fn main() -> Result<()> {
    // One runtime for the whole fleet, its threads capped so the client leaves the cores to
    // the aggregator (its CPU is reported).
    let threads: usize = number("--client-threads", "1")?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<()> {
    let collectors: usize = number("--collectors", "1000")?;
    let opts = Options {
        duration: duration("--duration", "30s")?,
        warmup: duration("--warmup", "3s")?,
        rate: number("--rate", "50000")?,
        batch: number("--batch", "50")?,
        inflight: number("--inflight", "4")?,
        connections: number("--connections", "0")?,
        gzip: number("--gzip", "false")?,
        ..Options::default()
    };
    let max_streams: usize = number("--max-streams", &collectors.to_string())?;
    let in_process: bool = number("--in-process", "false")?;
    let settle = duration("--settle", "5s")?;
    let store = arg("--store", "sqlite");

    let mut dir = tempfile::tempdir()?;
    if number("--keep-data", "false")? {
        // For looking at the database afterwards (query plans of the fleet page).
        println!("data kept in {}", dir.path().display());
        dir.disable_cleanup(true);
    }
    let (backend, pg) = match store.as_str() {
        "sqlite" => (
            Backend::Sqlite {
                synchronous: arg("--sqlite-sync", "full"),
            },
            None,
        ),
        "postgres" => {
            let db = server::ScratchDatabase::create("pw_fleet").await?;
            (
                Backend::Postgres {
                    url: db.url.clone(),
                },
                Some(db),
            )
        }
        other => bail!("--store {other}: sqlite or postgres"),
    };

    let nonce = rand::random::<u64>();
    let fleet: Vec<Collector> = (0..collectors).map(|i| Collector::new(i, nonce)).collect();
    let workload = Arc::new(Workload::from_samples());
    let pki = Pki::generate()?;
    let (grpc, http) = (server::free_addr()?, server::free_addr()?);
    let setup = server::Setup {
        grpc,
        http,
        backend: backend.clone(),
        max_streams,
        configured_hosts: number("--configured-hosts", "false")?,
    };
    let toml = server::config_toml(dir.path(), &fleet, &setup);
    let config = server::write_config(dir.path(), &pki, &toml)?;
    let started = Instant::now();
    let agg = if in_process {
        Aggregator::in_process(&config).await?
    } else {
        Aggregator::spawn(&binary()?, &config, http).await?
    };
    let pid = agg.pid();
    let rss_idle = server::rss(pid).map_or(0, |(r, _)| r);

    println!(
        "fleet: {collectors} collectors ({} connections), {} findings/batch, {} in flight, \
         rate {}, gzip {}, {store}{}, hosts {}, aggregator {} (pid {pid}), started in {:.1} s",
        if opts.connections == 0 {
            collectors
        } else {
            opts.connections
        },
        opts.batch,
        opts.inflight,
        if opts.rate == 0 {
            "unlimited".to_owned()
        } else {
            format!("{}/s", opts.rate)
        },
        opts.gzip,
        match &backend {
            Backend::Sqlite { synchronous } => format!(" (synchronous {synchronous})"),
            Backend::Postgres { .. } => String::new(),
        },
        if setup.configured_hosts {
            "configured per token"
        } else {
            "bound on first report"
        },
        if in_process { "in process" } else { "binary" },
        started.elapsed().as_secs_f64(),
    );
    println!(
        "finding templates: {} from the failing samples, {} bytes each on average",
        workload.templates(),
        workload.mean_finding_bytes()
    );
    println!("load before: {}", loadavg());

    let target = Target {
        grpc,
        http,
        ca_pem: pki.ca.clone(),
        pid,
    };
    let report = fleet::run(&target, &fleet, Arc::clone(&workload), &opts).await?;
    tokio::time::sleep(settle).await;
    let rss_after = server::rss(pid).map_or(0, |(r, _)| r);
    let metrics = reqwest::get(format!("http://{http}/metrics"))
        .await?
        .text()
        .await?;
    let stored = server::metric(&metrics, "patchwatch_aggregator_findings_stored_total");
    let duplicate = server::metric(&metrics, "patchwatch_aggregator_findings_duplicate_total");
    // The fleet page once more with the load gone: what its queries cost on their own.
    let idle_page = Instant::now();
    reqwest::get(format!("http://{http}/"))
        .await?
        .error_for_status()?;
    let idle_page = idle_page.elapsed();
    let hosts: serde_json::Value = reqwest::get(format!("http://{http}/api/v1/hosts"))
        .await?
        .json()
        .await?;
    let host_rows = hosts
        .as_array()
        .or_else(|| hosts.get("hosts").and_then(|h| h.as_array()))
        .or_else(|| hosts.get("items").and_then(|h| h.as_array()))
        .map_or(0, Vec::len);

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("load after: {}", loadavg());
    println!(
        "connect: {} streams in {:.1} s; failed: {:?}",
        report.streams,
        report.connect.as_secs_f64(),
        report.failures
    );
    println!(
        "findings: {} sent, {} acked, {} rejected items; stored (aggregator counter) {stored:.0}, \
         duplicates {duplicate:.0}; host rows {host_rows}",
        report.sent_findings, report.acked_findings, report.rejected_items
    );
    println!(
        "throughput: {:.0} findings/s acked over {:.1} s (after {:.0} s warm-up)",
        report.rate(),
        report.window.as_secs_f64(),
        opts.warmup.as_secs_f64()
    );
    println!("ack latency (batch of {}): {}", opts.batch, report.ack);
    println!(
        "GET / after the load: {:.1} ms",
        idle_page.as_secs_f64() * 1e3
    );
    for (path, lat) in &report.pages {
        println!("GET {path}: {lat}");
    }
    if !report.page_errors.is_empty() {
        println!("page errors: {:?}", report.page_errors);
    }
    println!(
        "aggregator RSS: idle {:.0} MiB, peak {:.0} MiB (sampled; high-water mark {:.0} MiB), \
         {:.0} MiB {:.0} s after the load; descriptors at most {}",
        mib(rss_idle),
        mib(report.rss_peak),
        mib(report.rss_hwm),
        mib(rss_after),
        settle.as_secs_f64(),
        report.fds_peak
    );
    let wall = report.wall.as_secs_f64();
    println!(
        "CPU over {wall:.1} s: aggregator {:.1} s ({:.0} %), fleet client {:.1} s ({:.0} %)",
        report.server_cpu,
        100.0 * report.server_cpu / wall,
        report.client_cpu,
        100.0 * report.client_cpu / wall
    );
    agg.stop().await?;
    if let Some(db) = pg {
        db.drop().await?;
    }
    if report.acked_findings != report.sent_findings || !report.failures.is_empty() {
        bail!("not every collector's findings were acknowledged");
    }
    Ok(())
}

fn binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PATCHWATCH_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name(format!("patchwatch{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        p.exists(),
        "{} not found: build it (cargo build --release -p patchwatch) or set PATCHWATCH_BIN",
        p.display()
    );
    Ok(p)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
