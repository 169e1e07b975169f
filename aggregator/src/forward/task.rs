//! One destination's forwarding loop: read after the cursor, send, advance on confirmation.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt as _;
use patchwatch_sinks::DeliveryReport;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::ForwardingConfig;
use super::destination::Destination;
use super::status::DestinationStatus;
use crate::store::{ForwardPosition, Store};

/// A batch handed to the destination and not yet settled.
struct InFlight {
    /// Position of its last finding: the cursor moves here once it is confirmed.
    last: ForwardPosition,
    /// Findings in it.
    n: usize,
    receipt: BoxFuture<'static, DeliveryReport>,
}

/// What woke the loop.
enum Event {
    Stop,
    Settled(DeliveryReport),
    Tick { timer: bool },
}

pub(crate) struct Task {
    pub(crate) dest: Destination,
    pub(crate) name: String,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) cfg: ForwardingConfig,
    pub(crate) wake: Arc<Notify>,
    /// Highest seq this process knows is stored (ingest raises it; polls refresh it).
    pub(crate) head: Arc<AtomicI64>,
    pub(crate) status: Arc<Mutex<DestinationStatus>>,
    pub(crate) stop: CancellationToken,
    /// How long a stopping task waits for batches in flight to be confirmed.
    pub(crate) drain: Duration,
}

/// The loop's state: the confirmed cursor, what was persisted, what is in flight.
struct State {
    /// Everything at or before this is confirmed.
    cursor: ForwardPosition,
    /// The cursor as last written to the store.
    persisted: ForwardPosition,
    last_write: Instant,
    /// Where the next read starts (after everything in flight).
    read_pos: ForwardPosition,
    inflight: VecDeque<InFlight>,
    inflight_n: usize,
    /// Consecutive unconfirmed batches, for the backoff.
    attempt: u32,
}

impl Task {
    /// Runs until `stop` is cancelled, starting after `start`.
    pub(crate) async fn run(self, start: ForwardPosition) {
        let mut st = State {
            cursor: start,
            persisted: start,
            last_write: Instant::now(),
            read_pos: start,
            inflight: VecDeque::new(),
            inflight_n: 0,
            attempt: 0,
        };
        let poll = self.cfg.poll_interval.get();
        loop {
            self.fill(&mut st).await;
            self.persist(&mut st, false).await;
            self.publish(&st);
            // A wake-up with a full window only refreshes the lag; `fill` then reads nothing.
            let event = tokio::select! {
                biased;
                _ = self.stop.cancelled() => Event::Stop,
                r = front(&mut st.inflight) => Event::Settled(r),
                _ = self.wake.notified() => Event::Tick { timer: false },
                _ = tokio::time::sleep(poll) => Event::Tick { timer: true },
            };
            match event {
                Event::Stop => break,
                Event::Tick { timer } => {
                    if timer {
                        // Findings stored by another aggregator (PostgreSQL) raise the head too.
                        if let Ok(h) = self.store.forward_head().await {
                            self.head.fetch_max(h.seq, Ordering::Relaxed);
                        }
                    }
                }
                Event::Settled(report) => {
                    let done = st.inflight.pop_front().expect("settled the front batch");
                    st.inflight_n -= done.n;
                    if report.failed == 0 {
                        // Confirmed (findings the destination refused for good count as
                        // settled: sending them again cannot change the answer).
                        st.cursor = done.last;
                        st.attempt = 0;
                        self.set_error(None);
                    } else {
                        self.rewind(&mut st, report).await;
                    }
                }
            }
        }
        self.drain(&mut st).await;
        self.persist(&mut st, true).await;
        self.publish(&st);
        tracing::debug!(message = "Forwarding stopped.", destination = %self.name, seq = st.cursor.seq);
    }

    /// Reads and sends batches until the in-flight limit, the end of the store, or an error.
    async fn fill(&self, st: &mut State) {
        while st.inflight_n < self.cfg.max_inflight && !self.stop.is_cancelled() {
            let room = self.cfg.max_inflight - st.inflight_n;
            let want = self
                .cfg
                .batch_size
                .min(u32::try_from(room).unwrap_or(u32::MAX));
            let items = match self.store.findings_after(st.read_pos, want).await {
                Ok(items) => items,
                Err(error) => {
                    tracing::warn!(message = "Forwarding could not read the store.", destination = %self.name, %error);
                    self.set_error(Some(format!("store: {error}")));
                    return;
                }
            };
            let Some(last) = items.last().map(|i| i.position) else {
                return;
            };
            let n = items.len();
            self.head.fetch_max(last.seq, Ordering::Relaxed);
            let findings = items.into_iter().map(|i| i.finding).collect();
            let receipt = tokio::select! {
                r = self.dest.send(findings) => r,
                _ = self.stop.cancelled() => return,
            };
            st.read_pos = last;
            st.inflight_n += n;
            st.inflight.push_back(InFlight {
                last,
                n,
                receipt: receipt.wait().boxed(),
            });
            if n < want as usize {
                return;
            }
        }
    }

    /// A batch was not confirmed: forget what is in flight, wait, and send everything after
    /// the cursor again (at least once; the destination may see some findings twice).
    async fn rewind(&self, st: &mut State, report: DeliveryReport) {
        let wait = self.cfg.backoff(st.attempt);
        tracing::warn!(message = "Destination did not confirm a batch; sending again from its cursor.",
            destination = %self.name, failed = report.failed, delivered = report.delivered,
            seq = st.cursor.seq, backoff_ms = wait.as_millis() as u64);
        metrics::counter!("patchwatch_aggregator_forward_retries_total", "destination" => self.name.clone())
            .increment(1);
        {
            let mut s = self.status.lock().expect("status lock");
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            s.last_error = Some(format!(
                "{} of {} findings not confirmed",
                report.failed,
                report.failed + report.delivered + report.rejected
            ));
        }
        st.inflight.clear();
        st.inflight_n = 0;
        st.read_pos = st.cursor;
        st.attempt = st.attempt.saturating_add(1);
        self.publish(st);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.stop.cancelled() => {}
        }
    }

    /// On stop: waits (up to `drain`) for batches in flight, in order, while they confirm.
    async fn drain(&self, st: &mut State) {
        let deadline = Instant::now() + self.drain;
        while let Some(f) = st.inflight.pop_front() {
            match tokio::time::timeout_at(deadline, f.receipt).await {
                Ok(r) if r.failed == 0 => st.cursor = f.last,
                _ => break,
            }
        }
        st.inflight.clear();
        st.inflight_n = 0;
    }

    /// Writes the cursor when it moved and either `force`, the destination has caught up, or
    /// the write interval has passed.
    async fn persist(&self, st: &mut State, force: bool) {
        if st.cursor <= st.persisted {
            return;
        }
        let interval = self.cfg.cursor_write_interval.get();
        if !force && !st.inflight.is_empty() && st.last_write.elapsed() < interval {
            return;
        }
        match self
            .store
            .set_forward_cursor(self.name.clone(), st.cursor)
            .await
        {
            Ok(()) => {
                st.persisted = st.cursor;
                st.last_write = Instant::now();
            }
            Err(error) => {
                // Kept in memory and written on the next pass; a crash meanwhile only means
                // these findings are sent again.
                tracing::warn!(message = "Forwarding cursor write failed.", destination = %self.name, %error);
            }
        }
    }

    fn set_error(&self, error: Option<String>) {
        let mut s = self.status.lock().expect("status lock");
        if error.is_none() {
            s.consecutive_failures = 0;
        }
        s.last_error = error;
    }

    /// Updates the status and the lag gauge.
    fn publish(&self, st: &State) {
        let head = self.head.load(Ordering::Relaxed);
        let lag = (head - st.cursor.seq).max(0);
        metrics::gauge!("patchwatch_aggregator_forward_lag_findings", "destination" => self.name.clone())
            .set(lag as f64);
        let mut s = self.status.lock().expect("status lock");
        s.cursor_seq = st.cursor.seq;
        s.persisted_seq = st.persisted.seq;
        s.lag = lag;
        s.inflight = st.inflight_n;
    }
}

/// The receipt of the oldest batch in flight; never resolves when there is none.
async fn front(inflight: &mut VecDeque<InFlight>) -> DeliveryReport {
    match inflight.front_mut() {
        Some(f) => (&mut f.receipt).await,
        None => futures::future::pending().await,
    }
}
