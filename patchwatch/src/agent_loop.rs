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

use crate::logging::event_id;

/// How long shutdown waits for the spool to drain to the aggregator before checkpointing.
const DRAIN: Duration = Duration::from_secs(5);

/// Reads the configuration and rules again, for a reload: an error refuses the reload.
pub type Reload = Box<dyn Fn() -> Result<(AgentConfig, Arc<Catalog>)> + Send>;

/// What asks for a reload.
pub enum Trigger {
    /// SIGHUP (Unix; never elsewhere).
    Hangup,
    /// A message on this channel (the Windows service's `paramchange` control).
    #[cfg_attr(not(windows), allow(dead_code))]
    Channel(tokio::sync::mpsc::UnboundedReceiver<()>),
}

/// Runs the agent on its own runtime until `stop` completes, or until a part of the agent
/// fails for good (then the agent is shut down and the error returned, so that the process
/// exits and a service manager restarts it). With `metrics_listen`, serves `/metrics` and
/// `/healthz` there.
///
/// With `reload`, each trigger reads the configuration and rules again: a bad one is refused
/// with a log line and the running agent goes on untouched; a good one replaces the agent
/// (drained and checkpointed first, so nothing is lost or read twice). `metrics_listen` keeps
/// its first address until the process restarts.
pub fn run_reloading(
    config: &AgentConfig,
    catalog: Arc<Catalog>,
    stop: impl Future<Output = ()> + Send,
    reload: Option<(Reload, Trigger)>,
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
        let rt = tokio::runtime::Handle::current();
        let mut agent = Agent::start(config, Arc::clone(&catalog), &rt)?;
        health_tx.send_replace(Some(agent.health()));
        tracing::info!(
            event_id = event_id::STARTED,
            message = "Agent started.",
            host = %agent.host().hostname,
            version = env!("CARGO_PKG_VERSION")
        );
        let mut current = (config.clone(), catalog);
        let (reload, mut trigger) = match reload {
            Some((r, t)) => (Some(r), Some(t)),
            None => (None, None),
        };
        let mut hangup = hangups(matches!(trigger, Some(Trigger::Hangup)));
        tokio::pin!(stop);
        let failure = loop {
            tokio::select! {
                () = &mut stop => break None,
                reason = agent.failed() => break Some(reason),
                () = next_hangup(&mut hangup) => {}
                () = next_message(&mut trigger) => {}
            }
            let Some(reload) = &reload else { continue };
            let (config, catalog) = match reload() {
                Ok(next) => next,
                Err(error) => {
                    tracing::error!(
                        event_id = event_id::RELOAD_REFUSED,
                        message = "Reload refused; the running configuration stays.",
                        error = format!("{error:#}")
                    );
                    continue;
                }
            };
            if config.metrics_listen != current.0.metrics_listen {
                tracing::warn!(message = "metrics_listen changes only when the agent restarts.");
            }
            tracing::info!(message = "Reloading: draining and checkpointing the running agent.");
            agent.shutdown(DRAIN).await;
            agent = match Agent::start(&config, Arc::clone(&catalog), &rt) {
                Ok(a) => {
                    tracing::info!(
                        event_id = event_id::RELOADED,
                        message = "Configuration and rules reloaded."
                    );
                    current = (config, catalog);
                    a
                }
                Err(error) => {
                    tracing::error!(
                        message = "The new configuration does not start; going back to the running one.",
                        %error
                    );
                    Agent::start(&current.0, Arc::clone(&current.1), &rt)?
                }
            };
            health_tx.send_replace(Some(agent.health()));
        };
        tracing::info!(message = "Shutting down: draining and checkpointing.");
        agent.shutdown(DRAIN).await;
        endpoint.cancel();
        tracing::info!(event_id = event_id::STOPPED, message = "Agent stopped.");
        match failure {
            Some(reason) => Err(anyhow!("the agent stopped: {reason}")),
            None => Ok(()),
        }
    })
}

/// SIGHUP as a stream, when reloads are wanted and the platform has it.
#[cfg(unix)]
fn hangups(wanted: bool) -> Option<tokio::signal::unix::Signal> {
    if !wanted {
        return None;
    }
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(
            |error| tracing::warn!(message = "No SIGHUP handler; reload needs a restart.", %error),
        )
        .ok()
}

#[cfg(not(unix))]
fn hangups(_wanted: bool) -> Option<()> {
    None
}

/// The next SIGHUP; never, without a handler.
#[cfg(unix)]
async fn next_hangup(h: &mut Option<tokio::signal::unix::Signal>) {
    match h {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_h: &mut Option<()>) {
    std::future::pending::<()>().await
}

/// The next message on a reload channel; never without one (or once it is closed).
async fn next_message(trigger: &mut Option<Trigger>) {
    match trigger {
        Some(Trigger::Channel(rx)) => {
            if rx.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        _ => std::future::pending::<()>().await,
    }
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
