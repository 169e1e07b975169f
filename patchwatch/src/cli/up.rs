//! `patchwatch up`: an agent and an embedded aggregator (SQLite in the data directory) in one
//! process. `demo` builds on the same pieces.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use patchwatch_aggregator::RunningAggregator;
use patchwatch_collector::agent::Agent;
use patchwatch_collector::config::AgentConfig;
use tokio_util::sync::CancellationToken;

/// Options of `up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Folder to watch (its *.log, *.msilog and MSI*.LOG files); repeatable. On Windows the
    /// default is the standard locations (C:\ExchangeSetupLogs, %WINDIR%\Temp, %TEMP%).
    #[arg(long, value_name = "DIR")]
    pub watch: Vec<PathBuf>,
    #[command(flatten)]
    pub embed: EmbedArgs,
    /// Extra rule file (TOML); repeatable.
    #[arg(long = "rules", value_name = "FILE")]
    pub rule_files: Vec<PathBuf>,
}

/// Where the embedded aggregator keeps its data and listens.
#[derive(Debug, Clone, clap::Args)]
pub struct EmbedArgs {
    /// Data directory (aggregator database, agent checkpoints and spool).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Dashboard and HTTP API address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8790")]
    pub http: SocketAddr,
    /// gRPC ingest address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4790")]
    pub grpc: SocketAddr,
}

/// The default data directory of `up`.
pub fn default_data_dir() -> PathBuf {
    if cfg!(windows) {
        std::env::var_os("ProgramData")
            .map_or_else(|| PathBuf::from(r"C:\ProgramData"), PathBuf::from)
            .join("patchwatch")
    } else {
        std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(std::env::temp_dir)
            .join("patchwatch")
    }
}

/// Starts the embedded aggregator.
pub async fn start_aggregator(
    data_dir: &Path,
    http: SocketAddr,
    grpc: SocketAddr,
    shutdown: CancellationToken,
) -> Result<RunningAggregator> {
    let mut config = patchwatch_aggregator::Config {
        data_dir: data_dir.join("aggregator"),
        ..Default::default()
    };
    config.grpc.listen = grpc;
    config.http.listen = http;
    let g = tokio::net::TcpListener::bind(grpc).await.with_context(|| {
        format!("--grpc: cannot listen on {grpc} (in use? pick another with --grpc)")
    })?;
    let h = tokio::net::TcpListener::bind(http).await.with_context(|| {
        format!("--http: cannot listen on {http} (in use? pick another with --http)")
    })?;
    patchwatch_aggregator::serve(config, g, h, shutdown).await
}

/// Agent configuration that watches `dirs` and delivers to `grpc`.
pub fn agent_config(
    dirs: &[PathBuf],
    data_dir: &Path,
    grpc: SocketAddr,
    host: Option<&str>,
) -> AgentConfig {
    let mut cfg = AgentConfig::default_for_platform();
    cfg.data_dir = data_dir.to_path_buf();
    cfg.host_name = host.map(str::to_string);
    if !dirs.is_empty() {
        cfg.sources.include = dirs
            .iter()
            .flat_map(|d| ["*.log", "*.msilog"].map(|p| d.join(p).display().to_string()))
            .collect();
    }
    cfg.aggregator.endpoint = format!("http://{grpc}");
    // Loopback to an embedded aggregator: deliver promptly, reconnect fast.
    cfg.batch.linger = std::time::Duration::from_millis(50).into();
    cfg.aggregator.initial_backoff = std::time::Duration::from_millis(100).into();
    cfg.aggregator.max_backoff = std::time::Duration::from_millis(2000).into();
    cfg
}

/// Runs `up`.
pub fn run(args: UpArgs) -> Result<i32> {
    if args.watch.is_empty() && !cfg!(windows) {
        bail!("--watch DIR is required on this system (the default locations are Windows folders)");
    }
    for d in &args.watch {
        if !d.is_dir() {
            eprintln!(
                "patchwatch: note: {} does not exist yet; it is watched until it appears",
                d.display()
            );
        }
    }
    let catalog = Arc::new(super::load_catalog(true, &args.rule_files)?);
    let data_dir = args.embed.data_dir.clone().unwrap_or_else(default_data_dir);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let agg = start_aggregator(
            &data_dir,
            args.embed.http,
            args.embed.grpc,
            shutdown.clone(),
        )
        .await?;
        let cfg = agent_config(&args.watch, &data_dir.join("agent"), agg.grpc_addr(), None);
        let agent = Agent::start(
            &cfg,
            Arc::clone(&catalog),
            &tokio::runtime::Handle::current(),
        )?;
        anstream::println!(
            "patchwatch is up: dashboard http://{}/ (gRPC {})",
            agg.http_addr(),
            agg.grpc_addr()
        );
        for i in &cfg.sources.include {
            anstream::println!("  watching {i}");
        }
        anstream::println!("Ctrl-C stops.");
        // A part of the agent that failed for good stops the process, never silently.
        let failure = tokio::select! {
            () = crate::agent_loop::shutdown_signal() => None,
            reason = agent.failed() => Some(reason),
        };
        agent.shutdown(Duration::from_secs(5)).await;
        shutdown.cancel();
        agg.wait().await?;
        match failure {
            Some(reason) => bail!("the agent stopped: {reason}"),
            None => anyhow::Ok(()),
        }
    })?;
    Ok(0)
}
