//! The spool's error type, apart from the queue and the cursors that both return it.

use std::io;
use std::path::PathBuf;

/// Errors from the spool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// No room: the caller must stop reading input until deliveries free space.
    #[error("spool is full ({used} of {max} bytes); waiting for its consumers to acknowledge")]
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
    /// [`Spool::ack_for`](super::Spool::ack_for) named a consumer the spool was not opened with.
    #[error("spool has no consumer named `{0}`")]
    UnknownConsumer(String),
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
