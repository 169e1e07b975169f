//! Injected storage failures, so that tests can show what the agent does on a full disk
//! without mounting a small file system.
//!
//! Every write the agent makes to its data directory (spool segments and cursors, checkpoint
//! files) first asks [`check`] whether writes under that path are set to fail, and every open
//! of a watched file asks [`check_read`]. Production code
//! never arms a fault: the check is then one relaxed atomic load.
//!
//! Faults are keyed by directory, so tests running in parallel on their own temporary
//! directories do not disturb each other.
//!
//! A test that runs the real binary (the chaos test) cannot reach these guards; it sets
//! [`DISK_FULL_SWITCH_ENV`] to a path instead, and every agent write fails as on a full disk
//! while a file exists there.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Environment variable naming a switch file: while it exists, every write the agent makes
/// to its data directory fails with `StorageFull`. For tests of the real binary only; unset,
/// it costs one load of an initialised `OnceLock` per write.
pub const DISK_FULL_SWITCH_ENV: &str = "PATCHWATCH_TEST_DISK_FULL_SWITCH";

static SWITCH: OnceLock<Option<PathBuf>> = OnceLock::new();

/// True while the process-wide switch file of [`DISK_FULL_SWITCH_ENV`] exists.
fn switched_full() -> bool {
    SWITCH
        .get_or_init(|| std::env::var_os(DISK_FULL_SWITCH_ENV).map(PathBuf::from))
        .as_ref()
        .is_some_and(|p| p.exists())
}

/// Number of armed faults; zero on the production path.
static ARMED: AtomicUsize = AtomicUsize::new(0);
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static UNREADABLE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// While alive, opening the watched file at `path` for reading fails with
/// [`io::ErrorKind::PermissionDenied`], as for a `chmod 000` file read by a user who is not
/// root (tests often run as root, which `chmod` does not stop).
#[derive(Debug)]
#[must_use = "the fault lasts as long as the guard"]
pub struct Unreadable {
    path: PathBuf,
}

impl Unreadable {
    /// Makes `path` unreadable until the guard is dropped.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        UNREADABLE
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(path.clone());
        ARMED.fetch_add(1, Ordering::AcqRel);
        Self { path }
    }
}

impl Drop for Unreadable {
    fn drop(&mut self) {
        let mut paths = UNREADABLE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = paths.iter().position(|d| *d == self.path) {
            paths.swap_remove(i);
        }
        ARMED.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Fails with `PermissionDenied` when an [`Unreadable`] names `path`.
pub(crate) fn check_read(path: &Path) -> io::Result<()> {
    if ARMED.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    if UNREADABLE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|p| p == path)
    {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "Permission denied (injected)",
        ));
    }
    Ok(())
}

/// While alive, every agent write below `dir` fails with [`io::ErrorKind::StorageFull`]
/// (ENOSPC), as on a full disk. Dropping it gives the space back.
#[derive(Debug)]
#[must_use = "the fault lasts as long as the guard"]
pub struct DiskFull {
    dir: PathBuf,
}

impl DiskFull {
    /// Makes writes below `dir` fail until the guard is dropped.
    pub fn under(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        DIRS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(dir.clone());
        ARMED.fetch_add(1, Ordering::AcqRel);
        Self { dir }
    }
}

impl Drop for DiskFull {
    fn drop(&mut self) {
        let mut dirs = DIRS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = dirs.iter().position(|d| *d == self.dir) {
            dirs.swap_remove(i);
        }
        ARMED.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Fails with `StorageFull` when a [`DiskFull`] covers `path`.
///
/// # Errors
/// The injected "No space left on device".
pub(crate) fn check(path: &Path) -> io::Result<()> {
    let full = switched_full();
    if !full && ARMED.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    let dirs = DIRS.lock().unwrap_or_else(|p| p.into_inner());
    if full || dirs.iter().any(|d| path.starts_with(d)) {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            "No space left on device (injected)",
        ));
    }
    Ok(())
}
