//! The spool itself: append, read from an id, acknowledge per consumer, recover.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::cursor::{self, DEFAULT_CONSUMER};
use super::error::SpoolError;
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
    /// Everyone who reads the spool, by name. A record stays on disk until every one of them
    /// acknowledged it ([`Spool::ack_for`]); each has its own durable cursor. At least one,
    /// no duplicates. Default: just [`DEFAULT_CONSUMER`] (the aggregator delivery).
    pub consumers: Vec<String>,
}

impl SpoolOptions {
    /// Defaults for `dir`: 256 MiB total, 8 MiB segments, fsync on `sync`, one consumer
    /// ([`DEFAULT_CONSUMER`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: 256 * 1024 * 1024,
            segment_bytes: 8 * 1024 * 1024,
            fsync: FsyncPolicy::OnSync,
            consumers: vec![DEFAULT_CONSUMER.to_string()],
        }
    }
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
    /// Id of the first record lost: every record from here to the end of the segment is gone
    /// (its findings must be read again from the logs).
    pub first_lost_id: u64,
    /// One past the last record id the segment held before the damage, as far as known: the
    /// next segment's first id, or the spool's next id when it was the last segment.
    pub lost_until: u64,
}

/// What [`Spool::open`] found.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Segment files kept.
    pub segments: usize,
    /// Records not yet acknowledged by every consumer, to be replayed (to those behind).
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
    /// Every id below this is acknowledged by every consumer: the minimum of `consumers`.
    acked: u64,
    /// Each consumer's position: every id below it is done for that consumer.
    consumers: BTreeMap<String, u64>,
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

/// Durable FIFO of opaque records with one or more consumers; cheap to clone (all clones share
/// one spool).
///
/// Appends and reads are thread-safe. Each consumer named in [`SpoolOptions::consumers`]
/// reads from its own position and acknowledges with [`ack_for`](Self::ack_for); records stay
/// on disk until every consumer's acknowledgement covers them, and only whole segments are
/// deleted. So a consumer that is stuck (its destination down) holds data on disk until the
/// spool is full, and then reading input pauses; it never makes another consumer wait for the
/// records already spooled. Each position is written to its cursor file on every ack; after a
/// crash a consumer may be sent records it already acknowledged, never fewer.
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
        if opts.consumers.is_empty() {
            return Err(SpoolError::Options(
                "at least one consumer is needed, or nothing would ever leave the spool".into(),
            ));
        }
        let mut names: Vec<&String> = opts.consumers.iter().collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(SpoolError::Options(format!(
                "consumer `{}` is named twice",
                w[0]
            )));
        }
        std::fs::create_dir_all(&opts.dir).map_err(io_err(&opts.dir))?;
        // Ids are never reused below any cursor ever written, configured consumer or not.
        let highest_cursor = cursor::highest(&opts.dir);
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
                let first_lost_id = base + scan.offsets.len() as u64;
                report.damage.push(Damage {
                    path: path.clone(),
                    offset: keep,
                    dropped_bytes: scan.file_len.saturating_sub(keep),
                    reason,
                    first_lost_id,
                    // Filled in below, once the following segment (if any) is known.
                    lost_until: u64::MAX,
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
        // A segment cut exactly at a record boundary scans clean, but its records then end
        // before the next segment begins: that gap is lost records too.
        for (seg, next) in segments.iter().zip(segments.iter().skip(1)) {
            let end = seg.end();
            if end < next.base && !report.damage.iter().any(|d| d.path == seg.path) {
                let reason = format!(
                    "records {end}..{} missing: the segment ends before the next one starts",
                    next.base
                );
                tracing::warn!(message = "Spool segment lost records at its end.", path = %seg.path.display(), first_lost_id = end, next_id = next.base);
                telemetry::count(telemetry::SPOOL_CORRUPT, 1);
                report.damage.push(Damage {
                    path: seg.path.clone(),
                    offset: seg.size,
                    dropped_bytes: 0,
                    reason,
                    first_lost_id: end,
                    lost_until: next.base,
                });
            }
        }
        for d in &mut report.damage {
            d.lost_until = segments
                .iter()
                .map(|s: &Segment| s.base)
                .find(|b| *b > d.first_lost_id)
                .unwrap_or(u64::MAX);
        }
        let next_id = segments.back().map_or(0, Segment::end).max(highest_cursor);
        // A consumer without a cursor (new, or its file was lost) starts at the oldest record
        // still on disk: no consumer can be behind it, since segments are deleted only once
        // every consumer passed them.
        let oldest = segments.front().map_or(next_id, |s| s.base);
        let consumers: BTreeMap<String, u64> = opts
            .consumers
            .iter()
            .map(|c| {
                let at = cursor::read(&opts.dir, c)
                    .unwrap_or(oldest)
                    .clamp(oldest, next_id);
                (c.clone(), at)
            })
            .collect();
        let acked = consumers.values().copied().min().unwrap_or(next_id);
        let state = State {
            segments,
            writer: None,
            next_id,
            acked,
            consumers,
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
        if let Err(e) = crate::faults::check(&seg.path).and_then(|()| w.write_all(&buf)) {
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
        // Every consumer waits on this; each must learn of the new record.
        self.shared.data.notify_waiters();
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
        crate::faults::check(&path).map_err(io_err(&path))?;
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
            crate::faults::check(&seg.path)
                .and_then(|()| w.sync_data())
                .map_err(io_err(&seg.path))?;
        }
        st.unsynced = false;
        Ok(())
    }

    /// Id of the first record not yet acknowledged by every consumer (the oldest one kept).
    /// The spool is drained when this equals [`next_id`](Self::next_id).
    pub fn first_unacked(&self) -> u64 {
        self.lock().acked
    }

    /// Position of `consumer`: the id of its first record not yet acknowledged, where its
    /// replay starts. `None` for a name the spool was not opened with.
    pub fn position(&self, consumer: &str) -> Option<u64> {
        self.lock().consumers.get(consumer).copied()
    }

    /// Id the next append will get.
    pub fn next_id(&self) -> u64 {
        self.lock().next_id
    }

    /// The configured maximum of bytes on disk.
    pub fn max_bytes(&self) -> u64 {
        self.shared.opts.max_bytes
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
                // A segment whose records were all cut off by damage recovery holds nothing
                // to read; indexing its first offset would panic.
                if budget_recs == 0 || seg.offsets.is_empty() || seg.end() <= id {
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
            // Created before the check: `notify_waiters` reaches a `Notified` from the moment
            // it exists, so an append between the check and the await is not missed.
            let notified = self.shared.data.notified();
            if self.lock().next_id > id {
                return;
            }
            notified.await;
        }
    }

    /// [`ack_for`](Self::ack_for) the [`DEFAULT_CONSUMER`] (the aggregator delivery).
    ///
    /// # Errors
    /// As [`ack_for`](Self::ack_for); `UnknownConsumer` when the spool was opened without it.
    pub fn ack(&self, up_to: u64) -> Result<(), SpoolError> {
        self.ack_for(DEFAULT_CONSUMER, up_to)
    }

    /// Acknowledges, for `consumer`, every record with id `< up_to`: persists its position and,
    /// once every consumer passed them, deletes whole segments and wakes blocked appenders.
    /// Moving a position backwards is ignored.
    ///
    /// # Errors
    /// `UnknownConsumer`, or `Io` naming the file that could not be written or removed.
    pub fn ack_for(&self, consumer: &str, up_to: u64) -> Result<(), SpoolError> {
        let mut st = self.lock();
        let up_to = up_to.min(st.next_id);
        let Some(at) = st.consumers.get_mut(consumer) else {
            return Err(SpoolError::UnknownConsumer(consumer.to_string()));
        };
        if up_to <= *at {
            return Ok(());
        }
        *at = up_to;
        cursor::write(&self.shared.opts.dir, consumer, up_to)?;
        let min = st.consumers.values().copied().min().unwrap_or(up_to);
        if min <= st.acked {
            return Ok(());
        }
        st.acked = min;
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
