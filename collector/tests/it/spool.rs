//! Spool integration tests: replay after restart, torn writes, corruption, full spool.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use patchwatch_collector::spool::{FsyncPolicy, Spool, SpoolError, SpoolOptions, DEFAULT_CONSUMER};

fn opts(dir: &Path) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_path_buf(),
        max_bytes: 64 * 1024,
        segment_bytes: 1024,
        fsync: FsyncPolicy::OnSync,
        ..SpoolOptions::new(dir)
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("record-{i:05}-{}", "x".repeat((i % 37) as usize)).into_bytes()
}

/// Appends records `0..n` to a new spool in `dir`, syncs and closes it.
fn fill_and_close(dir: &Path, n: u64) {
    let (spool, _) = Spool::open(opts(dir)).unwrap();
    for i in 0..n {
        spool.append(&payload(i)).unwrap();
    }
    spool.sync().unwrap();
}

/// Cuts the file at `path` to `len` bytes, as a crash or a full disk leaves it.
fn cut_to(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn replay_after_restart_and_ack_deletes_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, report) = Spool::open(opts(dir.path())).unwrap();
    assert_eq!(report.unacked, 0);
    for i in 0..100 {
        assert_eq!(spool.append(&payload(i)).unwrap(), i);
    }
    spool.sync().unwrap();
    let segs_before = segments(dir.path()).len();
    assert!(segs_before > 3, "small segments roll over");
    drop(spool);

    let (spool, report) = Spool::open(opts(dir.path())).unwrap();
    assert_eq!(report.unacked, 100);
    assert!(report.damage.is_empty());
    let all = spool.read(0, 1000, usize::MAX).unwrap();
    assert_eq!(all.len(), 100);
    for (i, r) in all.iter().enumerate() {
        assert_eq!((r.id, &r.payload), (i as u64, &payload(i as u64)));
    }
    let used = spool.used_bytes();
    spool.ack(50).unwrap();
    assert!(spool.used_bytes() < used, "acknowledged segments deleted");
    assert!(segments(dir.path()).len() < segs_before);
    assert_eq!(
        spool.read(0, 1, usize::MAX).unwrap()[0].id,
        50,
        "reads start after the ack"
    );
    drop(spool);

    // The ack position survives a restart; new ids continue after the old ones.
    let (spool, report) = Spool::open(opts(dir.path())).unwrap();
    assert_eq!(report.unacked, 50);
    assert_eq!(spool.append(b"next").unwrap(), 100);
    spool.ack(101).unwrap();
    assert!(
        segments(dir.path()).is_empty(),
        "fully acknowledged spool holds no segments"
    );
    assert_eq!(spool.read(0, 10, usize::MAX).unwrap(), vec![]);
}

#[test]
fn torn_last_record_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    fill_and_close(dir.path(), 10);
    // Simulate a crash mid-write: the last record loses its last 3 bytes.
    let last = segments(dir.path()).pop().unwrap();
    let len = fs::metadata(&last).unwrap().len();
    cut_to(&last, len - 3);

    let (spool, report) = Spool::open(opts(dir.path())).unwrap();
    assert_eq!(report.damage.len(), 1, "{report:?}");
    assert_eq!(report.damage[0].path, last);
    assert!(
        report.damage[0].reason.contains("torn"),
        "{:?}",
        report.damage[0]
    );
    let got = spool.read(0, 100, usize::MAX).unwrap();
    assert_eq!(got.len(), 9);
    assert_eq!(got[8].payload, payload(8));
    // Appends continue cleanly after the cut.
    let id = spool.append(b"after crash").unwrap();
    let got = spool.read(0, 100, usize::MAX).unwrap();
    assert_eq!(got.last().unwrap().id, id);
    assert_eq!(got.last().unwrap().payload, b"after crash");
}

#[test]
fn flipped_byte_is_detected_by_crc() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(opts(dir.path())).unwrap();
    for i in 0..5 {
        spool.append(&payload(i)).unwrap();
    }
    drop(spool);
    let seg = segments(dir.path()).remove(0);
    let mut bytes = fs::read(&seg).unwrap();
    let third = bytes
        .windows(12)
        .position(|w| w == b"record-00002")
        .unwrap();
    bytes[third] ^= 0x20;
    fs::write(&seg, bytes).unwrap();
    let (spool, report) = Spool::open(opts(dir.path())).unwrap();
    assert!(report.damage[0].reason.contains("checksum"), "{report:?}");
    assert_eq!(
        spool.read(0, 100, usize::MAX).unwrap().len(),
        2,
        "records before the damage kept"
    );
}

#[test]
fn full_spool_refuses_then_accepts_after_ack() {
    let dir = tempfile::tempdir().unwrap();
    let o = SpoolOptions {
        max_bytes: 4096,
        segment_bytes: 1024,
        ..opts(dir.path())
    };
    let (spool, _) = Spool::open(o).unwrap();
    let rec = vec![7u8; 100];
    let mut accepted = 0u64;
    let err = loop {
        match spool.append(&rec) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 1000, "spool never filled");
    };
    assert!(matches!(err, SpoolError::Full { .. }), "{err}");
    assert!(spool.used_bytes() <= 4096);
    // Nothing accepted was lost.
    assert_eq!(
        spool.read(0, 1000, usize::MAX).unwrap().len() as u64,
        accepted
    );
    // Blocking append with timeout: gives up when nobody acks...
    let t0 = Instant::now();
    assert!(matches!(
        spool.append_timeout(&rec, Duration::from_millis(30)),
        Err(SpoolError::Full { .. })
    ));
    assert!(t0.elapsed() >= Duration::from_millis(30));
    // ...and succeeds as soon as an ack frees a segment.
    let acker = spool.clone();
    let h = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        acker.ack(accepted).unwrap();
    });
    let id = spool.append_timeout(&rec, Duration::from_secs(5)).unwrap();
    assert_eq!(id, accepted);
    h.join().unwrap();
}

#[test]
fn too_large_record_and_bad_options_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(opts(dir.path())).unwrap();
    assert!(matches!(
        spool.append(&vec![0; 5000]),
        Err(SpoolError::TooLarge { .. })
    ));
    let bad = SpoolOptions {
        max_bytes: 1000,
        segment_bytes: 1000,
        ..opts(dir.path())
    };
    assert!(Spool::open(bad)
        .unwrap_err()
        .to_string()
        .contains("segment_bytes"));
}

fn with_consumers(dir: &Path, names: &[&str]) -> SpoolOptions {
    SpoolOptions {
        consumers: names.iter().map(|n| n.to_string()).collect(),
        ..opts(dir)
    }
}

#[test]
fn segments_stay_until_every_consumer_passed_them() {
    let dir = tempfile::tempdir().unwrap();
    let names = [DEFAULT_CONSUMER, "sink:a", "sink:b"];
    let (spool, _) = Spool::open(with_consumers(dir.path(), &names)).unwrap();
    for i in 0..100 {
        spool.append(&payload(i)).unwrap();
    }
    let segs = segments(dir.path()).len();
    spool.ack(100).unwrap();
    spool.ack_for("sink:a", 100).unwrap();
    assert_eq!(
        segments(dir.path()).len(),
        segs,
        "sink:b has not passed any"
    );
    assert_eq!(spool.first_unacked(), 0);
    spool.ack_for("sink:b", 60).unwrap();
    assert_eq!(spool.first_unacked(), 60);
    assert!(
        segments(dir.path()).len() < segs,
        "segments before 60 deleted"
    );
    assert_eq!(spool.read(0, 1, usize::MAX).unwrap()[0].id, 60);
    // A position never moves back; unknown names are errors.
    spool.ack_for("sink:a", 10).unwrap();
    assert_eq!(spool.position("sink:a"), Some(100));
    assert!(matches!(
        spool.ack_for("sink:zzz", 1),
        Err(SpoolError::UnknownConsumer(_))
    ));
    drop(spool);

    // Positions survive a restart, each on its own.
    let (spool, report) = Spool::open(with_consumers(dir.path(), &names)).unwrap();
    assert_eq!(report.unacked, 40);
    assert_eq!(spool.position(DEFAULT_CONSUMER), Some(100));
    assert_eq!(spool.position("sink:a"), Some(100));
    assert_eq!(spool.position("sink:b"), Some(60));
    drop(spool);

    // A consumer added later starts at the oldest record still on disk; one removed from the
    // list no longer holds data back, and ids are not reused below its old cursor.
    let (spool, _) =
        Spool::open(with_consumers(dir.path(), &[DEFAULT_CONSUMER, "sink:new"])).unwrap();
    let oldest = spool.read(0, 1, usize::MAX).unwrap()[0].id;
    assert!(oldest <= 60, "{oldest}");
    assert_eq!(spool.position("sink:new"), Some(oldest));
    spool.ack_for("sink:new", 100).unwrap();
    assert!(segments(dir.path()).is_empty() || spool.first_unacked() == 100);
    assert_eq!(spool.append(b"x").unwrap(), 100);
}

#[test]
fn ids_are_not_reused_below_any_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(with_consumers(dir.path(), &["sink:a"])).unwrap();
    for i in 0..30 {
        spool.append(&payload(i)).unwrap();
    }
    spool.ack_for("sink:a", 30).unwrap();
    assert!(segments(dir.path()).len() <= 1);
    drop(spool);
    // Reopened with a different consumer set and (as after a crash) no segment left.
    for s in segments(dir.path()) {
        fs::remove_file(s).unwrap();
    }
    let (spool, _) = Spool::open(with_consumers(dir.path(), &[DEFAULT_CONSUMER])).unwrap();
    assert_eq!(spool.append(b"y").unwrap(), 30);
}

#[test]
fn consumer_list_must_be_non_empty_and_unique() {
    let dir = tempfile::tempdir().unwrap();
    let e = Spool::open(with_consumers(dir.path(), &[])).unwrap_err();
    assert!(e.to_string().contains("at least one consumer"), "{e}");
    let e = Spool::open(with_consumers(dir.path(), &["a", "a"])).unwrap_err();
    assert!(e.to_string().contains("named twice"), "{e}");
}

#[tokio::test]
async fn every_waiting_consumer_is_woken_by_an_append() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(opts(dir.path())).unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let s = spool.clone();
            tokio::spawn(async move { s.wait_for(0).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    spool.append(b"one").unwrap();
    for w in waiters {
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("woken")
            .unwrap();
    }
}

/// Found by the spool property test: a segment whose every record was cut off, behind a
/// segment that lost its tail, made `read` index an empty offset list and panic (in the
/// agent, the delivery task).
#[test]
fn a_segment_emptied_by_damage_behind_a_cut_one_reads_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    fill_and_close(dir.path(), 120);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "{segs:?}");
    // The first segment loses its last record's last bytes; the second its first record.
    let len = fs::metadata(&segs[0]).unwrap().len();
    cut_to(&segs[0], len - 3);
    let mut second = fs::read(&segs[1]).unwrap();
    let at = second.windows(7).position(|w| w == b"record-").unwrap();
    second[at] ^= 0x20;
    fs::write(&segs[1], second).unwrap();

    let (spool, report) = Spool::open(opts(dir.path())).unwrap();
    assert!(report.damage.len() >= 2, "{report:?}");
    let got = spool.read(0, usize::MAX, usize::MAX).unwrap();
    assert!(!got.is_empty());
    for r in &got {
        assert_eq!(r.payload, payload(r.id), "record {} intact", r.id);
    }
    assert!(got.windows(2).all(|w| w[0].id < w[1].id));
}

/// Found by the spool property test: an older segment cut exactly at a record boundary scans
/// clean, so its lost records went unreported and the checkpoints were never rewound. The gap
/// before the next segment is now reported as damage.
#[test]
fn an_older_segment_cut_at_a_record_boundary_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    fill_and_close(dir.path(), 120);
    let segs = segments(dir.path());
    assert!(segs.len() >= 2, "{segs:?}");
    // Drop the first segment's last record whole: 8 header bytes, then "record-NNNNN-…".
    let bytes = fs::read(&segs[0]).unwrap();
    let last = bytes
        .windows(7)
        .rposition(|w| w == b"record-")
        .expect("a record")
        - 8;
    cut_to(&segs[0], last as u64);

    let (spool, report) = Spool::open(opts(dir.path())).unwrap();
    assert_eq!(report.damage.len(), 1, "{report:?}");
    let d = &report.damage[0];
    assert_eq!(d.path, segs[0]);
    assert_eq!(
        d.lost_until,
        d.first_lost_id + 1,
        "exactly one record lost: {d:?}"
    );
    let got = spool.read(0, usize::MAX, usize::MAX).unwrap();
    assert_eq!(got.len(), 119);
    assert!(got.iter().all(|r| r.id != d.first_lost_id));
}
