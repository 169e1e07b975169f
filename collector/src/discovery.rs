//! Which files to tail: include/exclude globs, environment expansion, directory watching.
//!
//! [`Discovery`] answers "which paths match right now" with a bounded directory walk from each
//! pattern's literal base directory (never from `/` or a drive root unless the pattern says so).
//! [`DirWatch`] turns filesystem events into a "something changed, rescan" hint; the tail loop
//! also rescans on a slow timer, so a missed event costs latency, never data.
//!
//! The watched folder may disappear: Microsoft's advice for stuck Exchange setups is to rename
//! `C:\ExchangeSetupLogs` and run setup again, which recreates it. So `DirWatch` watches each
//! base directory's *nearest existing ancestor* as well and re-arms itself after every rescan.
//!
//! Matching is case-insensitive by default: the files come from Windows, where `MSI*.LOG`,
//! `Msi1a2b.log` and `msi1A2B.LOG` are the same pattern.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use notify::{RecursiveMode, Watcher};

use crate::tail::FileId;

/// Deepest walk below a base directory for patterns containing `**`.
const MAX_RECURSIVE_DEPTH: usize = 16;

/// Errors building a [`Discovery`] or a [`DirWatch`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// A glob pattern does not parse.
    #[error("sources: invalid glob pattern {pattern:?}: {source}")]
    Glob {
        /// The pattern as configured.
        pattern: String,
        /// Parser error.
        #[source]
        source: globset::Error,
    },
    /// A pattern names an environment variable that is not set.
    #[error("sources: pattern {pattern:?} uses environment variable {var} which is not set")]
    MissingEnv {
        /// The pattern as configured.
        pattern: String,
        /// The variable name.
        var: String,
    },
    /// No include pattern was configured.
    #[error("sources.include is empty: nothing to watch")]
    NoIncludes,
}

/// One include pattern, split into the literal directory to walk and the depth to walk it.
#[derive(Debug, Clone)]
struct IncludeRoot {
    /// Literal directory prefix of the pattern (no glob metacharacters).
    base: PathBuf,
    /// How many path components below `base` the pattern can match.
    depth: usize,
}

/// The configured set of log files: include globs minus exclude globs.
#[derive(Debug, Clone)]
pub struct Discovery {
    roots: Vec<IncludeRoot>,
    include: GlobSet,
    exclude: GlobSet,
}

impl Discovery {
    /// Builds the matcher; expands `%VAR%` and `${VAR}` in every pattern first.
    ///
    /// # Errors
    /// [`DiscoveryError`] naming the offending pattern.
    pub fn new(
        include: &[String],
        exclude: &[String],
        case_insensitive: bool,
    ) -> Result<Self, DiscoveryError> {
        if include.is_empty() {
            return Err(DiscoveryError::NoIncludes);
        }
        let mut roots = Vec::new();
        let mut inc = GlobSetBuilder::new();
        for raw in include {
            let pattern = normalize(&expand_env(raw)?);
            inc.add(build_glob(&pattern, case_insensitive)?);
            roots.push(split_root(&pattern));
        }
        let mut exc = GlobSetBuilder::new();
        for raw in exclude {
            let pattern = normalize(&expand_env(raw)?);
            exc.add(build_glob(&pattern, case_insensitive)?);
        }
        let build = |b: GlobSetBuilder, what: &str| {
            b.build().map_err(|source| DiscoveryError::Glob {
                pattern: what.to_owned(),
                source,
            })
        };
        Ok(Self {
            roots,
            include: build(inc, "sources.include")?,
            exclude: build(exc, "sources.exclude")?,
        })
    }

    /// True when `path` matches an include pattern and no exclude pattern.
    pub fn matches(&self, path: &Path) -> bool {
        let s = normalize(&path.to_string_lossy());
        self.include.is_match(&s) && !self.exclude.is_match(&s)
    }

    /// The literal base directories the patterns walk from (they may not exist).
    pub fn roots(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.roots.iter().map(|r| r.base.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Walks every base directory and returns the matching regular files, sorted, deduplicated.
    ///
    /// Missing or unreadable directories are skipped: a folder that does not exist yet is
    /// normal, for example before the first Exchange setup run. [`scan_checked`](Self::scan_checked)
    /// also says what was skipped.
    pub fn scan(&self) -> Vec<PathBuf> {
        self.scan_checked().files
    }

    /// Like [`scan`](Self::scan), and reports every directory the walk could not enter, so the
    /// caller can tell the user (once per path and state, not on every scan).
    ///
    /// Symbolic links are followed, to files and to directories, except a link to a directory
    /// that contains it (a loop), which is reported as [`WalkIssue::Loop`].
    pub fn scan_checked(&self) -> Scan {
        let mut scan = Scan::default();
        for root in &self.roots {
            match std::fs::read_dir(&root.base) {
                Ok(_) => self.walk(&root.base, root.depth, &mut scan),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    scan.issues.push((root.base.clone(), WalkIssue::Missing));
                }
                Err(e) => scan
                    .issues
                    .push((root.base.clone(), WalkIssue::Unreadable(e.kind()))),
            }
        }
        scan.files.sort();
        scan.files.dedup();
        scan.issues.sort_by(|a, b| a.0.cmp(&b.0));
        scan.issues.dedup();
        scan
    }

    fn walk(&self, dir: &Path, depth: usize, scan: &mut Scan) {
        if depth == 0 {
            return;
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            // Gone since it was listed: a race with a deletion, noticed by the next scan.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                scan.issues
                    .push((dir.to_path_buf(), WalkIssue::Unreadable(e.kind())));
                return;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(mut ft) = entry.file_type() else {
                continue;
            };
            if ft.is_symlink() {
                // A dangling link is skipped: it names no file to tail.
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                ft = meta.file_type();
                if ft.is_dir() {
                    if let Some(target) = loop_target(dir, &path) {
                        scan.issues.push((path, WalkIssue::Loop { target }));
                        continue;
                    }
                }
            }
            if ft.is_dir() {
                self.walk(&path, depth - 1, scan);
            } else if ft.is_file() && self.matches(&path) {
                scan.files.push(path);
            }
        }
    }
}

/// What one scan found: the matching files, and the directories it could not walk.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Matching regular files, sorted, deduplicated.
    pub files: Vec<PathBuf>,
    /// Directories skipped, and why, sorted by path.
    pub issues: Vec<(PathBuf, WalkIssue)>,
}

/// Why a scan skipped a directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WalkIssue {
    /// A watched base directory does not exist (not yet, or deleted).
    Missing,
    /// The directory cannot be listed (permissions, a sharing violation).
    Unreadable(std::io::ErrorKind),
    /// A symbolic link to a directory that contains it: following it would never end.
    Loop {
        /// Where the link resolves to.
        target: PathBuf,
    },
}

/// The resolved target of `link` (inside `dir`) when it is `dir` or one of its ancestors.
fn loop_target(dir: &Path, link: &Path) -> Option<PathBuf> {
    let target = std::fs::canonicalize(link).ok()?;
    let here = std::fs::canonicalize(dir).ok()?;
    here.starts_with(&target).then_some(target)
}

/// Expands `%NAME%` (Windows style) and `${NAME}` from the environment.
///
/// # Errors
/// [`DiscoveryError::MissingEnv`] when a referenced variable is unset.
pub fn expand_env(pattern: &str) -> Result<String, DiscoveryError> {
    let missing = |var: &str| DiscoveryError::MissingEnv {
        pattern: pattern.to_owned(),
        var: var.to_owned(),
    };
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(i) = rest.find(['%', '$']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (name, consumed) = if let Some(body) = tail.strip_prefix('%') {
            match body.find('%') {
                Some(end) if end > 0 && is_var_name(&body[..end]) => (&body[..end], end + 2),
                _ => ("", 1),
            }
        } else if let Some(body) = tail.strip_prefix("${") {
            match body.find('}') {
                Some(end) if end > 0 && is_var_name(&body[..end]) => (&body[..end], end + 3),
                _ => ("", 1),
            }
        } else {
            ("", 1)
        };
        if name.is_empty() {
            out.push_str(&tail[..1]);
        } else {
            out.push_str(&std::env::var(name).map_err(|_| missing(name))?);
        }
        rest = &tail[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '(' || c == ')')
}

/// On Windows, patterns and paths are compared with `/` separators so `\` never means escape.
fn normalize(s: &str) -> String {
    if cfg!(windows) {
        s.replace('\\', "/")
    } else {
        s.to_owned()
    }
}

/// A [`normalize`]d path back in the platform's form: Windows paths are walked, reported and
/// stored with findings as Windows writes them (`C:\ExchangeSetupLogs\ExchangeSetup.log`,
/// not `C:/ExchangeSetupLogs\ExchangeSetup.log`).
fn native(s: String) -> String {
    if cfg!(windows) {
        s.replace('/', "\\")
    } else {
        s
    }
}

fn build_glob(pattern: &str, case_insensitive: bool) -> Result<globset::Glob, DiscoveryError> {
    GlobBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .literal_separator(true)
        .backslash_escape(!cfg!(windows))
        .build()
        .map_err(|source| DiscoveryError::Glob {
            pattern: pattern.to_owned(),
            source,
        })
}

fn split_root(pattern: &str) -> IncludeRoot {
    let parts: Vec<&str> = pattern.split('/').collect();
    let first_glob = parts
        .iter()
        .position(|p| p.contains(['*', '?', '[', '{']))
        .unwrap_or(parts.len().saturating_sub(1));
    let base = parts[..first_glob].join("/");
    let base = if base.is_empty() && pattern.starts_with('/') {
        "/".to_owned()
    } else if base.is_empty() {
        ".".to_owned()
    } else if base.ends_with(':') {
        // "C:" alone means the drive's current directory; the pattern meant its root.
        format!("{base}/")
    } else {
        base
    };
    let rest = &parts[first_glob..];
    let depth = if rest.contains(&"**") {
        MAX_RECURSIVE_DEPTH
    } else {
        rest.len().max(1)
    };
    IncludeRoot {
        base: PathBuf::from(native(base)),
        depth,
    }
}

/// Filesystem-event hint for the tail loop: "something under a watched directory changed".
///
/// Holds no file handles of its own on watched files; on Windows `ReadDirectoryChangesW` opens
/// directories with full sharing, so renaming the watched folder still works.
pub struct DirWatch {
    watcher: Option<notify::RecommendedWatcher>,
    dirty: Arc<AtomicBool>,
    /// The thread to unpark when something changes (see [`DirWatch::wake_me`]).
    waker: Arc<std::sync::Mutex<Option<std::thread::Thread>>>,
    watched: Vec<(PathBuf, RecursiveMode, FileId)>,
}

impl std::fmt::Debug for DirWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatch")
            .field("events", &self.watcher.is_some())
            .field("watched", &self.watched)
            .finish()
    }
}

impl DirWatch {
    /// Starts watching `discovery`'s base directories, or only polls when `poll` is set.
    ///
    /// If the platform watcher cannot be created (for example inotify limits), this logs a
    /// warning and falls back to polling rather than failing: the slow rescan still finds files.
    pub fn new(discovery: &Discovery, poll: bool) -> Self {
        let dirty = Arc::new(AtomicBool::new(true));
        let waker: Arc<std::sync::Mutex<Option<std::thread::Thread>>> = Arc::default();
        let watcher = if poll {
            None
        } else {
            let flag = dirty.clone();
            let wake = waker.clone();
            match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                // Our own reads open and close the files: access events must not wake the
                // reader, or it would chase its own tail.
                if res.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
                    flag.store(true, Ordering::Release);
                    if let Some(t) = wake.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                        t.unpark();
                    }
                }
            }) {
                Ok(w) => Some(w),
                Err(error) => {
                    tracing::warn!(message = "File events unavailable, polling instead.", %error);
                    None
                }
            }
        };
        let mut me = Self {
            watcher,
            dirty,
            waker,
            watched: Vec::new(),
        };
        me.rearm(discovery);
        me
    }

    /// True when events are in use (false means the caller's rescan timer is the only signal).
    pub fn uses_events(&self) -> bool {
        self.watcher.is_some()
    }

    /// Makes events unpark the calling thread, which can then sleep in
    /// `std::thread::park_timeout` instead of waking up to check a flag.
    pub fn wake_me(&self) {
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current());
    }

    /// True when something changed since the flag was last taken (does not clear it).
    pub fn peek_changed(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// Returns and clears the "something changed" flag.
    pub fn take_changed(&self) -> bool {
        self.dirty.swap(false, Ordering::AcqRel)
    }

    /// Re-computes what to watch: each base directory if it exists (recursively when its
    /// pattern can match below it) and its nearest existing ancestor, so that a deleted,
    /// renamed or not-yet-created folder is noticed when it (re)appears.
    pub fn rearm(&mut self, discovery: &Discovery) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let mut want: Vec<(PathBuf, RecursiveMode)> = Vec::new();
        for root in &discovery.roots {
            if root.base.is_dir() {
                let mode = if root.depth > 1 {
                    RecursiveMode::Recursive
                } else {
                    RecursiveMode::NonRecursive
                };
                want.push((root.base.clone(), mode));
            }
            let mut anc = root.base.parent();
            while let Some(a) = anc {
                if a.as_os_str().is_empty() {
                    break;
                }
                if a.is_dir() {
                    want.push((a.to_path_buf(), RecursiveMode::NonRecursive));
                    break;
                }
                anc = a.parent();
            }
        }
        want.sort_by(|a, b| a.0.cmp(&b.0).then(mode_rank(a.1).cmp(&mode_rank(b.1))));
        want.dedup();
        // Watched by identity, not only by name: a folder renamed away and recreated under
        // the same name is another directory, and the old watch followed the old one.
        let want: Vec<(PathBuf, RecursiveMode, FileId)> = want
            .into_iter()
            .filter_map(|(path, mode)| {
                let meta = std::fs::metadata(&path).ok().filter(|m| m.is_dir())?;
                Some((path, mode, FileId::from_metadata(&meta)))
            })
            .collect();
        for w in &self.watched {
            if !want.contains(w) {
                let _ = watcher.unwatch(&w.0);
            }
        }
        let mut now = Vec::new();
        for w in want {
            if !self.watched.contains(&w) {
                if let Err(error) = watcher.watch(&w.0, w.1) {
                    tracing::debug!(message = "Cannot watch directory.", dir = %w.0.display(), %error);
                    continue;
                }
                // A directory that just appeared may already hold files.
                self.dirty.store(true, Ordering::Release);
            }
            now.push(w);
        }
        self.watched = now;
    }
}

fn mode_rank(m: RecursiveMode) -> u8 {
    match m {
        RecursiveMode::Recursive => 0,
        RecursiveMode::NonRecursive => 1,
    }
}

/// The default include patterns for the platform (see `AgentConfig::default_for_platform`).
pub fn default_includes() -> Vec<String> {
    if cfg!(windows) {
        vec![
            r"%SystemDrive%\ExchangeSetupLogs\*.log".into(),
            r"%SystemDrive%\ExchangeSetupLogs\*.msilog".into(),
            r"%WINDIR%\Temp\MSI*.LOG".into(),
            r"%TEMP%\MSI*.LOG".into(),
            r"%WINDIR%\Temp\ExchangeSetup\*.log".into(),
        ]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_both_env_syntaxes_and_names_missing_vars() {
        std::env::set_var("PW_TEST_DIR", "/x/y");
        assert_eq!(expand_env("%PW_TEST_DIR%/a").unwrap(), "/x/y/a");
        assert_eq!(expand_env("${PW_TEST_DIR}/a").unwrap(), "/x/y/a");
        assert_eq!(expand_env("100%/$a").unwrap(), "100%/$a");
        let e = expand_env("%PW_TEST_NOT_SET_42%/x").unwrap_err();
        assert!(e.to_string().contains("PW_TEST_NOT_SET_42"), "{e}");
    }

    #[test]
    fn split_root_finds_literal_base_and_depth() {
        let r = split_root("/var/log/ex/*.log");
        assert_eq!(r.base, PathBuf::from("/var/log/ex"));
        assert_eq!(r.depth, 1);
        let r = split_root("/var/log/**/MSI*.LOG");
        assert_eq!(r.base, PathBuf::from("/var/log"));
        assert_eq!(r.depth, MAX_RECURSIVE_DEPTH);
    }

    #[cfg(windows)]
    #[test]
    fn roots_and_files_are_in_windows_form() {
        let d = Discovery::new(&[r"C:\ExchangeSetupLogs\*.log".into()], &[], true).unwrap();
        assert_eq!(d.roots(), [PathBuf::from(r"C:\ExchangeSetupLogs")]);
        let r = split_root("C:/*.log");
        assert_eq!(r.base, PathBuf::from("C:\\"));
    }

    #[test]
    fn include_exclude_and_case() {
        let d = Discovery::new(
            &["/t/MSI*.LOG".into(), "/t/*.msilog".into()],
            &["/t/*skip*".into()],
            true,
        )
        .unwrap();
        assert!(d.matches(Path::new("/t/msi1a2b.log")));
        assert!(d.matches(Path::new("/t/Setup.MSILOG")));
        assert!(!d.matches(Path::new("/t/msiskip.log")));
        assert!(!d.matches(Path::new("/t/sub/msi1.log")));
        let cs = Discovery::new(&["/t/MSI*.LOG".into()], &[], false).unwrap();
        assert!(!cs.matches(Path::new("/t/msi1.log")));
    }
}
