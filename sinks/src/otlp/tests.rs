//! Wire compatibility: a real `LogsService` server (opentelemetry-proto's generated server
//! types) on loopback receives the export.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use patchwatch_proto::Severity;
use tonic::{Request, Response, Status};

use super::*;
use crate::encoding::sample_finding;
use crate::testutil::{fast_retry, quick_batch};

#[derive(Default, Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<ExportLogsServiceRequest>>>,
    headers: Arc<Mutex<Vec<tonic::metadata::MetadataMap>>>,
    /// Answers to give, in order; then full success.
    script: Arc<Mutex<Vec<Result<i64, Status>>>>,
}

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.headers
            .lock()
            .unwrap()
            .push(request.metadata().clone());
        self.got.lock().unwrap().push(request.into_inner());
        let next = {
            let mut s = self.script.lock().unwrap();
            if s.is_empty() {
                Ok(0)
            } else {
                s.remove(0)
            }
        };
        let rejected = next?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: "severity too low".into(),
            }),
        }))
    }
}

async fn start(rx: Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(
                LogsServiceServer::new(rx)
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap()
    });
    format!("http://{addr}")
}

fn config(url: &str) -> OtlpConfig {
    let mut c: OtlpConfig = toml::from_str(&format!(
        "endpoint = {url:?}\ntoken = \"tkn\"\nheaders = {{ \"x-tenant\" = \"exch\" }}\n"
    ))
    .unwrap();
    c.batch = quick_batch(10);
    c.retry = fast_retry();
    c
}

fn attr<'a>(
    attrs: &'a [opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

#[tokio::test]
async fn export_reaches_generated_server_with_resource_and_attributes() {
    let rx = Receiver::default();
    let url = start(rx.clone()).await;
    let (sink, hc) = build("otel", &config(&url)).unwrap();
    hc.await.unwrap();
    let r = sink
        .send(vec![
            sample_finding("f1", "EXCH-0042", Severity::High, "EXCH01"),
            sample_finding("f2", "EXCH-0042", Severity::Critical, "EXCH02"),
            sample_finding("f3", "MSI-1603", Severity::Low, "EXCH01"),
        ])
        .await
        .wait()
        .await;
    assert_eq!(r.delivered, 3);
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let rl = &got[0].resource_logs;
    assert_eq!(rl.len(), 2, "one ResourceLogs per host");
    let res = rl[0].resource.as_ref().unwrap();
    assert_eq!(
        attr(&res.attributes, "host.name"),
        Some(&Value::StringValue("EXCH01".into()))
    );
    assert_eq!(
        attr(&res.attributes, "service.name"),
        Some(&Value::StringValue("patchwatch".into()))
    );
    let recs = &rl[0].scope_logs[0].log_records;
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].severity_number, 18);
    assert_eq!(recs[1].severity_number, 13);
    assert_eq!(recs[0].event_name, "patchwatch.finding");
    assert_eq!(recs[0].time_unix_nano, 1_763_702_881_123_456_000);
    assert_eq!(
        attr(&recs[0].attributes, "security_rule.uuid"),
        Some(&Value::StringValue("EXCH-0042".into()))
    );
    assert_eq!(
        attr(&recs[0].attributes, "error.type"),
        Some(&Value::StringValue("0x80070643".into()))
    );
    assert_eq!(
        attr(&recs[0].attributes, "patchwatch.line_number"),
        Some(&Value::IntValue(18231))
    );
    let md = rx.headers.lock().unwrap()[0].clone();
    assert_eq!(md.get("authorization").unwrap(), "Bearer tkn");
    assert_eq!(md.get("x-tenant").unwrap(), "exch");
    assert_eq!(md.get("grpc-encoding").unwrap(), "gzip");
}

#[tokio::test]
async fn partial_success_is_counted_and_not_retried_unavailable_is_retried() {
    let rx = Receiver::default();
    rx.script
        .lock()
        .unwrap()
        .extend([Err(Status::unavailable("restarting")), Ok(2)]);
    let url = start(rx.clone()).await;
    let (sink, _) = build("otel", &config(&url)).unwrap();
    let batch: Vec<_> = (0..5)
        .map(|i| sample_finding(&format!("f{i}"), "R", Severity::Info, "H"))
        .collect();
    let r = sink.send(batch).await.wait().await;
    assert_eq!((r.delivered, r.rejected, r.failed), (3, 2, 0));
    assert_eq!(
        rx.got.lock().unwrap().len(),
        2,
        "one retry after UNAVAILABLE, none after partial success"
    );

    rx.script
        .lock()
        .unwrap()
        .push(Err(Status::invalid_argument("bad")));
    let r = sink
        .send(vec![sample_finding("x", "R", Severity::Info, "H")])
        .await
        .wait()
        .await;
    assert_eq!(r.failed, 1);
    assert_eq!(
        rx.got.lock().unwrap().len(),
        3,
        "INVALID_ARGUMENT is not retried"
    );
}

#[tokio::test]
async fn collector_down_at_start_is_retried_until_it_comes_up() {
    // Reserve a port, release it, start the sink against it, then start the server there.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let mut cfg = config(&format!("http://{addr}"));
    cfg.retry.max_retries = None;
    let (sink, hc) = build("otel", &cfg).unwrap();
    assert!(hc.await.is_err());
    let receipt = sink
        .send(vec![sample_finding("f1", "R", Severity::High, "H")])
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let rx = Receiver::default();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let svc = rx.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(
                LogsServiceServer::new(svc)
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap()
    });
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), receipt.wait())
        .await
        .expect("delivered once the collector is up");
    assert_eq!(r.delivered, 1, "{r:?} {:?}", sink.health());
    assert_eq!(rx.got.lock().unwrap().len(), 1);
}
