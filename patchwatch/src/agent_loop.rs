//! The one agent run loop, shared by console mode (`patchwatch agent`) and Windows service
//! mode: serve metrics, start the agent, wait for the stop signal, drain and checkpoint.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use patchwatch_collector::agent::Agent;
use patchwatch_collector::config::AgentConfig;
use patchwatch_pipeline::Catalog;

/// How long shutdown waits for the spool to drain to the aggregator before checkpointing.
const DRAIN: Duration = Duration::from_secs(5);

/// Runs the agent on its own runtime until `stop` completes.
pub fn run_until(
    config: &AgentConfig,
    catalog: Arc<Catalog>,
    stop: impl Future<Output = ()> + Send,
) -> Result<()> {
    let rt = patchwatch_collector::agent::runtime()?;
    rt.block_on(async move {
        if let Some(addr) = config.metrics_listen {
            install_metrics(addr)?;
        }
        let agent = Agent::start(config, catalog, &tokio::runtime::Handle::current())?;
        tracing::info!(message = "Agent started.", host = %agent.host().hostname);
        stop.await;
        tracing::info!(message = "Shutting down: draining and checkpointing.");
        agent.shutdown(DRAIN).await;
        anyhow::Ok(())
    })
}

/// Serves Prometheus metrics of this process on `addr`.
pub fn install_metrics(addr: std::net::SocketAddr) -> Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .with_context(|| format!("metrics_listen: cannot serve metrics on {addr}"))?;
    patchwatch_collector::telemetry::describe();
    Ok(())
}

/// A future that completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(message = "No SIGTERM handler; only Ctrl-C stops.", %error);
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
