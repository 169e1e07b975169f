//! The open-file cap: thousands of logs under a small descriptor limit are each delivered
//! exactly once, the cap is never exceeded, `EMFILE` never happens, and warnings stay few.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use patchwatch_collector::checkpoint::CheckpointStore;
use patchwatch_collector::discovery::Discovery;
use patchwatch_collector::tail::{FileKey, TailEvent, TailOptions, TailReader};

/// Writes `n` small logs with distinct contents; returns path → content.
fn write_logs(dir: &Path, n: usize) -> HashMap<PathBuf, Vec<u8>> {
    (0..n)
        .map(|i| {
            let path = dir.join(format!("Msi{i:05}.log"));
            let body = format!("MSI (s) (10:20) [12:00:00:000]: file {i}\r\n").repeat(1 + i % 5);
            std::fs::write(&path, &body).unwrap();
            (path, body.into_bytes())
        })
        .collect()
}

/// Consumer model: every stream starts at 0, chunks are contiguous, no file is reset twice.
#[derive(Default)]
struct Delivered {
    by_key: HashMap<FileKey, (PathBuf, Vec<u8>)>,
    resets: usize,
}

impl Delivered {
    fn apply(&mut self, ev: TailEvent) {
        match ev {
            TailEvent::Reset {
                file, path, from, ..
            } => {
                assert_eq!(from, 0, "{} resumed mid-file", path.display());
                assert!(
                    self.by_key.insert(file, (path, Vec::new())).is_none(),
                    "a file was reset twice"
                );
                self.resets += 1;
            }
            TailEvent::Data(c) => {
                let (_, bytes) = self.by_key.get_mut(&c.file).expect("data before reset");
                assert_eq!(c.offset, bytes.len() as u64, "chunk not contiguous");
                bytes.extend_from_slice(&c.bytes);
            }
            other => panic!("unexpected event {other:?}"),
        }
    }

    /// Asserts that exactly `want` was delivered, each file once, whole.
    fn assert_exactly(&self, want: &HashMap<PathBuf, Vec<u8>>) {
        assert_eq!(self.resets, want.len(), "files started");
        let got: HashMap<&PathBuf, &Vec<u8>> = self.by_key.values().map(|(p, b)| (p, b)).collect();
        assert_eq!(got.len(), want.len(), "distinct files delivered");
        for (path, bytes) in want {
            assert_eq!(
                got.get(path),
                Some(&bytes),
                "{} not delivered whole",
                path.display()
            );
        }
    }
}

fn reader(dir: &Path, store: Arc<CheckpointStore>, opts: TailOptions) -> TailReader {
    let pattern = format!("{}/*.log", dir.display());
    TailReader::new(Discovery::new(&[pattern], &[], true).unwrap(), store, opts)
}

/// Polls until every file is delivered, checking the cap after every round; returns rounds.
fn read_all(
    r: &mut TailReader,
    store: &CheckpointStore,
    want: &HashMap<PathBuf, Vec<u8>>,
    cap: usize,
) -> Delivered {
    let mut d = Delivered::default();
    let total: usize = want.values().map(Vec::len).sum();
    for _ in 0..2_000 {
        let mut commits = Vec::new();
        r.poll_once(&mut |ev| {
            if let TailEvent::Data(c) = &ev {
                commits.push((c.file.clone(), c.offset + c.bytes.len() as u64));
            }
            d.apply(ev);
            true
        });
        // Checkpoints are written while the tailer holds its handles: they need descriptors
        // of their own.
        for (key, offset) in commits {
            store.commit(&key, offset);
        }
        store.flush().expect("checkpoints written while at the cap");
        assert!(
            r.open_files() <= cap,
            "{} handles open, cap {cap}",
            r.open_files()
        );
        assert_eq!(r.unreadable(), 0, "a file could not be opened (EMFILE?)");
        let got: usize = d.by_key.values().map(|(_, b)| b.len()).sum();
        if d.resets == want.len() && got == total {
            break;
        }
    }
    d
}

fn options(max_open_files: usize) -> TailOptions {
    TailOptions {
        poll_interval: Duration::from_millis(1),
        rescan_interval: Duration::from_secs(3600),
        close_on_eof: false,
        poll: true,
        max_open_files,
        ..TailOptions::default()
    }
}

#[test]
fn two_thousand_files_under_a_cap_of_32_are_each_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let want = write_logs(&logs, 2_000);
    let store = Arc::new(CheckpointStore::open(dir.path().join("cp.json")).unwrap());
    let mut r = reader(&logs, Arc::clone(&store), options(32));
    let d = read_all(&mut r, &store, &want, 32);
    d.assert_exactly(&want);
    assert_eq!(r.queued_files(), 0);

    // Appends to files whose handles were closed by the cap are read from where they were.
    let mut want = want;
    for (i, (path, bytes)) in want.iter_mut().enumerate().filter(|(i, _)| i % 50 == 0) {
        let more = format!("MSI (s) appended {i}\r\n");
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        std::io::Write::write_all(&mut f, more.as_bytes()).unwrap();
        bytes.extend_from_slice(more.as_bytes());
    }
    let mut more = Delivered::default();
    for _ in 0..50 {
        r.poll_once(&mut |ev| {
            match ev {
                TailEvent::Data(c) => {
                    let (_, b) = more
                        .by_key
                        .entry(c.file.clone())
                        .or_insert_with(|| (c.path.clone(), Vec::new()));
                    b.extend_from_slice(&c.bytes);
                }
                other => panic!("unexpected event {other:?}"),
            }
            true
        });
        assert!(r.open_files() <= 32);
    }
    assert_eq!(
        more.by_key.len(),
        40,
        "every appended file read again, once"
    );
    for (path, bytes) in more.by_key.values() {
        assert!(
            want[path].ends_with(bytes) && bytes.starts_with(b"MSI (s) appended"),
            "{} re-read from the wrong offset",
            path.display()
        );
    }
}

/// Environment variable that turns [`default_cap_child`] into the real test.
const CHILD_DIR: &str = "PATCHWATCH_TEST_FD_CHILD_DIR";

/// Under `ulimit -n 192` (run by [`default_cap_under_a_real_descriptor_limit`]): the
/// default cap, derived from the limit, reads 2,000 files and writes checkpoints without one
/// `EMFILE`. Without the variable it does nothing.
#[test]
fn default_cap_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let dir = PathBuf::from(dir);
    let logs = dir.join("logs");
    let want: HashMap<PathBuf, Vec<u8>> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    let opts = TailOptions {
        max_open_files: TailOptions::default().max_open_files,
        ..options(0)
    };
    let cap = opts.max_open_files;
    assert!((8..192).contains(&cap), "cap {cap} derived from the limit");
    let store = Arc::new(CheckpointStore::open(dir.join("cp.json")).unwrap());
    let mut r = reader(&logs, Arc::clone(&store), opts);
    read_all(&mut r, &store, &want, cap).assert_exactly(&want);
    println!("child: delivered {} files with cap {cap}", want.len());
}

#[cfg(unix)]
#[test]
fn default_cap_under_a_real_descriptor_limit() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    write_logs(&logs, 2_000);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 192 && exec "$0" "$@""#)
        .arg(std::env::current_exe().unwrap())
        .args(["handles::default_cap_child", "--exact", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_DIR, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("child: delivered 2000 files"),
        "child failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let warnings = stderr.lines().filter(|l| l.contains("WARN")).count();
    assert!(
        (1..=2).contains(&warnings),
        "one warning when the cap is reached, not one per file: {warnings}\n{stderr}"
    );
    assert!(!stderr.contains("Too many open files"), "{stderr}");
}
