//! Tailing: turns growing, rotating, truncated, deleted log files into ordered byte chunks.
//!
//! [`TailReader`] runs on a plain thread and sends [`TailEvent`]s into a bounded
//! `crossbeam_channel`; when the consumer is slow the reader blocks (backpressure), it never
//! drops. Chunks are raw file bytes with their absolute offset; decoding and line framing
//! (including partial last lines) are the pipeline's business, and the consumer reports how
//! far it has durably consumed with `CheckpointStore::commit`.
//!
//! Per file the consumer sees: `Reset` (start a fresh stream at `from`), then `Data` chunks,
//! each starting where the previous ended, optionally `Rotated` (same stream, new name), and
//! finally `Truncated` or `Deleted` (the stream is over). After `Truncated` a new `Reset`
//! follows as soon as the file has content again, usually with a different key.
//!
//! The collector never writes to or deletes a watched log.

mod handles;
pub mod identity;
mod reader;
mod tailer;
mod unreadable;
mod walk_issues;

use std::path::PathBuf;
use std::time::Duration;

pub use handles::{cap_for_limit, default_max_open_files, RESERVED_DESCRIPTORS};
pub use identity::{Bom, FileId, FileKey};
pub use reader::TailReader;

/// Tuning of the reader; [`TailOptions::default`] suits production.
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// Sleep between rounds when there is nothing to read.
    pub poll_interval: Duration,
    /// Full directory rescan period (also the only discovery signal in poll mode).
    pub rescan_interval: Duration,
    /// Close a handle after this long without new data; the file stays tracked.
    pub idle_close: Duration,
    /// Close the handle whenever the reader reaches end of file. Default on Windows, where
    /// an open handle in a folder prevents renaming the folder (`C:\ExchangeSetupLogs`).
    pub close_on_eof: bool,
    /// Largest chunk handed to the consumer. 256 KiB: per-chunk work (resume point,
    /// checkpoint) stays small against scanning, and the chunk still fits in cache.
    pub read_chunk_bytes: usize,
    /// Most bytes read from one file per round, so one huge file cannot starve the others.
    pub max_read_per_poll: u64,
    /// Do not use filesystem events (network shares); rely on `rescan_interval`.
    pub poll: bool,
    /// Most log files held open at once; beyond it the least recently read handle is closed
    /// and files that find none free wait for the next round. Defaults to
    /// [`default_max_open_files`], derived from the process's descriptor limit.
    pub max_open_files: usize,
}

impl Default for TailOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            rescan_interval: Duration::from_secs(10),
            idle_close: Duration::from_secs(300),
            close_on_eof: cfg!(windows),
            read_chunk_bytes: 256 * 1024,
            max_read_per_poll: 4 * 1024 * 1024,
            poll: false,
            max_open_files: default_max_open_files(),
        }
    }
}

/// Raw bytes read from one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Identity of the file generation.
    pub file: FileKey,
    /// Path the bytes were read through.
    pub path: PathBuf,
    /// Absolute offset of `bytes[0]` in the file (the BOM counts: offset 0 is the BOM).
    pub offset: u64,
    /// The bytes; never empty.
    pub bytes: Vec<u8>,
}

/// What the reader tells its consumer, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailEvent {
    /// A stream for `file` starts at byte `from`: 0 for a new file, the checkpoint when
    /// resuming. Discard any state held for this key.
    Reset {
        /// Identity of the file generation.
        file: FileKey,
        /// Current path.
        path: PathBuf,
        /// Offset of the first chunk to come; even for UTF-16 files.
        from: u64,
        /// Byte order mark at the start of the file, so that a stream resumed mid-file
        /// still knows its encoding.
        bom: Bom,
    },
    /// The next bytes of a stream.
    Data(Chunk),
    /// The file was renamed within the watched set; the stream continues.
    Rotated {
        /// Identity of the file generation.
        file: FileKey,
        /// Previous path.
        from: PathBuf,
        /// New path.
        to: PathBuf,
    },
    /// The file shrank below, or was rewritten before, the read position `at`: the stream
    /// ends here (bytes appended just before a truncation may never have been seen).
    Truncated {
        /// Identity of the ended generation.
        file: FileKey,
        /// Path.
        path: PathBuf,
        /// Read position when the change was noticed.
        at: u64,
    },
    /// The file was deleted or moved out of the watched set; everything still readable was
    /// delivered first. The stream ends.
    Deleted {
        /// Identity of the ended generation.
        file: FileKey,
        /// Last known path.
        path: PathBuf,
    },
}

impl TailEvent {
    /// The file generation this event belongs to.
    pub fn file(&self) -> &FileKey {
        match self {
            Self::Reset { file, .. }
            | Self::Rotated { file, .. }
            | Self::Truncated { file, .. }
            | Self::Deleted { file, .. } => file,
            Self::Data(c) => &c.file,
        }
    }
}
