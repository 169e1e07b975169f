//! The matcher thread: scans each file's chunks, appends findings and run updates to the
//! spool, and commits checkpoints only behind what is durable (see [`crate::agent`]). It also
//! flushes quiet files, marks stalled runs, gives memory back when idle, and retries spool
//! writes that fail on the disk while reading stays paused.

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

use crate::checkpoint::{CheckpointStore, Replay};
use crate::delivery::SpoolItem;
use crate::health::Health;
use crate::spool::{Spool, SpoolError};
use crate::tail::{Bom, FileKey, TailEvent};
use crate::{convert, telemetry};

/// What the agent hands the matcher thread.
pub(crate) struct MatcherSetup {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) store: Arc<CheckpointStore>,
    pub(crate) spool: Spool,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) host: pb::HostInfo,
    pub(crate) fallback: &'static encoding_rs::Encoding,
    pub(crate) stall_after: Duration,
    pub(crate) health: Health,
    pub(crate) board: crate::status::StatusBoard,
}

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

/// What the matcher thread needs.
pub(crate) struct Matcher {
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

impl Matcher {
    /// A matcher with no files yet.
    pub(crate) fn new(s: MatcherSetup) -> Self {
        let now = Instant::now();
        Matcher {
            catalog: s.catalog,
            store: s.store,
            spool: s.spool,
            stop: s.stop,
            host: s.host,
            fallback: s.fallback,
            stall_after: s.stall_after,
            files: HashMap::new(),
            last_data: now,
            release_due: false,
            early_released: false,
            last_release: None,
            health: s.health,
            last_replay_sync: now,
            board: s.board,
            last_publish: now,
        }
    }

    pub(crate) fn run(mut self, rx: Receiver<TailEvent>) {
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
                // A stalled run that writes again is running: say so, as a phase change
                // may not come for a long time.
                let resumed = st.stalled_run.take().and_then(|id| {
                    st.scanner
                        .open_run()
                        .filter(|r| r.run_id == id && r.outcome == Outcome::InProgress)
                        .map(|r| convert::run_update(r, self.host.utc_offset_seconds))
                });
                if let Some(l) = last_line(&chunk.bytes) {
                    st.last_line = l;
                }
                if !self.drain(&chunk.file) {
                    return false;
                }
                match resumed {
                    Some(u) => !matches!(
                        self.append(&SpoolItem::RunUpdate(Box::new(u))),
                        Appended::Stopped
                    ),
                    None => true,
                }
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
        run: None,
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
