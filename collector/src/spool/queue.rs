//! The spool itself: append, read from an id, acknowledge, recover.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::segment::{self, Segment, MAGIC, MAX_RECORD_BYTES, RECORD_HEADER};
use crate::checkpoint::sync_dir;
use crate::telemetry;

/// When appended records reach the disk platter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// fsync after every append: safest, slowest.
    Always,
    /// fsync on [`Spool::sync`] and when a segment is sealed. The agent calls `sync` before
    /// writing checkpoints, which is what durability needs.
    #[default]
    OnSync,
}

/// Spool settings.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// Directory holding segments and the ack file.
    pub dir: PathBuf,
    /// Upper bound of bytes on disk; appends beyond it fail with [`SpoolError::Full`].
    pub max_bytes: u64,
    /// A segment is sealed and a new one started past this size.
    pub segment_bytes: u64,
    /// See [`FsyncPolicy`].
    pub fsync: FsyncPolicy,
}

impl SpoolOptions {
    /// Defaults for `dir`: 256 MiB total, 8 MiB segments, fsync on `sync`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: 256 * 1024 * 1024,
            segment_bytes: 8 * 1024 * 1024,
            fsync: FsyncPolicy::OnSync,
        }
    }
}

/// Errors from the spool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// No room: the caller must stop reading input until deliveries free space.
    #[error("spool is full ({used} of {max} bytes); waiting for the aggregator to acknowledge")]
    Full {
        /// Bytes in use.
        used: u64,
        /// Configured maximum.
        max: u64,
    },
    /// A single record larger than the spool can ever hold.
    #[error("record of {len} bytes exceeds the spool limit of {max} bytes")]
    TooLarge {
        /// Record length.
        len: usize,
        /// Largest allowed.
        max: usize,
    },
    /// Invalid options.
    #[error("spool options: {0}")]
    Options(String),
    /// IO on a spool file failed.
    #[error("spool file {path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// A record failed its checksum when read back (disk corruption after recovery).
    #[error("spool file {path}: corrupt record {id}: {why}")]
    Corrupt {
        /// Segment file.
        path: PathBuf,
        /// Record id.
        id: u64,
        /// What was wrong.
        why: &'static str,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One damaged spot cut off during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Segment file.
    pub path: PathBuf,
    /// Where the valid data ends (the file was truncated here).
    pub offset: u64,
    /// Bytes dropped.
    pub dropped_bytes: u64,
    /// What was found.
    pub reason: String,
}

/// What [`Spool::open`] found.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Segment files kept.
    pub segments: usize,
    /// Records not yet acknowledged, to be replayed.
    pub unacked: u64,
    /// Damaged tails cut off (a torn last record after a crash is the usual one).
    pub damage: Vec<Damage>,
}

/// A record read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its id: strictly increasing, never reused in this spool directory.
    pub id: u64,
    /// The bytes given to `append`.
    pub payload: Vec<u8>,
}

#[derive(Debug)]
struct State {
    segments: VecDeque<Segment>,
    /// Append handle of the last segment, if it is still open for appends.
    writer: Option<File>,
    next_id: u64,
    /// Every id below this is acknowledged.
    acked: u64,
    total_bytes: u64,
    unsynced: bool,
}

#[derive(Debug)]
struct Shared {
    opts: SpoolOptions,
    state: Mutex<State>,
    space: Condvar,
    data: tokio::sync::Notify,
}

/// Durable FIFO of opaque records; cheap to clone (all clones share one spool).
///
/// Appends and reads are thread-safe. Records stay on disk until [`ack`](Self::ack) covers
/// them; only whole segments are deleted, so after a crash some acknowledged records of a
/// partly acknowledged segment may be replayed unless the ack file survived (it is written
/// on every ack).
#[derive(Debug, Clone)]
pub struct Spool {
    shared: Arc<Shared>,
}

impl Spool {
    /// Opens (or creates) the spool in `opts.dir`, cutting off torn records.
    ///
    /// # Errors
    /// [`SpoolError::Io`] naming the file when the directory is unusable,
    /// [`SpoolError::Options`] for inconsistent sizes.
    pub fn open(opts: SpoolOptions) -> Result<(Self, RecoveryReport), SpoolError> {
        if opts.segment_bytes == 0 || opts.segment_bytes.saturating_mul(2) > opts.max_bytes {
            return Err(SpoolError::Options(format!(
                "segment_bytes ({}) must be non-zero and at most half of max_bytes ({})",
                opts.segment_bytes, opts.max_bytes
            )));
        }
        std::fs::create_dir_all(&opts.dir).map_err(io_err(&opts.dir))?;
        let acked = read_ack_file(&opts.dir);
        let mut paths: Vec<(u64, PathBuf)> = std::fs::read_dir(&opts.dir)
            .map_err(io_err(&opts.dir))?
            .flatten()
            .filter_map(|e| segment::parse_name(&e.path()).map(|b| (b, e.path())))
            .collect();
        paths.sort();
        let mut report = RecoveryReport::default();
        let mut segments = VecDeque::new();
        for (base, path) in paths {
            let scan = segment::scan(&path).map_err(io_err(&path))?;
            let mut size = scan.file_len;
            if let Some(reason) = scan.damage {
                let keep = scan.valid_len.max(MAGIC.len() as u64);
                tracing::warn!(
                    message = "Spool segment damaged; cutting it off at the last valid record.",
                    path = %path.display(), offset = keep, dropped_bytes = scan.file_len.saturating_sub(keep), %reason
                );
                telemetry::count(telemetry::SPOOL_CORRUPT, 1);
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                if scan.valid_len < MAGIC.len() as u64 {
                    f.set_len(0).map_err(io_err(&path))?;
                    (&f).write_all(MAGIC).map_err(io_err(&path))?;
                } else {
                    f.set_len(keep).map_err(io_err(&path))?;
                }
                f.sync_all().map_err(io_err(&path))?;
                report.damage.push(Damage {
                    path: path.clone(),
                    offset: keep,
                    dropped_bytes: scan.file_len.saturating_sub(keep),
                    reason,
                });
                size = keep;
            }
            segments.push_back(Segment {
                base,
                path,
                offsets: scan.offsets,
                size,
            });
        }
        let next_id = segments.back().map_or(0, Segment::end).max(acked);
        let state = State {
            segments,
            writer: None,
            next_id,
            acked,
            total_bytes: 0,
            unsynced: false,
        };
        let spool = Self {
            shared: Arc::new(Shared {
                opts,
                state: Mutex::new(state),
                space: Condvar::new(),
                data: tokio::sync::Notify::new(),
            }),
        };
        {
            let mut st = spool.lock();
            spool.drop_acked_segments(&mut st)?;
            st.total_bytes = st.segments.iter().map(|s| s.size).sum();
            report.segments = st.segments.len();
            report.unacked = st.next_id - st.acked.min(st.next_id);
            telemetry::set_gauge(telemetry::SPOOL_BYTES, st.total_bytes as f64);
        }
        if report.unacked > 0 {
            tracing::info!(
                message = "Spool has unacknowledged records; they will be resent.",
                records = report.unacked
            );
        }
        Ok((spool, report))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one record and returns its id, or [`SpoolError::Full`] at once if there is no
    /// room. Never drops anything: on `Full` the caller keeps the data and stops reading.
    ///
    /// # Errors
    /// `Full`, `TooLarge`, or `Io` naming the segment file.
    pub fn append(&self, payload: &[u8]) -> Result<u64, SpoolError> {
        let mut st = self.lock();
        self.append_locked(&mut st, payload)
    }

    /// Like [`append`](Self::append) but waits up to `timeout` for acknowledgements to free
    /// space before giving up with `Full`.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub fn append_timeout(&self, payload: &[u8], timeout: Duration) -> Result<u64, SpoolError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            match self.append_locked(&mut st, payload) {
                Err(SpoolError::Full { used, max }) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(SpoolError::Full { used, max });
                    }
                    st = self
                        .shared
                        .space
                        .wait_timeout(st, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                other => return other,
            }
        }
    }

    fn append_locked(&self, st: &mut State, payload: &[u8]) -> Result<u64, SpoolError> {
        let opts = &self.shared.opts;
        let max_payload = MAX_RECORD_BYTES.min((opts.segment_bytes - RECORD_HEADER) as usize);
        if payload.len() > max_payload {
            return Err(SpoolError::TooLarge {
                len: payload.len(),
                max: max_payload,
            });
        }
        let rec_len = payload.len() as u64 + RECORD_HEADER;
        let needs_new = st.writer.is_none()
            || st
                .segments
                .back()
                .is_none_or(|s| s.size + rec_len > opts.segment_bytes);
        let extra = if needs_new { MAGIC.len() as u64 } else { 0 };
        if st.total_bytes + rec_len + extra > opts.max_bytes {
            telemetry::count(telemetry::SPOOL_FULL, 1);
            return Err(SpoolError::Full {
                used: st.total_bytes,
                max: opts.max_bytes,
            });
        }
        if needs_new {
            self.start_segment(st)?;
        }
        let seg = st.segments.back_mut().expect("segment started above");
        let buf = segment::encode(payload);
        let w = st.writer.as_mut().expect("writer open");
        if let Err(e) = w.write_all(&buf) {
            // Leave no half record behind for the reader: cut back to the last good end.
            let _ = w.set_len(seg.size);
            let _ = w.seek(SeekFrom::Start(seg.size));
            return Err(io_err(&seg.path)(e));
        }
        if opts.fsync == FsyncPolicy::Always {
            w.sync_data().map_err(io_err(&seg.path))?;
        } else {
            st.unsynced = true;
        }
        seg.offsets.push(seg.size);
        seg.size += rec_len;
        st.total_bytes += rec_len;
        let id = st.next_id;
        st.next_id += 1;
        telemetry::count(telemetry::SPOOL_RECORDS, 1);
        telemetry::set_gauge(telemetry::SPOOL_BYTES, st.total_bytes as f64);
        self.shared.data.notify_one();
        Ok(id)
    }

    /// Seals the current segment (fsync) and starts a new one at `next_id`.
    fn start_segment(&self, st: &mut State) -> Result<(), SpoolError> {
        if let (Some(w), Some(seg)) = (st.writer.take(), st.segments.back()) {
            w.sync_all().map_err(io_err(&seg.path))?;
        }
        let dir = &self.shared.opts.dir;
        let base = st.next_id;
        let path = dir.join(segment::file_name(base));
        // A recovered, still-empty last segment may already carry this base.
        if st.segments.back().is_some_and(|s| s.base == base) {
            let seg = st.segments.pop_back().expect("checked");
            st.total_bytes -= seg.size;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.write_all(MAGIC).map_err(io_err(&path))?;
        f.sync_all().map_err(io_err(&path))?;
        sync_dir(&path);
        st.total_bytes += MAGIC.len() as u64;
        st.segments.push_back(Segment {
            base,
            path,
            offsets: Vec::new(),
            size: MAGIC.len() as u64,
        });
        st.writer = Some(f);
        Ok(())
    }

    /// Makes every appended record durable (fsync). Cheap when nothing changed.
    ///
    /// # Errors
    /// `Io` naming the segment file.
    pub fn sync(&self) -> Result<(), SpoolError> {
        let mut st = self.lock();
        if !st.unsynced {
            return Ok(());
        }
        if let (Some(w), Some(seg)) = (st.writer.as_ref(), st.segments.back()) {
            w.sync_data().map_err(io_err(&seg.path))?;
        }
        st.unsynced = false;
        Ok(())
    }

    /// Id of the first record not yet acknowledged (where a replay starts).
    pub fn first_unacked(&self) -> u64 {
        self.lock().acked
    }

    /// Id the next append will get.
    pub fn next_id(&self) -> u64 {
        self.lock().next_id
    }

    /// Bytes on disk.
    pub fn used_bytes(&self) -> u64 {
        self.lock().total_bytes
    }

    /// Reads up to `max_records` records (and about `max_bytes` of payload, at least one
    /// record) starting at id `from` (clamped to the first unacknowledged id).
    ///
    /// # Errors
    /// `Io` or `Corrupt` naming the segment file.
    pub fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, SpoolError> {
        // Collect byte ranges under the lock, read the files outside it.
        let mut plan: Vec<(PathBuf, u64, u64, u64, usize)> = Vec::new();
        {
            let st = self.lock();
            let mut id = from.max(st.acked);
            let mut budget_recs = max_records;
            for seg in &st.segments {
                if budget_recs == 0 || seg.end() <= id {
                    continue;
                }
                id = id.max(seg.base);
                let first = (id - seg.base) as usize;
                let last = (first + budget_recs).min(seg.offsets.len());
                let start = seg.offsets[first];
                let end = seg.offsets.get(last).copied().unwrap_or(seg.size);
                plan.push((seg.path.clone(), id, start, end, last - first));
                budget_recs -= last - first;
                id = seg.base + last as u64;
            }
        }
        let mut out = Vec::new();
        let mut bytes_total = 0usize;
        'outer: for (path, first_id, start, end, count) in plan {
            let mut f = File::open(&path).map_err(io_err(&path))?;
            f.seek(SeekFrom::Start(start)).map_err(io_err(&path))?;
            let mut buf = vec![0; (end - start) as usize];
            f.read_exact(&mut buf).map_err(io_err(&path))?;
            let mut pos = 0;
            for i in 0..count {
                let id = first_id + i as u64;
                let (payload, next) =
                    segment::decode_at(&buf, pos).map_err(|why| SpoolError::Corrupt {
                        path: path.clone(),
                        id,
                        why,
                    })?;
                if !out.is_empty() && bytes_total + payload.len() > max_bytes {
                    break 'outer;
                }
                bytes_total += payload.len();
                out.push(Record {
                    id,
                    payload: payload.to_vec(),
                });
                pos = next;
            }
        }
        Ok(out)
    }

    /// Waits until a record with id `>= id` exists (returns at once if one does).
    pub async fn wait_for(&self, id: u64) {
        loop {
            let notified = self.shared.data.notified();
            if self.lock().next_id > id {
                // Keep the permit for the next waiter: data is there anyway.
                return;
            }
            notified.await;
        }
    }

    /// Acknowledges every record with id `< up_to`: persists the position and deletes
    /// segments that are entirely acknowledged, then wakes blocked appenders.
    ///
    /// # Errors
    /// `Io` naming the file that could not be written or removed.
    pub fn ack(&self, up_to: u64) -> Result<(), SpoolError> {
        let mut st = self.lock();
        let up_to = up_to.min(st.next_id);
        if up_to <= st.acked {
            return Ok(());
        }
        st.acked = up_to;
        write_ack_file(&self.shared.opts.dir, up_to)?;
        self.drop_acked_segments(&mut st)?;
        telemetry::set_gauge(telemetry::SPOOL_BYTES, st.total_bytes as f64);
        drop(st);
        self.shared.space.notify_all();
        Ok(())
    }

    fn drop_acked_segments(&self, st: &mut State) -> Result<(), SpoolError> {
        while let Some(seg) = st.segments.front() {
            let is_last = st.segments.len() == 1;
            if seg.end() > st.acked || (seg.offsets.is_empty() && is_last) {
                break;
            }
            let seg = st.segments.pop_front().expect("front exists");
            if is_last {
                st.writer = None;
            }
            match std::fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    st.segments.push_front(seg);
                    let path = st.segments[0].path.clone();
                    return Err(io_err(&path)(e));
                }
            }
            st.total_bytes = st.total_bytes.saturating_sub(seg.size);
        }
        Ok(())
    }
}

const ACK_FILE: &str = "acked";

fn read_ack_file(dir: &Path) -> u64 {
    let path = dir.join(ACK_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(message = "Spool ack file unreadable; replaying every record.", path = %path.display());
            0
        }),
        Err(_) => 0,
    }
}

fn write_ack_file(dir: &Path, up_to: u64) -> Result<(), SpoolError> {
    // Not fsynced: losing it only means replaying acknowledged records (duplicates the
    // aggregator removes), never losing any.
    let tmp = dir.join("acked.tmp");
    std::fs::write(&tmp, up_to.to_string()).map_err(io_err(&tmp))?;
    let path = dir.join(ACK_FILE);
    std::fs::rename(&tmp, &path).map_err(io_err(&path))
}
