//! Chaos: the real `patchwatch agent` under `kill -9`, a full disk and a damaged spool,
//! interleaved at random (seeded) while a slow writer appends ExchangeSetup logs. After the
//! last restart the aggregator must hold exactly the finding ids of a clean scan of the
//! final files: nothing lost, nothing that a clean run would not produce.
//!
//! The full disk is the collector's process-wide fault switch
//! (`faults::DISK_FULL_SWITCH_ENV`): every agent write fails with "No space left on device"
//! while the switch file exists, which needs neither root nor a small file system.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use patchwatch_collector::faults::DISK_FULL_SWITCH_ENV;
use rand::rngs::StdRng;
use rand::Rng;

const ROUNDS: usize = 20;

/// What a round does to the agent besides the final `kill -9`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chaos {
    /// Only the kill.
    Kill,
    /// The disk fills while the agent runs; space returns before or after the kill.
    DiskFull,
    /// With the aggregator away, the agent spools; after the kill a spool segment is cut
    /// short while the agent is down.
    DamageSpool,
}

/// Appends whole CRLF lines of Exchange setup runs, a few milliseconds apart, to three logs
/// in turn until `stop` (each repeat lands at new offsets, so it has new ids).
fn slow_writer(files: Vec<PathBuf>, stop: Arc<AtomicBool>) {
    let runs = all_samples();
    let lines: Vec<&[u8]> = runs.split_inclusive(|b| *b == b'\n').collect();
    let mut i = 0;
    while !stop.load(Ordering::Acquire) {
        // A run of lines per file, so each file gets whole runs' worth of context.
        let f = &files[(i / 97) % files.len()];
        append(f, lines[i % lines.len()]);
        i += 1;
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// The real agent, its stderr appended to `log`, with the disk-full switch at `switch`.
fn spawn(config: &Path, log: &Path, switch: &Path) -> Child {
    agent_command(config, log)
        .env(DISK_FULL_SWITCH_ENV, switch)
        .spawn()
        .expect("spawning patchwatch agent")
}

/// Cuts one spool segment, chosen by `rng`, to a random fraction of its length. Returns the
/// segment and its lengths before and after, or `None` when the spool has no segment.
fn damage_spool(spool: &Path, rng: &mut StdRng) -> Option<(PathBuf, u64, u64)> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(spool)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    if segs.is_empty() {
        return None;
    }
    let seg = segs.swap_remove(rng.random_range(0..segs.len()));
    let len = std::fs::metadata(&seg).ok()?.len();
    let cut = (len as f64 * rng.random_range(0.0..1.0)) as u64;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .ok()?
        .set_len(cut)
        .ok()?;
    Some((seg, len, cut))
}

fn ms(rng: &mut StdRng, range: std::ops::Range<u64>) -> Duration {
    Duration::from_millis(rng.random_range(range))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_disk_full_and_spool_damage_store_exactly_a_clean_runs_ids() {
    let host = "CHAOS";
    let tmp = tempfile::tempdir().unwrap();
    let watched = watched_dir(tmp.path(), "ExchangeSetupLogs");
    let mut agg = TestAggregator::start(&tmp.path().join("aggregator")).await;
    let data = tmp.path().join("agent");
    let cfg = agent_config(&[&watched], &data, &agg.endpoint(), host);
    let config = tmp.path().join("agent.toml");
    std::fs::write(&config, agent_toml(&cfg)).unwrap();
    let log = tmp.path().join("agent.stderr");
    let switch = tmp.path().join("disk-full");

    let files: Vec<PathBuf> = [
        "ExchangeSetup.log",
        "ExchangeSetup_1.log",
        "ExchangeSetup_2.log",
    ]
    .iter()
    .map(|n| watched.join(n))
    .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (f, s) = (files.clone(), Arc::clone(&stop));
        std::thread::spawn(move || slow_writer(f, s))
    };

    let started = Instant::now();
    let mut rng = patchwatch_testkit::rng::seeded("chaos: kill -9, disk full, spool damage");
    let mut done = Vec::new();
    for round in 0..ROUNDS {
        // Every kind of chaos in every third of the rounds; the timings are random.
        let chaos = [Chaos::Kill, Chaos::DiskFull, Chaos::DamageSpool]
            [(round + rng.random_range(0..3)) % 3];
        // Damage bites only records not yet acknowledged: keep them in the spool by taking
        // the aggregator away for the round.
        if chaos == Chaos::DamageSpool {
            agg.stop().await;
        }
        let mut child = spawn(&config, &log, &switch);
        let mut what = format!("round {round}: {chaos:?}");
        match chaos {
            Chaos::Kill => tokio::time::sleep(ms(&mut rng, 20..600)).await,
            // Long enough for a checkpoint flush (every second) past records that the damage
            // then destroys: only a rewind of the checkpoints brings those back.
            Chaos::DamageSpool => tokio::time::sleep(ms(&mut rng, 1200..2500)).await,
            Chaos::DiskFull => {
                tokio::time::sleep(ms(&mut rng, 20..400)).await;
                std::fs::write(&switch, b"").unwrap();
                tokio::time::sleep(ms(&mut rng, 100..900)).await;
                // Half the time space returns while the agent runs; else only after the kill.
                if rng.random_bool(0.5) {
                    std::fs::remove_file(&switch).unwrap();
                    tokio::time::sleep(ms(&mut rng, 20..400)).await;
                    what.push_str(", space back before the kill");
                }
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        let _ = std::fs::remove_file(&switch);
        if chaos == Chaos::DamageSpool {
            match damage_spool(&data.join("spool"), &mut rng) {
                Some((seg, len, cut)) => what.push_str(&format!(
                    ", {} cut from {len} to {cut} bytes",
                    seg.file_name().unwrap().to_string_lossy()
                )),
                None => what.push_str(", no segment to damage"),
            }
            agg.restart().await;
        }
        done.push(what);
    }
    stop.store(true, Ordering::Release);
    writer.join().unwrap();
    eprintln!("{}", done.join("\n"));
    eprintln!("{ROUNDS} rounds in {:?}", started.elapsed());
    for c in [Chaos::DiskFull, Chaos::DamageSpool] {
        assert!(
            done.iter().any(|d| d.contains(&format!("{c:?}"))),
            "no round of {c:?}"
        );
    }

    let expected = expected_files(host, &files);
    assert!(expected.len() >= 20, "the logs give many findings");
    let mut last = spawn(&config, &log, &switch);
    let settled = tokio::time::timeout(
        Duration::from_secs(60),
        agg.assert_settles(host, &expected, Duration::from_secs(50)),
    )
    .await;
    let _ = last.kill();
    let _ = last.wait();
    if settled.is_err() {
        panic!("store did not settle; agent log:\n{}", log_tail(&log));
    }
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        said.contains("No space left on device"),
        "the disk-full rounds reached the agent's writes; agent log:\n{}",
        log_tail(&log)
    );
    agg.stop().await;
}
