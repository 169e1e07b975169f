//! End-to-end benchmark of the collector against a real aggregator on 127.0.0.1 (SQLite):
//!
//! 1. catch-up throughput: MB/s from log bytes on disk to findings stored, with the CPU time
//!    of the agent's reader and matcher threads, beside a single-thread pipeline scan of the
//!    same bytes (what the matcher alone can do);
//! 2. latency from a line written to its finding stored (p50/p99), polling the store;
//! 3. idle CPU and RSS of the real `patchwatch agent` binary with 1,000 watched files.
//!
//! Run: `cargo build --release -p patchwatch --bin patchwatch &&
//! cargo run --release -p patchwatch-benches --bin e2e -- [--mb 256] [--samples 200]
//! [--idle-secs 30] [--linger-ms 200]`. The agent binary is looked up next to this one
//! (override with `PATCHWATCH_BIN`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use patchwatch_aggregator::model::FindingFilter;
use patchwatch_aggregator::store::Store;
use patchwatch_collector::agent::Agent;
use patchwatch_collector::config::AgentConfig;
use patchwatch_pipeline::{Catalog, ScanContext};
use tokio_util::sync::CancellationToken;

struct Args {
    mb: usize,
    samples: usize,
    idle_secs: u64,
    linger_ms: u64,
    /// UTF-8 half from the failing samples only (`--dense 1`) instead of the realistic corpus.
    dense: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        mb: 256,
        samples: 200,
        idle_secs: 30,
        linger_ms: 200,
        dense: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v: u64 = it
            .next()
            .with_context(|| format!("{k} needs a value"))?
            .parse()
            .with_context(|| format!("{k}: not a number"))?;
        match k.as_str() {
            "--mb" => a.mb = v as usize,
            "--samples" => a.samples = v as usize,
            "--idle-secs" => a.idle_secs = v,
            "--linger-ms" => a.linger_ms = v,
            "--dense" => a.dense = v != 0,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    let args = args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        println!(
            "machine: {} cores; date: {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            String::from_utf8_lossy(
                &std::process::Command::new("date")
                    .arg("-u")
                    .arg("+%F")
                    .output()?
                    .stdout
            )
            .trim()
        );
        throughput(&args).await?;
        latency(&args).await?;
        idle(&args).await
    })
}

async fn aggregator(
    dir: &Path,
) -> Result<(patchwatch_aggregator::RunningAggregator, CancellationToken)> {
    let mut config = patchwatch_aggregator::Config {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    config.grpc.listen = "127.0.0.1:0".parse()?;
    config.http.listen = "127.0.0.1:0".parse()?;
    let g = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let h = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let token = CancellationToken::new();
    let running = patchwatch_aggregator::serve(config, g, h, token.clone()).await?;
    Ok((running, token))
}

fn agent_config(dir: &Path, data: &Path, endpoint: String, host: &str) -> AgentConfig {
    let mut cfg = AgentConfig::default_for_platform();
    cfg.data_dir = data.to_path_buf();
    cfg.host_name = Some(host.into());
    cfg.sources.include = vec![dir.join("*.log").display().to_string()];
    cfg.aggregator.endpoint = endpoint;
    cfg
}

async fn stored_count(store: &Arc<dyn Store>, host: &str) -> Result<usize> {
    let (mut n, mut before) = (0, None);
    loop {
        let page = store
            .findings(FindingFilter {
                host: Some(host.into()),
                before_seq: before,
                limit: 5000,
                ..Default::default()
            })
            .await?;
        n += page.items.len();
        match page.next_cursor {
            Some(c) => before = Some(c),
            None => return Ok(n),
        }
    }
}

/// CPU seconds of this process's threads whose name starts with `prefix`.
fn thread_cpu(prefix: &str) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if !name.trim().starts_with(prefix) {
                continue;
            }
            if let Some((u, s)) = std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|s| utime_stime(&s))
            {
                total += (u + s) as f64 / tick;
            }
        }
    }
    total
}

/// Fields 14 and 15 of /proc/*/stat (after the parenthesised command name).
fn utime_stime(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}

async fn throughput(args: &Args) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("logs");
    std::fs::create_dir(&dir)?;
    let host = "BENCH-TPUT";
    // Half UTF-8 Exchange/ServiceControl text, half UTF-16LE MSI-style text, 16 MiB files.
    let per = 16usize << 20;
    let files = (args.mb << 20).div_ceil(per).max(2);
    let utf8 = if args.dense {
        patchwatch_benches::utf8_corpus(per)
    } else {
        patchwatch_benches::utf8_realistic_corpus(per)
    };
    let utf16 = patchwatch_benches::utf16le_corpus(per);
    let catalog = Arc::new(Catalog::builtin());
    // Each file gets its own first line, so every finding id is its own (ids hash host, first
    // line, rule, offset and line) and all findings stored means every file was read.
    let (mut bytes, mut ids, mut scan_secs) = (0u64, BTreeSet::new(), 0.0);
    for i in 0..files {
        let p = dir.join(format!("setup{i:03}.log"));
        let base = if i % 2 == 0 { &utf8 } else { &utf16 };
        let content = &patchwatch_benches::distinct_file(base, i as u32);
        std::fs::write(&p, content)?;
        bytes += content.len() as u64;
        let t = Instant::now();
        let out = patchwatch_pipeline::scan_bytes(
            Arc::clone(&catalog),
            ScanContext::new(host, p.display().to_string()),
            content,
        );
        scan_secs += t.elapsed().as_secs_f64();
        ids.extend(out.findings.into_iter().map(|f| f.id));
    }
    let expected = ids.len();
    let mb = bytes as f64 / 1e6;
    let (agg, token) = aggregator(&tmp.path().join("agg")).await?;
    let cfg = agent_config(
        &dir,
        &tmp.path().join("agent"),
        format!("http://{}", agg.grpc_addr()),
        host,
    );
    let store = agg.store();
    let cpu0 = (thread_cpu("tail-reader"), thread_cpu("matcher"));
    let t0 = Instant::now();
    let agent = Agent::start(
        &cfg,
        Arc::clone(&catalog),
        &tokio::runtime::Handle::current(),
    )?;
    loop {
        let n = stored_count(&store, host).await?;
        let drained = agent.spool().first_unacked() == agent.spool().next_id();
        if n >= expected && drained {
            break;
        }
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("catch-up did not finish: {n} of {expected} findings stored");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut secs = t0.elapsed().as_secs_f64();
    // The text after each file's last finding may still be being scanned: the catch-up ends
    // when the matcher thread stops using CPU (10 ms ticks, quiet for 300 ms), if that is later
    // than the last finding stored.
    let (mut matcher, mut quiet_since) = (thread_cpu("matcher") - cpu0.1, Instant::now());
    while quiet_since.elapsed() < Duration::from_millis(300) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = thread_cpu("matcher") - cpu0.1;
        if now > matcher {
            matcher = now;
            secs = secs.max(t0.elapsed().as_secs_f64());
            quiet_since = Instant::now();
        }
    }
    let reader = thread_cpu("tail-reader") - cpu0.0;
    println!("\n## catch-up throughput ({files} files, {mb:.0} MB, {expected} findings)");
    println!(
        "end to end (bytes on disk -> findings stored): {secs:.2} s = {:.0} MB/s",
        mb / secs
    );
    println!(
        "matcher thread CPU {matcher:.2} s = {:.0} MB/s per core; reader thread CPU {reader:.2} s",
        mb / matcher.max(1e-9)
    );
    println!(
        "pipeline alone (scan_bytes, one thread): {:.0} MB/s",
        mb / scan_secs
    );
    agent.shutdown(Duration::from_secs(5)).await;
    token.cancel();
    agg.wait().await?;
    Ok(())
}

/// One setup run whose `Logged on user` line raises a finding at once.
fn run_block(i: usize) -> String {
    let t = format!(
        "[11/21/2026 10:{:02}:{:02}.{:04}]",
        (i / 60) % 60,
        i % 60,
        i % 10_000
    );
    format!(
        "{t} [0] **********************************************\r\n\
         {t} [0] Starting Microsoft Exchange Server 2019 Setup\r\n\
         {t} [0] **********************************************\r\n\
         {t} [0] Setup version: 15.2.1544.4.\r\n\
         {t} [0] Logged on user: CONTOSO\\EX{i:04}$.\r\n"
    )
}

async fn latency(args: &Args) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("logs");
    std::fs::create_dir(&dir)?;
    let host = "BENCH-LAT";
    let (agg, token) = aggregator(&tmp.path().join("agg")).await?;
    let mut cfg = agent_config(
        &dir,
        &tmp.path().join("agent"),
        format!("http://{}", agg.grpc_addr()),
        host,
    );
    cfg.batch.linger = std::time::Duration::from_millis(args.linger_ms).into();
    let catalog = Arc::new(Catalog::builtin());
    let agent = Agent::start(
        &cfg,
        Arc::clone(&catalog),
        &tokio::runtime::Handle::current(),
    )?;
    let store = agg.store();
    let log = dir.join("ExchangeSetup.log");
    let mut content = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut lat = Vec::new();
    let mut timeouts = 0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..args.samples {
        let block = run_block(i);
        content.extend_from_slice(block.as_bytes());
        let out = patchwatch_pipeline::scan_bytes(
            Arc::clone(&catalog),
            ScanContext::new(host, log.display().to_string()),
            &content,
        );
        let want: Vec<String> = out
            .findings
            .iter()
            .map(|f| f.id.clone())
            .filter(|id| !seen.contains(id))
            .collect();
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            f.write_all(block.as_bytes())?;
        }
        let t0 = Instant::now();
        let mut pending: BTreeSet<String> = want.iter().cloned().collect();
        while !pending.is_empty() && t0.elapsed() < Duration::from_secs(3) {
            let page = store
                .findings(FindingFilter {
                    host: Some(host.into()),
                    limit: 20,
                    ..Default::default()
                })
                .await?;
            for f in page.items {
                pending.remove(&f.id);
            }
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        if pending.is_empty() && !want.is_empty() {
            lat.push(t0.elapsed());
        } else {
            timeouts += 1;
        }
        seen.extend(want);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lat.sort();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "\n## line written -> finding stored (batch.linger = {}ms, sources.poll_interval = {}ms, {} samples, {timeouts} without a finding in 3 s)",
        args.linger_ms, cfg.sources.poll_interval.get().as_millis(), lat.len()
    );
    println!(
        "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
    agent.shutdown(Duration::from_secs(5)).await;
    token.cancel();
    agg.wait().await?;
    Ok(())
}

fn agent_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PATCHWATCH_BIN") {
        return Ok(PathBuf::from(p));
    }
    let p = std::env::current_exe()?.with_file_name("patchwatch");
    if !p.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p patchwatch) or set PATCHWATCH_BIN",
            p.display()
        );
    }
    Ok(p)
}

fn proc_sample(pid: u32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (u, s) = utime_stime(&stat).context("parsing /proc/pid/stat")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Ok((u + s, rss_kib))
}

async fn idle(args: &Args) -> Result<()> {
    let bin = agent_bin()?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("logs");
    std::fs::create_dir(&dir)?;
    let host = "BENCH-IDLE";
    let base = patchwatch_benches::utf8_corpus(1);
    let small = &base[..base.len().min(8 * 1024)];
    for i in 0..1000 {
        let mut c = format!("[11/21/2026 09:00:00.0000] [0] file {i}\r\n").into_bytes();
        c.extend_from_slice(small);
        std::fs::write(dir.join(format!("MSI{i:05x}.log")), c)?;
    }
    let (agg, token) = aggregator(&tmp.path().join("agg")).await?;
    let cfg = agent_config(
        &dir,
        &tmp.path().join("agent"),
        format!("http://{}", agg.grpc_addr()),
        host,
    );
    let toml = format!(
        "host_name = \"{host}\"\ndata_dir = {:?}\n[sources]\ninclude = [{:?}]\n[aggregator]\nendpoint = {:?}\n",
        cfg.data_dir.display().to_string(),
        cfg.sources.include[0],
        cfg.aggregator.endpoint
    );
    let cfg_path = tmp.path().join("agent.toml");
    std::fs::write(&cfg_path, toml)?;
    let mut child = std::process::Command::new(&bin)
        .args(["agent", "--config"])
        .arg(&cfg_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let pid = child.id();
    // Catch up on the 1,000 files first (until the CPU counter stops moving for 3 s).
    let t0 = Instant::now();
    let mut last = proc_sample(pid)?.0;
    let mut still = 0;
    while still < 3 && t0.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = proc_sample(pid)?.0;
        still = if now - last <= 1 { still + 1 } else { 0 };
        last = now;
    }
    // Measured here: after the idle window below it would include those seconds too.
    let caught_up = t0.elapsed().as_secs_f64() - 3.0;
    let rss_caught_up = proc_sample(pid)?.1;
    let store = agg.store();
    let stored = stored_count(&store, host).await?;
    let (c0, _) = proc_sample(pid)?;
    let w0 = Instant::now();
    let mut rss = Vec::new();
    while w0.elapsed() < Duration::from_secs(args.idle_secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(proc_sample(pid)?.1);
    }
    let (c1, r1) = proc_sample(pid)?;
    let wall = w0.elapsed().as_secs_f64();
    let cpu = (c1 - c0) as f64 / 100.0;
    println!(
        "\n## idle `patchwatch agent` ({}), 1,000 watched files, default config (poll 250 ms, rescan 10 s)",
        bin.display()
    );
    println!(
        "caught up in {caught_up:.1} s ({stored} findings stored); RSS then {:.1} MiB",
        rss_caught_up as f64 / 1024.0
    );
    println!(
        "idle CPU over {wall:.0} s: {:.2} % of one core; RSS {:.1} MiB (max {:.1} MiB)",
        cpu / wall * 100.0,
        r1 as f64 / 1024.0,
        rss.iter().copied().max().unwrap_or(r1) as f64 / 1024.0
    );
    // Anonymous memory (heap, stacks) vs pages of the binary itself.
    if let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
        let field = |name: &str| {
            rollup
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        let anon = field("Anonymous:");
        println!(
            "RSS by kind: anonymous {anon:.1} MiB, file-backed {:.1} MiB",
            field("Rss:") - anon
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    token.cancel();
    agg.wait().await?;
    Ok(())
}
