//! The cap on open file handles: least-recently-read handles are closed first, and files that
//! find no free handle wait for the next round.
//!
//! Invariants: at most `cap` tracked files hold a handle at any time; a handle used in the
//! current round is never taken away in that round (so every round makes progress on the files
//! it opened), and files that waited are served first in the next round (no starvation).
//! Closing a handle loses nothing: the tailer keeps its position and reopens by path.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::identity::FileId;

/// Descriptors kept free for everything that is not a tailed log: checkpoint temp files, spool
/// segments (one writer, one reader per consumer), the gRPC and sink connections, the metrics
/// endpoint, file-event watches, standard streams and, under `up`, the aggregator's database
/// and listeners. 128 covers those with a wide margin; the rest is split with the tailer.
pub const RESERVED_DESCRIPTORS: u64 = 128;

/// Cap on Windows, which has no small per-process handle limit: enough for every log of a
/// busy Exchange server at once, few enough that an `MSI*.LOG` flood in `%WINDIR%\Temp` stays
/// cheap. Handles there are closed at end of file by default anyway.
#[cfg(not(unix))]
const WINDOWS_DEFAULT_CAP: usize = 1024;

/// Smallest cap ever used: a tailer with fewer handles would spend its time reopening.
const MIN_CAP: usize = 8;

/// The default cap on open log handles, derived from the process's descriptor limit.
///
/// On Unix: half of what remains of the soft `RLIMIT_NOFILE` after
/// [`RESERVED_DESCRIPTORS`], so that `ulimit -n 1024` gives 448 log handles and leaves the
/// checkpoints, the spool and the network several hundred descriptors. On Windows a fixed
/// 1,024.
pub fn default_max_open_files() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: getrlimit only writes the struct it is given.
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
        let soft = if ok && lim.rlim_cur != libc::RLIM_INFINITY {
            // `rlim_t` is u64 on Linux and macOS but not on every Unix.
            #[allow(clippy::unnecessary_cast)]
            let cur = lim.rlim_cur as u64;
            cur
        } else {
            // Unknown or unlimited: the common default of 1,024 is the safe guess.
            1024
        };
        cap_for_limit(soft)
    }
    #[cfg(not(unix))]
    {
        WINDOWS_DEFAULT_CAP
    }
}

/// The cap for a descriptor limit of `soft`; see [`default_max_open_files`].
pub fn cap_for_limit(soft: u64) -> usize {
    let cap = soft.saturating_sub(RESERVED_DESCRIPTORS) / 2;
    usize::try_from(cap).unwrap_or(usize::MAX).max(MIN_CAP)
}

/// Bookkeeping of which tailers hold a handle, in order of last use.
#[derive(Debug)]
pub(crate) struct Handles {
    cap: usize,
    /// Open handles by last use: `(tick, id)`, oldest first.
    lru: BTreeSet<(u64, FileId)>,
    /// Each open handle's entry in `lru`.
    used: HashMap<FileId, u64>,
    tick: u64,
    /// First tick of the current round: entries at or after it are protected.
    round_start: u64,
    /// Files that wanted a handle this round and got none.
    waiting: HashSet<FileId>,
    /// Files that waited in the previous round: served first in this one.
    waited: HashSet<FileId>,
    /// Whether the cap was hit recently; the warning is given once per episode.
    at_cap: bool,
}

impl Handles {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            lru: BTreeSet::new(),
            used: HashMap::new(),
            tick: 0,
            round_start: 0,
            waiting: HashSet::new(),
            waited: HashSet::new(),
            at_cap: false,
        }
    }

    /// Starts a round; returns the files that waited last round, to be polled first.
    pub(crate) fn begin_round(&mut self) -> &HashSet<FileId> {
        self.tick += 1;
        self.round_start = self.tick;
        self.waited = std::mem::take(&mut self.waiting);
        &self.waited
    }

    /// Ends a round: logs when the cap starts or stops making files wait.
    pub(crate) fn end_round(&mut self) {
        let waiting = self.waiting.len();
        if waiting > 0 && !self.at_cap {
            self.at_cap = true;
            tracing::warn!(message = "Open-file cap reached; the least recently read files are closed and the rest wait their turn.", cap = self.cap, waiting);
        } else if waiting == 0 && self.at_cap && self.used.len() < self.cap {
            self.at_cap = false;
            tracing::info!(
                message = "Open-file cap no longer makes files wait.",
                cap = self.cap
            );
        }
    }

    /// Handles held now.
    pub(crate) fn open(&self) -> usize {
        self.used.len()
    }

    /// Files that found no free handle this round so far.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Asks for a handle for `id`. `Ok(None)`: take one. `Ok(Some(victim))`: close `victim`'s
    /// handle first, then take one. `Err(())`: every handle was used this round; `id` waits.
    pub(crate) fn acquire(&mut self, id: FileId) -> Result<Option<FileId>, ()> {
        if self.used.contains_key(&id) || self.used.len() < self.cap {
            return Ok(None);
        }
        match self.lru.first().copied() {
            Some((tick, victim)) if tick < self.round_start => {
                self.lru.remove(&(tick, victim));
                self.used.remove(&victim);
                Ok(Some(victim))
            }
            _ => {
                self.waiting.insert(id);
                Err(())
            }
        }
    }

    /// Records the state of `id` after a poll: `open` means it holds a handle now.
    pub(crate) fn touch(&mut self, id: FileId, open: bool) {
        if let Some(tick) = self.used.remove(&id) {
            self.lru.remove(&(tick, id));
        }
        if open {
            self.tick += 1;
            self.used.insert(id, self.tick);
            self.lru.insert((self.tick, id));
        }
    }

    /// Forgets `id` (its tailer ended or closed its handle).
    pub(crate) fn forget(&mut self, id: FileId) {
        self.touch(id, false);
        self.waiting.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> FileId {
        FileId {
            device: 1,
            inode: n,
        }
    }

    #[test]
    fn caps_from_the_process_limit_leave_descriptors_free() {
        assert_eq!(cap_for_limit(1024), 448);
        assert_eq!(cap_for_limit(256), 64);
        assert_eq!(cap_for_limit(100), MIN_CAP);
        assert!(default_max_open_files() >= MIN_CAP);
    }

    #[test]
    fn least_recently_used_is_closed_first_and_this_rounds_handles_are_kept() {
        let mut h = Handles::new(2);
        h.begin_round();
        for n in [1, 2] {
            assert_eq!(h.acquire(id(n)), Ok(None));
            h.touch(id(n), true);
        }
        // Both handles were used this round: the third file waits.
        assert_eq!(h.acquire(id(3)), Err(()));
        assert_eq!(h.waiting(), 1);
        let waited = h.begin_round().clone();
        assert!(waited.contains(&id(3)));
        // Next round: file 1 was read longest ago, so it is closed for file 3.
        assert_eq!(h.acquire(id(3)), Ok(Some(id(1))));
        h.touch(id(3), true);
        assert_eq!(h.open(), 2);
        // File 2 is still evictable (not used this round); file 3 is not.
        assert_eq!(h.acquire(id(4)), Ok(Some(id(2))));
        h.touch(id(4), true);
        assert_eq!(h.acquire(id(5)), Err(()));
    }
}
