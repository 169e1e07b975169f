//! The aggregator's own test harness: start an aggregator on loopback port 0 over SQLite (a temp
//! dir) or PostgreSQL (a fresh database on the server named by `PATCHWATCH_PG_URL`), drive it as
//! a collector, read its API, and run a test against each backend (`backend_tests!`).
//!
//! Generic helpers (waits, skips, message builders, server readers) come from
//! `patchwatch-testkit` and are re-exported here so that every module imports one place.

pub use patchwatch_testkit::alertmanager::{alerts as am_alerts, hosts_of};
pub use patchwatch_testkit::build::{batch, batch_of, finding, fresh, host, run_update};
pub use patchwatch_testkit::{
    env_or_skip, eventually, free_port, lines_with, now_ns, run_token, WAIT,
};

use std::net::SocketAddr;

use patchwatch_aggregator::config::StoreBackend;
use patchwatch_aggregator::{serve, Config, RunningAggregator};
use patchwatch_proto::ingest_client::IngestClient;
use patchwatch_proto::{Ack, Batch};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Streaming;

/// Which store an aggregator under test uses.
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
    config.grpc.shutdown_grace = patchwatch_config::Duration::from_secs(5);
    if backend == Backend::Postgres {
        let url = patchwatch_testkit::postgres::database().await?;
        config.store.backend = StoreBackend::Postgres;
        config.store.postgres.url = Some(patchwatch_config::Secret::inline(url));
        config.store.postgres.pool_size = 8;
    }
    Some((config, dir))
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

/// Fetches the sign-in form of `base` and returns its CSRF cookie (`name=value`) and the
/// form's `csrf` field, which a sign-in must send back together.
pub async fn sign_in_form(http: &reqwest::Client, base: &str) -> (String, String) {
    let r = http.get(format!("{base}/login")).send().await.unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = r.text().await.unwrap();
    let field = page
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf field")
        .to_owned();
    (cookie, field)
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
