//! One file's tailing state machine, polled by the reader thread.
//!
//! States: *unidentified* (no bytes after the BOM yet, so no fingerprint and no key) →
//! *reading* a generation (key known, `pos` = next byte to deliver) → back to unidentified
//! when the file shrinks below `pos` or the bytes before `pos` change (truncation,
//! copytruncate, rewrite in place) → *gone* when the file was unlinked and fully drained.
//!
//! Invariants: every delivered chunk starts exactly at the previous chunk's end within a
//! generation, and a generation's first chunk starts at the `from` of its `Reset` event, so
//! the consumer can check contiguity. `marker` always holds the (up to 64) content bytes just
//! before `pos`, which is how a rewrite that grows past `pos` between two polls is detected.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::time::Instant;

use super::identity::{
    marker_range, open_shared, read_at, short_hash, Bom, FileId, FileKey, FINGERPRINT_MAX,
    MARKER_MAX,
};
use super::{Chunk, TailEvent, TailOptions};
use crate::checkpoint::CheckpointStore;
use crate::telemetry;

/// What one poll achieved, for the reader's scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PollOutcome {
    /// Nothing new.
    Idle,
    /// Delivered data and reached the end of the file.
    Progress,
    /// Delivered data and stopped at the per-poll budget: poll again soon.
    More,
    /// The file was deleted and fully drained (or left the watched set while draining):
    /// the caller ends this tailer.
    Gone,
    /// The path no longer names this file (handle closed, file renamed or replaced): the
    /// caller rescans to learn where it went.
    Moved,
    /// The file needs a handle and the open-file cap has none free this round.
    Queued,
    /// The consumer hung up.
    Stopped,
}

/// Tailing state of one file, identified by its [`FileId`].
#[derive(Debug)]
pub(crate) struct Tailer {
    pub(crate) id: FileId,
    pub(crate) path: PathBuf,
    pub(crate) key: Option<FileKey>,
    bom: Bom,
    /// Next byte to deliver.
    pos: u64,
    /// Content bytes just before `pos` (never the BOM), at most `MARKER_MAX`.
    marker: Vec<u8>,
    file: Option<File>,
    /// Size seen at the previous poll.
    last_size: u64,
    /// Modification time seen at the previous poll.
    last_mtime: Option<std::time::SystemTime>,
    pub(crate) last_activity: Instant,
    /// Set while the file cannot be read; see the reader.
    pub(crate) unreadable: Option<super::unreadable::Unreadable>,
}

impl Tailer {
    pub(crate) fn new(id: FileId, path: PathBuf) -> Self {
        Self {
            id,
            path,
            key: None,
            bom: Bom::None,
            pos: 0,
            marker: Vec::new(),
            file: None,
            last_size: 0,
            last_mtime: None,
            last_activity: Instant::now(),
            unreadable: None,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Bytes read so far and the size last seen.
    pub(crate) fn progress(&self) -> (u64, u64) {
        (self.pos, self.last_size)
    }

    /// Closes the handle (the state is kept; the next poll reopens by path).
    pub(crate) fn close(&mut self) {
        self.file = None;
    }

    /// Reads what is new and emits events. `draining` means the file left the watched set:
    /// read what the open handle still reaches, never reopen by path. `may_open` is asked
    /// before a handle is opened (the open-file cap); false means wait for a later round.
    pub(crate) fn poll(
        &mut self,
        opts: &TailOptions,
        store: &CheckpointStore,
        draining: bool,
        may_open: &mut dyn FnMut() -> bool,
        emit: &mut dyn FnMut(TailEvent) -> bool,
    ) -> io::Result<PollOutcome> {
        if self.file.is_none() {
            if draining {
                return Ok(PollOutcome::Gone);
            }
            // Cheap check first: on Windows handles are closed at EOF, and reopening an
            // unchanged file on every tick would cost a CreateFile per file per tick.
            match std::fs::metadata(&self.path) {
                Ok(m) if self.id.differs_from_metadata(&m) => return Ok(PollOutcome::Moved),
                Ok(m)
                    if self.key.is_some()
                        && m.len() == self.last_size
                        && m.len() == self.pos
                        && m.modified().ok() == self.last_mtime =>
                {
                    return Ok(PollOutcome::Idle)
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PollOutcome::Moved),
                Err(e) => return Err(e),
            }
            if !may_open() {
                return Ok(PollOutcome::Queued);
            }
            let f = open_shared(&self.path)?;
            if FileId::of_file(&f)? != self.id {
                return Ok(PollOutcome::Moved);
            }
            self.file = Some(f);
        }
        let meta = self.file.as_ref().expect("opened above").metadata()?;
        let size = meta.len();
        let unlinked = is_unlinked(&meta);

        // Unchanged size and mtime at the read position: nothing new, and no rewrite either
        // (a rewrite changes the mtime), so the marker pread can be skipped. With 1,000 idle
        // files that pread was most of the idle CPU.
        let unchanged = size == self.pos
            && size == self.last_size
            && self.last_mtime.is_some()
            && meta.modified().ok() == self.last_mtime;
        if self.key.is_some() && !unchanged && self.generation_ended(size)? {
            let key = self.key.take().expect("checked is_some");
            tracing::info!(message = "File truncated or rewritten; reading the new content from the start.", path = %self.path.display(), at = self.pos, size);
            telemetry::count(telemetry::FILE_TRUNCATIONS, 1);
            store.forget(&key);
            let ok = emit(TailEvent::Truncated {
                file: key,
                path: self.path.clone(),
                at: self.pos,
            });
            self.pos = 0;
            self.marker.clear();
            if !ok {
                return Ok(PollOutcome::Stopped);
            }
        }
        if self.key.is_none() && !self.identify(size, store, emit)? {
            self.last_size = size;
            return Ok(if unlinked && draining_done(size, self.pos) {
                PollOutcome::Gone
            } else {
                PollOutcome::Idle
            });
        }

        let mut outcome = PollOutcome::Idle;
        let mut budget = opts.max_read_per_poll;
        while self.pos < size {
            if budget == 0 {
                outcome = PollOutcome::More;
                break;
            }
            let want = (size - self.pos)
                .min(opts.read_chunk_bytes as u64)
                .min(budget);
            let file = self.file.as_mut().expect("open while reading");
            let bytes = read_at(file, self.pos, want)?;
            if bytes.is_empty() {
                break; // shrank under us; the next poll sees the truncation
            }
            let n = bytes.len() as u64;
            self.push_marker(self.pos, &bytes);
            let chunk = Chunk {
                file: self.key.clone().expect("identified before reading"),
                path: self.path.clone(),
                offset: self.pos,
                bytes,
            };
            self.pos += n;
            budget -= n;
            telemetry::bytes_read(n);
            outcome = PollOutcome::Progress;
            if !emit(TailEvent::Data(chunk)) {
                return Ok(PollOutcome::Stopped);
            }
        }
        self.last_size = size;
        self.last_mtime = meta.modified().ok();
        let now = Instant::now();
        if outcome != PollOutcome::Idle {
            self.last_activity = now;
        }
        if self.pos >= size {
            if unlinked {
                return Ok(PollOutcome::Gone);
            }
            if opts.close_on_eof || now.duration_since(self.last_activity) >= opts.idle_close {
                self.file = None;
            }
        }
        Ok(outcome)
    }

    /// True when the current generation ended: the file is shorter than what we read, or
    /// the bytes just before `pos` are no longer the ones we read there.
    fn generation_ended(&mut self, size: u64) -> io::Result<bool> {
        if size < self.pos {
            return Ok(true);
        }
        // Checked on every poll, not only when the size changed: a truncation followed by
        // a rewrite to exactly the old size leaves the size unchanged. One small pread.
        if self.marker.is_empty() {
            return Ok(false);
        }
        let len = self.marker.len() as u64;
        let file = self.file.as_mut().expect("open");
        Ok(read_at(file, self.pos - len, len)? != self.marker)
    }

    /// Establishes the key once there is content after the BOM, resuming from a verified
    /// checkpoint when one matches. Returns false while the file is still too short.
    fn identify(
        &mut self,
        size: u64,
        store: &CheckpointStore,
        emit: &mut dyn FnMut(TailEvent) -> bool,
    ) -> io::Result<bool> {
        let file = self.file.as_mut().expect("open");
        let head = read_at(file, 0, 3 + FINGERPRINT_MAX)?;
        let bom = Bom::sniff(&head);
        // A lone "FF" or "EF BB" may be a BOM still being written; wait for more.
        if head.len() < 3 && matches!(head.as_slice(), [0xFF] | [0xFE] | [0xEF] | [0xEF, 0xBB]) {
            return Ok(false);
        }
        let bom_len = bom.len();
        if (head.len() as u64) <= bom_len {
            return Ok(false);
        }
        let content = &head[bom_len as usize..];
        let mut chosen: Option<(FileKey, u64)> = None;
        for saved in store.candidates(self.id) {
            let fp = saved.key.fp_len as usize;
            if fp == 0 || content.len() < fp || short_hash(&content[..fp]) != saved.key.fingerprint
            {
                continue;
            }
            let saved_at = saved.offset;
            let verified = saved_at <= size
                && match &saved.marker {
                    Some(m) => {
                        let (start, len) = marker_range(saved_at, bom_len);
                        len == u64::from(m.len) && short_hash(&read_at(file, start, len)?) == m.hash
                    }
                    None => saved_at == 0,
                };
            // Never resume between the two bytes of a UTF-16 code unit (the BOM is 2 bytes,
            // so code units start at even offsets).
            let from = if bom.is_utf16() {
                saved_at & !1
            } else {
                saved_at
            };
            if !verified {
                tracing::info!(message = "Checkpoint does not match file content; reading from the start.", path = %self.path.display(), offset = saved.offset);
            }
            chosen = Some((saved.key, if verified { from } else { 0 }));
            break;
        }
        let (key, from) = chosen.unwrap_or_else(|| {
            let fp_len = (content.len() as u64).min(FINGERPRINT_MAX) as usize;
            let key = FileKey {
                id: self.id,
                fp_len: fp_len as u32,
                fingerprint: short_hash(&content[..fp_len]),
            };
            (key, 0)
        });
        let (start, len) = marker_range(from, bom_len);
        self.marker = read_at(file, start, len)?;
        self.bom = bom;
        self.pos = from;
        store.register(&key, &self.path, bom_len, from);
        self.key = Some(key.clone());
        tracing::debug!(message = "Tailing file.", path = %self.path.display(), key = %key, from);
        Ok(emit(TailEvent::Reset {
            file: key,
            path: self.path.clone(),
            from,
            bom,
        }))
    }

    /// Keeps the last `MARKER_MAX` content bytes (BOM excluded) before the new position.
    fn push_marker(&mut self, offset: u64, bytes: &[u8]) {
        let skip = self
            .bom
            .len()
            .saturating_sub(offset)
            .min(bytes.len() as u64) as usize;
        let content = &bytes[skip..];
        let max = MARKER_MAX as usize;
        if content.len() >= max {
            self.marker.clear();
            self.marker
                .extend_from_slice(&content[content.len() - max..]);
        } else {
            self.marker.extend_from_slice(content);
            let excess = self.marker.len().saturating_sub(max);
            self.marker.drain(..excess);
        }
    }
}

fn draining_done(size: u64, pos: u64) -> bool {
    pos >= size
}

/// True when the open file has no name left (Unix: link count 0). Windows reports
/// delete-pending only through `GetFileInformationByHandleEx`, which std does not expose;
/// there the rescan notices the path is gone instead.
fn is_unlinked(meta: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        meta.nlink() == 0
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}
