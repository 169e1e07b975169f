//! Test harness: start an aggregator on loopback port 0 over SQLite (a temp dir) or PostgreSQL
//! (a fresh database on the server named by `PATCHWATCH_PG_URL`), and drive it as a collector.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use patchwatch_aggregator::config::StoreBackend;
use patchwatch_aggregator::{serve, Config, RunningAggregator};
use patchwatch_proto::ingest_client::IngestClient;
use patchwatch_proto::{Ack, Batch, Finding, HostInfo, Remediation, RunUpdate};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Streaming;

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A configuration for `backend` with its own empty store, or `None` when the backend is not
/// available here (PostgreSQL without `PATCHWATCH_PG_URL` outside CI).
pub async fn config(backend: Backend) -> Option<(Config, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.grpc.listen = "127.0.0.1:0".parse().unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.grpc.shutdown_grace_seconds = 5;
    if backend == Backend::Postgres {
        let url = pg_database().await?;
        config.store.backend = StoreBackend::Postgres;
        config.store.postgres.url = Some(url);
        config.store.postgres.pool_size = 8;
    }
    Some((config, dir))
}

/// A fresh PostgreSQL database for one test, or `None` (skipped) without `PATCHWATCH_PG_URL`.
pub async fn pg_database() -> Option<String> {
    let Ok(url) = std::env::var("PATCHWATCH_PG_URL") else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("PATCHWATCH_PG_URL is not set; CI must run `eval \"$(bash .ci/setup-postgres.sh)\"` first");
        }
        eprintln!(
            "skipped: PATCHWATCH_PG_URL is not set (run `eval \"$(bash .ci/setup-postgres.sh)\"`)"
        );
        return None;
    };
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to PATCHWATCH_PG_URL: {e}"));
    tokio::spawn(conn);
    let name = format!("pw_test_{}_{}", std::process::id(), rand::random::<u32>());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    Some(format!("{base}/{name}"))
}

/// Starts an aggregator on fresh loopback ports.
pub async fn start(config: Config) -> (RunningAggregator, CancellationToken) {
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = CancellationToken::new();
    let running = serve(config, grpc, http, shutdown.clone())
        .await
        .expect("aggregator starts");
    (running, shutdown)
}

pub async fn client(addr: SocketAddr) -> IngestClient<Channel> {
    IngestClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

/// One collector stream: send batches, read acks.
pub struct CollectorStream {
    pub tx: mpsc::Sender<Batch>,
    pub acks: Streaming<Ack>,
}

impl CollectorStream {
    pub async fn open<T>(client: &mut IngestClient<T>) -> Result<Self, tonic::Status>
    where
        T: tonic::client::GrpcService<tonic::body::Body>,
        T::Error: Into<tonic::codegen::StdError>,
        T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
        <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
    {
        let (tx, rx) = mpsc::channel(64);
        let acks = client.ingest(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Self { tx, acks })
    }

    pub async fn send(&self, batch: Batch) {
        self.tx.send(batch).await.expect("stream open");
    }

    /// The next ack, or the status that ended the stream.
    pub async fn next(&mut self) -> Result<Option<Ack>, tonic::Status> {
        tokio::time::timeout(WAIT, self.acks.message())
            .await
            .expect("ack within the time limit")
    }

    /// Sends `batch` and waits for its ack.
    pub async fn roundtrip(&mut self, batch: Batch) -> Ack {
        let seq = batch.sequence;
        self.send(batch).await;
        let ack = self
            .next()
            .await
            .expect("ack, not a status")
            .expect("stream not closed");
        assert_eq!(ack.sequence, seq);
        ack
    }
}

pub fn host(name: &str) -> HostInfo {
    HostInfo {
        hostname: name.into(),
        fqdn: format!("{}.contoso.local", name.to_lowercase()),
        os: "Windows Server 2019".into(),
        agent_version: "0.1.0".into(),
        time_zone: "W. Europe Standard Time".into(),
        utc_offset_seconds: 3600,
    }
}

pub fn finding(id: &str, hostname: &str, rule: &str, severity: i32, run: &str) -> Finding {
    Finding {
        id: id.into(),
        rule_id: rule.into(),
        rule_version: 2,
        title: format!("{rule}: setup failed"),
        severity,
        host: Some(host(hostname)),
        log_kind: 1,
        source_path: r"C:\ExchangeSetupLogs\ExchangeSetup.log".into(),
        byte_offset: 4096,
        line_number: 77,
        run_id: run.into(),
        event_time_unix_nano: 1_763_700_000_000_000_000,
        observed_time_unix_nano: 1_763_700_001_000_000_000,
        evidence: vec![
            "[11/21/2025 06:00:00.0000] [2] [ERROR] The following error was generated when \"$error.Clear();\"".into(),
            "[11/21/2025 06:00:00.0001] [2] [ERROR] Access to the path is denied.".into(),
        ],
        fields: [("error_code".to_owned(), "0x80070005".to_owned())].into_iter().collect(),
        remediation: Some(Remediation {
            summary: "Grant the setup account write access and rerun setup.".into(),
            steps: vec!["Check the ACL on the path.".into(), "Rerun Setup.exe /mode:Upgrade.".into()],
            links: vec!["https://learn.microsoft.com/exchange/troubleshoot".into()],
        }),
        labels: [("site".to_owned(), "dc1".to_owned())].into_iter().collect(),
        category: "permissions".into(),
        primary: false,
        ..Finding::default()
    }
}

pub fn run_update(run: &str, hostname: &str, outcome: i32, phase: &str, updated: i64) -> RunUpdate {
    RunUpdate {
        run_id: run.into(),
        host: hostname.into(),
        source_path: r"C:\ExchangeSetupLogs\ExchangeSetup.log".into(),
        log_kind: 1,
        run_index: 1,
        outcome,
        mode: "Upgrade".into(),
        product: "Microsoft Exchange Server 2019".into(),
        target_build: "15.2.1544.4".into(),
        installed_build: "15.2.1258.12".into(),
        phase: phase.into(),
        exit_code: None,
        primary_finding_id: String::new(),
        started_unix_nano: 1_763_699_000_000_000_000,
        updated_unix_nano: updated,
        last_line_unix_nano: updated,
    }
}

/// A batch of `n` findings `{prefix}-{i}` on `hostname`, plus one run update.
pub fn batch(collector: &str, sequence: u64, hostname: &str, prefix: &str, n: usize) -> Batch {
    let run = format!("{hostname}-run-1");
    Batch {
        collector_id: collector.into(),
        sequence,
        findings: (0..n)
            .map(|i| {
                finding(
                    &format!("{prefix}-{i}"),
                    hostname,
                    &format!("EXCH-{:03}", i % 7),
                    (i % 5) as i32 + 1,
                    &run,
                )
            })
            .collect(),
        run_updates: vec![run_update(
            &run,
            hostname,
            1,
            &format!("phase {sequence}"),
            1_763_700_000_000_000_000 + sequence as i64,
        )],
        host: Some(host(hostname)),
    }
}

/// GET a JSON document from the aggregator's HTTP API.
pub async fn get_json(http: SocketAddr, path: &str) -> serde_json::Value {
    let resp = reqwest::get(format!("http://{http}{path}"))
        .await
        .expect("http get");
    assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
    resp.json().await.expect("json")
}

/// Every finding id the store holds (pages through the API).
pub async fn all_finding_ids(http: SocketAddr) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let path = match cursor {
            Some(c) => format!("/api/v1/findings?limit=1000&cursor={c}"),
            None => "/api/v1/findings?limit=1000".to_owned(),
        };
        let page = get_json(http, &path).await;
        for f in page["items"].as_array().unwrap() {
            ids.push(f["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    ids.sort();
    ids
}

/// The variable's value; when unset, panics under CI and skips otherwise.
pub fn env_or_skip(var: &str, script: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) => Some(v),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set; CI must run `eval \"$(bash .ci/{script})\"` first")
        }
        Err(_) => {
            eprintln!("skipped: {var} is not set (run `eval \"$(bash .ci/{script})\"`)");
            None
        }
    }
}

/// Polls `check` until it returns `Some`, or panics after `limit` naming `what`.
pub async fn eventually<T>(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A token unique to this test run, so alerts and log lines of earlier runs do not count.
pub fn run_token() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// The current time in Unix nanoseconds.
pub fn now_ns() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap()
}

/// A [`finding`] observed now (windows and silences cover the present; its fixed times are
/// old).
pub fn fresh(id: &str, host: &str, rule: &str, severity: i32) -> Finding {
    let mut f = finding(id, host, rule, severity, &format!("{host}-run-1"));
    f.observed_time_unix_nano = now_ns();
    f
}

/// Batch `sequence` of collector `c1` with `findings` (at least one; the host is the first's).
pub fn batch_of(sequence: u64, findings: Vec<Finding>) -> Batch {
    Batch {
        collector_id: "c1".into(),
        sequence,
        host: findings[0].host.clone(),
        findings,
        run_updates: vec![],
    }
}

/// The alerts of `rule` in the Alertmanager at `base` (`GET /api/v2/alerts`).
pub async fn am_alerts(base: &str, rule: &str) -> Vec<serde_json::Value> {
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/v2/alerts"))
        .query(&[("filter", format!("rule_id=\"{rule}\""))])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.unwrap()
}

/// The `host` labels of `alerts`, sorted.
pub fn hosts_of(alerts: &[serde_json::Value]) -> Vec<String> {
    let mut h: Vec<String> = alerts
        .iter()
        .map(|a| a["labels"]["host"].as_str().unwrap_or("").to_owned())
        .collect();
    h.sort();
    h
}

/// The lines of the file at `path` that contain `needle` (none when it cannot be read).
pub fn lines_with(path: &Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Declares a test for each backend: `backend_tests!(name => body_fn);` where
/// `async fn body_fn(backend: Backend)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident => $body:ident;)+) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$body($crate::common::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$body($crate::common::Backend::Postgres).await;
                }
            )+
        }
    };
}
