//! The delivery loop: spool → `Batch`es on the `Ingest` stream → `Ack`s → `Spool::ack`.
//!
//! Each session opens one bidirectional stream, rewinds its cursor to the first record the
//! aggregator has not acknowledged (the spool consumer [`DEFAULT_CONSUMER`]; direct sinks
//! have cursors of their own) and keeps up to `max_in_flight` batches outstanding. Acks may come
//! out of order; the spool is acknowledged up to the end of the longest acknowledged prefix
//! of the sent ranges, so a record is deleted only after its own batch *and* every earlier
//! batch were acknowledged. When the stream breaks, whatever was not acknowledged is sent
//! again on the next session (the aggregator deduplicates findings by id).
//!
//! With nothing in flight for `heartbeat`, the session sends an empty batch; its ack, like
//! every ack, may name a maintenance window, which [`WindowWatch`] turns into a preflight
//! snapshot request.

use std::collections::BTreeMap;
use std::time::Instant;

use patchwatch_proto::ingest_client::IngestClient;
use patchwatch_proto::{Ack, Batch};
use rand::Rng;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;

use super::item::SpoolItem;
use super::options::{DeliveryError, DeliveryOptions};
use super::request::WindowWatch;
use crate::spool::{Spool, SpoolError, DEFAULT_CONSUMER};
use crate::telemetry;

/// How a session ended without an error.
enum SessionEnd {
    Shutdown,
    Closed,
}

/// A sent batch waiting for its ack.
struct InFlight {
    /// First spool id of its range; `None` for a heartbeat, which has no records.
    first: Option<u64>,
    sent_at: Instant,
}

/// Delivers the spool to the aggregator until `shutdown` is cancelled.
///
/// Never gives up on an unreachable or failing aggregator: it reconnects with capped
/// exponential backoff and full jitter (the wait is uniform in `[0, ceiling]`, the ceiling
/// doubling from `backoff_initial` up to `backoff_max`, and resetting after an ack).
///
/// # Errors
/// Only for settings that can never work (bad endpoint or TLS material, or a spool opened
/// without the [`DEFAULT_CONSUMER`]).
pub async fn run(
    opts: DeliveryOptions,
    spool: Spool,
    shutdown: CancellationToken,
) -> Result<(), DeliveryError> {
    opts.endpoint()?; // fail fast on configuration, not on the first reconnect
    if spool.position(DEFAULT_CONSUMER).is_none() {
        return Err(SpoolError::UnknownConsumer(DEFAULT_CONSUMER.into()).into());
    }
    let mut sequence = initial_sequence();
    let mut attempt: u32 = 0;
    let mut windows = WindowWatch::default();
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let state = SessionState {
            sequence: &mut sequence,
            attempt: &mut attempt,
            windows: &mut windows,
        };
        let end = session(&opts, &spool, &shutdown, state).await;
        telemetry::connected(false);
        match end {
            Ok(SessionEnd::Shutdown) => return Ok(()),
            Ok(SessionEnd::Closed) => {
                tracing::warn!(message = "Aggregator closed the stream; reconnecting.")
            }
            Err(error) => tracing::warn!(message = "Delivery failed; reconnecting.", %error),
        }
        telemetry::count(telemetry::RETRIES, 1);
        let delay = backoff(&opts, attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Full-jitter backoff for the given failed-attempt count.
fn backoff(opts: &DeliveryOptions, attempt: u32) -> std::time::Duration {
    let ceiling = opts
        .backoff_initial
        .saturating_mul(1u32 << attempt.min(20))
        .min(opts.backoff_max);
    let ms = ceiling.as_millis().min(u128::from(u64::MAX)) as u64;
    std::time::Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// Sequence numbers start at the current time in microseconds, so they keep increasing
/// across restarts without persisting a counter (given a clock that does not jump back).
fn initial_sequence() -> u64 {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
    u64::try_from(now).unwrap_or(1)
}

/// What outlives a session: the batch sequence, the failed-attempt count and the last
/// maintenance window an ack named.
struct SessionState<'a> {
    sequence: &'a mut u64,
    attempt: &'a mut u32,
    windows: &'a mut WindowWatch,
}

async fn session(
    opts: &DeliveryOptions,
    spool: &Spool,
    shutdown: &CancellationToken,
    state: SessionState<'_>,
) -> Result<SessionEnd, DeliveryError> {
    let SessionState {
        sequence,
        attempt,
        windows,
    } = state;
    let channel = tokio::select! {
        _ = shutdown.cancelled() => return Ok(SessionEnd::Shutdown),
        c = opts.connect() => c?,
    };
    let mut client = IngestClient::new(channel);
    if opts.compression {
        client = client
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(opts.max_in_flight + 1);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = &opts.token {
        let mut value = tonic::metadata::MetadataValue::try_from(token.header())
            .map_err(|_| DeliveryError::TokenInvalid("aggregator.token"))?;
        value.set_sensitive(true);
        request.metadata_mut().insert("authorization", value);
    }
    // The response (and its ack stream) arrives when the server answers; batches can be
    // queued before that, so the call is polled alongside the send loop.
    let call = client.ingest(request);
    tokio::pin!(call);
    let mut acks: Option<tonic::Streaming<Ack>> = None;

    let mut cursor = spool
        .position(DEFAULT_CONSUMER)
        .unwrap_or_else(|| spool.first_unacked());
    let mut in_flight: BTreeMap<u64, InFlight> = BTreeMap::new();
    // Sent ranges by first id: (end id, acknowledged?).
    let mut ranges: BTreeMap<u64, (u64, bool)> = BTreeMap::new();
    let mut linger_deadline: Option<tokio::time::Instant> = None;
    let mut last_sent = tokio::time::Instant::now();
    tracing::info!(message = "Connected to aggregator.", endpoint = %opts.endpoint, replay_from = cursor);

    loop {
        let mut waiting_for = cursor;
        if in_flight.len() < opts.max_in_flight {
            let records = spool.read(cursor, opts.max_batch_records, opts.max_batch_bytes)?;
            if let Some(last) = records.last() {
                let available = spool.next_id().saturating_sub(records[0].id);
                let full =
                    records.len() >= opts.max_batch_records || (records.len() as u64) < available;
                let expired = linger_deadline.is_some_and(|d| d <= tokio::time::Instant::now());
                if full || expired || opts.linger.is_zero() {
                    let (first, end) = (records[0].id, last.id + 1);
                    let batch = build_batch(opts, *sequence, &records);
                    cursor = end;
                    linger_deadline = None;
                    if batch.findings.is_empty() && batch.run_updates.is_empty() {
                        ranges.insert(first, (end, true));
                    } else {
                        ranges.insert(first, (end, false));
                        in_flight.insert(
                            *sequence,
                            InFlight {
                                first: Some(first),
                                sent_at: Instant::now(),
                            },
                        );
                        *sequence += 1;
                        last_sent = tokio::time::Instant::now();
                        telemetry::count(telemetry::BATCHES_SENT, 1);
                        if tx.send(batch).await.is_err() {
                            return Ok(SessionEnd::Closed);
                        }
                    }
                    ack_prefix(spool, &mut ranges)?;
                    continue;
                }
                linger_deadline.get_or_insert_with(|| tokio::time::Instant::now() + opts.linger);
                waiting_for = last.id + 1;
            }
        }
        let can_send = in_flight.len() < opts.max_in_flight;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(SessionEnd::Shutdown),
            response = &mut call, if acks.is_none() => {
                acks = Some(response?.into_inner());
                telemetry::connected(true);
            }
            msg = next_ack(&mut acks), if acks.is_some() => {
                let Some(ack) = msg? else { return Ok(SessionEnd::Closed) };
                let Some(done) = in_flight.remove(&ack.sequence) else {
                    tracing::warn!(message = "Ack for an unknown batch sequence; ignored.", sequence = ack.sequence);
                    continue;
                };
                windows.ack(&ack.preflight_window, opts.preflight.as_ref());
                telemetry::acked();
                *attempt = 0;
                let Some(first) = done.first else {
                    continue; // a heartbeat: nothing spooled to acknowledge
                };
                telemetry::ack_latency(done.sent_at.elapsed().as_secs_f64());
                telemetry::count(telemetry::BATCHES_ACKED, 1);
                if !ack.rejected.is_empty() {
                    telemetry::count(telemetry::ITEMS_REJECTED, ack.rejected.len() as u64);
                    for r in &ack.rejected {
                        tracing::warn!(message = "Aggregator rejected an item.", sequence = ack.sequence, index = r.index, run_update = r.run_update, reason = %r.reason);
                    }
                }
                if let Some(range) = ranges.get_mut(&first) {
                    range.1 = true;
                }
                ack_prefix(spool, &mut ranges)?;
            }
            _ = spool.wait_for(waiting_for), if can_send => {}
            _ = sleep_until(linger_deadline), if can_send && linger_deadline.is_some() => {}
            _ = tokio::time::sleep_until(last_sent + opts.heartbeat),
                if acks.is_some() && in_flight.is_empty() =>
            {
                in_flight.insert(
                    *sequence,
                    InFlight {
                        first: None,
                        sent_at: Instant::now(),
                    },
                );
                let batch = heartbeat(opts, *sequence);
                *sequence += 1;
                last_sent = tokio::time::Instant::now();
                if tx.send(batch).await.is_err() {
                    return Ok(SessionEnd::Closed);
                }
            }
        }
    }
}

async fn next_ack(acks: &mut Option<tonic::Streaming<Ack>>) -> Result<Option<Ack>, tonic::Status> {
    match acks {
        Some(s) => s.message().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Acknowledges the spool up to the end of the acknowledged prefix of `ranges`.
fn ack_prefix(spool: &Spool, ranges: &mut BTreeMap<u64, (u64, bool)>) -> Result<(), DeliveryError> {
    let mut up_to = None;
    while let Some(entry) = ranges.first_entry() {
        if !entry.get().1 {
            break;
        }
        up_to = Some(entry.remove().0);
    }
    if let Some(up_to) = up_to {
        spool.ack(up_to)?;
    }
    Ok(())
}

/// An empty batch with this collector's host: the aggregator stores the host as seen and
/// answers with an ack.
fn heartbeat(opts: &DeliveryOptions, sequence: u64) -> Batch {
    Batch {
        collector_id: opts.collector_id.clone(),
        sequence,
        host: Some(opts.host.clone()),
        ..Default::default()
    }
}

fn build_batch(opts: &DeliveryOptions, sequence: u64, records: &[crate::spool::Record]) -> Batch {
    let mut batch = Batch {
        collector_id: opts.collector_id.clone(),
        sequence,
        host: Some(opts.host.clone()),
        ..Default::default()
    };
    for r in records {
        match SpoolItem::decode(&r.payload) {
            Ok(SpoolItem::Finding(f)) => batch.findings.push(*f),
            Ok(SpoolItem::RunUpdate(u)) => batch.run_updates.push(*u),
            Err(error) => {
                // Retrying cannot fix bytes that do not decode; keeping them would block
                // the spool forever. Count and skip.
                telemetry::count(telemetry::UNDECODABLE_RECORDS, 1);
                tracing::warn!(message = "Spool record does not decode; skipped.", id = r.id, %error);
            }
        }
    }
    batch
}
