//! Shared pieces of the end-to-end tests: a real aggregator on 127.0.0.1:0 (SQLite in a temp
//! folder), agent configurations with fast polling, the expected finding ids of a file (a full
//! scan of its final content with the pipeline), and a poll that waits for the store to settle.
//!
//! Finding ids depend on host, first line, rule, byte offset and line bytes, not on the path,
//! so a rotated or copied file scans to the same ids as the stream the agent read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use patchwatch_aggregator::model::FindingFilter;
use patchwatch_aggregator::store::Store;
use patchwatch_aggregator::RunningAggregator;
use patchwatch_collector::agent::Agent;
use patchwatch_collector::config::AgentConfig;
use patchwatch_pipeline::{Catalog, ScanContext};
use tokio_util::sync::CancellationToken;

/// An in-process aggregator that can be stopped and started again on the same port.
pub struct TestAggregator {
    data_dir: PathBuf,
    grpc: SocketAddr,
    running: Option<(RunningAggregator, CancellationToken)>,
    store: Arc<dyn Store>,
}

impl TestAggregator {
    /// Starts on a free loopback port with its database under `data_dir`.
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_at(data_dir, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts on `grpc` (a port used before, to come back where agents expect it).
    pub async fn start_at(data_dir: &Path, grpc: SocketAddr) -> Self {
        let mut config = patchwatch_aggregator::Config {
            data_dir: data_dir.to_path_buf(),
            ..Default::default()
        };
        config.grpc.listen = grpc;
        config.http.listen = "127.0.0.1:0".parse().unwrap();
        // The port may still be held for a moment by the previous instance's last connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        let g = loop {
            match tokio::net::TcpListener::bind(grpc).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding {grpc}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot bind {grpc}: {e}"),
            }
        };
        let h = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let token = CancellationToken::new();
        let running = patchwatch_aggregator::serve(config, g, h, token.clone())
            .await
            .expect("aggregator starts");
        let grpc = running.grpc_addr();
        let store = running.store();
        Self {
            data_dir: data_dir.to_path_buf(),
            grpc,
            running: Some((running, token)),
            store,
        }
    }

    /// The store, for what the helpers below do not show.
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// The agent endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Stops the aggregator (streams closed, store closed); [`restart`](Self::restart) brings
    /// it back on the same port with the same database.
    pub async fn stop(&mut self) {
        if let Some((running, token)) = self.running.take() {
            token.cancel();
            tokio::time::timeout(Duration::from_secs(15), running.wait())
                .await
                .expect("aggregator stops within 15 s")
                .expect("aggregator stops cleanly");
        }
    }

    /// Starts it again after [`stop`](Self::stop).
    pub async fn restart(&mut self) {
        assert!(self.running.is_none(), "restart needs a stopped aggregator");
        let again = Self::start_at(&self.data_dir, self.grpc).await;
        *self = again;
    }

    /// Every stored finding id of `host` (all pages), with rule, path and offset for messages.
    ///
    /// # Panics
    /// When the same id is listed twice (the store must be idempotent by id).
    pub async fn stored(&self, host: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut before = None;
        loop {
            let page = self
                .store
                .findings(FindingFilter {
                    host: Some(host.to_string()),
                    before_seq: before,
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .expect("store answers");
            for f in page.items {
                let what = format!("{} @{} in {}", f.rule_id, f.byte_offset, f.source_path);
                if let Some(old) = out.insert(f.id.clone(), what) {
                    panic!("finding {} stored twice ({old})", f.id);
                }
            }
            match page.next_cursor {
                Some(c) => before = Some(c),
                None => return out,
            }
        }
    }

    /// Outcomes of the stored runs of `host`.
    pub async fn store_runs(&self, host: &str) -> Vec<String> {
        self.store
            .runs(patchwatch_aggregator::model::RunFilter {
                host: Some(host.to_string()),
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("store answers")
            .into_iter()
            .map(|r| r.outcome)
            .collect()
    }

    /// Waits until the stored ids of `host` equal `expected` and stay so for 600 ms, then
    /// asserts equality (with the missing and unexpected findings named) after `timeout`.
    pub async fn assert_settles(
        &self,
        host: &str,
        expected: &BTreeMap<String, String>,
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        let mut equal_since: Option<Instant> = None;
        loop {
            let stored = self.stored(host).await;
            let equal = stored.keys().eq(expected.keys());
            if equal {
                let since = *equal_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_millis(600) {
                    return;
                }
            } else {
                equal_since = None;
            }
            if Instant::now() >= deadline {
                let missing: Vec<_> = expected
                    .iter()
                    .filter(|(k, _)| !stored.contains_key(*k))
                    .map(|(_, v)| v.clone())
                    .collect();
                let extra: Vec<_> = stored
                    .iter()
                    .filter(|(k, _)| !expected.contains_key(*k))
                    .map(|(_, v)| v.clone())
                    .collect();
                panic!(
                    "host {host}: stored {} findings, expected {}\n missing ({}): {missing:#?}\n \
                     unexpected ({}): {extra:#?}",
                    stored.len(),
                    expected.len(),
                    missing.len(),
                    extra.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestAggregator {
    fn drop(&mut self) {
        if let Some((_, token)) = &self.running {
            token.cancel();
        }
    }
}

/// The finding ids a correct pipeline produces for the complete content `bytes` read from a
/// file on `host`, with a short description of each.
pub fn expected_ids(host: &str, path: &Path, bytes: &[u8]) -> BTreeMap<String, String> {
    // Live semantics, as the agent sees a file that may still grow: everything fed, the last
    // line completed (quiet period), but runs without an end line stay open, so the checks
    // that run when a run ends are not expected for them.
    let mut scanner = patchwatch_pipeline::FileScanner::new(
        Arc::new(Catalog::builtin()),
        ScanContext::new(host, path.display().to_string()),
    );
    scanner.feed(bytes);
    scanner.flush();
    let out = patchwatch_pipeline::collect(scanner);
    out.findings
        .into_iter()
        .map(|f| {
            let what = format!("{} @{} in {}", f.rule_id, f.byte_offset, path.display());
            (f.id, what)
        })
        .collect()
}

/// [`expected_ids`] of several files' final contents, merged.
pub fn expected_files(host: &str, files: &[PathBuf]) -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    for f in files {
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        all.extend(expected_ids(host, f, &bytes));
    }
    all
}

/// Agent configuration watching `dirs` (their `*.log` files, any case), polling fast, and
/// delivering to `endpoint` promptly.
pub fn agent_config(dirs: &[&Path], data_dir: &Path, endpoint: &str, host: &str) -> AgentConfig {
    let mut cfg = AgentConfig::default_for_platform();
    cfg.data_dir = data_dir.to_path_buf();
    cfg.host_name = Some(host.to_string());
    cfg.sources.include = dirs
        .iter()
        .map(|d| d.join("*.log").display().to_string())
        .collect();
    cfg.sources.poll_interval = std::time::Duration::from_millis(20).into();
    cfg.sources.rescan_interval = std::time::Duration::from_millis(200).into();
    cfg.aggregator.endpoint = endpoint.to_string();
    cfg.aggregator.connect_timeout = std::time::Duration::from_secs(2).into();
    cfg.aggregator.initial_backoff = std::time::Duration::from_millis(50).into();
    cfg.aggregator.max_backoff = std::time::Duration::from_millis(300).into();
    cfg.batch.linger = std::time::Duration::from_millis(20).into();
    cfg
}

/// The same configuration as TOML, for `patchwatch agent --config`.
pub fn agent_toml(cfg: &AgentConfig) -> String {
    let q = |s: &str| format!("{s:?}");
    let include: Vec<String> = cfg.sources.include.iter().map(|s| q(s)).collect();
    format!(
        "host_name = {host}\ndata_dir = {data}\n\n[sources]\ninclude = [{include}]\n\
         poll_interval = \"{poll}\"\nrescan_interval = \"{rescan}\"\n\n[aggregator]\n\
         endpoint = {ep}\nconnect_timeout = \"{ct}\"\ninitial_backoff = \"{bi}\"\n\
         max_backoff = \"{bm}\"\n\n[spool]\nmax_bytes = {smax}\nsegment_bytes = {sseg}\n\n\
         [batch]\nlinger = \"{linger}\"\n",
        host = q(cfg.host_name.as_deref().unwrap_or("localhost")),
        data = q(&cfg.data_dir.display().to_string()),
        include = include.join(", "),
        poll = cfg.sources.poll_interval,
        rescan = cfg.sources.rescan_interval,
        ep = q(&cfg.aggregator.endpoint),
        ct = cfg.aggregator.connect_timeout,
        bi = cfg.aggregator.initial_backoff,
        bm = cfg.aggregator.max_backoff,
        smax = cfg.spool.max_bytes,
        sseg = cfg.spool.segment_bytes,
        linger = cfg.batch.linger,
    )
}

/// A committed Exchange setup sample with CRLF line ends, as Exchange writes it.
pub fn exchange_sample(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipeline/tests/data/exchange")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

/// The sample files, for tests that need several different contents.
pub const SAMPLES: &[&str] = &[
    "ExchangeSetup_MSI_1.log",
    "ExchangeSetup_InstallFromBin.log",
    "ExchangeSetup_Service_Disabled.log",
    "ExchangeSetup_Vdir_1.log",
    "ExchangeSetup_ServiceControl_Reverse.log",
    "ExchangeSetup_MSI_3.log",
];

/// A generated Windows Installer verbose log in UTF-16LE with BOM, as msiexec writes it.
pub fn msi_log(scenario: patchwatch_pipeline::sample::MsiScenario, filler: usize) -> Vec<u8> {
    let text = patchwatch_pipeline::sample::msi_verbose_log(&patchwatch_pipeline::sample::MsiLog {
        product: "Microsoft Exchange Server",
        version: "15.2.1544.4",
        scenario,
        date: "11/2/2023",
        start_seconds: 36_000,
        filler_blocks: filler,
    });
    patchwatch_pipeline::sample::utf16le_with_bom(&text)
}

/// Appends `bytes` to `path` (creating it), one `write` call.
pub fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    f.write_all(bytes).unwrap();
}

/// Appends `bytes` line by line (each line its own write), yielding now and then so the
/// agent reads while the file grows.
pub async fn append_lines(path: &Path, bytes: &[u8]) {
    for (i, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        append(path, line);
        if i % 25 == 24 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A folder `name` under `tmp` for the agent to watch, created empty.
pub fn watched_dir(tmp: &Path, name: &str) -> PathBuf {
    let dir = tmp.join(name);
    std::fs::create_dir(&dir).unwrap();
    dir
}

/// Starts an in-process agent with the built-in rules on the current tokio runtime.
pub fn start_agent(cfg: &AgentConfig) -> Agent {
    Agent::start(
        cfg,
        Arc::new(Catalog::builtin()),
        &tokio::runtime::Handle::current(),
    )
    .expect("agent starts")
}

/// Spawns the real `patchwatch agent --config <config>`, its stderr appended to `log` (see
/// [`log_tail`]) so that a failed test can show what the agent said.
pub fn spawn_agent(config: &Path, log: &Path) -> Child {
    agent_command(config, log)
        .spawn()
        .expect("spawning patchwatch agent")
}

/// The command [`spawn_agent`] runs, for a test that adds to its environment.
pub fn agent_command(config: &Path, log: &Path) -> Command {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_patchwatch"));
    c.args(["agent", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    c
}

/// The last 40 lines of the file at `p` (empty when it cannot be read), for panic messages.
pub fn log_tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Every [`SAMPLES`] run, one after the other, in one buffer.
pub fn all_samples() -> Vec<u8> {
    SAMPLES.iter().flat_map(|s| exchange_sample(s)).collect()
}
