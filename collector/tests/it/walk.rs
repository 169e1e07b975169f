//! Folders the tailer cannot walk: a deleted watched folder and a symbolic link loop are
//! each warned about once per state, again when the state changes, never on every scan.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use patchwatch_collector::checkpoint::CheckpointStore;
use patchwatch_collector::discovery::{Discovery, WalkIssue};
use patchwatch_collector::tail::{TailEvent, TailOptions, TailReader};

/// Log lines written by the code under test, as a user would read them.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    /// Lines at WARN that contain `text`.
    fn warnings(&self, text: &str) -> usize {
        let bytes = self.0.lock().unwrap();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains("WARN") && l.contains(text))
            .count()
    }
}

/// Runs `f` with this thread's log lines captured.
fn capture(f: impl FnOnce()) -> Captured {
    let out = Captured::default();
    let sub = tracing_subscriber::fmt()
        .with_writer(out.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::with_default(sub, || {
        // Other tests' threads may have cached "nobody listens" for these call sites.
        tracing::callsite::rebuild_interest_cache();
        f();
    });
    out
}

fn reader(pattern: String, store: Arc<CheckpointStore>) -> TailReader {
    let opts = TailOptions {
        rescan_interval: Duration::ZERO, // every round is a full scan
        poll: true,
        ..TailOptions::default()
    };
    TailReader::new(Discovery::new(&[pattern], &[], true).unwrap(), store, opts)
}

/// Polls `n` rounds, returning the paths of the files started.
fn rounds(r: &mut TailReader, n: usize) -> Vec<String> {
    let mut started = Vec::new();
    for _ in 0..n {
        r.poll_once(&mut |ev| {
            if let TailEvent::Reset { path, .. } = ev {
                started.push(path.display().to_string());
            }
            true
        });
    }
    started
}

#[test]
fn deleted_watched_folder_warns_once_per_disappearance() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("ExchangeSetupLogs");
    let store = Arc::new(CheckpointStore::open(dir.path().join("cp.json")).unwrap());
    let mut r = reader(format!("{}/*.log", logs.display()), store);
    let log = capture(|| {
        // Not there yet: normal before the first setup run, so no warning.
        rounds(&mut r, 3);
        assert_eq!(r.walk_warnings(), 0);
        assert_eq!(r.walk_issues(), vec![(logs.clone(), WalkIssue::Missing)]);
        std::fs::create_dir(&logs).unwrap();
        std::fs::write(logs.join("ExchangeSetup.log"), b"line\r\n").unwrap();
        assert_eq!(rounds(&mut r, 2).len(), 1);
        assert!(r.walk_issues().is_empty());
        std::fs::remove_dir_all(&logs).unwrap();
        rounds(&mut r, 5);
        assert_eq!(
            r.walk_warnings(),
            1,
            "one warning for five scans of a gone folder"
        );
        std::fs::create_dir(&logs).unwrap();
        rounds(&mut r, 2);
        std::fs::remove_dir(&logs).unwrap();
        rounds(&mut r, 5);
        assert_eq!(
            r.walk_warnings(),
            2,
            "gone again: a new state, a new warning"
        );
    });
    assert_eq!(log.warnings("Watched folder is gone"), 2);
}

#[cfg(unix)]
#[test]
fn symlink_loop_warns_once_and_linked_logs_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(logs.join("sub")).unwrap();
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(logs.join("sub/MSI1.log"), b"a\r\n").unwrap();
    std::fs::write(elsewhere.join("MSI2.log"), b"b\r\n").unwrap();
    std::os::unix::fs::symlink(elsewhere.join("MSI2.log"), logs.join("MSI2.log")).unwrap();
    let link = logs.join("sub/loop");
    std::os::unix::fs::symlink(&logs, &link).unwrap();
    let store = Arc::new(CheckpointStore::open(dir.path().join("cp.json")).unwrap());
    let mut r = reader(format!("{}/**/*.log", logs.display()), store);
    let log = capture(|| {
        let mut started = rounds(&mut r, 5);
        started.sort();
        assert_eq!(
            started,
            [logs.join("MSI2.log"), logs.join("sub/MSI1.log")].map(|p| p.display().to_string()),
            "each log once, the linked one too, none through the loop"
        );
        assert_eq!(r.walk_warnings(), 1);
        assert!(matches!(
            r.walk_issues().as_slice(),
            [(p, WalkIssue::Loop { target })] if *p == link && same(target, &logs)
        ));
        std::fs::remove_file(&link).unwrap();
        rounds(&mut r, 2);
        assert!(r.walk_issues().is_empty());
        std::os::unix::fs::symlink(&logs, &link).unwrap();
        rounds(&mut r, 3);
        assert_eq!(r.walk_warnings(), 2, "the loop came back: warned again");
    });
    assert_eq!(log.warnings("Symbolic link loop"), 2);
}

#[cfg(unix)]
fn same(a: &std::path::Path, b: &std::path::Path) -> bool {
    std::fs::canonicalize(a).unwrap() == std::fs::canonicalize(b).unwrap()
}
