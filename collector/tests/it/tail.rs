//! Tailer integration tests on real files: sequences of appends, rotations, truncations and
//! deletions, checking that every file generation is delivered exactly once, in order.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use patchwatch_collector::checkpoint::CheckpointStore;
use patchwatch_collector::discovery::Discovery;
use patchwatch_collector::tail::{Bom, FileKey, TailEvent, TailOptions, TailReader};
use proptest::prelude::*;

/// One delivered stream (file generation) as the consumer sees it.
#[derive(Debug)]
struct Stream {
    key: FileKey,
    from: u64,
    bom: Bom,
    bytes: Vec<u8>,
    ended: bool,
}

/// Consumer model: checks contiguity of chunks and collects streams.
#[derive(Debug, Default)]
struct Collected {
    streams: Vec<Stream>,
    deleted: usize,
    truncated: usize,
    rotated: usize,
}

impl Collected {
    fn apply(&mut self, ev: TailEvent) {
        match ev {
            TailEvent::Reset {
                file, from, bom, ..
            } => {
                assert!(
                    !self.streams.iter().any(|s| s.key == file && !s.ended),
                    "Reset for a stream that is still open"
                );
                self.streams.push(Stream {
                    key: file,
                    from,
                    bom,
                    bytes: Vec::new(),
                    ended: false,
                });
            }
            TailEvent::Data(c) => {
                let s = self
                    .streams
                    .iter_mut()
                    .rev()
                    .find(|s| s.key == c.file && !s.ended)
                    .expect("data for an unknown stream");
                assert_eq!(
                    c.offset,
                    s.from + s.bytes.len() as u64,
                    "chunk not contiguous"
                );
                assert!(!c.bytes.is_empty());
                s.bytes.extend_from_slice(&c.bytes);
            }
            ev @ (TailEvent::Truncated { .. } | TailEvent::Deleted { .. }) => {
                if matches!(ev, TailEvent::Truncated { .. }) {
                    self.truncated += 1;
                } else {
                    self.deleted += 1;
                }
                let file = ev.file().clone();
                let s = self
                    .streams
                    .iter_mut()
                    .rev()
                    .find(|s| s.key == file && !s.ended)
                    .expect("end of an unknown stream");
                s.ended = true;
            }
            TailEvent::Rotated { .. } => self.rotated += 1,
        }
    }

    fn contents(&self) -> Vec<Vec<u8>> {
        self.streams.iter().map(|s| s.bytes.clone()).collect()
    }
}

fn opts() -> TailOptions {
    TailOptions {
        poll_interval: Duration::from_millis(10),
        rescan_interval: Duration::ZERO,
        close_on_eof: false,
        read_chunk_bytes: 97, // odd, small: chunk boundaries land everywhere
        max_read_per_poll: 1000,
        poll: true,
        ..TailOptions::default()
    }
}

fn reader(dir: &Path, store: Arc<CheckpointStore>, o: TailOptions) -> TailReader {
    let pattern = format!("{}/*.log", dir.display());
    TailReader::new(Discovery::new(&[pattern], &[], true).unwrap(), store, o)
}

fn drain(r: &mut TailReader, c: &mut Collected) {
    // Loop until a round reports no pending work and produced nothing.
    for _ in 0..1000 {
        let mut n = 0;
        let more = r.poll_once(&mut |ev| {
            n += 1;
            c.apply(ev);
            true
        });
        if !more && n == 0 {
            return;
        }
    }
    panic!("reader never went quiet");
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Poll,
    RenameRotate(Vec<u8>),
    CopyTruncate,
    Truncate,
    DeleteRecreate,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), 1..300).prop_map(Op::Append),
        3 => Just(Op::Poll),
        1 => proptest::collection::vec(any::<u8>(), 0..50).prop_map(Op::RenameRotate),
        1 => Just(Op::CopyTruncate),
        1 => Just(Op::Truncate),
        1 => Just(Op::DeleteRecreate),
    ]
}

/// Runs `ops` against a real file and returns (written generations, delivered streams).
fn run_ops(ops: &[Op]) -> (Vec<Vec<u8>>, Collected) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).unwrap();
    let store = Arc::new(CheckpointStore::open(dir.path().join("cp.json")).unwrap());
    let mut r = reader(&logs, store, opts());
    let path = logs.join("app.log");
    let mut gens: Vec<Vec<u8>> = vec![Vec::new()];
    let mut c = Collected::default();
    let mut rotations = 0;
    for op in ops {
        match op {
            Op::Append(b) => {
                append(&path, b);
                gens.last_mut().unwrap().extend_from_slice(b);
            }
            Op::Poll => drain(&mut r, &mut c),
            Op::RenameRotate(tail) => {
                // Bytes written after the last poll are drained through the open handle.
                drain(&mut r, &mut c);
                if !tail.is_empty() && path.exists() {
                    append(&path, tail);
                    gens.last_mut().unwrap().extend_from_slice(tail);
                }
                rotations += 1;
                if path.exists() {
                    fs::rename(&path, logs.join(format!("app.log.{rotations}"))).unwrap();
                }
                gens.push(Vec::new());
            }
            Op::CopyTruncate | Op::Truncate | Op::DeleteRecreate => {
                // Data appended after the last read and before a truncation is unreadable
                // by any tailer; the model reads first.
                drain(&mut r, &mut c);
                if path.exists() {
                    match op {
                        Op::CopyTruncate => {
                            rotations += 1;
                            fs::copy(&path, logs.join(format!("app.log.{rotations}"))).unwrap();
                            OpenOptions::new()
                                .write(true)
                                .open(&path)
                                .unwrap()
                                .set_len(0)
                                .unwrap();
                        }
                        Op::Truncate => {
                            OpenOptions::new()
                                .write(true)
                                .open(&path)
                                .unwrap()
                                .set_len(0)
                                .unwrap();
                        }
                        _ => fs::remove_file(&path).unwrap(),
                    }
                }
                gens.push(Vec::new());
            }
        }
    }
    drain(&mut r, &mut c);
    gens.retain(|g| !g.is_empty());
    (gens, c)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_generation_delivered_exactly_once(ops in proptest::collection::vec(op(), 1..25)) {
        let (written, got) = run_ops(&ops);
        prop_assert!(got.streams.iter().all(|s| s.from == 0));
        prop_assert_eq!(got.contents(), written);
    }
}

#[test]
fn rename_rotation_drains_old_file_and_reads_new_one() {
    let ops = vec![
        Op::Append(b"line 1\nline 2\n".to_vec()),
        Op::Poll,
        Op::RenameRotate(b"written after the last poll\n".to_vec()),
        Op::Append(b"new file\n".to_vec()),
    ];
    let (written, got) = run_ops(&ops);
    assert_eq!(got.contents(), written);
    assert_eq!(written.len(), 2);
    assert_eq!(got.deleted, 1, "old generation ended after the rename");
}

#[test]
fn truncation_starts_a_new_generation() {
    let ops = vec![
        Op::Append(vec![b'a'; 500]),
        Op::Truncate,
        Op::Append(vec![b'b'; 600]), // longer than before: only the marker reveals it
    ];
    let (written, got) = run_ops(&ops);
    assert_eq!(got.contents(), written);
    assert_eq!(got.truncated, 1);
}

#[test]
fn resume_from_checkpoint_after_restart_and_detect_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).unwrap();
    let cp = dir.path().join("cp.json");
    let path = logs.join("setup.log");
    let body: Vec<u8> = (0..1000u32)
        .map(|i| b"0123456789abcdef\n"[i as usize % 17])
        .collect();
    append(&path, &body);

    let store = Arc::new(CheckpointStore::open(&cp).unwrap());
    let mut r = reader(&logs, store.clone(), opts());
    let mut c = Collected::default();
    drain(&mut r, &mut c);
    let key = c.streams[0].key.clone();
    store.commit(&key, 600);
    store.flush().unwrap();
    drop(r);

    append(&path, b"more after restart\n");
    let store = Arc::new(CheckpointStore::open(&cp).unwrap());
    assert_eq!(store.offset(&key), Some(600));
    let mut r = reader(&logs, store.clone(), opts());
    let mut c = Collected::default();
    drain(&mut r, &mut c);
    assert_eq!(c.streams.len(), 1);
    assert_eq!(
        c.streams[0].key, key,
        "identity survives growth and restart"
    );
    assert_eq!(c.streams[0].from, 600);
    assert_eq!(
        c.streams[0].bytes,
        [&body[600..], b"more after restart\n"].concat()
    );
    store.commit(&key, 1019);
    store.flush().unwrap();
    drop(r);

    // Rewritten in place while we were down: same header, same length, other content.
    let mut other = body.clone();
    other[700..].fill(b'x');
    fs::write(&path, [&other[..], b"more after restart\n"].concat()).unwrap();
    let store = Arc::new(CheckpointStore::open(&cp).unwrap());
    let mut r = reader(&logs, store, opts());
    let mut c = Collected::default();
    drain(&mut r, &mut c);
    assert_eq!(
        c.streams[0].from, 0,
        "offset marker mismatch forces a full re-read"
    );
}

#[test]
fn utf16_resume_offset_stays_even() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).unwrap();
    let cp = dir.path().join("cp.json");
    let path = logs.join("MSI1a2b.LOG");
    let mut bytes = vec![0xFF, 0xFE];
    for ch in "MSI (s) (D0:A0) [21:24:36:744]: Product: X\r\n"
        .repeat(10)
        .encode_utf16()
    {
        bytes.extend_from_slice(&ch.to_le_bytes());
    }
    append(&path, &bytes);
    let store = Arc::new(CheckpointStore::open(&cp).unwrap());
    let mut r = reader(&logs, store.clone(), opts());
    let mut c = Collected::default();
    drain(&mut r, &mut c);
    assert_eq!(c.streams[0].bom, Bom::Utf16Le);
    let key = c.streams[0].key.clone();
    store.commit(&key, 201);
    store.flush().unwrap();
    drop(r);
    let store = Arc::new(CheckpointStore::open(&cp).unwrap());
    let mut r = reader(&logs, store, opts());
    let mut c = Collected::default();
    drain(&mut r, &mut c);
    assert_eq!(c.streams[0].from, 200);
    assert_eq!(
        c.streams[0].bom,
        Bom::Utf16Le,
        "encoding known though the BOM is not re-read"
    );
    assert_eq!(c.streams[0].bytes, bytes[200..]);
}

#[test]
fn corrupt_checkpoint_file_is_moved_aside_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("checkpoints.json");
    fs::write(&cp, b"{\"version\":1,\"entries\":[{\"dev").unwrap();
    let store = CheckpointStore::open(&cp).unwrap();
    let aside: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "bad file kept for inspection");
    assert!(!cp.exists());
    // Rebuilt: a new file is written on the next change.
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).unwrap();
    append(&logs.join("a.log"), b"hello\n");
    let store = Arc::new(store);
    let mut r = reader(&logs, store.clone(), opts());
    let mut c = Collected::default();
    drain(&mut r, &mut c);
    store.commit(&c.streams[0].key, 6);
    store.flush().unwrap();
    let text = fs::read_to_string(&cp).unwrap();
    assert!(
        text.contains("\"version\": 1") && text.contains("\"offset\": 6"),
        "{text}"
    );
}

/// The threaded reader with filesystem events: the watched folder is renamed away and
/// recreated (Microsoft's advice for stuck Exchange setups); the slow rescan is disabled
/// (60 s), so only events can find the new folder's file.
#[test]
fn folder_renamed_and_recreated_is_followed_by_events() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("ExchangeSetupLogs");
    fs::create_dir(&logs).unwrap();
    append(
        &logs.join("ExchangeSetup.log"),
        b"[01/01/2024 10:00:00.0000] [0] first run\n",
    );
    let store = Arc::new(CheckpointStore::open(dir.path().join("cp.json")).unwrap());
    let o = TailOptions {
        poll: false,
        rescan_interval: Duration::from_secs(60),
        ..opts()
    };
    let r = reader(&logs, store, o);
    let (tx, rx) = crossbeam_channel::bounded(4);
    let stop = Arc::new(AtomicBool::new(false));
    let handle = r.spawn(tx, stop.clone());
    let mut c = Collected::default();
    let wait_for = |c: &mut Collected, what: &dyn Fn(&Collected) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !what(c) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out; got {c:?}");
            if let Ok(ev) = rx.recv_timeout(left) {
                c.apply(ev);
            }
        }
    };
    wait_for(&mut c, &|c| {
        c.streams
            .first()
            .is_some_and(|s| s.bytes.ends_with(b"first run\n"))
    });
    append(
        &logs.join("ExchangeSetup.log"),
        b"[01/01/2024 10:00:01.0000] [0] last words\n",
    );
    fs::rename(&logs, dir.path().join("ExchangeSetupLogs.old")).unwrap();
    fs::create_dir(&logs).unwrap();
    append(
        &logs.join("ExchangeSetup.log"),
        b"[01/02/2024 09:00:00.0000] [0] second run\n",
    );
    wait_for(&mut c, &|c| {
        c.streams.len() == 2 && c.streams[1].bytes.ends_with(b"second run\n")
    });
    stop.store(true, Ordering::Release);
    handle.join().unwrap();
    assert!(
        c.streams[0].bytes.ends_with(b"last words\n"),
        "old file drained after rename"
    );
    assert_eq!(c.deleted, 1);
}

#[test]
fn backpressure_blocks_reader_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    append(&logs.join("big.log"), &data);
    let store = Arc::new(CheckpointStore::open(dir.path().join("cp.json")).unwrap());
    let r = reader(
        &logs,
        store,
        TailOptions {
            read_chunk_bytes: 4096,
            ..opts()
        },
    );
    let (tx, rx) = crossbeam_channel::bounded(2);
    let stop = Arc::new(AtomicBool::new(false));
    let handle = r.spawn(tx, stop.clone());
    std::thread::sleep(Duration::from_millis(50));
    assert!(rx.len() <= 2, "bounded queue");
    let mut c = Collected::default();
    while c.streams.first().is_none_or(|s| s.bytes.len() < data.len()) {
        c.apply(rx.recv_timeout(Duration::from_secs(10)).expect("event"));
    }
    stop.store(true, Ordering::Release);
    handle.join().unwrap();
    assert_eq!(c.contents(), vec![data]);
}
