//! Consumer cursors on disk: one small file per consumer holding the id of its first record
//! not yet done.
//!
//! The default consumer ([`DEFAULT_CONSUMER`], the aggregator delivery) keeps the file name of
//! the single-consumer spool (`acked`), so an upgraded agent resumes where it was. Every other
//! consumer gets `cursor-<name>` with the name escaped to a portable file name.
//!
//! Files are replaced atomically (write a temporary file, rename it over the old one), like
//! checkpoints, but not fsynced on every acknowledgement: a cursor that is lost or stale after
//! a power cut only ever points *before* the true position (the rename is atomic, and a file
//! that is missing or unreadable falls back to the oldest segment still on disk, which no
//! consumer can have passed because segments are deleted only after every consumer passed
//! them). The cost of a lost write is therefore resending some records, never losing one.

use std::path::{Path, PathBuf};

use super::error::SpoolError;

/// Name of the consumer that [`Spool::ack`](super::Spool::ack) and
/// [`SpoolOptions::new`](super::SpoolOptions::new) use: the aggregator delivery.
pub const DEFAULT_CONSUMER: &str = "aggregator";

/// Legacy file name of the default consumer's cursor.
const DEFAULT_FILE: &str = "acked";
/// Prefix of every other consumer's cursor file.
const PREFIX: &str = "cursor-";

/// File name of `consumer`'s cursor. Bytes other than ASCII letters, digits, `-` and `_` are
/// written as `%XX`, so any configured name maps to one portable file name and back.
pub(crate) fn file_name(consumer: &str) -> String {
    if consumer == DEFAULT_CONSUMER {
        return DEFAULT_FILE.to_string();
    }
    let mut out = String::with_capacity(PREFIX.len() + consumer.len());
    out.push_str(PREFIX);
    for b in consumer.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// True for a file holding some consumer's cursor (configured or not).
fn is_cursor_file(name: &str) -> bool {
    name == DEFAULT_FILE || (name.starts_with(PREFIX) && !name.ends_with(".tmp"))
}

/// Reads `consumer`'s cursor; `None` when there is none or it is unreadable (with a warning).
pub(crate) fn read(dir: &Path, consumer: &str) -> Option<u64> {
    read_path(&dir.join(file_name(consumer)))
}

fn read_path(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    match text.trim().parse() {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::warn!(
                message = "Spool cursor file unreadable; that consumer resends what is still spooled.",
                path = %path.display()
            );
            None
        }
    }
}

/// The highest position found in any cursor file of `dir`, configured consumer or not. Record
/// ids must never be reused below it: a consumer at that position would skip them.
pub(crate) fn highest(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(is_cursor_file))
        .filter_map(|e| read_path(&e.path()))
        .max()
        .unwrap_or(0)
}

/// Replaces `consumer`'s cursor file atomically with `position`.
pub(crate) fn write(dir: &Path, consumer: &str, position: u64) -> Result<(), SpoolError> {
    let path: PathBuf = dir.join(file_name(consumer));
    let tmp = dir.join(format!("{}.tmp", file_name(consumer)));
    crate::faults::check(&tmp).map_err(|source| SpoolError::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::write(&tmp, position.to_string()).map_err(|source| SpoolError::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, &path).map_err(|source| SpoolError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_portable_and_distinct() {
        assert_eq!(file_name(DEFAULT_CONSUMER), "acked");
        assert_eq!(file_name("sink:splunk-1"), "cursor-sink%3Asplunk-1");
        assert_ne!(file_name("a b"), file_name("a_b"));
        assert!(is_cursor_file("cursor-sink%3Ax"));
        assert!(!is_cursor_file("cursor-sink%3Ax.tmp"));
        assert!(!is_cursor_file("00000000000000000000.seg"));
    }

    #[test]
    fn write_read_and_highest() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path(), "sink:a"), None);
        write(dir.path(), "sink:a", 7).unwrap();
        write(dir.path(), DEFAULT_CONSUMER, 3).unwrap();
        assert_eq!(read(dir.path(), "sink:a"), Some(7));
        assert_eq!(highest(dir.path()), 7);
        std::fs::write(dir.path().join(file_name("sink:b")), "garbage").unwrap();
        assert_eq!(read(dir.path(), "sink:b"), None);
        assert_eq!(highest(dir.path()), 7);
    }
}
