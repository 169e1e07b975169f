//! Direct-to-SIEM delivery of the agent (`[sinks]`): one durable feed per sink over the spool.
//!
//! Findings reach a sink the same way they reach the aggregator: the matcher appends them to
//! the [`Spool`] first, and a feed task per sink reads the records after that sink's own
//! cursor (spool consumer [`consumer_name`]), hands the findings over with
//! [`SinkHandle::send`], and acknowledges the spool for that sink only when the receipt says
//! the destination confirmed them (or refused them for good: sending again cannot change that
//! answer). So a finding is never dropped for a sink, and anything not confirmed when the agent
//! stops or crashes is sent again after the restart (at least once; a SIEM may see a finding
//! twice and can deduplicate on its `id`).
//!
//! Independence: each feed has its own task, cursor and window of findings in flight, and the
//! spool deletes a segment only after every consumer passed it. A sink that is down therefore
//! never holds up another sink or the aggregator delivery; it only keeps its records on disk.
//! If it stays down until the spool is full, reading input pauses for everyone (the spool's
//! backpressure), which is the price of losing nothing.
//!
//! Only findings go to sinks; run updates (and records that do not decode, counted in
//! `patchwatch_undecodable_records_total`) are skipped and acknowledged in order.
//!
//! Metric: `patchwatch_agent_sink_lag_records{sink}`, records the sink's cursor is behind the
//! spool's end (gauge, refreshed at least every second), and
//! `patchwatch_agent_sink_rewinds_total{sink}`, batches not confirmed and sent again.

use std::collections::VecDeque;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt as _;
use patchwatch_sinks::{DeliveryReport, RetryConfig, SinkHandle, Sinks, SinksConfig};
use tokio_util::sync::CancellationToken;

use crate::delivery::SpoolItem;
use crate::spool::{Spool, SpoolError};
use crate::telemetry;

/// Records read from the spool per hand-over to a sink.
const READ_RECORDS: usize = 500;
/// Payload bytes read from the spool per hand-over (at least one record).
const READ_BYTES: usize = 1024 * 1024;
/// Findings handed to a sink and not yet settled, at most. Findings, not batches: a trickle
/// of one-finding hand-overs must still fill the sink's own batches.
const WINDOW: usize = 2000;
/// How often the lag gauge is refreshed when nothing else happens.
const TICK: Duration = Duration::from_secs(1);

/// The spool consumer name of sink `sink` (its key under `[sinks]`): `sink:<name>`. Its
/// cursor file lives in the spool directory.
pub fn consumer_name(sink: &str) -> String {
    format!("sink:{sink}")
}

/// Errors starting the direct sinks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiemError {
    /// A sink's configuration is unusable (the message names the sink and field).
    #[error("sinks: {0}")]
    Sink(#[from] patchwatch_sinks::SinkError),
    /// The spool was opened without this sink's consumer.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// The running direct sinks and their feeds.
#[derive(Debug)]
pub struct SiemFeeds {
    sinks: Sinks,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SiemFeeds {
    /// Builds every sink of `cfg` and starts a feed for each, reading `spool` from the
    /// sink's cursor. Must run inside a tokio runtime; `spool` must have been opened with
    /// [`consumer_name`] of every sink among its consumers.
    ///
    /// # Errors
    /// [`SiemError::Sink`] for a bad sink configuration, [`SiemError::Spool`] for a missing
    /// consumer.
    pub fn start(cfg: &SinksConfig, spool: &Spool) -> Result<Self, SiemError> {
        for name in cfg.sinks.keys() {
            let consumer = consumer_name(name);
            if spool.position(&consumer).is_none() {
                return Err(SpoolError::UnknownConsumer(consumer).into());
            }
        }
        let sinks = Sinks::build(cfg)?;
        let cancel = CancellationToken::new();
        let tasks = sinks
            .handles()
            .iter()
            .map(|h| {
                let feed = Feed {
                    consumer: consumer_name(h.name()),
                    sink: h.clone(),
                    spool: spool.clone(),
                    stop: cancel.clone(),
                };
                tokio::spawn(feed.run())
            })
            .collect();
        Ok(Self {
            sinks,
            cancel,
            tasks,
        })
    }

    /// The running sinks (health, queue depth).
    pub fn sinks(&self) -> &Sinks {
        &self.sinks
    }

    /// Stops the feeds, then the sinks (giving what they hold up to `grace` for one last
    /// attempt). Cursors only ever reflect confirmed findings, so whatever is unconfirmed is
    /// sent again after a restart.
    pub async fn stop(self, grace: Duration) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = tokio::time::timeout(grace, self.sinks.shutdown()).await;
    }
}

/// A hand-over not yet settled.
struct InFlight {
    /// One past its last record id: the cursor moves here once it is confirmed.
    end: u64,
    /// Findings in it.
    n: usize,
    receipt: BoxFuture<'static, DeliveryReport>,
}

/// One sink's loop: read after the cursor, hand over, advance on confirmation.
struct Feed {
    consumer: String,
    sink: SinkHandle,
    spool: Spool,
    stop: CancellationToken,
}

/// The loop's state.
struct State {
    /// Every record before this is confirmed (and acknowledged in the spool).
    cursor: u64,
    /// Where the next read starts (after everything in flight).
    read_pos: u64,
    inflight: VecDeque<InFlight>,
    inflight_n: usize,
    /// Consecutive unconfirmed hand-overs, for the backoff.
    attempt: u32,
}

impl Feed {
    async fn run(self) {
        let start = self.spool.position(&self.consumer).unwrap_or(0);
        let mut st = State {
            cursor: start,
            read_pos: start,
            inflight: VecDeque::new(),
            inflight_n: 0,
            attempt: 0,
        };
        let retry = RetryConfig::default();
        tracing::info!(
            message = "Direct sink feed started.",
            sink = self.sink.name(),
            from = start
        );
        loop {
            if let Err(error) = self.fill(&mut st).await {
                // A disk error reading the spool: try again after a pause, from the cursor.
                tracing::warn!(message = "Direct sink feed could not read the spool.", sink = self.sink.name(), %error);
                self.rewind(&mut st, &retry).await;
                continue;
            }
            self.publish(&st);
            let room = st.inflight_n < WINDOW;
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                report = front(&mut st.inflight) => {
                    self.settled(&mut st, report, &retry).await;
                }
                _ = self.spool.wait_for(st.read_pos), if room => {}
                _ = tokio::time::sleep(TICK) => {}
            }
        }
        self.publish(&st);
        tracing::debug!(
            message = "Direct sink feed stopped.",
            sink = self.sink.name(),
            cursor = st.cursor
        );
    }

    /// Reads and hands over records until the window is full or the spool's end is reached.
    async fn fill(&self, st: &mut State) -> Result<(), SpoolError> {
        while st.inflight_n < WINDOW && !self.stop.is_cancelled() {
            let records = self.spool.read(st.read_pos, READ_RECORDS, READ_BYTES)?;
            let Some(last) = records.last() else {
                return Ok(());
            };
            let end = last.id + 1;
            let findings: Vec<_> = records
                .iter()
                .filter_map(|r| match SpoolItem::decode(&r.payload) {
                    Ok(SpoolItem::Finding(f)) => Some(*f),
                    Ok(SpoolItem::RunUpdate(_)) => None,
                    Err(error) => {
                        // Retrying cannot fix bytes that do not decode (see delivery).
                        telemetry::count(telemetry::UNDECODABLE_RECORDS, 1);
                        tracing::warn!(message = "Spool record does not decode; skipped.", id = r.id, %error);
                        None
                    }
                })
                .collect();
            st.read_pos = end;
            if findings.is_empty() {
                if st.inflight.is_empty() {
                    // Nothing for this sink and nothing before it outstanding.
                    st.cursor = end;
                    self.ack(st.cursor)?;
                } else {
                    st.inflight.push_back(InFlight {
                        end,
                        n: 0,
                        receipt: futures::future::ready(DeliveryReport::default()).boxed(),
                    });
                }
                continue;
            }
            let n = findings.len();
            // Waits for queue space in the sink, never drops.
            let receipt = tokio::select! {
                r = self.sink.send(findings) => r,
                _ = self.stop.cancelled() => return Ok(()),
            };
            st.inflight_n += n;
            st.inflight.push_back(InFlight {
                end,
                n,
                receipt: receipt.wait().boxed(),
            });
        }
        Ok(())
    }

    /// The oldest hand-over settled with `report`; later ones that are already settled too are
    /// taken with it, so the cursor file is written once for the lot.
    async fn settled(&self, st: &mut State, mut report: DeliveryReport, retry: &RetryConfig) {
        loop {
            let done = st
                .inflight
                .pop_front()
                .expect("the front hand-over settled");
            st.inflight_n -= done.n;
            if report.failed > 0 {
                self.rewind_after(st, report, retry).await;
                return;
            }
            // Confirmed, or refused for good by the destination (counted by the sink).
            st.cursor = done.end;
            st.attempt = 0;
            match st
                .inflight
                .front_mut()
                .and_then(|f| (&mut f.receipt).now_or_never())
            {
                Some(r) => report = r,
                None => break,
            }
        }
        if let Err(error) = self.ack(st.cursor) {
            // Kept in memory; the next confirmation writes it again. A crash meanwhile means
            // these findings are sent again.
            tracing::warn!(message = "Direct sink cursor write failed.", sink = self.sink.name(), %error);
        }
    }

    fn ack(&self, up_to: u64) -> Result<(), SpoolError> {
        self.spool.ack_for(&self.consumer, up_to)
    }

    async fn rewind_after(&self, st: &mut State, report: DeliveryReport, retry: &RetryConfig) {
        tracing::warn!(
            message = "Sink did not confirm findings; sending again from its cursor.",
            sink = self.sink.name(),
            failed = report.failed,
            delivered = report.delivered,
            cursor = st.cursor
        );
        metrics::counter!(telemetry::SINK_REWINDS, "sink" => self.sink.name().to_string())
            .increment(1);
        self.rewind(st, retry).await;
    }

    /// Forgets what is in flight, waits (capped exponential backoff with jitter) and resumes
    /// from the cursor. Findings already queued in the sink may reach it twice.
    async fn rewind(&self, st: &mut State, retry: &RetryConfig) {
        st.inflight.clear();
        st.inflight_n = 0;
        st.read_pos = st.cursor;
        let wait = retry.backoff(st.attempt);
        st.attempt = st.attempt.saturating_add(1);
        self.publish(st);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.stop.cancelled() => {}
        }
    }

    /// Updates the lag gauge.
    fn publish(&self, st: &State) {
        let lag = self.spool.next_id().saturating_sub(st.cursor);
        metrics::gauge!(telemetry::SINK_LAG, "sink" => self.sink.name().to_string())
            .set(lag as f64);
    }
}

/// The receipt of the oldest hand-over in flight; never resolves when there is none.
async fn front(inflight: &mut VecDeque<InFlight>) -> DeliveryReport {
    match inflight.front_mut() {
        Some(f) => (&mut f.receipt).await,
        None => futures::future::pending().await,
    }
}
