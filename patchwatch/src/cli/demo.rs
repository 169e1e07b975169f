//! `patchwatch demo`: a live maintenance window on simulated hosts, through the full path.
//!
//! Real Exchange setup logs (the committed CSS-Exchange samples) and generated Windows
//! Installer logs are written line by line into a temporary folder per host, at a realistic
//! pace (Windows Installer in bursts of 20 lines, as it flushes), while one agent per host tails
//! them and delivers over gRPC to an embedded aggregator. Findings are printed as they are
//! stored; the dashboard is served until Ctrl-C.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use owo_colors::OwoColorize;
use patchwatch_aggregator::model::FindingFilter;
use patchwatch_collector::agent::Agent;
use patchwatch_pipeline::sample::{
    msi_verbose_log, service_control_log, utf16le_with_bom, MsiLog, MsiScenario,
};
use tokio_util::sync::CancellationToken;

use super::up::{agent_config, start_aggregator, EmbedArgs};

/// Options of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub embed: EmbedArgs,
    /// Seconds over which each log is written.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Exit once every log is written and every finding is stored (for scripts and tests).
    #[arg(long)]
    pub exit_when_done: bool,
    /// Keep the temporary folder of simulated logs.
    #[arg(long)]
    pub keep: bool,
}

const fn ex(name: &'static str, text: &'static str) -> (&'static str, &'static str) {
    (name, text)
}

/// Committed CSS-Exchange samples (MIT; see pipeline/tests/data/exchange/ORIGIN.md).
const SERVICE_DISABLED: (&str, &str) = ex(
    "ExchangeSetup.log",
    include_str!("../../../pipeline/tests/data/exchange/ExchangeSetup_Service_Disabled.log"),
);
const DC_SITE: (&str, &str) = ex(
    "ExchangeSetup.log",
    include_str!("../../../pipeline/tests/data/exchange/ExchangeSetup_DC_Site_1.log"),
);
const MSI_CACHE: (&str, &str) = ex(
    "ExchangeSetup.log",
    include_str!("../../../pipeline/tests/data/exchange/ExchangeSetup_MSI_1.log"),
);
const VDIR: (&str, &str) = ex(
    "ExchangeSetup.log",
    include_str!("../../../pipeline/tests/data/exchange/ExchangeSetup_Vdir_1.log"),
);
const FROM_BIN: (&str, &str) = ex(
    "ExchangeSetup.log",
    include_str!("../../../pipeline/tests/data/exchange/ExchangeSetup_InstallFromBin.log"),
);

/// One file a simulated host writes.
struct SimFile {
    name: String,
    bytes_per_line: Vec<Vec<u8>>,
    /// Lines written per flush (Windows Installer: 20).
    burst: usize,
    head: Vec<u8>,
}

fn text_file(name: &str, text: &str) -> SimFile {
    // The samples were normalized to LF in git; servers write CRLF.
    SimFile {
        name: name.to_string(),
        bytes_per_line: text
            .lines()
            .map(|l| format!("{l}\r\n").into_bytes())
            .collect(),
        burst: 1,
        head: Vec::new(),
    }
}

fn msi_file(name: &str, scenario: MsiScenario, version: &str, start: u32) -> SimFile {
    let text = msi_verbose_log(&MsiLog {
        product: "Microsoft Exchange Server",
        version,
        scenario,
        date: "11/21/2026",
        start_seconds: start,
        filler_blocks: 2,
    });
    SimFile {
        name: name.to_string(),
        bytes_per_line: text
            .split_inclusive("\r\n")
            .map(|l| utf16le_with_bom(l)[2..].to_vec())
            .collect(),
        burst: 20,
        head: vec![0xFF, 0xFE],
    }
}

/// The simulated fleet: host name and the files it writes, in order.
fn fleet() -> Vec<(&'static str, Vec<SimFile>)> {
    vec![
        (
            "EX01",
            vec![
                text_file(SERVICE_DISABLED.0, SERVICE_DISABLED.1),
                text_file(
                    "ServiceControl.log",
                    &service_control_log("21/11/2026", 7200, true),
                ),
            ],
        ),
        (
            "EX02",
            vec![msi_file(
                "MSI3f2a1.LOG",
                MsiScenario::ServiceControlExecutionPolicy,
                "15.2.1544.4",
                7300,
            )],
        ),
        ("EX03", vec![text_file(DC_SITE.0, DC_SITE.1)]),
        (
            "EX04",
            vec![msi_file(
                "MSI8c11e.LOG",
                MsiScenario::RebootRequired,
                "15.2.1544.4",
                7400,
            )],
        ),
        ("EX05", vec![text_file(MSI_CACHE.0, MSI_CACHE.1)]),
        (
            "EX06",
            vec![text_file(VDIR.0, VDIR.1), text_file(FROM_BIN.0, FROM_BIN.1)],
        ),
    ]
}

/// Writes a host's files line by line (appending, as the real writers do).
fn write_host(
    dir: &Path,
    files: Vec<SimFile>,
    per_file: Duration,
    stop: &CancellationToken,
) -> Result<()> {
    for f in files {
        let path = dir.join(&f.name);
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        if out.metadata()?.len() == 0 {
            out.write_all(&f.head)?;
        }
        let bursts = f.bytes_per_line.len().div_ceil(f.burst).max(1);
        let pause = per_file / bursts as u32;
        for chunk in f.bytes_per_line.chunks(f.burst) {
            if stop.is_cancelled() {
                return Ok(());
            }
            for l in chunk {
                out.write_all(l)?;
            }
            out.flush()?;
            std::thread::sleep(pause);
        }
    }
    Ok(())
}

/// Runs `demo`.
pub fn run(args: DemoArgs) -> Result<i32> {
    let root = args.embed.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("patchwatch-demo-{}", std::process::id()))
    });
    let logs = root.join("hosts");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let catalog = Arc::new(patchwatch_pipeline::Catalog::builtin());
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(async {
        let shutdown = CancellationToken::new();
        let agg =
            start_aggregator(&root, args.embed.http, args.embed.grpc, shutdown.clone()).await?;
        anstream::println!(
            "{} dashboard http://{}/  (simulated logs in {})",
            "patchwatch demo:".bold(),
            agg.http_addr(),
            logs.display()
        );
        let mut agents = Vec::new();
        let mut writers = Vec::new();
        let stop_writers = CancellationToken::new();
        let per_file = Duration::from_secs_f64(args.duration.max(0.5));
        for (i, (host, files)) in fleet().into_iter().enumerate() {
            let dir = logs.join(host);
            std::fs::create_dir_all(&dir)?;
            let cfg = agent_config(
                std::slice::from_ref(&dir),
                &root.join("agents").join(host),
                agg.grpc_addr(),
                Some(host),
            );
            agents.push(Agent::start(
                &cfg,
                Arc::clone(&catalog),
                &tokio::runtime::Handle::current(),
            )?);
            let stop = stop_writers.clone();
            // Hosts start a little apart, as admins work through a maintenance window.
            let delay = Duration::from_millis(700 * i as u64);
            writers.push(std::thread::spawn(move || {
                std::thread::sleep(delay);
                write_host(&dir, files, per_file, &stop)
            }));
        }
        let store = agg.store();
        let mut seen = HashSet::new();
        let mut last_new = Instant::now();
        let interrupted = tokio::spawn(crate::agent_loop::shutdown_signal());
        loop {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let page = store
                .findings(FindingFilter {
                    limit: 500,
                    ..Default::default()
                })
                .await?;
            let mut fresh: Vec<_> = page
                .items
                .into_iter()
                .filter(|f| !seen.contains(&f.id))
                .collect();
            fresh.sort_by_key(|f| f.seq);
            for f in fresh {
                seen.insert(f.id.clone());
                last_new = Instant::now();
                if f.severity_num >= patchwatch_proto::Severity::Medium as i32 {
                    let file = Path::new(&f.source_path)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    anstream::println!(
                        "[{}] {:>8} {} ({}:{})",
                        f.host.bold(),
                        f.severity.to_uppercase(),
                        f.title,
                        file,
                        f.line_number
                    );
                    anstream::println!(
                        "           {} {}",
                        "fix:".green(),
                        f.detail.remediation.summary
                    );
                }
            }
            let written = writers.iter().all(|w| w.is_finished());
            let drained = agents
                .iter()
                .all(|a| a.spool().first_unacked() >= a.spool().next_id());
            if args.exit_when_done
                && written
                && drained
                && last_new.elapsed() > Duration::from_secs(3)
            {
                break;
            }
            if interrupted.is_finished() {
                break;
            }
        }
        stop_writers.cancel();
        for w in writers {
            if let Ok(Err(e)) = w.join() {
                eprintln!("patchwatch: demo writer: {e:#}");
            }
        }
        for a in agents {
            a.shutdown(Duration::from_secs(3)).await;
        }
        let hosts = store.hosts(None).await?;
        anstream::println!(
            "{} {} findings from {} hosts stored.",
            "done:".bold(),
            seen.len(),
            hosts.len()
        );
        shutdown.cancel();
        agg.wait().await
    });
    if !args.keep && args.embed.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    result?;
    Ok(0)
}
