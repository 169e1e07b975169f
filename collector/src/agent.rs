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

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use patchwatch_pipeline::{
    decode::Detected, Catalog, Event, FileScanner, Outcome, ResumePoint, ScanContext,
};
use patchwatch_proto as pb;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{CheckpointStore, Flusher, Replay};
use crate::config::AgentConfig;
use crate::delivery::{self, DeliveryOptions, SpoolItem};
use crate::discovery::Discovery;
use crate::health::{AgentHealth, Health, PartState};
use crate::siem::{self, SiemFeeds};
use crate::spool::{Spool, SpoolError, SpoolOptions, DEFAULT_CONSUMER};
use crate::tail::{Bom, FileKey, TailEvent, TailReader};
use crate::{convert, telemetry};

/// How long a file must be quiet before findings waiting for context lines are sent anyway.
const QUIET: Duration = Duration::from_millis(750);
/// How long a file must be quiet before its partial last line counts as complete. Setup and
/// Windows Installer write whole lines; a line left half-written this long means the writer
/// died. Shorter would risk cutting a line that is still being written.
const PARTIAL_QUIET: Duration = Duration::from_secs(10);
/// How often the matcher looks at quiet and stalled files when no data comes.
const TICK: Duration = Duration::from_millis(200);
/// How long the whole agent must be without data before memory freed since the last data is
/// given back to the OS for good: by then every file had its quiet and partial-line flush,
/// which shrink their buffers. A first release already follows the quiet flush ([`QUIET`]),
/// at most once per `IDLE_RELEASE`, so a slow steady writer does not cause one per line.
const IDLE_RELEASE: Duration = PARTIAL_QUIET;
/// First and longest wait before retrying a spool append that failed on the disk (full disk,
/// IO error). Reading stays paused meanwhile (backpressure); a 5 s cap keeps a long outage
/// at a dozen attempts a minute and the recovery prompt.
const WRITE_RETRY_FIRST: Duration = Duration::from_millis(100);
const WRITE_RETRY_MAX: Duration = Duration::from_secs(5);
/// How often replay points are brought up to date with the spool's acknowledgements.
const REPLAY_SYNC: Duration = Duration::from_secs(1);
/// Most replay points kept per file; beyond, the newer ones are merged into the older (which
/// only means re-reading more after a spool loss).
const REPLAY_MAX: usize = 32;

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
}

/// What the matcher thread needs.
struct Matcher {
    catalog: Arc<Catalog>,
    store: Arc<CheckpointStore>,
    spool: Spool,
    stop: Arc<AtomicBool>,
    host: pb::HostInfo,
    fallback: &'static encoding_rs::Encoding,
    stall_after: Duration,
    /// Boxed: a scanner is about 1.5 KB, and the table keeps up to twice as many slots as
    /// files (3 MiB of slots for 1,000 files, unboxed).
    files: HashMap<FileKey, Box<FileState>>,
    /// When the last data chunk of any file arrived.
    last_data: Instant,
    /// Data came since memory was last given back (see [`IDLE_RELEASE`]).
    release_due: bool,
    /// The early release after [`QUIET`] was done for the current quiet period.
    early_released: bool,
    /// When memory was last given back, if ever.
    last_release: Option<Instant>,
    health: Health,
    /// When replay points were last matched against the spool's acknowledgements.
    last_replay_sync: Instant,
    /// Where `/status` reads each file's encoding and run, and when they were last published.
    board: crate::status::StatusBoard,
    last_publish: Instant,
}

struct FileState {
    scanner: FileScanner,
    path: PathBuf,
    last_data: Instant,
    flushed: bool,
    partial_flushed: bool,
    stalled_run: Option<String>,
    last_line: String,
    /// The resume point committed last: where the records appended next come from.
    committed: ResumePoint,
    /// Where this file's records not yet acknowledged by every consumer came from: (first
    /// record id, resume point), oldest first. Its front is saved with the checkpoint as the
    /// file's [`Replay`] point.
    replay: VecDeque<(u64, ResumePoint)>,
    /// Id of this file's last spooled record.
    last_id: Option<u64>,
}

impl FileState {
    /// Whether [`Matcher::tick`] has something to do for this file after `quiet` without data.
    fn tick_due(&self, quiet: Duration, stall_after: Duration) -> bool {
        (!self.flushed && quiet >= QUIET)
            || (!self.partial_flushed && quiet >= PARTIAL_QUIET)
            || (quiet >= stall_after
                && self.scanner.open_run().is_some_and(|r| {
                    r.outcome == Outcome::InProgress
                        && self.stalled_run.as_deref() != Some(r.run_id.as_str())
                }))
    }
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
        if let Some(first_lost) = report.damage.iter().map(|d| d.first_lost_id).min() {
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
        let opts = if cfg.aggregator_enabled() {
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
        let matcher = Matcher {
            catalog,
            store,
            spool: spool.clone(),
            stop: Arc::clone(&stop),
            host: host.clone(),
            fallback,
            stall_after: cfg.stall_threshold.get(),
            files: HashMap::new(),
            last_data: Instant::now(),
            release_due: false,
            early_released: false,
            last_release: None,
            health: health.clone(),
            last_replay_sync: Instant::now(),
            board: board.clone(),
            last_publish: Instant::now(),
        };
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
        let _ = tokio::task::spawn_blocking(move || {
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

impl Matcher {
    fn run(mut self, rx: Receiver<TailEvent>) {
        loop {
            match rx.recv_timeout(TICK) {
                Ok(ev) => {
                    if !self.handle(ev) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // The reader stopped: everything it sent has been handled.
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if !self.tick() {
                return;
            }
        }
    }

    fn context(&self, path: &std::path::Path) -> ScanContext {
        let mut ctx = ScanContext::new(self.host.hostname.clone(), path.display().to_string());
        ctx.utc_offset_seconds = self.host.utc_offset_seconds;
        ctx.fallback_encoding = self.fallback;
        ctx
    }

    /// Handles one event; false when stopping mid-way (spool full during shutdown).
    fn handle(&mut self, ev: TailEvent) -> bool {
        match ev {
            TailEvent::Reset {
                file,
                path,
                from,
                bom,
            } => {
                let ctx = self.context(&path);
                let scanner = match (from, self.store.state(&file)) {
                    (0, _) => FileScanner::new(Arc::clone(&self.catalog), ctx),
                    (from, Some((at, state))) if at == from => {
                        match serde_json::from_value::<ResumePoint>(state) {
                            Ok(p) => FileScanner::resume(Arc::clone(&self.catalog), ctx, &p),
                            Err(_) => FileScanner::resume(
                                Arc::clone(&self.catalog),
                                ctx,
                                &bare_point(from, bom),
                            ),
                        }
                    }
                    (from, _) => {
                        FileScanner::resume(Arc::clone(&self.catalog), ctx, &bare_point(from, bom))
                    }
                };
                let committed = scanner.resume_point();
                // Records of this file from before a restart may still wait in the spool.
                let mut replay = VecDeque::new();
                let mut last_id = None;
                if let Some(r) = self.store.replay(&file).filter(|_| from > 0) {
                    let point = r
                        .state()
                        .and_then(|v| serde_json::from_value::<ResumePoint>(v).ok())
                        .unwrap_or_else(|| bare_point(r.offset, bom));
                    replay.push_back((0, point));
                    last_id = r.until_id.checked_sub(1);
                }
                self.files.insert(
                    file,
                    Box::new(FileState {
                        scanner,
                        path,
                        last_data: Instant::now(),
                        flushed: true,
                        partial_flushed: true,
                        stalled_run: None,
                        last_line: String::new(),
                        committed,
                        replay,
                        last_id,
                    }),
                );
                telemetry::set_gauge("patchwatch_open_files", self.files.len() as f64);
                true
            }
            TailEvent::Data(chunk) => {
                telemetry::bytes_read(chunk.bytes.len() as u64);
                let Some(st) = self.files.get_mut(&chunk.file) else {
                    tracing::warn!(message = "Data for a file without a stream; ignored.", path = %chunk.path.display());
                    return true;
                };
                let before = st.scanner.stats().lines;
                st.scanner.feed(&chunk.bytes);
                telemetry::lines(st.scanner.stats().lines - before);
                st.last_data = Instant::now();
                self.last_data = st.last_data;
                self.release_due = true;
                self.early_released = false;
                st.flushed = false;
                st.partial_flushed = false;
                st.stalled_run = None;
                if let Some(l) = last_line(&chunk.bytes) {
                    st.last_line = l;
                }
                self.drain(&chunk.file)
            }
            TailEvent::Rotated { file, to, .. } => {
                if let Some(st) = self.files.get_mut(&file) {
                    st.scanner.set_path(to.display().to_string());
                    st.path = to;
                }
                true
            }
            TailEvent::Truncated { file, .. } | TailEvent::Deleted { file, .. } => {
                // The generation ended: what it held is complete; runs stay as the log left them.
                let ok = match self.files.get_mut(&file) {
                    Some(st) => {
                        st.scanner.flush();
                        self.drain(&file)
                    }
                    None => true,
                };
                self.files.remove(&file);
                telemetry::set_gauge("patchwatch_open_files", self.files.len() as f64);
                ok
            }
        }
    }

    /// Quiet files: complete their partial line. Stalled runs: report once.
    fn tick(&mut self) -> bool {
        // Most ticks have nothing to do: look at the states in place first, so an idle tick
        // over 1,000 files neither clones their keys nor hashes them.
        let now = Instant::now();
        let keys: Vec<FileKey> = self
            .files
            .iter()
            .filter(|(_, st)| {
                st.tick_due(
                    now.saturating_duration_since(st.last_data),
                    self.stall_after,
                )
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            let Some(st) = self.files.get_mut(&key) else {
                continue;
            };
            let quiet = st.last_data.elapsed();
            if !st.flushed && quiet >= QUIET {
                st.scanner.flush_pending();
                st.flushed = true;
                if !self.drain(&key) {
                    return false;
                }
            }
            let Some(st) = self.files.get_mut(&key) else {
                continue;
            };
            if !st.partial_flushed && quiet >= PARTIAL_QUIET {
                st.scanner.flush();
                st.partial_flushed = true;
                if !self.drain(&key) {
                    return false;
                }
            }
            let Some(st) = self.files.get_mut(&key) else {
                continue;
            };
            if quiet >= self.stall_after {
                if let Some(run) = st
                    .scanner
                    .open_run()
                    .filter(|r| r.outcome == Outcome::InProgress)
                    .cloned()
                {
                    if st.stalled_run.as_deref() != Some(run.run_id.as_str()) {
                        st.stalled_run = Some(run.run_id.clone());
                        let (f, u) = stalled(&self.catalog, &self.host, &run, quiet, &st.last_line);
                        if matches!(
                            self.append(&SpoolItem::Finding(Box::new(f))),
                            Appended::Stopped
                        ) || matches!(
                            self.append(&SpoolItem::RunUpdate(Box::new(u))),
                            Appended::Stopped
                        ) {
                            return false;
                        }
                    }
                }
            }
        }
        if self.last_replay_sync.elapsed() >= REPLAY_SYNC {
            self.last_replay_sync = Instant::now();
            let pending: Vec<FileKey> = self
                .files
                .iter()
                .filter(|(_, st)| !st.replay.is_empty())
                .map(|(k, _)| k.clone())
                .collect();
            for key in pending {
                self.sync_replay(&key);
            }
        }
        self.release_memory_when_idle();
        self.publish();
        true
    }

    /// Publishes each file's encoding and open run for `/status`, at most once per
    /// [`PUBLISH_EVERY`](crate::status::PUBLISH_EVERY).
    fn publish(&mut self) {
        if self.last_publish.elapsed() < crate::status::PUBLISH_EVERY {
            return;
        }
        self.last_publish = Instant::now();
        for st in self.files.values() {
            let encoding = st.scanner.encoding().map(|d| match d.encoding {
                patchwatch_pipeline::decode::SourceEncoding::Utf8 => "utf8".to_owned(),
                patchwatch_pipeline::decode::SourceEncoding::Utf16Le => "utf16le".to_owned(),
                patchwatch_pipeline::decode::SourceEncoding::Utf16Be => "utf16be".to_owned(),
            });
            let run = st.scanner.open_run().map(|r| crate::status::RunStatus {
                run_id: r.run_id.clone(),
                outcome: r.outcome.as_str().to_owned(),
                phase: r.phase.clone(),
            });
            self.board
                .scanned(&st.path.display().to_string(), encoding, run);
        }
    }

    /// Drops the replay points of `key` whose records every consumer acknowledged, and saves
    /// the oldest one left with the checkpoint.
    fn sync_replay(&mut self, key: &FileKey) {
        let acked = self.spool.first_unacked();
        let Some(st) = self.files.get_mut(key) else {
            return;
        };
        while st.replay.len() >= 2 && st.replay[1].0 <= acked {
            st.replay.pop_front();
        }
        if st.last_id.is_none_or(|last| last < acked) {
            st.replay.clear();
        }
        while st.replay.len() > REPLAY_MAX {
            // Merge the second into the first: its records are then re-read from earlier.
            st.replay.remove(1);
        }
        let replay = match (st.replay.front(), st.last_id) {
            (Some((_, point)), Some(last)) => serde_json::to_value(point)
                .ok()
                .map(|v| Replay::new(last + 1, point.offset, &v)),
            _ => None,
        };
        self.store.set_replay(key, replay);
    }

    /// Gives memory freed since the last data back to the OS once the agent is quiet: catch-up
    /// buffers were freed file by file, and without this glibc keeps their pages resident.
    fn release_memory_when_idle(&mut self) {
        if !self.release_due {
            return;
        }
        let idle = self.last_data.elapsed();
        let early = !self.early_released
            && idle >= QUIET
            && self
                .last_release
                .is_none_or(|t| t.elapsed() >= IDLE_RELEASE);
        if idle >= IDLE_RELEASE || early {
            crate::memory::release_free_memory();
            self.last_release = Some(Instant::now());
            self.early_released = true;
            self.release_due = idle < IDLE_RELEASE;
        }
    }

    /// Spools what the scanner of `key` produced, then commits its resume point.
    fn drain(&mut self, key: &FileKey) -> bool {
        let Some(st) = self.files.get_mut(key) else {
            return true;
        };
        let events = st.scanner.drain_events();
        for d in st.scanner.drain_diagnostics() {
            tracing::warn!(message = "Input problem.", path = %st.path.display(), line = d.line, detail = %d.message);
            if d.message.contains("longer than") {
                telemetry::truncated_lines(1);
            }
        }
        let point = st.scanner.resume_point();
        let origin = st.committed.clone();
        let file = Some(key.to_proto());
        let offset = self.host.utc_offset_seconds;
        let mut ids: Option<(u64, u64)> = None;
        for e in events {
            let item = match e {
                Event::Finding(f) => {
                    telemetry::finding(&f.rule_id, f.severity.as_str());
                    SpoolItem::Finding(Box::new(convert::finding(
                        &f,
                        &self.host,
                        file.clone(),
                        false,
                    )))
                }
                Event::Run(r) => SpoolItem::RunUpdate(Box::new(convert::run_update(&r, offset))),
            };
            match self.append(&item) {
                Appended::Id(id) => ids = Some((ids.map_or(id, |(first, _)| first), id)),
                Appended::Skipped => {}
                Appended::Stopped => return false,
            }
        }
        match serde_json::to_value(&point) {
            Ok(v) => self.store.commit_with_state(key, point.offset, v),
            Err(error) => tracing::error!(message = "Resume point not serializable.", %error),
        }
        if let Some(st) = self.files.get_mut(key) {
            st.committed = point;
            if let Some((first, last)) = ids {
                if st.replay.back().is_none_or(|(_, p)| *p != origin) {
                    st.replay.push_back((first, origin));
                }
                st.last_id = Some(last);
                self.sync_replay(key);
            }
        }
        true
    }

    /// Appends to the spool and returns the record's id, waiting while the spool is full or
    /// its disk refuses writes (never dropping); [`Appended::Stopped`] only on shutdown.
    ///
    /// Waiting here pauses reading: the tail reader blocks on the bounded channel. A disk
    /// error (full disk) is retried with backoff until space returns, logged once when it
    /// starts and once when it ends, and reported in health meanwhile.
    fn append(&self, item: &SpoolItem) -> Appended {
        let bytes = item.encode();
        let mut warned = false;
        let mut failing: Option<String> = None;
        let mut backoff = WRITE_RETRY_FIRST;
        loop {
            match self
                .spool
                .append_timeout(&bytes, Duration::from_millis(500))
            {
                Ok(id) => {
                    telemetry::set_gauge("patchwatch_spool_bytes", self.spool.used_bytes() as f64);
                    if warned || failing.is_some() {
                        tracing::info!(message = "Spool writes work again; reading resumed.");
                        self.health.ok(SPOOL_PART);
                    }
                    return Appended::Id(id);
                }
                Err(SpoolError::Full { used, max }) => {
                    if !warned {
                        tracing::warn!(
                            message =
                                "Spool full: reading paused until the aggregator and sinks acknowledge."
                        );
                        telemetry::count("patchwatch_spool_full_total", 1);
                        self.health.degraded(
                            SPOOL_PART,
                            format!("spool full ({used} of {max} bytes); reading paused until consumers acknowledge"),
                        );
                        warned = true;
                    }
                    if self.stop.load(Ordering::Acquire) {
                        return Appended::Stopped;
                    }
                }
                Err(SpoolError::TooLarge { len, max }) => {
                    // Cannot happen with findings (kilobytes against a 16 MiB limit); if it
                    // does, retrying would stop the agent for good, so the record is skipped.
                    tracing::error!(
                        message = "Record larger than the spool accepts; skipped.",
                        len,
                        max
                    );
                    telemetry::count(telemetry::RECORDS_TOO_LARGE, 1);
                    return Appended::Skipped;
                }
                Err(error) => {
                    let reason = error.to_string();
                    if failing.as_deref() != Some(reason.as_str()) {
                        tracing::error!(message = "Spool append failed; reading paused, retrying until the disk accepts writes.", %error);
                        telemetry::count(telemetry::SPOOL_WRITE_ERRORS, 1);
                        self.health
                            .degraded(SPOOL_PART, format!("spool writes fail: {reason}"));
                        failing = Some(reason);
                    }
                    let deadline = Instant::now() + backoff;
                    while Instant::now() < deadline {
                        if self.stop.load(Ordering::Acquire) {
                            return Appended::Stopped;
                        }
                        std::thread::sleep(Duration::from_millis(50).min(backoff));
                    }
                    backoff = (backoff * 2).min(WRITE_RETRY_MAX);
                }
            }
        }
    }
}

/// What [`Matcher::append`] did.
enum Appended {
    /// Spooled under this id.
    Id(u64),
    /// Refused for good (too large) and skipped, with an error logged.
    Skipped,
    /// The agent is stopping; nothing was spooled.
    Stopped,
}

/// The part of [`Health`] the matcher reports spool appends under.
const SPOOL_PART: &str = "spool";

fn bare_point(from: u64, bom: Bom) -> ResumePoint {
    let encoding = match bom {
        Bom::Utf16Le => Some(patchwatch_pipeline::decode::SourceEncoding::Utf16Le),
        Bom::Utf16Be => Some(patchwatch_pipeline::decode::SourceEncoding::Utf16Be),
        Bom::Utf8 | Bom::None => Some(patchwatch_pipeline::decode::SourceEncoding::Utf8),
    };
    ResumePoint {
        offset: from,
        line: 1,
        run_index: 0,
        source_key: None,
        encoding: encoding.map(|encoding| Detected {
            encoding,
            bom_len: bom.len() as usize,
        }),
        kind: None,
    }
}

/// The last complete-looking line of a chunk, for stall reports (ASCII view, cut short).
fn last_line(bytes: &[u8]) -> Option<String> {
    // Only the end of a chunk can hold its last line, and this runs on every chunk: looking at
    // the last 4 KiB keeps it off the hot path (it walked whole 64 KiB chunks byte by byte).
    // A last line longer than that shows its end.
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    let text: String = tail
        .iter()
        .filter(|b| **b != 0)
        .map(|&b| if b.is_ascii() { b as char } else { '?' })
        .collect();
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(300).collect())
}

fn stalled(
    catalog: &Catalog,
    host: &pb::HostInfo,
    run: &patchwatch_pipeline::RunSummary,
    quiet: Duration,
    last: &str,
) -> (pb::Finding, pb::RunUpdate) {
    let minutes = (quiet.as_secs() / 60).to_string();
    let mut fields = std::collections::HashMap::new();
    fields.insert("stalled_minutes".to_string(), minutes.clone());
    fields.insert("phase".to_string(), run.phase.clone().unwrap_or_default());
    fields.insert("last_line".to_string(), last.to_string());
    let lookup = |name: &str| -> Option<String> {
        match name {
            "product" => run.product.clone().or(Some("Setup".into())),
            "host" => Some(host.hostname.clone()),
            "path" => Some(run.path.clone()),
            "stalled_minutes" => Some(minutes.clone()),
            "phase" => Some(run.phase.clone().unwrap_or_else(|| "unknown".into())),
            "last_line" => Some(last.to_string()),
            _ => None,
        }
    };
    let (title, severity, remediation) = match catalog.get("collector.run-stalled") {
        Some(r) => (r.title.clone(), r.severity, r.remediation_with(lookup)),
        None => (
            "A setup run has stalled".into(),
            patchwatch_pipeline::Severity::Medium,
            Default::default(),
        ),
    };
    // One stall finding per run and quiet period start: replays give the same id.
    let id = blake3::hash(
        format!(
            "stalled\0{}\0{}",
            run.run_id,
            run.last_time.clone().unwrap_or_default()
        )
        .as_bytes(),
    )
    .to_hex()[..32]
        .to_string();
    let finding = pb::Finding {
        id: id.clone(),
        rule_id: "collector.run-stalled".into(),
        rule_version: 1,
        title,
        severity: convert::severity(severity) as i32,
        host: Some(host.clone()),
        log_kind: convert::log_kind(run.log_kind) as i32,
        source_path: run.path.clone(),
        file: None,
        byte_offset: run.start_offset,
        line_number: run.start_line,
        run_id: run.run_id.clone(),
        event_time_unix_nano: 0,
        observed_time_unix_nano: convert::now_unix_nano(),
        evidence: vec![last.to_string()],
        fields,
        remediation: Some(pb::Remediation {
            summary: remediation.summary,
            steps: remediation.steps,
            links: remediation.links,
        }),
        labels: Default::default(),
        category: "progress".into(),
        primary: false,
    };
    let mut update = convert::run_update(run, host.utc_offset_seconds);
    update.outcome = pb::RunOutcome::Stalled as i32;
    (finding, update)
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

    #[test]
    fn last_line_reads_utf16_as_ascii() {
        let bytes: Vec<u8> = "a\r\nCreating Native images for .Net assemblies.\r\n"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(
            last_line(&bytes).as_deref(),
            Some("Creating Native images for .Net assemblies.")
        );
    }
}
