//! What each forwarding task reports about its destination: written by the task, read by
//! the forwarder for `/healthz`.

use serde::Serialize;

/// Where one destination stands, for `/healthz` and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DestinationStatus {
    /// `router` or `sink:<name>`.
    pub destination: String,
    /// Every finding up to this seq was confirmed by the destination.
    pub cursor_seq: i64,
    /// The cursor as last persisted (a restart resumes here).
    pub persisted_seq: i64,
    /// Store max seq minus `cursor_seq` (approximate on PostgreSQL, where findings are
    /// forwarded in commit order).
    pub lag: i64,
    /// Findings handed to the destination and not yet confirmed.
    pub inflight: usize,
    /// Unconfirmed batches in a row (0 when the last one was confirmed).
    pub consecutive_failures: u32,
    /// Why the last batch was not confirmed, or the store could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
