//! Tells the user about directories a scan could not walk: once per path and state, again
//! when the state changes, never on every scan (a rescan runs every few seconds).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::discovery::{Scan, WalkIssue};
use crate::telemetry;

/// The last known state of every directory a scan skipped.
#[derive(Debug, Default)]
pub(crate) struct WalkIssues {
    current: HashMap<PathBuf, WalkIssue>,
    /// Base directories seen present at least once: their disappearance is news, while a
    /// folder that never existed is normal before the first setup run.
    seen_present: HashSet<PathBuf>,
    warnings: u64,
}

impl WalkIssues {
    /// Warnings given so far.
    pub(crate) fn warnings(&self) -> u64 {
        self.warnings
    }

    /// The directories skipped by the last scan, and why.
    pub(crate) fn current(&self) -> impl Iterator<Item = (&PathBuf, &WalkIssue)> {
        self.current.iter()
    }

    /// Compares a scan's issues with the previous ones and logs what changed.
    pub(crate) fn update(&mut self, roots: &[PathBuf], scan: &Scan) {
        let now: HashMap<PathBuf, WalkIssue> = scan.issues.iter().cloned().collect();
        for (path, issue) in &now {
            if self.current.get(path) == Some(issue) {
                continue;
            }
            let dir = path.display();
            match issue {
                WalkIssue::Missing if self.seen_present.contains(path) => {
                    self.warn();
                    tracing::warn!(message = "Watched folder is gone; its files are read again when it returns.", %dir);
                }
                WalkIssue::Missing => {
                    tracing::info!(message = "Watched folder does not exist yet.", %dir);
                }
                WalkIssue::Unreadable(kind) => {
                    self.warn();
                    tracing::warn!(message = "Cannot list watched folder; files in it are not read until this changes.", %dir, error = %kind);
                }
                WalkIssue::Loop { target } => {
                    self.warn();
                    tracing::warn!(message = "Symbolic link loop skipped: the link points to a folder that contains it.", link = %dir, target = %target.display());
                }
            }
        }
        for (path, issue) in &self.current {
            if !now.contains_key(path) {
                let dir = path.display();
                match issue {
                    WalkIssue::Loop { .. } => {
                        tracing::info!(message = "Symbolic link loop is gone.", link = %dir)
                    }
                    _ => tracing::info!(message = "Watched folder is readable again.", %dir),
                }
            }
        }
        for root in roots {
            if !now.contains_key(root) {
                self.seen_present.insert(root.clone());
            }
        }
        self.current = now;
    }

    fn warn(&mut self) {
        self.warnings += 1;
        telemetry::count(telemetry::WALK_WARNINGS, 1);
    }
}
