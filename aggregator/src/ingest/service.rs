//! The `patchwatch.v1.Ingest` service: one bidirectional stream per collector, one `Ack` per
//! `Batch`, sent only after the batch is durable.
//!
//! Each stream runs as one task that reads batches, validates them, hands them to the store,
//! and sends acks as writes complete (possibly out of order). At most
//! `grpc.max_inflight_batches` batches of a stream are being stored at once; past that the
//! stream is simply not read, so HTTP/2 flow control pushes back on the collector.
//!
//! Memory across streams is bounded by a byte budget (`grpc.max_inflight_bytes`): a stream
//! reserves the size of its previous batch before reading the next, and a batch holds its
//! encoded size until it is acknowledged. A stream waiting for the budget is not read, so its
//! batches stay encoded in one HTTP/2 window and in the collector. A reservation unused for a
//! while is given back so idle streams do not sit on the budget; only a batch larger than
//! its reservation, or the first after such an idle spell, is decoded before the budget is
//! taken (at most one per stream). One authenticated collector may hold at most
//! `grpc.max_streams_per_collector` streams.
//!
//! A stream ends with a `Status` only for whole-stream problems (see [`super::status`]);
//! batches already in flight are still acknowledged first, so nothing durable goes unacked.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use patchwatch_proto::ingest_server::Ingest;
use patchwatch_proto::{Ack, Batch, HealthRequest, HealthResponse};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::owner::HostOwnership;
use super::status;
use super::validate::{validate_with, ItemRules, TimeBounds};
use crate::events::EventBus;
use crate::forward::Forwarder;
use crate::model::now_unix_nano;
use crate::routing::WindowSet;
use crate::store::Store;

/// Who is calling, as established by [`super::auth::GrpcAuth`].
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The collector id the bearer token (or the client certificate) stands for; `None` when
    /// the caller is not authenticated.
    pub collector_id: Option<String>,
    /// The id comes from a client certificate. A batch's own `collector_id` may then differ
    /// (certificates were not tied to it before); the certificate's identity is what is
    /// stored and what owns hosts.
    pub from_certificate: bool,
}

/// Limits of the ingest service.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// Streams open at once.
    pub max_streams: usize,
    /// Batches of one stream being stored at once.
    pub max_inflight_batches: usize,
    /// Largest accepted message; also what a stream reserves of the byte budget before
    /// reading a message.
    pub max_message_bytes: usize,
    /// Bytes of received batches held at once, across streams, until acknowledged.
    pub max_inflight_bytes: usize,
    /// Streams one authenticated collector may hold at once.
    pub max_streams_per_collector: usize,
}

/// The service implementation.
#[derive(Clone)]
pub struct IngestService {
    store: Arc<dyn Store>,
    events: EventBus,
    streams: Arc<Semaphore>,
    budget: Arc<Semaphore>,
    per_collector: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    limits: IngestLimits,
    shutdown: CancellationToken,
    windows: Option<WindowSet>,
    forwarder: Forwarder,
    ownership: HostOwnership,
    times: TimeBounds,
}

impl IngestService {
    /// A service storing into `store`, publishing to `events`, ending streams on `shutdown`.
    pub fn new(
        store: Arc<dyn Store>,
        events: EventBus,
        limits: IngestLimits,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            events,
            streams: Arc::new(Semaphore::new(limits.max_streams)),
            budget: Arc::new(Semaphore::new(
                limits.max_inflight_bytes.clamp(1, Semaphore::MAX_PERMITS),
            )),
            per_collector: Arc::default(),
            limits,
            shutdown,
            windows: None,
            forwarder: Forwarder::default(),
            ownership: HostOwnership::default(),
            times: TimeBounds::NONE,
        }
    }

    /// Accepts items from an authenticated collector only for the hosts it owns, and items
    /// whose timestamps lie within `times` of the aggregator's clock.
    pub fn with_item_rules(mut self, ownership: HostOwnership, times: TimeBounds) -> Self {
        self.ownership = ownership;
        self.times = times;
        self
    }

    /// Tags findings with the maintenance windows of `windows` before storing them, and wakes
    /// `forwarder` once their batch is durable (never waiting: the forwarding tasks read the
    /// findings from the store, see [`crate::forward`]).
    pub fn with_forwarding(mut self, windows: WindowSet, forwarder: Forwarder) -> Self {
        self.windows = Some(windows);
        self.forwarder = forwarder;
        self
    }
}

type AckResult = Result<Ack, Status>;

/// What a stream reserves of the byte budget before reading its first batch (more than a
/// collector's usual batch, so that it fits; the surplus is given back once it is read);
/// later batches reserve a little more than the one before.
const FIRST_ESTIMATE: u32 = 256 * 1024;

/// How long a stream holds a reservation while no batch arrives.
const RESERVATION_LEASE: std::time::Duration = std::time::Duration::from_millis(100);

#[tonic::async_trait]
impl Ingest for IngestService {
    type IngestStream = Pin<Box<dyn futures::Stream<Item = AckResult> + Send + 'static>>;

    async fn ingest(
        &self,
        request: Request<Streaming<Batch>>,
    ) -> Result<Response<Self::IngestStream>, Status> {
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or_default();
        let permit = Arc::clone(&self.streams)
            .try_acquire_owned()
            .map_err(|_| status::too_many_streams(self.limits.max_streams))?;
        let collector_slot = match &caller.collector_id {
            Some(id) => Some(self.collector_slot(id)?),
            None => None,
        };
        let peer = request.remote_addr();
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(self.limits.max_inflight_batches + 1);
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _collector_slot = collector_slot;
            let gauge = metrics::gauge!("patchwatch_aggregator_streams");
            gauge.increment(1.0);
            tracing::debug!(message = "Collector stream opened.", collector = ?caller.collector_id, ?peer);
            this.run_stream(caller, inbound, tx).await;
            gauge.decrement(1.0);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn health(
        &self,
        _request: Request<HealthRequest>,
    ) -> Result<Response<HealthResponse>, Status> {
        Ok(Response::new(HealthResponse {
            serving: !self.shutdown.is_cancelled(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            store: self.store.backend().to_owned(),
        }))
    }
}

/// One of a collector's stream slots; frees itself when the stream ends.
struct CollectorSlot {
    counts: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    id: String,
}

impl Drop for CollectorSlot {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .lock()
            .expect("the stream counts are never left poisoned");
        if let Some(n) = counts.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.id);
            }
        }
    }
}

impl IngestService {
    fn budget_bytes(&self) -> usize {
        self.limits
            .max_inflight_bytes
            .clamp(1, Semaphore::MAX_PERMITS)
    }

    fn collector_slot(&self, id: &str) -> Result<CollectorSlot, Status> {
        let mut counts = self
            .per_collector
            .lock()
            .expect("the stream counts are never left poisoned");
        let n = counts.entry(id.to_owned()).or_insert(0);
        if *n >= self.limits.max_streams_per_collector {
            metrics::counter!("patchwatch_aggregator_streams_refused_total", "reason" => "per_collector")
                .increment(1);
            return Err(status::too_many_collector_streams(
                id,
                self.limits.max_streams_per_collector,
            ));
        }
        *n += 1;
        Ok(CollectorSlot {
            counts: Arc::clone(&self.per_collector),
            id: id.to_owned(),
        })
    }

    async fn run_stream(
        &self,
        caller: Caller,
        mut inbound: Streaming<Batch>,
        tx: mpsc::Sender<AckResult>,
    ) {
        let mut pending: FuturesUnordered<BoxFuture<'static, AckResult>> = FuturesUnordered::new();
        let mut end: Option<Status> = None;
        let budget_bytes = u32::try_from(self.budget_bytes()).unwrap_or(u32::MAX);
        let mut waiting: Option<Batch> = None;
        let mut waiting_size: u32 = 1;
        // The budget for the next batch (the size of the last one) is taken before reading it,
        // so streams that find the budget spent leave their batches undecoded in HTTP/2
        // buffers (one window each) and in the collectors. A reservation not used within
        // `RESERVATION_LEASE` is given back and the stream reads without one, so idle streams
        // do not sit on the budget.
        let mut estimate: u32 = FIRST_ESTIMATE.clamp(1, budget_bytes);
        let mut reserved: Option<tokio::sync::OwnedSemaphorePermit> = None;
        let mut unreserved = false;
        let lease = tokio::time::sleep(RESERVATION_LEASE);
        tokio::pin!(lease);
        loop {
            let may_read = waiting.is_none() && pending.len() < self.limits.max_inflight_batches;
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    end = Some(status::shutting_down());
                    break;
                }
                Some(done) = pending.next(), if !pending.is_empty() => match done {
                    Ok(ack) => {
                        if tx.send(Ok(ack)).await.is_err() {
                            return; // The collector went away; unacked batches will be resent.
                        }
                    }
                    Err(s) => {
                        end = Some(s);
                        break;
                    }
                },
                permit = Arc::clone(&self.budget).acquire_many_owned(waiting_size),
                    if waiting.is_some() =>
                {
                    let Ok(held) = permit else {
                        break; // The budget is never closed.
                    };
                    let batch = waiting.take().expect("acquired only while a batch waits");
                    if let Err(s) = self.admit_held(&caller, batch, held, &mut pending) {
                        end = Some(s);
                        break;
                    }
                }
                permit = Arc::clone(&self.budget).acquire_many_owned(estimate),
                    if may_read && reserved.is_none() && !unreserved =>
                {
                    let Ok(held) = permit else {
                        break; // The budget is never closed.
                    };
                    reserved = Some(held);
                    lease.as_mut().reset(tokio::time::Instant::now() + RESERVATION_LEASE);
                }
                () = &mut lease, if may_read && reserved.is_some() => {
                    reserved = None;
                    unreserved = true;
                }
                msg = inbound.next(), if may_read && (reserved.is_some() || unreserved) =>
                match msg {
                    Some(Ok(batch)) => {
                        unreserved = false;
                        let size = u32::try_from(prost::Message::encoded_len(&batch))
                            .unwrap_or(u32::MAX)
                            .clamp(1, budget_bytes);
                        // A little over the last size, so the next batch usually fits; the
                        // surplus goes back as soon as the batch is read.
                        estimate = size.saturating_add(size / 4).min(budget_bytes);
                        // A batch a little larger than its reservation takes the rest if the
                        // budget has it now.
                        if let Some(held) = reserved.as_mut() {
                            let short = (size as usize).saturating_sub(held.num_permits());
                            if short > 0 {
                                let more = u32::try_from(short).unwrap_or(u32::MAX);
                                if let Ok(more) = Arc::clone(&self.budget).try_acquire_many_owned(more) {
                                    held.merge(more);
                                }
                            }
                        }
                        match reserved.take() {
                            Some(mut held) if held.num_permits() >= size as usize => {
                                drop(held.split(held.num_permits() - size as usize));
                                if let Err(s) = self.admit_held(&caller, batch, held, &mut pending) {
                                    end = Some(s);
                                    break;
                                }
                            }
                            // Larger than reserved, or read without a reservation: the
                            // reservation is given back (holding part of the budget while
                            // waiting for the rest could deadlock streams) and the whole size
                            // is waited for; the stream is not read further meanwhile.
                            _ => {
                                metrics::counter!("patchwatch_aggregator_batches_read_unreserved_total")
                                    .increment(1);
                                waiting_size = size;
                                waiting = Some(batch);
                            }
                        }
                    }
                    None => break,
                    Some(Err(s)) => {
                        end = Some(status::inbound_error(s, self.limits.max_message_bytes));
                        break;
                    }
                },
                _ = tx.closed() => return,
            }
        }
        drop(reserved);
        // Finish what is in flight, so every batch that became durable is acknowledged.
        while let Some(done) = pending.next().await {
            match done {
                Ok(ack) => {
                    let _ = tx.send(Ok(ack)).await;
                }
                Err(s) => {
                    end.get_or_insert(s);
                }
            }
        }
        if let Some(s) = end {
            tracing::debug!(message = "Collector stream ended with a status.", collector = ?caller.collector_id, code = ?s.code(), status = s.message());
            let _ = tx.send(Err(s)).await;
        }
    }

    /// Admits `batch`, holding `held` of the budget until it is acknowledged.
    fn admit_held(
        &self,
        caller: &Caller,
        batch: Batch,
        held: tokio::sync::OwnedSemaphorePermit,
        pending: &mut FuturesUnordered<BoxFuture<'static, AckResult>>,
    ) -> Result<(), Status> {
        let fut = self.admit(caller, batch)?;
        pending.push(
            async move {
                let ack = fut.await;
                drop(held);
                ack
            }
            .boxed(),
        );
        Ok(())
    }

    /// Validates a batch and starts storing it; the future resolves to its ack.
    fn admit(
        &self,
        caller: &Caller,
        mut batch: Batch,
    ) -> Result<BoxFuture<'static, AckResult>, Status> {
        let received = Instant::now();
        let collector_id = match &caller.collector_id {
            Some(id)
                if !caller.from_certificate
                    && !batch.collector_id.is_empty()
                    && batch.collector_id != *id =>
            {
                return Err(status::collector_mismatch(&batch.collector_id, id));
            }
            Some(id) => id.clone(),
            None => batch.collector_id.clone(),
        };
        let sequence = batch.sequence;
        if let Some(windows) = &self.windows {
            windows.tag_batch(&mut batch);
        }
        let ownership = &self.ownership;
        let owns = |host: &str| match &caller.collector_id {
            Some(id) => ownership.check(id, host),
            None => Ok(()),
        };
        // Only for a host the sender owns: a collector learns nothing of others' windows.
        let preflight_window = match (&self.windows, &batch.host) {
            (Some(windows), Some(host)) if owns(&host.hostname).is_ok() => {
                super::preflight::window_key(
                    windows,
                    &host.hostname,
                    time::OffsetDateTime::now_utc(),
                )
            }
            _ => String::new(),
        };
        let rules = ItemRules {
            owns: &owns,
            times: self.times,
        };
        let validated = validate_with(batch, collector_id, now_unix_nano(), &rules);
        let accepted = validated.accepted();
        let rejected = validated.rejected;
        let valid = validated.batch;
        metrics::counter!("patchwatch_aggregator_batches_received_total").increment(1);
        let ack = Ack {
            sequence,
            accepted,
            rejected,
            preflight_window,
        };
        if valid.rows() == 0 && valid.hosts.is_empty() {
            return Ok(futures::future::ready(Ok(ack)).boxed());
        }
        let store = Arc::clone(&self.store);
        let events = self.events.clone();
        let forwarder = self.forwarder.clone();
        Ok(async move {
            let hosts: Vec<String> = valid
                .hosts
                .iter()
                .map(|h| h.info.hostname.clone())
                .collect();
            let findings = valid.findings.len();
            match store.write_batch(valid).await {
                Ok(outcome) => {
                    let new = outcome.new_findings.len();
                    metrics::counter!("patchwatch_aggregator_findings_stored_total")
                        .increment(new as u64);
                    metrics::counter!("patchwatch_aggregator_findings_duplicate_total")
                        .increment(findings.saturating_sub(new) as u64);
                    // A replayed batch stores nothing new and so wakes nobody.
                    if let Some(max) = outcome.new_findings.iter().map(|f| f.seq).max() {
                        forwarder.stored(max);
                    }
                    events.publish(outcome, hosts);
                    metrics::histogram!("patchwatch_aggregator_ack_latency_seconds")
                        .record(received.elapsed().as_secs_f64());
                    Ok(ack)
                }
                Err(e) => {
                    tracing::error!(message = "Batch write failed.", error = %e, sequence);
                    metrics::counter!("patchwatch_aggregator_store_errors_total").increment(1);
                    Err(status::store_failed(sequence, &e))
                }
            }
        }
        .boxed())
    }
}
