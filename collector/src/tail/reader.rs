//! The reader: reconciles discovery with the tracked files and polls each [`Tailer`].
//!
//! Files are tracked by [`FileId`], not by path, so a rename inside the watched set is a
//! `Rotated` event and the stream continues, and a rename out of it (rotation to a
//! non-matching name, the whole folder renamed) drains what the open handle can still read
//! before `Deleted`. A full pass (directory walk) runs when the watcher reports a change and
//! on the slow rescan timer; in between only recently active files are polled, which keeps
//! the cost flat with thousands of old `MSI*.LOG` files in `%WINDIR%\Temp`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender};

use super::handles::Handles;
use super::identity::FileId;
use super::tailer::{PollOutcome, Tailer};
use super::unreadable::{Unreadable, UNREADABLE_RETRY_FIRST, UNREADABLE_RETRY_MAX};
use super::walk_issues::WalkIssues;
use super::{TailEvent, TailOptions};
use crate::checkpoint::CheckpointStore;
use crate::discovery::{DirWatch, Discovery};
use crate::telemetry;

/// Tails every file [`Discovery`] finds; see the module doc.
#[derive(Debug)]
pub struct TailReader {
    discovery: Discovery,
    watch: DirWatch,
    store: Arc<CheckpointStore>,
    opts: TailOptions,
    tailers: HashMap<FileId, Tailer>,
    last_full: Option<Instant>,
    force_full: bool,
    /// The open-file cap.
    handles: Handles,
    /// Folders the last scan could not walk, warned about once per state.
    walk_issues: WalkIssues,
    /// Where `/status` reads the tracked files, and when they were last published there.
    board: Option<(crate::status::StatusBoard, Option<Instant>)>,
}

impl TailReader {
    /// Creates a reader. Nothing is read until the first [`poll_once`](Self::poll_once).
    pub fn new(discovery: Discovery, store: Arc<CheckpointStore>, opts: TailOptions) -> Self {
        let watch = DirWatch::new(&discovery, opts.poll);
        let handles = Handles::new(opts.max_open_files);
        Self {
            discovery,
            watch,
            store,
            opts,
            tailers: HashMap::new(),
            last_full: None,
            force_full: true,
            handles,
            walk_issues: WalkIssues::default(),
            board: None,
        }
    }

    /// Publishes the tracked files to `board` (at most once per
    /// [`PUBLISH_EVERY`](crate::status::PUBLISH_EVERY)).
    pub fn with_status(mut self, board: crate::status::StatusBoard) -> Self {
        self.board = Some((board, None));
        self
    }

    fn publish(&mut self, now: Instant) {
        let Some((board, last)) = &mut self.board else {
            return;
        };
        if last.is_some_and(|t| now.duration_since(t) < crate::status::PUBLISH_EVERY) {
            return;
        }
        *last = Some(now);
        let files = self
            .tailers
            .values()
            .map(|t| {
                let (offset, size) = t.progress();
                crate::status::TailedFile {
                    path: t.path.display().to_string(),
                    offset,
                    size,
                    open: t.is_open(),
                    unreadable: t.unreadable.as_ref().map(|u| u.kind.to_string()),
                }
            })
            .collect();
        board.tailed(files);
    }

    /// Number of files currently tracked.
    pub fn tracked(&self) -> usize {
        self.tailers.len()
    }

    /// Log files holding an open handle now; never more than `max_open_files`.
    pub fn open_files(&self) -> usize {
        self.handles.open()
    }

    /// Files that wanted a handle in the last round and found none free (read next round).
    pub fn queued_files(&self) -> usize {
        self.handles.waiting()
    }

    /// Warnings given so far about folders that cannot be walked (deleted, unreadable, a
    /// symbolic link loop): one per folder and state.
    pub fn walk_warnings(&self) -> u64 {
        self.walk_issues.warnings()
    }

    /// Folders the last full scan could not walk, and why.
    pub fn walk_issues(&self) -> Vec<(PathBuf, crate::discovery::WalkIssue)> {
        let mut v: Vec<_> = self
            .walk_issues
            .current()
            .map(|(p, i)| (p.clone(), i.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Number of tracked files that cannot be read right now (retried with backoff).
    pub fn unreadable(&self) -> usize {
        self.tailers
            .values()
            .filter(|t| t.unreadable.is_some())
            .count()
    }

    /// One round: maybe rescan, then poll files, handing every event to `emit` in order.
    /// `emit` returning false means the consumer is gone; the round stops there.
    ///
    /// Returns true when some file has more data than one round's budget, so the caller
    /// should poll again without sleeping.
    pub fn poll_once(&mut self, emit: &mut dyn FnMut(TailEvent) -> bool) -> bool {
        let now = Instant::now();
        let full = std::mem::take(&mut self.force_full)
            | self.watch.take_changed()
            | self
                .last_full
                .is_none_or(|t| now.duration_since(t) >= self.opts.rescan_interval);
        if full {
            self.last_full = Some(now);
            if !self.reconcile(emit) {
                return false;
            }
        }
        let mut more = false;
        // Files that found no free handle last round go first, so none waits for ever.
        let waited = self.handles.begin_round().clone();
        let mut ids: Vec<FileId> = self.tailers.keys().copied().collect();
        if !waited.is_empty() {
            ids.sort_by_key(|id| !waited.contains(id));
        }
        for id in ids {
            let t = self.tailers.get(&id).expect("listed above");
            let active = t.is_open() || now.duration_since(t.last_activity) < self.opts.idle_close;
            if !full && !active && !waited.contains(&id) {
                continue;
            }
            // An unreadable file is retried on its own schedule, not on every event or pass:
            // the agent's own log beside it would otherwise feed a warning loop.
            if t.unreadable.as_ref().is_some_and(|u| now < u.retry_at) {
                continue;
            }
            // Out of the map while polled, so that the cap can close another file's handle.
            let mut t = self.tailers.remove(&id).expect("listed above");
            let result = {
                let (handles, tailers) = (&mut self.handles, &mut self.tailers);
                let mut may_open = || match handles.acquire(id) {
                    Ok(None) => true,
                    Ok(Some(victim)) => {
                        if let Some(v) = tailers.get_mut(&victim) {
                            v.close();
                        }
                        true
                    }
                    Err(()) => false,
                };
                t.poll(&self.opts, &self.store, false, &mut may_open, emit)
            };
            if result.is_ok() {
                if let Some(u) = t.unreadable.take() {
                    tracing::info!(message = "File is readable again.", path = %t.path.display(), after = ?u.since.elapsed());
                }
            }
            match result {
                Ok(PollOutcome::More) => more = true,
                Ok(PollOutcome::Moved) => self.force_full = true,
                Ok(PollOutcome::Gone) => {
                    // Deleted and drained; the next full pass picks up whatever replaced it.
                    self.handles.forget(id);
                    self.force_full = true;
                    if !self.end(t, emit) {
                        return false;
                    }
                    continue;
                }
                Ok(PollOutcome::Stopped) => {
                    self.tailers.insert(id, t);
                    return false;
                }
                Ok(PollOutcome::Idle | PollOutcome::Progress | PollOutcome::Queued) => {}
                Err(error) => {
                    let kind = error.kind();
                    match &mut t.unreadable {
                        Some(u) if u.kind == kind => {
                            u.backoff = (u.backoff * 2).min(UNREADABLE_RETRY_MAX);
                            u.retry_at = now + u.backoff;
                        }
                        _ => {
                            tracing::warn!(message = "Cannot read file; retrying with backoff, next message when this changes.", path = %t.path.display(), %error);
                            t.unreadable = Some(Unreadable {
                                kind,
                                since: now,
                                backoff: UNREADABLE_RETRY_FIRST,
                                retry_at: now + UNREADABLE_RETRY_FIRST,
                            });
                        }
                    }
                    t.close();
                }
            }
            self.handles.touch(id, t.is_open());
            self.tailers.insert(id, t);
        }
        self.handles.end_round();
        // Files that waited for a handle are read in the next round, without sleeping first.
        more |= self.handles.waiting() > 0;
        telemetry::set_gauge(telemetry::QUEUED_FILES, self.handles.waiting() as f64);
        telemetry::set_gauge(
            telemetry::UNREADABLE_FILES,
            self.tailers
                .values()
                .filter(|t| t.unreadable.is_some())
                .count() as f64,
        );
        telemetry::set_gauge(telemetry::OPEN_FILES, self.handles.open() as f64);
        telemetry::set_gauge(telemetry::TRACKED_FILES, self.tailers.len() as f64);
        self.publish(now);
        more
    }

    /// Walks the directories and updates the tracked set. Returns false if `emit` hung up.
    fn reconcile(&mut self, emit: &mut dyn FnMut(TailEvent) -> bool) -> bool {
        let scan = self.discovery.scan_checked();
        self.walk_issues.update(&self.discovery.roots(), &scan);
        let paths = scan.files;
        self.watch.rearm(&self.discovery);
        let mut seen: HashMap<FileId, PathBuf> = HashMap::new();
        for path in paths {
            match FileId::of_path(&path) {
                Ok(id) => {
                    // With hard links one file has several names; keep the one we know.
                    let known = self.tailers.get(&id).is_some_and(|t| t.path == path);
                    if known || !seen.contains_key(&id) {
                        seen.insert(id, path);
                    }
                }
                Err(error) => {
                    tracing::debug!(message = "File vanished during scan.", path = %path.display(), %error)
                }
            }
        }
        let gone: Vec<FileId> = self
            .tailers
            .keys()
            .filter(|id| !seen.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            let mut t = self.tailers.remove(&id).expect("listed above");
            self.handles.forget(id);
            // Drain through the handle we still hold: on Unix a renamed or unlinked file
            // stays readable, so lines written just before a rotation are not lost.
            loop {
                match t.poll(&self.opts, &self.store, true, &mut || false, emit) {
                    Ok(PollOutcome::More) => continue,
                    Ok(PollOutcome::Stopped) => return false,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(message = "Cannot drain file that left the watched set.", path = %t.path.display(), %error);
                        break;
                    }
                }
            }
            if !self.end(t, emit) {
                return false;
            }
        }
        let live: HashSet<FileId> = self.tailers.keys().copied().collect();
        for (id, path) in seen {
            if live.contains(&id) {
                let t = self.tailers.get_mut(&id).expect("live");
                if t.path != path {
                    let from = std::mem::replace(&mut t.path, path.clone());
                    telemetry::count(telemetry::FILE_ROTATIONS, 1);
                    tracing::info!(message = "File renamed.", from = %from.display(), to = %path.display());
                    if let Some(key) = t.key.clone() {
                        self.store.rename(&key, &path);
                        if !emit(TailEvent::Rotated {
                            file: key,
                            from,
                            to: path,
                        }) {
                            return false;
                        }
                    }
                }
            } else {
                self.tailers.insert(id, Tailer::new(id, path));
            }
        }
        true
    }

    /// Ends a tailer: forget its checkpoint and tell the consumer, if it ever heard of it.
    fn end(&mut self, t: Tailer, emit: &mut dyn FnMut(TailEvent) -> bool) -> bool {
        let Some(key) = t.key else { return true };
        telemetry::count(telemetry::FILE_DELETIONS, 1);
        tracing::info!(message = "File deleted or moved out of the watched set.", path = %t.path.display());
        self.store.forget(&key);
        emit(TailEvent::Deleted {
            file: key,
            path: t.path,
        })
    }

    /// Runs the poll loop on the current thread until `stop` is set or the receiver is
    /// dropped. Blocks on the bounded channel when the consumer is slow: that is the
    /// backpressure, nothing is dropped.
    pub fn run(mut self, tx: Sender<TailEvent>, stop: &AtomicBool) {
        let mut send = |ev: TailEvent| -> bool {
            let mut ev = ev;
            loop {
                match tx.send_timeout(ev, Duration::from_millis(100)) {
                    Ok(()) => return true,
                    Err(SendTimeoutError::Disconnected(_)) => return false,
                    Err(SendTimeoutError::Timeout(back)) => {
                        if stop.load(Ordering::Acquire) {
                            return false;
                        }
                        ev = back;
                    }
                }
            }
        };
        // With filesystem events, a write wakes the loop at once, and the timed poll is only a
        // safety net (events can be lost): polling 1,000 files every 250 ms is what idle CPU
        // is made of. Without events, the configured interval is the only signal.
        let idle_poll = if self.watch.uses_events() {
            self.opts.poll_interval.max(EVENT_SAFETY_POLL)
        } else {
            self.opts.poll_interval
        };
        self.watch.wake_me();
        while !stop.load(Ordering::Acquire) {
            let more = self.poll_once(&mut send);
            if !more && !self.force_full {
                let watch = &self.watch;
                sleep_until_event(idle_poll, stop, || watch.peek_changed());
            }
        }
    }

    /// Spawns [`run`](Self::run) on a named thread.
    pub fn spawn(
        self,
        tx: Sender<TailEvent>,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("tail-reader".into())
            .spawn(move || self.run(tx, &stop))
            .expect("spawning a thread only fails when the OS is out of resources")
    }
}

/// Timed poll when filesystem events are in use.
const EVENT_SAFETY_POLL: Duration = Duration::from_secs(2);

/// Longest single sleep: how long `stop` may go unnoticed by an idle reader.
const STOP_CHECK: Duration = Duration::from_millis(250);

/// Sleeps up to `total`, waking early on `stop` or when `event()` is true. Events unpark the
/// thread ([`DirWatch::wake_me`](crate::discovery::DirWatch::wake_me)), so an idle reader wakes
/// a few times a second, not every few milliseconds.
fn sleep_until_event(total: Duration, stop: &AtomicBool, event: impl Fn() -> bool) {
    let deadline = Instant::now() + total;
    while !stop.load(Ordering::Acquire) && !event() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::park_timeout(STOP_CHECK.min(deadline - now));
    }
}
