//! The caller's side of a sink: submit findings, wait for receipts, read health.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use patchwatch_proto::Finding;
use tokio::sync::{mpsc, oneshot};

/// Outcome of one submission once every finding in it is settled.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Findings the destination confirmed.
    pub delivered: usize,
    /// Findings the destination refused for good (invalid, partial success).
    pub rejected: usize,
    /// Findings given up on after `max_retries`, or dropped because the sink shut down.
    pub failed: usize,
}

impl DeliveryReport {
    /// True when every finding was confirmed.
    pub fn is_complete(&self) -> bool {
        self.rejected == 0 && self.failed == 0
    }
}

/// Settle counter of one submission: each finding is settled once, and the submission's
/// [`Receipt`] resolves when the last one is. A ticket dropped with findings outstanding counts
/// them as failed, so a receipt never waits forever.
///
/// Sinks issue tickets internally; [`Ticket::issue`] lets another kind of destination (the
/// aggregator's alert router) hand out the same receipts.
#[derive(Debug)]
pub struct Ticket {
    state: Mutex<TicketState>,
}

#[derive(Debug)]
struct TicketState {
    remaining: usize,
    report: DeliveryReport,
    tx: Option<oneshot::Sender<DeliveryReport>>,
}

/// How one finding ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The destination confirmed it.
    Delivered,
    /// The destination refused it for good.
    Rejected,
    /// Given up on (retries exhausted, queue torn down).
    Failed,
}

impl Ticket {
    /// A ticket for `n` findings and the receipt that resolves once all `n` are settled.
    pub fn issue(n: usize) -> (Arc<Self>, Receipt) {
        let (tx, rx) = oneshot::channel();
        (Ticket::new(n, tx), Receipt { rx })
    }

    pub(crate) fn new(n: usize, tx: oneshot::Sender<DeliveryReport>) -> Arc<Self> {
        let t = Arc::new(Ticket {
            state: Mutex::new(TicketState {
                remaining: n,
                report: DeliveryReport::default(),
                tx: Some(tx),
            }),
        });
        if n == 0 {
            t.finish_if_done();
        }
        t
    }

    /// Settles one finding. Settling more findings than the ticket was issued for has no
    /// effect on the receipt, which has already resolved.
    pub fn settle(&self, how: Settled) {
        {
            let mut s = self.state.lock().expect("ticket lock poisoned");
            match how {
                Settled::Delivered => s.report.delivered += 1,
                Settled::Rejected => s.report.rejected += 1,
                Settled::Failed => s.report.failed += 1,
            }
            s.remaining = s.remaining.saturating_sub(1);
        }
        self.finish_if_done();
    }

    fn finish_if_done(&self) {
        let mut s = self.state.lock().expect("ticket lock poisoned");
        if s.remaining == 0 {
            if let Some(tx) = s.tx.take() {
                let _ = tx.send(s.report);
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // A ticket dropped with findings outstanding means the queue was torn down: report them
        // as failed rather than leaving the caller waiting forever.
        let s = self.state.get_mut().expect("ticket lock poisoned");
        if let Some(tx) = s.tx.take() {
            s.report.failed += s.remaining;
            let _ = tx.send(s.report);
        }
    }
}

/// One queued finding and the submission it belongs to.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) finding: Finding,
    pub(crate) ticket: Option<Arc<Ticket>>,
}

/// Resolves when every finding of a submission is settled.
#[derive(Debug)]
pub struct Receipt {
    pub(crate) rx: oneshot::Receiver<DeliveryReport>,
}

impl Receipt {
    /// Waits for the report. Findings that could not even be queued (queue full, sink stopped)
    /// count as failed.
    pub async fn wait(self) -> DeliveryReport {
        self.rx.await.unwrap_or_default()
    }
}

/// Health of a sink as seen by its delivery task.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SinkHealth {
    /// Time of the last confirmed batch.
    pub last_success: Option<SystemTime>,
    /// Message of the last failed attempt (cleared by a success).
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Findings confirmed since start.
    pub delivered_total: u64,
}

/// Handle to a running sink. Cheap to clone; the sink stops when every handle is dropped (after
/// draining what is queued) or when [`SinkHandle::shutdown`] is awaited.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    pub(crate) name: Arc<str>,
    pub(crate) tx: mpsc::Sender<Item>,
    pub(crate) health: Arc<Mutex<SinkHealth>>,
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    pub(crate) stopped: tokio::sync::watch::Receiver<bool>,
}

/// The queue is full or the sink has stopped; the finding is handed back.
#[derive(Debug, thiserror::Error)]
#[error("sink `{sink}` queue is full or stopped")]
pub struct SubmitError {
    /// Name of the sink.
    pub sink: String,
    /// The finding that was not queued.
    pub finding: Box<Finding>,
}

impl SinkHandle {
    /// Name of the sink (its key in the config).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Queues one finding without waiting and without a receipt.
    ///
    /// # Errors
    /// [`SubmitError`] (with the finding) when the queue is full or the sink stopped; the caller
    /// keeps it (spool, retry later). Nothing is dropped silently.
    pub fn submit(&self, finding: Finding) -> Result<(), SubmitError> {
        self.tx
            .try_send(Item {
                finding,
                ticket: None,
            })
            .map_err(|e| {
                let item = match e {
                    mpsc::error::TrySendError::Full(i) | mpsc::error::TrySendError::Closed(i) => i,
                };
                crate::telemetry::queue_full(&self.name);
                SubmitError {
                    sink: self.name.to_string(),
                    finding: Box::new(item.finding),
                }
            })
    }

    /// Queues findings, waiting for queue space, and returns a receipt that resolves when the
    /// destination confirmed (or refused) them all.
    pub async fn send(&self, findings: Vec<Finding>) -> Receipt {
        let (tx, rx) = oneshot::channel();
        let ticket = Ticket::new(findings.len(), tx);
        for finding in findings {
            let item = Item {
                finding,
                ticket: Some(ticket.clone()),
            };
            if let Err(e) = self.tx.send(item).await {
                // The sink stopped: settle here so the receipt still resolves.
                e.0.ticket
                    .expect("ticket set above")
                    .settle(Settled::Failed);
            }
        }
        Receipt { rx }
    }

    /// Like [`SinkHandle::send`] but never waits for queue space: findings that do not fit are
    /// reported as failed in the receipt.
    pub fn try_send(&self, findings: Vec<Finding>) -> Receipt {
        let (tx, rx) = oneshot::channel();
        let ticket = Ticket::new(findings.len(), tx);
        for finding in findings {
            let item = Item {
                finding,
                ticket: Some(ticket.clone()),
            };
            if let Err(e) = self.tx.try_send(item) {
                crate::telemetry::queue_full(&self.name);
                let item = match e {
                    mpsc::error::TrySendError::Full(i) | mpsc::error::TrySendError::Closed(i) => i,
                };
                item.ticket
                    .expect("ticket set above")
                    .settle(Settled::Failed);
            }
        }
        Receipt { rx }
    }

    /// Current health snapshot.
    pub fn health(&self) -> SinkHealth {
        self.health.lock().expect("health lock poisoned").clone()
    }

    /// Findings waiting in the queue (not counting the batch in flight).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Asks the delivery task to stop: the batch in flight and what is queued get one last
    /// attempt without retries, and whatever is still unconfirmed is reported `failed` in its
    /// receipt (so the caller keeps it). Returns when the task has stopped.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|s| *s).await;
    }
}
