//! Delivery against a real tonic `Ingest` server on 127.0.0.1:0.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patchwatch_collector::delivery::{self, BearerToken, DeliveryOptions, SpoolItem};
use patchwatch_collector::spool::{Spool, SpoolOptions};
use patchwatch_proto::ingest_server::{Ingest, IngestServer};
use patchwatch_proto::{Ack, Batch, Finding, HealthRequest, HealthResponse, HostInfo, RunUpdate};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status, Streaming};

#[derive(Default)]
struct Seen {
    /// Finding id → times received.
    received: HashMap<String, u32>,
    /// Finding ids in batches that were acknowledged.
    acked: HashMap<String, u32>,
    batches: u32,
    auth: Vec<String>,
    run_updates: u32,
}

#[derive(Clone)]
struct TestIngest {
    seen: Arc<Mutex<Seen>>,
    /// Break the first stream after this many batches: ack all but the last, then fail.
    break_after: Option<u32>,
    broken: Arc<Mutex<bool>>,
}

#[tonic::async_trait]
impl Ingest for TestIngest {
    type IngestStream = ReceiverStream<Result<Ack, Status>>;

    async fn ingest(
        &self,
        request: Request<Streaming<Batch>>,
    ) -> Result<Response<Self::IngestStream>, Status> {
        let auth = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        self.seen.lock().unwrap().auth.push(auth);
        let mut stream = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let me = self.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok(Some(batch)) = stream.message().await {
                n += 1;
                let ids: Vec<String> = batch.findings.iter().map(|f| f.id.clone()).collect();
                {
                    let mut s = me.seen.lock().unwrap();
                    s.batches += 1;
                    s.run_updates += batch.run_updates.len() as u32;
                    for id in &ids {
                        *s.received.entry(id.clone()).or_default() += 1;
                    }
                }
                let break_now = {
                    let mut broken = me.broken.lock().unwrap();
                    let hit = !*broken && me.break_after == Some(n);
                    if hit {
                        *broken = true;
                    }
                    hit
                };
                if break_now {
                    let _ = tx
                        .send(Err(Status::unavailable("test: stream dropped")))
                        .await;
                    return;
                }
                {
                    let mut s = me.seen.lock().unwrap();
                    for id in ids {
                        *s.acked.entry(id).or_default() += 1;
                    }
                }
                let ack = Ack {
                    sequence: batch.sequence,
                    accepted: (batch.findings.len() + batch.run_updates.len()) as u32,
                    rejected: vec![],
                    preflight_window: String::new(),
                };
                if tx.send(Ok(ack)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn health(&self, _: Request<HealthRequest>) -> Result<Response<HealthResponse>, Status> {
        Ok(Response::new(HealthResponse {
            serving: true,
            ..Default::default()
        }))
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    svc: TestIngest,
) -> tokio::sync::oneshot::Sender<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let svc = IngestServer::new(svc)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
    });
    stop_tx
}

fn service(break_after: Option<u32>) -> TestIngest {
    TestIngest {
        seen: Arc::default(),
        break_after,
        broken: Arc::default(),
    }
}

fn options(addr: SocketAddr) -> DeliveryOptions {
    let mut o = DeliveryOptions::new(
        format!("http://{addr}"),
        "collector-1",
        HostInfo {
            hostname: "EX01".into(),
            ..Default::default()
        },
    );
    o.max_batch_records = 7;
    o.linger = Duration::from_millis(5);
    o.max_in_flight = 3;
    o.backoff_initial = Duration::from_millis(20);
    o.backoff_max = Duration::from_millis(100);
    o.connect_timeout = Duration::from_secs(2);
    o.token = Some(BearerToken::new("s3cret"));
    o
}

fn fill(spool: &Spool, n: usize) {
    for i in 0..n {
        let item = SpoolItem::Finding(Box::new(Finding {
            id: format!("f{i}"),
            rule_id: "MSI-1603".into(),
            ..Default::default()
        }));
        spool.append(&item.encode()).unwrap();
    }
    let ru = SpoolItem::RunUpdate(Box::new(RunUpdate {
        run_id: "run-1".into(),
        ..Default::default()
    }));
    spool.append(&ru.encode()).unwrap();
}

async fn until_drained(spool: &Spool) {
    let target = spool.next_id();
    tokio::time::timeout(Duration::from_secs(10), async {
        while spool.first_unacked() < target {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("spool drained within 10 s");
}

fn open_spool(dir: &std::path::Path) -> Spool {
    Spool::open(SpoolOptions::new(dir)).unwrap().0
}

#[tokio::test]
async fn acks_remove_data_and_token_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path());
    fill(&spool, 25);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = service(None);
    let stop_server = serve(listener, svc.clone()).await;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(delivery::run(
        options(addr),
        spool.clone(),
        shutdown.clone(),
    ));
    until_drained(&spool).await;
    // Appends while running are picked up too.
    fill(&spool, 3);
    until_drained(&spool).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let _ = stop_server.send(());

    assert_eq!(spool.used_bytes(), 0, "acknowledged data left the disk");
    let s = svc.seen.lock().unwrap();
    assert_eq!(s.received.len(), 25);
    assert!(s.received.values().all(|&n| n <= 2));
    assert!(s
        .received
        .keys()
        .filter(|k| ["f0", "f1", "f2"].contains(&k.as_str()))
        .all(|k| s.received[k] == 2));
    assert_eq!(s.run_updates, 2);
    assert_eq!(s.auth, vec!["Bearer s3cret".to_string()]);
}

#[tokio::test]
async fn server_down_then_up_delivers_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path());
    fill(&spool, 40);
    // Reserve a port, then leave it closed while delivery starts.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(delivery::run(
        options(addr),
        spool.clone(),
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        spool.first_unacked(),
        0,
        "nothing acknowledged while the server is down"
    );
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let svc = service(None);
    let stop_server = serve(listener, svc.clone()).await;
    until_drained(&spool).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let _ = stop_server.send(());
    let s = svc.seen.lock().unwrap();
    assert_eq!(s.received.len(), 40);
    assert!(
        s.received.values().all(|&n| n == 1),
        "no duplicates: {:?}",
        s.received
    );
}

#[tokio::test]
async fn dropped_stream_resends_only_unacked_batches() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path());
    fill(&spool, 60);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = service(Some(3));
    let stop_server = serve(listener, svc.clone()).await;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(delivery::run(
        options(addr),
        spool.clone(),
        shutdown.clone(),
    ));
    until_drained(&spool).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let _ = stop_server.send(());
    let s = svc.seen.lock().unwrap();
    assert!(*svc.broken.lock().unwrap(), "the stream was broken once");
    assert_eq!(s.received.len(), 60, "everything delivered");
    assert_eq!(s.auth.len(), 2, "reconnected once");
    for (id, &n) in &s.received {
        assert_eq!(s.acked.get(id), Some(&1), "{id} acknowledged exactly once");
        // A duplicate is allowed only for an item whose first delivery was never acked.
        assert!(n <= 2, "{id} received {n} times");
    }
    let dups = s.received.values().filter(|&&n| n == 2).count();
    assert!(
        dups > 0 && dups <= 7 * 3,
        "duplicates only from unacked batches: {dups}"
    );
}
