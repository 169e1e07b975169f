//! The agent against a hostile environment: a full disk, a damaged spool, unreadable files.
//! Full disks and unreadable files are injected (`patchwatch_collector::faults`), so these
//! tests run anywhere without mounting a small file system or dropping root.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patchwatch_collector::agent::{self, Agent};
use patchwatch_collector::checkpoint::CheckpointStore;
use patchwatch_collector::config::AgentConfig;
use patchwatch_collector::discovery::Discovery;
use patchwatch_collector::endpoint;
use patchwatch_collector::faults::{DiskFull, Unreadable};
use patchwatch_collector::tail::{TailEvent, TailOptions, TailReader};
use patchwatch_pipeline::{Catalog, FileScanner, ScanContext};
use patchwatch_testkit::{eventually_blocking, webhook};

const HOST: &str = "hardening-host";

/// The Exchange setup samples of the pipeline's tests, CRLF line ends as Exchange writes them.
fn sample(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipeline/tests/data/exchange")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

const SAMPLES: &[&str] = &[
    "ExchangeSetup_MSI_1.log",
    "ExchangeSetup_InstallFromBin.log",
    "ExchangeSetup_Service_Disabled.log",
    "ExchangeSetup_Vdir_1.log",
    "ExchangeSetup_ServiceControl_Reverse.log",
    "ExchangeSetup_MSI_3.log",
];

/// Writes `n` distinct ExchangeSetup logs into `dir` (each several runs, in a different
/// order) and returns their paths.
fn write_logs(dir: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let mut bytes = Vec::new();
            for k in 0..3 {
                bytes.extend(sample(SAMPLES[(i + k) % SAMPLES.len()]));
            }
            bytes.extend(sample(SAMPLES[i % SAMPLES.len()]).repeat(i / SAMPLES.len()));
            let path = dir.join(format!("ExchangeSetup{i}.log"));
            std::fs::write(&path, &bytes).unwrap();
            path
        })
        .collect()
}

/// The finding ids a correct pipeline produces for the files' complete contents, sorted, one
/// per finding (files with the same first runs give the same ids: the ids are deterministic).
fn expected(files: &[PathBuf]) -> Vec<String> {
    let catalog = Arc::new(Catalog::builtin());
    let mut ids = Vec::new();
    for f in files {
        let mut scanner = FileScanner::new(
            Arc::clone(&catalog),
            ScanContext::new(HOST, f.display().to_string()),
        );
        scanner.feed(&std::fs::read(f).unwrap());
        scanner.flush();
        ids.extend(
            patchwatch_pipeline::collect(scanner)
                .findings
                .into_iter()
                .map(|f| f.id),
        );
    }
    assert!(ids.len() > 20, "the samples give findings ({})", ids.len());
    ids.sort();
    ids
}

/// Agent config watching `logs`, polling fast, with `extra` TOML (sinks, aggregator).
fn config(logs: &Path, data: &Path, extra: &str) -> AgentConfig {
    let text = format!(
        "host_name = {HOST:?}\ndata_dir = {data:?}\n\n[sources]\ninclude = [{inc:?}]\n\
         poll_interval = \"20ms\"\nrescan_interval = \"200ms\"\n\n{extra}",
        inc = logs.join("*.log").display().to_string(),
    );
    AgentConfig::from_toml(&text, "<test>").unwrap()
}

fn start(cfg: &AgentConfig, rt: &tokio::runtime::Runtime) -> Agent {
    Agent::start(cfg, Arc::new(Catalog::builtin()), rt.handle()).unwrap()
}

/// A plain HTTP GET on loopback: the whole response as text.
fn get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn distinct(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[test]
fn full_disk_pauses_reading_and_loses_nothing_when_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let (logs, data) = (tmp.path().join("logs"), tmp.path().join("data"));
    std::fs::create_dir_all(&logs).unwrap();
    let out = tmp.path().join("findings.jsonl");
    let cfg = config(&logs, &data, &webhook::jsonl_toml("file", &out));
    let rt = agent::runtime().unwrap();
    let agent = start(&cfg, &rt);
    let health = agent.health();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let stop_http = tokio_util::sync::CancellationToken::new();
    let (_health_tx, health_rx) = tokio::sync::watch::channel(Some(health.clone()));
    rt.spawn(endpoint::serve(
        listener,
        None,
        health_rx,
        stop_http.clone(),
    ));
    assert!(get(addr, "/healthz").starts_with("HTTP/1.1 200"));

    let full = DiskFull::under(&data);
    let files = write_logs(&logs, 10);
    let want = expected(&files);
    let want_distinct = distinct(&want);
    let report = eventually_blocking(
        Duration::from_secs(20),
        "spool and checkpoints degraded",
        || {
            let r = health.report();
            (r.reason("spool").is_some() && r.reason("checkpoints").is_some()).then_some(r)
        },
    );
    assert!(
        report.reason("spool").unwrap().contains("space"),
        "the reason names the disk: {report:?}"
    );
    // Several retries go by; the matcher must still be there.
    std::thread::sleep(Duration::from_millis(1500));
    assert_ne!(health.report().status(), "failed", "{:?}", health.report());
    let answer = get(addr, "/healthz");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("\"spool\"") && answer.contains("degraded"),
        "{answer}"
    );
    assert!(
        webhook::jsonl_ids(&out).len() < want.len(),
        "reading was paused"
    );

    drop(full);
    eventually_blocking(
        Duration::from_secs(60),
        "every finding after space returned",
        || (distinct(&webhook::jsonl_ids(&out)) == want_distinct).then_some(()),
    );
    eventually_blocking(Duration::from_secs(10), "health ok again", || {
        health.report().is_ok().then_some(())
    });
    // Each finding exactly once: nothing lost, nothing duplicated by the retries.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sorted(webhook::jsonl_ids(&out)), want);
    assert!(get(addr, "/healthz").starts_with("HTTP/1.1 200"));
    stop_http.cancel();
    rt.block_on(agent.shutdown(Duration::from_secs(2)));
}

#[test]
fn damaged_spool_rewinds_checkpoints_and_rereads_the_lost_findings() {
    damaged_spool_case(|spool| {
        // Cut the unacknowledged segment in half.
        let seg = newest_segment(spool);
        let len = std::fs::metadata(&seg).unwrap().len();
        cut(&seg, len / 2);
    });
}

/// The newest segment cut exactly between two records scans clean: only the checkpoints
/// know that records are missing.
#[test]
fn newest_segment_cut_at_a_record_boundary_rewinds_checkpoints_too() {
    damaged_spool_case(|spool| {
        let seg = newest_segment(spool);
        let bytes = std::fs::read(&seg).unwrap();
        // Records: 8-byte magic, then per record a u32 length, a CRC32 and the payload.
        let mut ends = Vec::new();
        let mut pos = 8;
        while pos + 8 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            pos += 8 + len;
            ends.push(pos);
        }
        assert!(ends.len() >= 4, "records in the segment: {}", ends.len());
        cut(&seg, ends[ends.len() / 2] as u64);
    });
}

fn newest_segment(spool: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(spool)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs.pop().expect("a spool segment")
}

fn cut(seg: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(seg)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Spools every finding with nobody acknowledging, stops the agent, applies `damage` to the
/// spool directory, restarts with a sink that receives: every finding must arrive.
fn damaged_spool_case(damage: impl Fn(&Path)) {
    let tmp = tempfile::tempdir().unwrap();
    let (logs, data) = (tmp.path().join("logs"), tmp.path().join("data"));
    std::fs::create_dir_all(&logs).unwrap();
    // An aggregator nobody listens on: everything stays unacknowledged in the spool.
    let port = patchwatch_testkit::free_port();
    let dead = format!("[aggregator]\nendpoint = \"http://127.0.0.1:{port}\"\n");
    let files = write_logs(&logs, 4);
    let want = distinct(&expected(&files));
    let rt = agent::runtime().unwrap();

    let agent = start(&config(&logs, &data, &dead), &rt);
    let spool = agent.spool().clone();
    // Wait until everything is spooled, then for a checkpoint flush (every second).
    let mut last = (0, std::time::Instant::now());
    eventually_blocking(Duration::from_secs(30), "all findings spooled", || {
        let n = spool.next_id();
        if n != last.0 {
            last = (n, std::time::Instant::now());
        }
        (n as usize >= want.len() && last.1.elapsed() > Duration::from_millis(2500)).then_some(())
    });
    rt.block_on(agent.shutdown(Duration::ZERO));

    // Damage the unacknowledged spool while the agent is down.
    damage(&data.join("spool"));

    // Restart with a sink that does receive: it starts at the oldest record on disk.
    let out = tmp.path().join("findings.jsonl");
    let extra = format!("{dead}\n{}", webhook::jsonl_toml("file", &out));
    let agent = start(&config(&logs, &data, &extra), &rt);
    let got = eventually_blocking(
        Duration::from_secs(60),
        "every finding after the damage",
        || {
            let got = distinct(&webhook::jsonl_ids(&out));
            (got == want).then_some(got)
        },
    );
    assert_eq!(got.len(), want.len());
    rt.block_on(agent.shutdown(Duration::ZERO));
}

/// Collects formatted log lines of the current thread.
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

impl Captured {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

#[test]
fn unreadable_file_warns_once_backs_off_and_is_read_when_it_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("locked.log");
    std::fs::write(&path, b"first line\r\n").unwrap();
    let discovery =
        Discovery::new(&[tmp.path().join("*.log").display().to_string()], &[], true).unwrap();
    let store = Arc::new(CheckpointStore::open(tmp.path().join("ck.json")).unwrap());
    // A full pass on every round, as when the agent's own log beside the file keeps changing.
    let opts = TailOptions {
        rescan_interval: Duration::ZERO,
        poll: true,
        ..TailOptions::default()
    };
    let mut reader = TailReader::new(discovery, store, opts);
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let mut events = Vec::new();
    tracing::subscriber::with_default(subscriber, || {
        // A parallel test may have cached "never" for the warning against the global no-op
        // subscriber while this one was being set up; tracing caches interest per callsite.
        tracing::callsite::rebuild_interest_cache();
        let fault = Unreadable::path(&path);
        let started = std::time::Instant::now();
        let mut rounds = 0;
        while started.elapsed() < Duration::from_millis(1500) {
            reader.poll_once(&mut |ev| {
                events.push(ev);
                true
            });
            rounds += 1;
        }
        assert!(rounds > 100, "the reader kept going ({rounds} rounds)");
        assert_eq!(reader.unreadable(), 1);
        assert_eq!(
            logs.count("Cannot read file"),
            1,
            "one warning per file and state"
        );
        assert!(events.is_empty());
        drop(fault);
        eventually_blocking(
            Duration::from_secs(10),
            "the file read after it recovered",
            || {
                reader.poll_once(&mut |ev| {
                    events.push(ev);
                    true
                });
                events
                    .iter()
                    .any(|e| matches!(e, TailEvent::Data(_)))
                    .then_some(())
            },
        );
    });
    assert_eq!(reader.unreadable(), 0);
    assert_eq!(logs.count("File is readable again"), 1);
    assert_eq!(logs.count("Cannot read file"), 1);
}

#[test]
fn file_truncated_below_its_checkpoint_while_down_is_read_again_from_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("setup.log");
    let mut first: Vec<u8> = Vec::new();
    for i in 0..40 {
        first.extend(
            format!("[12/05/2026 10:00:{i:02}.0000] [0] line {i} of the first setup\r\n").bytes(),
        );
    }
    std::fs::write(&path, &first).unwrap();
    let ckpt = tmp.path().join("ck.json");
    let reader = |store: &Arc<CheckpointStore>| {
        let discovery =
            Discovery::new(&[tmp.path().join("*.log").display().to_string()], &[], true).unwrap();
        TailReader::new(discovery, Arc::clone(store), TailOptions::default())
    };
    let read_all = |r: &mut TailReader| {
        let mut events = Vec::new();
        for _ in 0..5 {
            r.poll_once(&mut |ev| {
                events.push(ev);
                true
            });
        }
        events
    };
    // First life: read everything, checkpoint at the end.
    let store = Arc::new(CheckpointStore::open(&ckpt).unwrap());
    let events = read_all(&mut reader(&store));
    let key = events[0].file().clone();
    store.commit(&key, first.len() as u64);
    store.flush().unwrap();
    drop(store);

    // While down: the file is cut to its first 256 bytes (same fingerprint) and grows again,
    // but stays shorter than the checkpoint.
    let mut second = first[..256].to_vec();
    second.extend_from_slice(b"[12/05/2026 11:00:00.0000] [0] a new run after the truncation\r\n");
    assert!((second.len() as u64) < first.len() as u64);
    std::fs::write(&path, &second).unwrap();

    let store = Arc::new(CheckpointStore::open(&ckpt).unwrap());
    let events = read_all(&mut reader(&store));
    let (mut from, mut bytes) = (None, Vec::new());
    for ev in events {
        match ev {
            TailEvent::Reset { from: f, .. } => from = Some(f),
            TailEvent::Data(c) => bytes.extend(c.bytes),
            _ => {}
        }
    }
    assert_eq!(from, Some(0), "resumed past the end of the shorter file");
    assert_eq!(
        bytes, second,
        "the new content is read whole, from the start"
    );
}
