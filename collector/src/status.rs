//! What the agent is doing, for `/status` on `metrics_listen` and `patchwatch agent status`:
//! each watched file (read offset, size, unread bytes, encoding, handle open or closed, the
//! current run and its phase), the spool per consumer, the aggregator connection and its last
//! ack, and each direct sink.
//!
//! The tail reader and the matcher each publish their half of a file's row into a shared
//! [`StatusBoard`] at most once a second ([`PUBLISH_EVERY`]), off the per-chunk path; a
//! scrape only reads it. Rows are keyed by path; a file the reader stops tracking leaves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// How often the reader and the matcher publish their rows.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// One watched file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FileStatus {
    /// The file's current path.
    pub path: String,
    /// Bytes read so far.
    pub offset: u64,
    /// The file's size when last looked at.
    pub size: u64,
    /// Bytes not read yet (`size - offset`).
    pub lag_bytes: u64,
    /// `open` while the reader holds a handle, `closed` when idle (or unreadable).
    pub handle: &'static str,
    /// Why the file cannot be read right now, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// The detected encoding (`utf8`, `utf16le`, `utf16be`), once known.
    pub encoding: Option<String>,
    /// The run the file is in, if one is open.
    pub run: Option<RunStatus>,
}

/// The open run of a file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStatus {
    /// Run id.
    pub run_id: String,
    /// `in_progress`, `succeeded`, ... as the pipeline names it.
    pub outcome: String,
    /// The component or MSI action being processed, if seen.
    pub phase: Option<String>,
}

/// What the reader knows of a file.
#[derive(Debug, Clone)]
pub(crate) struct TailedFile {
    pub path: String,
    pub offset: u64,
    pub size: u64,
    pub open: bool,
    pub unreadable: Option<String>,
}

/// The shared table of [`FileStatus`] rows. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard(Arc<Mutex<BTreeMap<String, FileStatus>>>);

impl StatusBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, FileStatus>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The reader's view: every tracked file. Files not listed leave the board.
    pub(crate) fn tailed(&self, files: Vec<TailedFile>) {
        let mut board = self.lock();
        let mut next = BTreeMap::new();
        for f in files {
            let mut row = board.remove(&f.path).unwrap_or_default();
            row.lag_bytes = f.size.saturating_sub(f.offset);
            row.offset = f.offset;
            row.size = f.size;
            row.handle = if f.open { "open" } else { "closed" };
            row.unreadable = f.unreadable;
            row.path.clone_from(&f.path);
            next.insert(f.path, row);
        }
        *board = next;
    }

    /// The matcher's view of the file at `path`: encoding and open run.
    pub(crate) fn scanned(&self, path: &str, encoding: Option<String>, run: Option<RunStatus>) {
        if let Some(row) = self.lock().get_mut(path) {
            row.encoding = encoding;
            row.run = run;
        }
    }

    /// Every row, by path.
    pub fn files(&self) -> Vec<FileStatus> {
        self.lock().values().cloned().collect()
    }
}

/// The whole `/status` document.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    /// `ok`, `degraded` or `failed`, as `/healthz` says.
    pub health: &'static str,
    /// Watched files, by path.
    pub files: Vec<FileStatus>,
    /// The spool and its consumers.
    pub spool: SpoolStatus,
    /// The aggregator stream; `None` for an agent with sinks only.
    pub aggregator: Option<AggregatorStatus>,
    /// Direct sinks, by name.
    pub sinks: Vec<ConsumerStatus>,
}

/// The spool.
#[derive(Debug, Clone, Serialize)]
pub struct SpoolStatus {
    /// Bytes on disk.
    pub bytes: u64,
    /// `spool.max_bytes`.
    pub max_bytes: u64,
    /// Records each consumer has not acknowledged yet.
    pub pending_records: BTreeMap<String, u64>,
}

/// The aggregator connection.
#[derive(Debug, Clone, Serialize)]
pub struct AggregatorStatus {
    /// A stream is open.
    pub connected: bool,
    /// Seconds since the last ack; `None` before the first.
    pub last_ack_age_seconds: Option<f64>,
    /// Records waiting for it.
    pub pending_records: u64,
    /// `ok`, or why delivery is degraded.
    pub state: String,
}

/// A direct sink.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerStatus {
    /// Sink name.
    pub name: String,
    /// Records waiting for it.
    pub pending_records: u64,
    /// `ok`, or why it is degraded.
    pub state: String,
}

impl AgentStatus {
    /// The document as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("status serializes: plain data")
    }
}
