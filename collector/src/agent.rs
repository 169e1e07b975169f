//! The agent: tail reader → matcher → spool → delivery (aggregator and/or direct sinks),
//! with checkpoints.
//!
//! Threads, not tasks, on the hot path: the tail reader and the matcher are plain threads
//! joined by a bounded `crossbeam-channel` queue, so a slow matcher or a full spool blocks the
//! reader (backpressure) and nothing is dropped. Only delivery runs on tokio.
//!
//! Checkpoint invariant: a file's checkpoint is the scanner's [`ResumePoint`], committed only
//! after every finding and run update produced before it was appended to the spool; the
//! [`Flusher`] syncs the spool before it writes checkpoints. After a crash the file is re-read
//! from there, which rebuilds the same findings with the same ids; the aggregator deduplicates.
//!
//! Consumers: the spool is read by the aggregator delivery (when `[aggregator]` has an
//! endpoint) and by one feed per direct sink (`[sinks]`, see [`crate::siem`]), each from its
//! own durable cursor; a record leaves the disk once all of them passed it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use patchwatch_pipeline::Catalog;
use patchwatch_proto as pb;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{CheckpointStore, Flusher};
use crate::config::AgentConfig;
use crate::convert;
use crate::delivery::{self, DeliveryOptions};
use crate::discovery::Discovery;
use crate::health::{AgentHealth, Health, PartState};
use crate::matcher::{Matcher, MatcherSetup};
use crate::siem::{self, SiemFeeds};
use crate::spool::{Spool, SpoolOptions, DEFAULT_CONSUMER};
use crate::tail::{TailEvent, TailReader};

/// Why the agent could not start; each names the setting or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The data directory or a file in it cannot be written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The checkpoint store cannot be opened.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// The spool cannot be opened.
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    /// A source pattern is invalid.
    #[error(transparent)]
    Discovery(#[from] crate::discovery::DiscoveryError),
    /// `sources.encoding_fallback` names no known code page.
    #[error("sources.encoding_fallback: `{0}` is not a known code page")]
    Encoding(String),
    /// The aggregator settings cannot be resolved (TLS files, token).
    #[error(transparent)]
    Delivery(#[from] crate::delivery::DeliveryError),
    /// A direct sink cannot start.
    #[error(transparent)]
    Sinks(#[from] crate::siem::SiemError),
    /// A thread cannot be spawned.
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
}

/// The tokio runtime for the agent: it carries only delivery, direct sinks and timers (the
/// hot path is threads), so one worker is plenty, whatever the number of cores. Each extra
/// worker is a thread that may get its own malloc arena and keep memory resident. Multi
/// thread, not current thread, because sinks may use `block_in_place`.
///
/// # Errors
/// The OS refused a thread or an event loop.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("agent-rt")
        .enable_all()
        .build()
}

/// A running agent.
pub struct Agent {
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
    matcher: Option<std::thread::JoinHandle<()>>,
    flusher: Option<Flusher>,
    cancel: CancellationToken,
    /// The aggregator delivery task; `None` when no aggregator is configured.
    delivery: Option<tokio::task::JoinHandle<()>>,
    /// Direct sinks and their feeds; `None` without `[sinks]`.
    siem: Option<SiemFeeds>,
    spool: Spool,
    host: pb::HostInfo,
    health: AgentHealth,
    /// The periodic preflight snapshot; `None` when disabled or not on Windows.
    preflight: Option<crate::preflight::PreflightTask>,
}

impl Agent {
    /// Starts the agent on `rt` (for delivery); everything else runs on its own threads.
    ///
    /// # Errors
    /// Bad configuration (sources, spool, TLS files, token) or unusable data directory.
    pub fn start(
        cfg: &AgentConfig,
        catalog: Arc<Catalog>,
        rt: &tokio::runtime::Handle,
    ) -> Result<Agent, StartError> {
        cfg.validate()?;
        let utc_offset = crate::local_utc_offset_seconds();
        let host = convert::host_info(cfg.host_name.as_deref(), utc_offset);
        std::fs::create_dir_all(&cfg.data_dir).map_err(|source| StartError::Io {
            what: "creating data_dir",
            path: cfg.data_dir.clone(),
            source,
        })?;
        let store = Arc::new(CheckpointStore::open(cfg.checkpoint_path())?);
        let (spool, report) = Spool::open(SpoolOptions {
            dir: cfg.spool_dir(),
            max_bytes: cfg.spool.max_bytes,
            segment_bytes: cfg.spool.segment_bytes,
            fsync: cfg.spool_fsync(),
            consumers: spool_consumers(cfg),
        })?;
        // Newest records cut off at a record boundary leave a spool that scans clean; only
        // the checkpoints, which point past them, show the loss.
        let tail_lost = store
            .replay_until()
            .is_some_and(|until| until > spool.next_id())
            .then(|| spool.next_id());
        let first_damaged = report.damage.iter().map(|d| d.first_lost_id).min();
        if let Some(first_lost) = first_damaged.into_iter().chain(tail_lost).min() {
            // The lost records cannot be read back, but each file's replay point says where
            // its unacknowledged records came from: read those bytes again.
            let rewound = store.rewind_lost(first_lost)?;
            tracing::warn!(
                message = "Spool had damaged records; they were cut off and the files they came from will be read again.",
                damaged = report.damage.len(),
                first_lost_id = first_lost,
                files_rewound = rewound.len(),
                files = ?rewound
            );
        }
        let health = Health::new();
        let discovery = Discovery::new(
            &cfg.sources.include,
            &cfg.sources.exclude,
            cfg.sources.case_insensitive,
        )?;
        let fallback = patchwatch_pipeline::decode::code_page(&cfg.sources.encoding_fallback)
            .ok_or_else(|| StartError::Encoding(cfg.sources.encoding_fallback.clone()))?;
        let collector_id = collector_id(&cfg.data_dir, &host.hostname)?;
        let mut opts = if cfg.aggregator_enabled() {
            Some(DeliveryOptions::from_config(
                cfg,
                collector_id,
                host.clone(),
            )?)
        } else {
            None
        };
        let siem = direct_sinks(cfg, &spool, rt)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::bounded::<TailEvent>(64);
        let board = crate::status::StatusBoard::new();
        let reader = TailReader::new(discovery, Arc::clone(&store), cfg.tail_options())
            .with_status(board.clone());
        let reader = supervised("tail-reader", &stop, &health, move |stop| {
            reader.run(tx, stop);
        })
        .map_err(|e| StartError::Thread("tail-reader", e))?;
        let sp = spool.clone();
        let flusher = Flusher::spawn(
            Arc::clone(&store),
            Duration::from_secs(1),
            move || sp.sync().map_err(std::io::Error::other),
            health.clone(),
        );
        let preflight = start_preflight(cfg, &catalog, &spool, &host, opts.as_mut())?;
        let matcher = Matcher::new(MatcherSetup {
            catalog,
            store,
            spool: spool.clone(),
            stop: Arc::clone(&stop),
            host: host.clone(),
            fallback,
            stall_after: cfg.stall_threshold.get(),
            health: health.clone(),
            board: board.clone(),
        });
        let matcher = supervised("matcher", &stop, &health, move |_| matcher.run(rx))
            .map_err(|e| StartError::Thread("matcher", e))?;
        let cancel = CancellationToken::new();
        let delivery = opts.map(|opts| {
            let (sp, c) = (spool.clone(), cancel.clone());
            rt.spawn(async move {
                if let Err(error) = delivery::run(opts, sp, c).await {
                    tracing::error!(message = "Delivery stopped.", %error);
                }
            })
        });
        Ok(Agent {
            stop,
            reader: Some(reader),
            matcher: Some(matcher),
            flusher: Some(flusher),
            cancel,
            delivery,
            siem,
            health: AgentHealth::new(health, spool.clone(), spool_consumers(cfg)).with_board(board),
            spool,
            host,
            preflight,
        })
    }

    /// The agent's health, for `/healthz`: its threads, the spool, the checkpoint writes and
    /// each consumer's delivery. Cheap to clone; stays valid after shutdown.
    pub fn health(&self) -> AgentHealth {
        self.health.clone()
    }

    /// Completes when a part of the agent failed for good (a hot-path thread ended), with
    /// the reason. The caller should shut the agent down and exit with an error, so that a
    /// service manager restarts it; the agent never stays up without reading.
    pub async fn failed(&self) -> String {
        self.health.parts().failed().await
    }

    /// The spool (to watch it drain: [`Spool::first_unacked`] reaches [`Spool::next_id`]
    /// once the aggregator and every direct sink confirmed everything).
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// The direct sinks (`[sinks]`), for their health; `None` when there are none.
    pub fn sinks(&self) -> Option<&patchwatch_sinks::Sinks> {
        self.siem.as_ref().map(SiemFeeds::sinks)
    }

    /// The host identity findings are sent with.
    pub fn host(&self) -> &pb::HostInfo {
        &self.host
    }

    /// Graceful shutdown: stop reading, let the matcher finish what it has, write the last
    /// checkpoints, give delivery (aggregator and direct sinks) up to `drain` to empty the
    /// spool, then stop it. What is not confirmed by then stays spooled for the next start.
    pub async fn shutdown(mut self, drain: Duration) {
        self.stop.store(true, Ordering::Release);
        let (reader, matcher, flusher) =
            (self.reader.take(), self.matcher.take(), self.flusher.take());
        let preflight = self.preflight.take();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(p) = preflight {
                p.stop();
            }
            if let Some(r) = reader {
                let _ = r.join();
            }
            if let Some(m) = matcher {
                let _ = m.join();
            }
            if let Some(f) = flusher {
                f.stop();
            }
        })
        .await;
        let deadline = Instant::now() + drain;
        while self.spool.first_unacked() < self.spool.next_id() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.cancel.cancel();
        if let Some(d) = self.delivery.take() {
            let _ = d.await;
        }
        if let Some(s) = self.siem.take() {
            s.stop(SINK_STOP_GRACE).await;
        }
    }
}

/// Runs `body` on a thread named `name`. If it ends (returns or panics) while `stop` is not
/// set, the agent has lost a hot-path thread: that is logged as an error and reported as a
/// failed part of `health`, which stops the process ([`Agent::failed`]); never silent.
fn supervised(
    name: &'static str,
    stop: &Arc<AtomicBool>,
    health: &Health,
    body: impl FnOnce(&AtomicBool) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (stop, health) = (Arc::clone(stop), health.clone());
    std::thread::Builder::new().name(name.into()).spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&stop)));
        if stop.load(Ordering::Acquire) {
            return;
        }
        let reason = match result {
            Ok(()) => "thread ended unexpectedly".to_string(),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                format!("thread panicked: {what}")
            }
        };
        tracing::error!(message = "An agent thread stopped; the agent cannot go on.", thread = name, %reason);
        health.set(name, PartState::Failed(reason));
    })
}

/// Starts the periodic preflight when `[preflight]` is enabled and this OS has a state to
/// read (Windows); `delivery`, when there is an aggregator, then asks it for a snapshot when
/// a maintenance window covering this host starts.
fn start_preflight(
    cfg: &AgentConfig,
    catalog: &Arc<Catalog>,
    spool: &Spool,
    host: &pb::HostInfo,
    delivery: Option<&mut DeliveryOptions>,
) -> Result<Option<crate::preflight::PreflightTask>, StartError> {
    if !cfg.preflight.enabled {
        return Ok(None);
    }
    let Some(state) = crate::preflight::local_state() else {
        tracing::debug!(message = "Preflight reads the Windows registry; not run on this system.");
        return Ok(None);
    };
    let setup = crate::preflight::TaskSetup {
        catalog: Arc::clone(catalog),
        spool: spool.clone(),
        host: host.clone(),
        interval: cfg.preflight.interval.get(),
        requests: delivery.map(|d| {
            let (tx, rx) = delivery::snapshot_requests();
            d.preflight = Some(tx);
            rx
        }),
    };
    crate::preflight::PreflightTask::spawn(state, setup)
        .map(Some)
        .map_err(|e| StartError::Thread("preflight", e))
}

/// How long stopping sinks get for the findings they hold (they are resent after a restart).
const SINK_STOP_GRACE: Duration = Duration::from_secs(2);

/// The spool's consumers: the aggregator delivery when configured, and each direct sink.
fn spool_consumers(cfg: &AgentConfig) -> Vec<String> {
    let aggregator = cfg
        .aggregator_enabled()
        .then(|| DEFAULT_CONSUMER.to_string());
    aggregator
        .into_iter()
        .chain(cfg.sinks.keys().map(|name| siem::consumer_name(name)))
        .collect()
}

/// Starts the `[sinks]` of the agent configuration and their spool feeds on `rt`; `None`
/// when there are none.
fn direct_sinks(
    cfg: &AgentConfig,
    spool: &Spool,
    rt: &tokio::runtime::Handle,
) -> Result<Option<SiemFeeds>, StartError> {
    if cfg.sinks.is_empty() {
        return Ok(None);
    }
    // Sinks spawn their tasks on the current runtime; the agent's is `rt`.
    let _enter = rt.enter();
    let feeds = SiemFeeds::start(
        &patchwatch_sinks::SinksConfig {
            sinks: cfg.sinks.clone(),
        },
        spool,
    )?;
    Ok(Some(feeds))
}

/// A stable id for this collector: kept in the data directory.
fn collector_id(data_dir: &std::path::Path, host: &str) -> Result<String, StartError> {
    let p = data_dir.join("collector-id");
    if let Ok(s) = std::fs::read_to_string(&p) {
        if !s.trim().is_empty() {
            return Ok(s.trim().to_string());
        }
    }
    let id = format!("{host}-{}", uuid_like());
    std::fs::write(&p, &id).map_err(|source| StartError::Io {
        what: "writing",
        path: p.clone(),
        source,
    })?;
    Ok(id)
}

fn uuid_like() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_dies_while_running_fails_the_agent_loudly() {
        let stop = Arc::new(AtomicBool::new(false));
        let health = Health::new();
        supervised("matcher", &stop, &health, |_| panic!("boom"))
            .unwrap()
            .join()
            .unwrap();
        let report = health.report();
        assert_eq!(report.status(), "failed");
        assert!(report.reason("matcher").unwrap().contains("boom"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let reason = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), health.failed())
                .await
                .expect("failed() completes")
        });
        assert!(reason.starts_with("matcher: "), "{reason}");

        // Ending on request is not a failure.
        let health = Health::new();
        stop.store(true, Ordering::Release);
        supervised("tail-reader", &stop, &health, |_| {})
            .unwrap()
            .join()
            .unwrap();
        assert!(health.report().is_ok());
    }
}
