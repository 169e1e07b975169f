//! Durable on-disk queue between the pipeline and delivery: [`Spool`].
//!
//! Findings and run updates are appended as opaque records (the agent stores prost bytes;
//! see `delivery::SpoolItem`). Each consumer named in [`SpoolOptions::consumers`] (the
//! aggregator delivery, and each direct SIEM sink of the agent) reads from its own durable
//! cursor, sends, and calls [`Spool::ack_for`] once its destination confirmed; data leaves the
//! disk only when every consumer has passed it.
//!
//! Guarantees:
//! * An acknowledged `append` (after [`Spool::sync`], or always with [`FsyncPolicy::Always`])
//!   survives a crash.
//! * A torn last record (crash mid-write) is detected by its CRC32 at open, cut off and
//!   reported in [`RecoveryReport::damage`] (plus a warning and a metric).
//!   So is an older segment that ends before the next one starts (cut at a record
//!   boundary). The newest segment cut exactly at a record boundary cannot be told from
//!   a spool that received fewer records; the agent learns it from the checkpoints, whose
//!   replay points cover ids beyond [`Spool::next_id`].
//! * The total size is bounded by [`SpoolOptions::max_bytes`]; when full, `append` returns
//!   [`SpoolError::Full`] (or `append_timeout` waits) and the caller stops reading its
//!   input. Nothing is dropped silently.
//! * Record ids strictly increase and are never reused below any consumer's cursor. The ids
//!   of a damaged tail that no consumer had passed are given again, to the records that
//!   replace them: the damage is reported, and the checkpoints rewound to re-read those
//!   records (`CheckpointStore::rewind_lost`), so nobody ever saw the old ones acknowledged.
//! * A consumer's cursor never moves past a record it did not acknowledge, and survives a
//!   restart (a lost cursor write means records are sent again, never skipped).

mod cursor;
mod error;
mod queue;
mod segment;

pub use cursor::DEFAULT_CONSUMER;
pub use error::SpoolError;
pub use queue::{Damage, FsyncPolicy, Record, RecoveryReport, Spool, SpoolOptions};
pub use segment::MAX_RECORD_BYTES;
