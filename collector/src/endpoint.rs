//! The agent's own HTTP endpoint on `metrics_listen`: `/metrics` (Prometheus text),
//! `/healthz` (the agent's [`HealthReport`](crate::health::HealthReport) as JSON: 200 when
//! every part is ok, 503 with the reasons otherwise) and `/status` (an
//! [`AgentStatus`](crate::status::AgentStatus) as JSON).
//!
//! A deliberately small HTTP/1.1 responder: one request per connection, GET only, a request
//! head of at most 8 KiB. Scrapers and probes need nothing more, and the agent-only build
//! stays free of an HTTP server stack.

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use std::collections::BTreeMap;

use crate::health::AgentHealth;
use crate::spool::DEFAULT_CONSUMER;
use crate::status::{AgentStatus, AggregatorStatus, ConsumerStatus, SpoolStatus};

/// Largest request head read; anything longer is refused.
const MAX_HEAD: usize = 8 * 1024;
/// A client that sends no complete request head within this is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How often histogram and summary buckets are aged (what the exporter's own listener does).
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder for this process and describes the agent's metrics.
///
/// # Errors
/// Another recorder is installed already.
pub fn install_recorder() -> Result<PrometheusHandle, metrics::SetRecorderError<impl Sized>> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            crate::telemetry::LATENCY_BUCKETS,
        )
        .expect("the latency buckets are not empty")
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    crate::telemetry::describe();
    Ok(handle)
}

/// Serves `/metrics` from `metrics` and `/healthz` from `health` (503 "starting" until it is
/// set) on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Option<PrometheusHandle>,
    health: tokio::sync::watch::Receiver<Option<AgentHealth>>,
    shutdown: CancellationToken,
) {
    let mut upkeep = tokio::time::interval(UPKEEP);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = upkeep.tick() => {
                if let Some(m) = &metrics {
                    m.run_upkeep();
                }
            }
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (metrics, health) = (metrics.clone(), health.borrow().clone());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(READ_TIMEOUT, answer(stream, metrics, health)).await;
                });
            }
        }
    }
}

/// The `/status` document of a running agent.
fn status_of(h: &AgentHealth) -> AgentStatus {
    let report = h.report();
    let state = |consumer: &str| {
        report
            .reason(&format!("delivery:{consumer}"))
            .map_or_else(|| "ok".to_owned(), str::to_owned)
    };
    let pending: BTreeMap<String, u64> = h.pending().into_iter().collect();
    let aggregator = pending.get(DEFAULT_CONSUMER).map(|&n| AggregatorStatus {
        connected: crate::telemetry::is_connected(),
        last_ack_age_seconds: crate::telemetry::last_ack_age(),
        pending_records: n,
        state: state(DEFAULT_CONSUMER),
    });
    let sinks = pending
        .iter()
        .filter_map(|(c, &n)| {
            let name = c.strip_prefix("sink:")?;
            Some(ConsumerStatus {
                name: name.to_owned(),
                pending_records: n,
                state: state(c),
            })
        })
        .collect();
    let (bytes, max_bytes) = h.spool_bytes();
    AgentStatus {
        health: report.status(),
        files: h.board().files(),
        spool: SpoolStatus {
            bytes,
            max_bytes,
            pending_records: pending,
        },
        aggregator,
        sinks,
    }
}

async fn answer(
    mut stream: tokio::net::TcpStream,
    metrics: Option<PrometheusHandle>,
    health: Option<AgentHealth>,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split(|b| *b == b'?').next().unwrap_or_default();
    let (status, kind, body) = match (method, path) {
        (b"GET", b"/metrics") => match &metrics {
            Some(m) => {
                if let Some(h) = &health {
                    crate::telemetry::refresh(&h.pending());
                }
                ("200 OK", "text/plain; version=0.0.4", m.render())
            }
            None => (
                "404 Not Found",
                "text/plain",
                "no metrics recorder\n".into(),
            ),
        },
        (b"GET", b"/healthz") => match &health {
            Some(h) => {
                let report = h.report();
                let status = if report.is_ok() {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                (status, "application/json", report.to_json())
            }
            None => (
                "503 Service Unavailable",
                "application/json",
                r#"{"status":"starting","problems":{}}"#.into(),
            ),
        },
        (b"GET", b"/status") => match &health {
            Some(h) => ("200 OK", "application/json", status_of(h).to_json()),
            None => (
                "503 Service Unavailable",
                "application/json",
                r#"{"health":"starting"}"#.into(),
            ),
        },
        (b"GET", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics, /healthz or /status\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
