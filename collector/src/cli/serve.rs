//! `patchwatch aggregator` and `patchwatch agent`: the two long-running services.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use patchwatch_collector::agent::Agent;
use patchwatch_collector::config::AgentConfig;
use patchwatch_collector::discovery::Discovery;
use tokio_util::sync::CancellationToken;

/// Options of `aggregator`.
#[derive(Debug, clap::Args)]
pub struct AggregatorArgs {
    /// Configuration file (TOML); defaults apply when absent.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "print_default_config"
    )]
    pub config: Option<PathBuf>,
    /// Print the default configuration, with every setting documented, and exit.
    #[arg(long)]
    pub print_default_config: bool,
}

/// Options of `agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Validate the configuration, print what would be watched, and exit.
    #[arg(long)]
    pub check: bool,
    /// Extra rule file (TOML); repeatable.
    #[arg(long = "rules", value_name = "FILE")]
    pub rule_files: Vec<PathBuf>,
}

/// A future that completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `aggregator`.
pub fn run_aggregator(args: AggregatorArgs) -> Result<i32> {
    if args.print_default_config {
        print!("{}", patchwatch_aggregator::DEFAULT_CONFIG);
        return Ok(0);
    }
    let path = args.config.expect("required by clap");
    let config = patchwatch_aggregator::Config::load(&path)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            s.cancel();
        });
        patchwatch_aggregator::run(config, shutdown).await
    })?;
    Ok(0)
}

pub(crate) fn catalog(files: &[PathBuf]) -> Result<Arc<patchwatch_pipeline::Catalog>> {
    Ok(Arc::new(super::load_catalog(true, files)?))
}

/// Runs `agent`.
pub fn run_agent(args: AgentArgs) -> Result<i32> {
    let config = match &args.config {
        Some(p) => AgentConfig::load(p)?,
        None => AgentConfig::default_for_platform(),
    };
    config.validate()?;
    let catalog = catalog(&args.rule_files)?;
    if args.check {
        let d = Discovery::new(
            &config.sources.include,
            &config.sources.exclude,
            config.sources.case_insensitive,
        )?;
        println!("configuration OK; {} rules", catalog.rules().len());
        println!("aggregator: {}", config.aggregator.endpoint);
        println!("data directory: {}", config.data_dir.display());
        for root in d.roots() {
            let state = if root.exists() {
                "exists"
            } else {
                "missing: watched until it appears"
            };
            println!("watching folder {} ({state})", root.display());
        }
        let files = d.scan();
        println!("{} file(s) match now:", files.len());
        for f in files {
            println!("  {}", f.display());
        }
        return Ok(0);
    }
    // Before any thread starts: the agent's threads share two malloc arenas instead of one
    // each (glibc only; see `memory`).
    patchwatch_collector::memory::limit_malloc_arenas(2);
    #[cfg(windows)]
    if crate::winsvc::may_be_service() {
        if let Some(code) = crate::winsvc::run(config.clone(), Arc::clone(&catalog))? {
            return Ok(code);
        }
    }
    let rt = patchwatch_collector::agent::runtime()?;
    rt.block_on(async move {
        if let Some(addr) = config.metrics_listen {
            install_metrics(addr)?;
        }
        let agent = Agent::start(&config, catalog, &tokio::runtime::Handle::current())?;
        tracing::info!(message = "Agent started.", host = %agent.host().hostname);
        shutdown_signal().await;
        tracing::info!(message = "Shutting down: draining and checkpointing.");
        agent.shutdown(Duration::from_secs(5)).await;
        anyhow::Ok(())
    })?;
    Ok(0)
}

/// Serves Prometheus metrics of this process on `addr`.
pub(crate) fn install_metrics(addr: std::net::SocketAddr) -> Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .with_context(|| format!("metrics_listen: cannot serve metrics on {addr}"))?;
    patchwatch_collector::telemetry::describe();
    Ok(())
}
