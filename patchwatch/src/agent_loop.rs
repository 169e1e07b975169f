//! The one agent run loop, shared by console mode (`patchwatch agent`) and Windows service
//! mode: serve metrics, start the agent, wait for the stop signal, drain and checkpoint.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use patchwatch_collector::agent::Agent;
use patchwatch_collector::config::AgentConfig;
use patchwatch_collector::endpoint;
use patchwatch_pipeline::Catalog;
use tokio_util::sync::CancellationToken;

/// How long shutdown waits for the spool to drain to the aggregator before checkpointing.
const DRAIN: Duration = Duration::from_secs(5);

/// Runs the agent on its own runtime until `stop` completes, or until a part of the agent
/// fails for good (then the agent is shut down and the error returned, so that the process
/// exits and a service manager restarts it). With `metrics_listen`, serves `/metrics` and
/// `/healthz` there.
pub fn run_until(
    config: &AgentConfig,
    catalog: Arc<Catalog>,
    stop: impl Future<Output = ()> + Send,
) -> Result<()> {
    let rt = patchwatch_collector::agent::runtime()?;
    rt.block_on(async move {
        let endpoint = CancellationToken::new();
        let (health_tx, health_rx) = tokio::sync::watch::channel(None);
        if let Some(addr) = config.metrics_listen {
            let metrics = endpoint::install_recorder()
                .map_err(|_| anyhow!("metrics_listen: a metrics recorder is already installed"))?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics_listen: cannot listen on {addr}"))?;
            tokio::spawn(endpoint::serve(
                listener,
                Some(metrics),
                health_rx,
                endpoint.clone(),
            ));
        }
        let agent = Agent::start(config, catalog, &tokio::runtime::Handle::current())?;
        health_tx.send_replace(Some(agent.health()));
        tracing::info!(message = "Agent started.", host = %agent.host().hostname);
        let failure = tokio::select! {
            () = stop => None,
            reason = agent.failed() => Some(reason),
        };
        tracing::info!(message = "Shutting down: draining and checkpointing.");
        agent.shutdown(DRAIN).await;
        endpoint.cancel();
        match failure {
            Some(reason) => Err(anyhow!("the agent stopped: {reason}")),
            None => Ok(()),
        }
    })
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
