//! Fleet-scale ingest: N simulated collectors, each with its own token and host, streaming
//! findings and run updates over gRPC with TLS to one aggregator, while the dashboard and API
//! are read; measures findings acknowledged per second, ack latency, page latency, and the
//! aggregator's memory, CPU and descriptors.
//!
//! Every collector is one `Ingest` stream with at most `inflight` unacknowledged batches, as
//! the agent's delivery keeps them. Load is open (`rate` findings/s across the fleet, each
//! collector sending on its own clock with a random phase) or closed (`rate` 0: each sends
//! as soon as it may). Connections are one per collector by default, as a fleet has them, or
//! shared (`connections`), HTTP/2 multiplexing several collectors' streams.
//!
//! Latency is per batch, from handing it to the stream to its ack, so it includes queueing
//! behind the collector's other batches. Figures cover the window after `warmup` until the
//! collectors stop sending; batches still in flight then are waited for and counted in the
//! totals.

pub mod server;
pub mod workload;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt as _;
use patchwatch_proto::ingest_client::IngestClient;
use patchwatch_proto::Batch;
use tokio::sync::mpsc;
use tokio::time::Instant as TokioInstant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use workload::{Collector, Workload};

/// How the fleet behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// Sending time, after the connections are up.
    pub duration: Duration,
    /// Start of the measured window, from the start of sending.
    pub warmup: Duration,
    /// Findings per second across the fleet; 0 sends as fast as acks allow.
    pub rate: u64,
    /// Findings per batch.
    pub batch: usize,
    /// Unacknowledged batches per collector.
    pub inflight: usize,
    /// TCP/TLS connections; 0 gives each collector its own.
    pub connections: usize,
    /// Gzip batches (the agent's default).
    pub gzip: bool,
    /// Pause between two dashboard/API requests of the reader.
    pub probe_pause: Duration,
    /// Connections being set up at once.
    pub connect_parallelism: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(30),
            warmup: Duration::from_secs(3),
            rate: 50_000,
            batch: 50,
            inflight: 4,
            connections: 0,
            gzip: false,
            probe_pause: Duration::from_millis(100),
            connect_parallelism: 64,
        }
    }
}

/// The aggregator the fleet streams to.
#[derive(Clone, Debug)]
pub struct Target {
    /// gRPC (TLS) address.
    pub grpc: SocketAddr,
    /// HTTP address (plaintext, loopback).
    pub http: SocketAddr,
    /// The CA the server certificate chains to (PEM).
    pub ca_pem: String,
    /// The aggregator's process, for memory, CPU and descriptors.
    pub pid: u32,
}

/// Latency percentiles of one kind of request.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    /// Requests measured.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Latency {
    fn of(mut v: Vec<Duration>) -> Self {
        v.sort_unstable();
        let at = |p: f64| {
            v.get(((v.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        Self {
            count: v.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: v.last().copied().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} requests)",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.count
        )
    }
}

/// What a fleet run measured.
#[derive(Debug, Default)]
pub struct Report {
    /// Time to set up every connection and stream.
    pub connect: Duration,
    /// Streams opened.
    pub streams: usize,
    /// Collectors whose stream failed, by error (first line), with counts.
    pub failures: BTreeMap<String, usize>,
    /// Findings handed to streams.
    pub sent_findings: u64,
    /// Findings in acknowledged batches.
    pub acked_findings: u64,
    /// Items the aggregator rejected in acks.
    pub rejected_items: u64,
    /// The measured window.
    pub window: Duration,
    /// Findings acknowledged within the window.
    pub window_findings: u64,
    /// Ack latency of batches acknowledged within the window.
    pub ack: Latency,
    /// Reader latency by path, within the window.
    pub pages: BTreeMap<String, Latency>,
    /// Reader requests that failed or were not 200, by path.
    pub page_errors: BTreeMap<String, usize>,
    /// Largest resident set of the aggregator sampled during the run, bytes.
    pub rss_peak: u64,
    /// The aggregator's resident high-water mark (VmHWM), bytes.
    pub rss_hwm: u64,
    /// Most open descriptors of the aggregator sampled during the run.
    pub fds_peak: usize,
    /// Aggregator CPU seconds during sending and draining.
    pub server_cpu: f64,
    /// This process's CPU seconds during sending and draining (the fleet and the reader; the
    /// aggregator too when it runs in process).
    pub client_cpu: f64,
    /// Wall time of sending and draining.
    pub wall: Duration,
}

impl Report {
    /// Findings per second acknowledged within the window.
    pub fn rate(&self) -> f64 {
        self.window_findings as f64 / self.window.as_secs_f64().max(1e-9)
    }
}

/// What one collector saw.
#[derive(Default)]
struct Seen {
    sent: u64,
    acked: u64,
    rejected: u64,
    /// (ack time, latency, findings) of each acknowledged batch.
    acks: Vec<(Instant, Duration, usize)>,
    error: Option<String>,
}

/// Connects the fleet, streams for `opts.duration` while reading the dashboard and API, and
/// waits for every batch in flight to be acknowledged.
///
/// # Errors
/// The TLS configuration is refused; failures of single collectors are reported instead.
pub async fn run(
    target: &Target,
    fleet: &[Collector],
    workload: Arc<Workload>,
    opts: &Options,
) -> Result<Report> {
    let mut report = Report::default();
    let endpoint = Endpoint::from_shared(format!("https://{}", target.grpc))?
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&target.ca_pem))
                .domain_name("localhost"),
        )
        .context("client TLS")?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(30))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);

    // Connections first, so the clock measures streaming, not handshakes.
    let t0 = Instant::now();
    let n_conn = if opts.connections == 0 {
        fleet.len()
    } else {
        opts.connections.min(fleet.len()).max(1)
    };
    let channels: Vec<Result<Channel, String>> = futures::stream::iter(0..n_conn)
        .map(|_| {
            let ep = endpoint.clone();
            async move { ep.connect().await.map_err(|e| error_chain(&e)) }
        })
        .buffered(opts.connect_parallelism.max(1))
        .collect()
        .await;

    let mut streams = Vec::with_capacity(fleet.len());
    let opened: Vec<_> = futures::stream::iter(fleet.iter().enumerate())
        .map(|(i, c)| {
            let channel = channels[i % n_conn].clone();
            let gzip = opts.gzip;
            let inflight = opts.inflight;
            async move {
                let channel = channel?;
                open_stream(channel, c, inflight, gzip)
                    .await
                    .map_err(|e| format!("{e:#}"))
            }
        })
        .buffered(opts.connect_parallelism.max(1))
        .collect()
        .await;
    for (c, o) in fleet.iter().zip(opened) {
        match o {
            Ok(s) => streams.push((c.clone(), s)),
            Err(e) => *report.failures.entry(first_line(&e)).or_default() += 1,
        }
    }
    report.connect = t0.elapsed();
    report.streams = streams.len();

    let server_cpu0 = server::cpu_seconds(target.pid);
    let client_cpu0 = server::cpu_seconds(std::process::id());
    let start = Instant::now();
    let warm = start + opts.warmup.min(opts.duration);
    let end = start + opts.duration;
    let interval = if opts.rate == 0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(streams.len() as f64 * opts.batch as f64 / opts.rate as f64)
    };

    let stop_sampling = tokio_util::sync::CancellationToken::new();
    let sampler = tokio::spawn(sample(target.pid, stop_sampling.clone()));
    let prober = tokio::spawn(probe(target.http, warm, end, opts.probe_pause));
    let mut tasks = Vec::with_capacity(streams.len());
    for (c, (tx, acks)) in streams {
        let workload = Arc::clone(&workload);
        let opts = opts.clone();
        let phase = interval.mul_f64(rand::random::<f64>());
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            if let Err(e) = stream_load(
                &c,
                &workload,
                &opts,
                tx,
                acks,
                &mut seen,
                start + phase,
                end,
                interval,
            )
            .await
            {
                seen.error = Some(format!("{e:#}"));
            }
            seen
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        let seen = t.await?;
        report.sent_findings += seen.sent;
        report.acked_findings += seen.acked;
        report.rejected_items += seen.rejected;
        if let Some(e) = seen.error {
            *report.failures.entry(first_line(&e)).or_default() += 1;
        }
        for (at, lat, n) in seen.acks {
            if at >= warm && at <= end {
                report.window_findings += n as u64;
                latencies.push(lat);
            }
        }
    }
    report.wall = start.elapsed();
    report.server_cpu = server::cpu_seconds(target.pid) - server_cpu0;
    report.client_cpu = server::cpu_seconds(std::process::id()) - client_cpu0;
    report.window = end.saturating_duration_since(warm);
    report.ack = Latency::of(latencies);
    stop_sampling.cancel();
    (report.rss_peak, report.fds_peak) = sampler.await?;
    let (pages, errors) = prober.await?;
    report.pages = pages
        .into_iter()
        .map(|(p, v)| (p.to_owned(), Latency::of(v)))
        .collect();
    report.page_errors = errors.into_iter().map(|(p, n)| (p.to_owned(), n)).collect();
    report.rss_hwm = server::rss(target.pid).map_or(0, |(_, hwm)| hwm);
    Ok(report)
}

type AckStream = tonic::Streaming<patchwatch_proto::Ack>;

async fn open_stream(
    channel: Channel,
    c: &Collector,
    inflight: usize,
    gzip: bool,
) -> Result<(mpsc::Sender<Batch>, AckStream)> {
    let mut client = IngestClient::new(channel);
    if gzip {
        client = client
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip);
    }
    let (tx, rx) = mpsc::channel::<Batch>(inflight.max(1));
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {}", c.token).parse()?);
    let acks = client.ingest(request).await?.into_inner();
    Ok((tx, acks))
}

/// One collector's stream: sends on its clock while it may, reads acks, then waits for the
/// batches still in flight (at most 60 s) and closes its side.
#[allow(clippy::too_many_arguments)] // one call site; the values are this stream's schedule
async fn stream_load(
    c: &Collector,
    workload: &Workload,
    opts: &Options,
    tx: mpsc::Sender<Batch>,
    mut acks: AckStream,
    seen: &mut Seen,
    first: Instant,
    end: Instant,
    interval: Duration,
) -> Result<()> {
    let drain_deadline = end + Duration::from_secs(60);
    let mut next = first;
    let mut sequence = 0u64;
    let mut sent_at: HashMap<u64, (Instant, usize)> = HashMap::new();
    loop {
        let now = Instant::now();
        if now >= end && sent_at.is_empty() {
            break;
        }
        anyhow::ensure!(
            now < drain_deadline,
            "{} batches unacknowledged 60 s after sending stopped",
            sent_at.len()
        );
        let may_send = now < end && sent_at.len() < opts.inflight;
        let wake = if now < end { end } else { drain_deadline };
        tokio::select! {
            biased;
            ack = acks.message() => {
                let ack = ack?.context("the aggregator ended the stream")?;
                let (at, n) = sent_at
                    .remove(&ack.sequence)
                    .with_context(|| format!("ack for unknown sequence {}", ack.sequence))?;
                let now = Instant::now();
                seen.acks.push((now, now - at, n));
                seen.acked += n as u64;
                seen.rejected += ack.rejected.len() as u64;
            }
            () = tokio::time::sleep_until(TokioInstant::from_std(next)), if may_send => {
                sequence += 1;
                let batch = workload.batch(c, sequence, opts.batch);
                sent_at.insert(sequence, (Instant::now(), opts.batch));
                seen.sent += opts.batch as u64;
                tx.send(batch).await.context("the stream closed")?;
                // Behind schedule (acks slower than the rate), it catches up by at most one
                // batch rather than bursting.
                next = (next + interval).max(Instant::now().checked_sub(interval).unwrap_or(next));
            }
            () = tokio::time::sleep_until(TokioInstant::from_std(wake)) => {}
        }
    }
    drop(tx);
    // The aggregator ends its side once ours is closed and everything is acknowledged.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = acks.message().await {}
    })
    .await;
    Ok(())
}

/// Largest resident set and descriptor count of `pid`, sampled every 250 ms until `stop`.
async fn sample(pid: u32, stop: tokio_util::sync::CancellationToken) -> (u64, usize) {
    let (mut rss, mut fds) = (0, 0);
    loop {
        if let Some((now, _)) = server::rss(pid) {
            rss = rss.max(now);
        }
        fds = fds.max(server::open_fds(pid));
        tokio::select! {
            () = stop.cancelled() => return (rss, fds),
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// The pages a reader of the dashboard loads, in turn.
pub const PAGES: [&str; 3] = ["/", "/api/v1/hosts", "/api/v1/findings"];

type PageTimes = (
    BTreeMap<&'static str, Vec<Duration>>,
    BTreeMap<&'static str, usize>,
);

/// One reader loading [`PAGES`] in turn from `warm` to `end`, a pause between requests.
async fn probe(http: SocketAddr, warm: Instant, end: Instant, pause: Duration) -> PageTimes {
    let client = reqwest::Client::new();
    let (mut times, mut errors): PageTimes = Default::default();
    tokio::time::sleep_until(TokioInstant::from_std(warm)).await;
    'outer: loop {
        for path in PAGES {
            if Instant::now() >= end {
                break 'outer;
            }
            let t = Instant::now();
            let ok = match client
                .get(format!("http://{http}{path}"))
                .timeout(Duration::from_secs(30))
                .send()
                .await
            {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            if ok {
                times.entry(path).or_default().push(t.elapsed());
            } else {
                *errors.entry(path).or_default() += 1;
            }
            tokio::time::sleep(pause).await;
        }
    }
    (times, errors)
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::server::{config_toml, free_addr, write_config, Aggregator, Backend, Pki, Setup};
    use super::*;

    /// 20 collectors for 2 s against an in-process aggregator on SQLite, over TLS with a
    /// token each: every finding sent is acknowledged and stored, and each host is bound to
    /// its collector. Counts, not times.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_sent_finding_is_acked_and_stored() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate().unwrap();
        let fleet: Vec<Collector> = (0..20).map(|i| Collector::new(i, 7)).collect();
        let (grpc, http) = (free_addr().unwrap(), free_addr().unwrap());
        let setup = Setup {
            grpc,
            http,
            backend: Backend::Sqlite {
                synchronous: "full".into(),
            },
            max_streams: 64,
            configured_hosts: false,
        };
        let toml = config_toml(dir.path(), &fleet, &setup);
        let config = write_config(dir.path(), &pki, &toml).unwrap();
        let agg = Aggregator::in_process(&config).await.unwrap();
        let target = Target {
            grpc,
            http,
            ca_pem: pki.ca.clone(),
            pid: agg.pid(),
        };
        let opts = Options {
            duration: Duration::from_secs(2),
            warmup: Duration::ZERO,
            rate: 4_000,
            batch: 10,
            ..Options::default()
        };
        let report = run(&target, &fleet, Arc::new(Workload::from_samples()), &opts)
            .await
            .unwrap();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(report.streams, 20);
        assert!(report.sent_findings >= 20 * 10, "{report:?}");
        assert_eq!(report.acked_findings, report.sent_findings);
        assert_eq!(report.rejected_items, 0);
        assert!(report.page_errors.is_empty(), "{:?}", report.page_errors);
        assert!(report.rss_peak > 0 && report.fds_peak > 0, "{report:?}");

        let store = agg.store().unwrap();
        let (mut stored, mut before) = (0u64, None);
        loop {
            let page = store
                .findings(patchwatch_aggregator::model::FindingFilter {
                    before_seq: before,
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .unwrap();
            stored += page.items.len() as u64;
            match page.next_cursor {
                Some(c) => before = Some(c),
                None => break,
            }
        }
        assert_eq!(stored, report.sent_findings);
        let hosts = store.hosts(None).await.unwrap();
        assert_eq!(hosts.len(), 20);
        for h in &hosts {
            let n: usize = h.hostname.trim_start_matches("EXF").parse().unwrap();
            assert_eq!(
                h.collector_id, fleet[n].id,
                "{} is bound to its collector",
                h.hostname
            );
        }
        agg.stop().await.unwrap();
    }
}
