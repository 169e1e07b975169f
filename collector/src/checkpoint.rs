//! Per-file read positions that survive restarts: [`CheckpointStore`].
//!
//! **Invariant:** a checkpoint never runs ahead of durable data. The tailer registers files
//! and reads them, but only the consumer (the agent wiring) advances offsets, with
//! [`CheckpointStore::commit`], once everything before the offset is in the spool; and
//! [`Flusher`] runs a barrier (the spool's `sync`) before each write. A crash therefore
//! re-reads at most what was not yet spooled; it never skips data.
//!
//! The file is versioned JSON written to a temporary file, fsynced, then renamed over the old
//! one, so a crash leaves either the old or the new version. If the file is unreadable anyway
//! (disk trouble, a hand edit), it is moved aside as `<name>.corrupt-<unix time>`, a warning
//! and a metric are emitted, and tailing starts over from the beginning of each file; the
//! aggregator deduplicates by finding id, so the cost is duplicates, not loss.
//!
//! Each entry also stores an offset marker (hash of the bytes just before the offset) taken
//! at flush time from the file itself, so that a file rewritten in place with the same header
//! is not resumed in the middle of unrelated content.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::health::Health;
use crate::tail::identity::{marker_range, open_shared, read_at, short_hash, FileId, FileKey};
use crate::telemetry;

/// Version written in the `version` field; other versions are treated as corrupt.
const FORMAT_VERSION: u32 = 1;
/// Entries for files no longer tailed are kept this long, in case the file comes back.
const STALE_AFTER_SECS: i64 = 7 * 24 * 3600;

/// Errors from the checkpoint store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading, writing or renaming the checkpoint file failed.
    #[error("checkpoint file {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
}

/// Hash of the bytes just before an offset, as stored in the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Number of bytes hashed (up to 64, fewer near the start of the file).
    pub len: u32,
    /// [`short_hash`] of those bytes.
    pub hash: String,
}

/// A saved position the tailer may resume from, after checking it against the file.
#[derive(Debug, Clone)]
pub struct SavedPosition {
    /// The identity saved with it.
    pub key: FileKey,
    /// First byte not yet durably consumed.
    pub offset: u64,
    /// Offset marker, when it could be taken.
    pub marker: Option<Marker>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DiskEntry {
    #[serde(flatten)]
    key: FileKey,
    offset: u64,
    #[serde(default)]
    marker: Option<Marker>,
    path: PathBuf,
    #[serde(default)]
    bom_len: u64,
    updated_unix: i64,
    /// Opaque consumer state valid at `offset` (the scanner's resume point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<StateText>,
    /// Where this file's records still in the spool came from; see [`Replay`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replay: Option<Replay>,
}

/// The resume point of a file's oldest spooled record that not every consumer has
/// acknowledged, saved beside its checkpoint. If the spool loses records (a damaged segment),
/// the checkpoint is rewound here and the file re-read: that rebuilds the lost records with
/// the same ids, and the repeats of the others are deduplicated downstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replay {
    /// One past the id of this file's last spooled record: records of this file have ids
    /// below it.
    pub until_id: u64,
    /// Offset to re-read from.
    pub offset: u64,
    /// Consumer state valid at `offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<StateText>,
}

impl Replay {
    /// A replay point: records of the file with ids below `until_id` are rebuilt by reading
    /// from `offset` with the consumer state `state`.
    pub fn new(until_id: u64, offset: u64, state: &serde_json::Value) -> Self {
        Self {
            until_id,
            offset,
            state: Some(StateText::new(state)),
        }
    }

    /// The consumer state valid at [`offset`](Self::offset).
    pub fn state(&self) -> Option<serde_json::Value> {
        self.state.as_ref().and_then(StateText::value)
    }
}

/// Consumer state held as compact JSON text. One entry per tracked file lives as long as the
/// agent: as a `serde_json::Value` a resume point is two B-tree maps, about 1.3 KB, as text
/// about 150 bytes. On disk it is the JSON value itself, so the file format is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StateText(Box<str>);

impl StateText {
    fn new(value: &serde_json::Value) -> Self {
        Self(value.to_string().into_boxed_str())
    }

    fn value(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.0).ok()
    }
}

impl Serialize for StateText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let value: serde_json::Value = serde_json::from_str(&self.0).map_err(S::Error::custom)?;
        value.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StateText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(|v| Self::new(&v))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct DiskFile {
    version: u32,
    entries: Vec<DiskEntry>,
}

#[derive(Debug)]
struct Entry {
    disk: DiskEntry,
    /// Registered by the tailer in this process (false for entries loaded from disk only).
    live: bool,
    /// Offset changed since the marker was taken.
    dirty: bool,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<FileKey, Entry>,
    changed: bool,
}

/// Per-file offsets keyed by [`FileKey`], shared (`Arc`) by the tailer and the wiring.
#[derive(Debug)]
pub struct CheckpointStore {
    path: PathBuf,
    inner: Mutex<Inner>,
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl CheckpointStore {
    /// Loads `path` (missing means empty). A corrupt file is moved aside and reported; it is
    /// not an error.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when the file exists but cannot be read, or the directory
    /// cannot be created.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, CheckpointError> {
        let path = path.into();
        let io_err = |p: &Path, source| CheckpointError::Io {
            path: p.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        }
        let mut inner = Inner::default();
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<DiskFile>(&bytes) {
                Ok(f) if f.version == FORMAT_VERSION => {
                    for e in f.entries {
                        inner.entries.insert(
                            e.key.clone(),
                            Entry {
                                disk: e,
                                live: false,
                                dirty: false,
                            },
                        );
                    }
                }
                parsed => {
                    let reason = match parsed {
                        Ok(f) => format!("unsupported version {}", f.version),
                        Err(e) => e.to_string(),
                    };
                    let aside = path.with_extension(format!("corrupt-{}", now_unix()));
                    std::fs::rename(&path, &aside).map_err(|e| io_err(&path, e))?;
                    tracing::warn!(
                        message = "Checkpoint file is corrupt; moved aside and rebuilding, files will be re-read from the start.",
                        path = %path.display(), moved_to = %aside.display(), %reason
                    );
                    telemetry::count(telemetry::CHECKPOINT_CORRUPT, 1);
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path, e)),
        }
        Ok(Self {
            path,
            inner: Mutex::new(inner),
        })
    }

    /// Where the store is persisted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every update is one field),
        // so poisoning is not a reason to stop checkpointing.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that everything before `offset` in `key`'s file is durably spooled.
    ///
    /// Offsets only move forward; a commit for a file the tailer no longer tracks (deleted,
    /// or replaced by a new generation) is ignored. Cheap: no IO until [`flush`](Self::flush).
    pub fn commit(&self, key: &FileKey, offset: u64) {
        let mut inner = self.lock();
        if let Some(e) = inner.entries.get_mut(key).filter(|e| e.live) {
            if offset > e.disk.offset {
                e.disk.offset = offset;
                e.disk.updated_unix = now_unix();
                e.dirty = true;
                inner.changed = true;
            }
        }
    }

    /// Like [`commit`](Self::commit), and stores `state`: what the consumer needs to continue
    /// from exactly `offset` (saved with the offset, so they never disagree). Unlike `commit`,
    /// the offset may stay where it is while the state changes.
    pub fn commit_with_state(&self, key: &FileKey, offset: u64, state: serde_json::Value) {
        let state = StateText::new(&state);
        let mut inner = self.lock();
        if let Some(e) = inner.entries.get_mut(key).filter(|e| e.live) {
            if offset > e.disk.offset
                || (offset == e.disk.offset && e.disk.state.as_ref() != Some(&state))
            {
                e.disk.offset = offset;
                e.disk.state = Some(state);
                e.disk.updated_unix = now_unix();
                e.dirty = true;
                inner.changed = true;
            }
        }
    }

    /// Sets (or clears) `key`'s [`Replay`] point; written with the next flush.
    pub fn set_replay(&self, key: &FileKey, replay: Option<Replay>) {
        let mut inner = self.lock();
        if let Some(e) = inner.entries.get_mut(key).filter(|e| e.live) {
            if e.disk.replay != replay {
                e.disk.replay = replay;
                inner.changed = true;
            }
        }
    }

    /// The [`Replay`] point saved for `key`, if any.
    pub fn replay(&self, key: &FileKey) -> Option<Replay> {
        self.lock().entries.get(key)?.disk.replay.clone()
    }

    /// One past the highest spool record id any file's [`Replay`] point covers: the spool
    /// must still hold records up to here, or it lost some that only the checkpoints know of.
    pub fn replay_until(&self) -> Option<u64> {
        let inner = self.lock();
        inner
            .entries
            .values()
            .filter_map(|e| e.disk.replay.as_ref().map(|r| r.until_id))
            .max()
    }

    /// After the spool lost records with ids from `first_lost` on: moves
    /// the checkpoint of every file that had records in that range back to its [`Replay`]
    /// point, so that the tailer reads those bytes again, and writes the store. Returns the
    /// paths of the files rewound.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when the store cannot be written; the rewind is then kept in
    /// memory and written by the next flush.
    pub fn rewind_lost(&self, first_lost: u64) -> Result<Vec<PathBuf>, CheckpointError> {
        let todo: Vec<(FileKey, PathBuf, Replay, u64)> = {
            let inner = self.lock();
            inner
                .entries
                .values()
                .filter_map(|e| {
                    let r = e.disk.replay.as_ref()?;
                    // The file's spooled records have ids below `until_id`; those from its
                    // replay point on overlap the lost range unless they all end before it.
                    (r.until_id > first_lost && r.offset < e.disk.offset).then(|| {
                        (
                            e.disk.key.clone(),
                            e.disk.path.clone(),
                            r.clone(),
                            e.disk.bom_len,
                        )
                    })
                })
                .collect()
        };
        let mut paths = Vec::new();
        for (key, path, replay, bom_len) in todo {
            let (marker, _) = take_marker(&key, &path, replay.offset, bom_len);
            let mut inner = self.lock();
            if let Some(e) = inner.entries.get_mut(&key) {
                e.disk.offset = replay.offset;
                e.disk.state = replay.state.clone();
                e.disk.marker = marker;
                e.disk.updated_unix = now_unix();
                e.dirty = false;
                inner.changed = true;
                paths.push(path);
            }
        }
        if !paths.is_empty() {
            self.flush()?;
        }
        Ok(paths)
    }

    /// The consumer state saved with the committed offset of `key`, if any.
    pub fn state(&self, key: &FileKey) -> Option<(u64, serde_json::Value)> {
        let inner = self.lock();
        let e = inner.entries.get(key)?;
        let state = e.disk.state.as_ref()?.value()?;
        Some((e.disk.offset, state))
    }

    /// The committed offset for `key`, if known.
    pub fn offset(&self, key: &FileKey) -> Option<u64> {
        self.lock().entries.get(key).map(|e| e.disk.offset)
    }

    /// Saved positions for the file with this device/inode, for the tailer to verify.
    pub(crate) fn candidates(&self, id: FileId) -> Vec<SavedPosition> {
        self.lock()
            .entries
            .values()
            .filter(|e| e.disk.key.id == id)
            .map(|e| SavedPosition {
                key: e.disk.key.clone(),
                offset: e.disk.offset,
                marker: e.disk.marker.clone(),
            })
            .collect()
    }

    /// Starts tracking a file generation at `from` (its resume point or 0).
    pub(crate) fn register(&self, key: &FileKey, path: &Path, bom_len: u64, from: u64) {
        let mut inner = self.lock();
        let unchanged = inner
            .entries
            .get(key)
            .is_some_and(|e| e.disk.offset == from && e.disk.path == path);
        if let Some(e) = inner.entries.get_mut(key).filter(|_| unchanged) {
            e.live = true;
            return;
        }
        inner.entries.insert(
            key.clone(),
            Entry {
                disk: DiskEntry {
                    key: key.clone(),
                    offset: from,
                    marker: None,
                    path: path.to_path_buf(),
                    bom_len,
                    updated_unix: now_unix(),
                    state: None,
                    replay: None,
                },
                live: true,
                dirty: true,
            },
        );
        inner.changed = true;
    }

    /// Records a rename of a tracked file.
    pub(crate) fn rename(&self, key: &FileKey, path: &Path) {
        let mut inner = self.lock();
        if let Some(e) = inner.entries.get_mut(key) {
            e.disk.path = path.to_path_buf();
            inner.changed = true;
        }
    }

    /// Drops a file that is gone or replaced; later commits for it are ignored.
    pub(crate) fn forget(&self, key: &FileKey) {
        let mut inner = self.lock();
        if inner.entries.remove(key).is_some() {
            inner.changed = true;
            telemetry::file_lag(&key.to_string(), 0);
        }
    }

    /// Writes the store if anything changed: markers are taken from the files, then the JSON
    /// goes to `<path>.tmp`, is fsynced and renamed over `<path>`.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] naming the file; the in-memory state is kept and the next
    /// flush tries again.
    pub fn flush(&self) -> Result<(), CheckpointError> {
        // Take markers without holding the lock: it is file IO, and commits must stay cheap.
        let todo: Vec<(FileKey, PathBuf, u64, u64)> = {
            let inner = self.lock();
            if !inner.changed {
                return Ok(());
            }
            inner
                .entries
                .values()
                .filter(|e| e.dirty && e.live)
                .map(|e| {
                    (
                        e.disk.key.clone(),
                        e.disk.path.clone(),
                        e.disk.offset,
                        e.disk.bom_len,
                    )
                })
                .collect()
        };
        let mut markers = Vec::with_capacity(todo.len());
        for (key, path, offset, bom_len) in todo {
            let (marker, size) = take_marker(&key, &path, offset, bom_len);
            if let Some(size) = size {
                telemetry::file_lag(&path.to_string_lossy(), size.saturating_sub(offset));
            }
            markers.push((key, offset, marker));
        }
        let snapshot = {
            let mut inner = self.lock();
            for (key, offset, marker) in markers {
                if let Some(e) = inner.entries.get_mut(&key) {
                    if e.disk.offset == offset {
                        e.disk.marker = marker;
                        e.dirty = false;
                    }
                }
            }
            let cutoff = now_unix() - STALE_AFTER_SECS;
            inner
                .entries
                .retain(|_, e| e.live || e.disk.updated_unix >= cutoff);
            inner.changed = false;
            let mut entries: Vec<DiskEntry> =
                inner.entries.values().map(|e| e.disk.clone()).collect();
            entries.sort_by(|a, b| a.key.cmp(&b.key));
            DiskFile {
                version: FORMAT_VERSION,
                entries,
            }
        };
        let result = write_atomically(&self.path, &snapshot);
        if result.is_err() {
            self.lock().changed = true;
            telemetry::count(telemetry::CHECKPOINT_WRITE_ERRORS, 1);
        }
        result
    }
}

/// Hashes the bytes before `offset` in the file at `path`, if that file still is `key`'s file
/// and still that long. Also returns the file's size for the lag gauge.
fn take_marker(
    key: &FileKey,
    path: &Path,
    offset: u64,
    bom_len: u64,
) -> (Option<Marker>, Option<u64>) {
    let Ok(mut f) = open_shared(path) else {
        return (None, None);
    };
    let Ok(meta) = f.metadata() else {
        return (None, None);
    };
    if FileId::of_file(&f).ok() != Some(key.id) || meta.len() < offset {
        return (None, None);
    }
    let (start, len) = marker_range(offset, bom_len);
    let marker = read_at(&mut f, start, len)
        .ok()
        .filter(|b| b.len() as u64 == len)
        .map(|b| Marker {
            len: len as u32,
            hash: short_hash(&b),
        });
    (marker, Some(meta.len()))
}

fn write_atomically(path: &Path, file: &DiskFile) -> Result<(), CheckpointError> {
    let tmp = path.with_extension("tmp");
    let io_err = |p: &Path, source| CheckpointError::Io {
        path: p.to_path_buf(),
        source,
    };
    let json = serde_json::to_vec_pretty(file).expect("checkpoint entries always serialize");
    crate::faults::check(&tmp).map_err(|e| io_err(&tmp, e))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(&json).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    sync_dir(path);
    Ok(())
}

/// Makes a rename in `path`'s directory durable (Unix); a no-op elsewhere.
pub(crate) fn sync_dir(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Background thread that flushes a [`CheckpointStore`] periodically and once more on stop.
#[derive(Debug)]
pub struct Flusher {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    /// Flushes `store` every `every`, calling `barrier` first; the checkpoint is written only
    /// if the barrier succeeds. Pass the spool's `sync` as barrier so that offsets never
    /// become durable before the findings they cover.
    ///
    /// A failing barrier or write (a full disk) is retried every `every` with nothing lost:
    /// the store keeps its state in memory. It is logged once when it starts and once when it
    /// ends, and reported as the `checkpoints` part of `health` meanwhile.
    pub fn spawn<B>(
        store: Arc<CheckpointStore>,
        every: Duration,
        barrier: B,
        health: Health,
    ) -> Self
    where
        B: Fn() -> io::Result<()> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("checkpoint-flush".into())
            .spawn(move || {
                // Parked between flushes (`finish` unparks it): an idle agent must not wake
                // up every few milliseconds.
                let mut last = std::time::Instant::now();
                let mut failing: Option<String> = None;
                loop {
                    let stopping = flag.load(Ordering::Acquire);
                    if stopping || last.elapsed() >= every {
                        last = std::time::Instant::now();
                        match flush_with_barrier(&store, &barrier) {
                            Ok(()) => {
                                if failing.take().is_some() {
                                    tracing::info!(message = "Checkpoint writes work again.");
                                    health.ok(HEALTH_PART);
                                }
                            }
                            Err(reason) => {
                                if failing.as_deref() != Some(reason.as_str()) {
                                    tracing::warn!(message = "Checkpoint write failed; keeping positions in memory and retrying.", %reason);
                                    health.degraded(HEALTH_PART, reason.clone());
                                    failing = Some(reason);
                                }
                            }
                        }
                    }
                    if stopping {
                        return;
                    }
                    std::thread::park_timeout(every.saturating_sub(last.elapsed()));
                }
            })
            .expect("spawning a thread only fails when the OS is out of resources");
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the thread after one last flush, and waits for it.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The part of [`Health`] the flusher reports on.
pub const HEALTH_PART: &str = "checkpoints";

fn flush_with_barrier<B: Fn() -> io::Result<()>>(
    store: &CheckpointStore,
    barrier: &B,
) -> Result<(), String> {
    barrier().map_err(|error| format!("spool sync before the checkpoint write failed: {error}"))?;
    store.flush().map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_restart_and_is_stored_as_json_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.json");
        let key = FileKey {
            id: FileId {
                device: 1,
                inode: 2,
            },
            fp_len: 4,
            fingerprint: "00ff".into(),
        };
        let state = serde_json::json!({
            "offset": 120, "line": 7, "run_index": 1, "source_key": null,
            "encoding": {"encoding": "utf16le", "bom_len": 2}, "kind": "msi"
        });
        let store = CheckpointStore::open(&path).unwrap();
        store.register(&key, Path::new("/logs/a.log"), 2, 0);
        store.commit_with_state(&key, 120, state.clone());
        assert_eq!(store.state(&key), Some((120, state.clone())));
        // Same offset, other state: kept; an equal state is not a change.
        let other = serde_json::json!({"offset": 120, "line": 8});
        store.commit_with_state(&key, 120, other.clone());
        assert_eq!(store.state(&key), Some((120, other.clone())));
        store.flush().unwrap();
        store.commit_with_state(&key, 120, other.clone());
        assert!(
            !store.lock().changed,
            "an unchanged state must not dirty the store"
        );

        let disk: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            disk["entries"][0]["state"], other,
            "state is a JSON value on disk"
        );
        let reopened = CheckpointStore::open(&path).unwrap();
        assert_eq!(reopened.state(&key), Some((120, other)));
    }
}
