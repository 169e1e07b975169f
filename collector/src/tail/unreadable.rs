//! The state of a tracked file that cannot be read: kept by the tailer, managed by the
//! reader (warn once, back off, retry).

use std::time::{Duration, Instant};

/// First and longest wait before reading an unreadable file again (permissions, a sharing
/// violation). A minute at most: a fixed `chmod` or a released lock is noticed soon enough.
pub(super) const UNREADABLE_RETRY_FIRST: Duration = Duration::from_secs(2);
pub(super) const UNREADABLE_RETRY_MAX: Duration = Duration::from_secs(60);

/// Why and since when a tracked file cannot be read, and when to try again.
#[derive(Debug, Clone)]
pub(crate) struct Unreadable {
    pub(super) kind: std::io::ErrorKind,
    pub(super) since: Instant,
    pub(super) backoff: Duration,
    pub(super) retry_at: Instant,
}
