//! The delivery task: batch, send, retry, settle receipts.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use patchwatch_proto::Finding;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant};

use super::handle::{Item, Settled, SinkHandle, SinkHealth, Ticket};
use super::retry::{BatchConfig, RetryConfig};
use super::service::{SendReport, Service};
use crate::error::SendError;
use crate::telemetry;

/// Starts the delivery task of `service` and returns its handle. Must be called inside a tokio
/// runtime.
pub fn spawn(
    name: &str,
    service: Arc<dyn Service>,
    batch: BatchConfig,
    retry: RetryConfig,
) -> SinkHandle {
    let (tx, rx) = mpsc::channel(batch.queue_capacity.max(1));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (stopped_tx, stopped_rx) = watch::channel(false);
    let health = Arc::new(Mutex::new(SinkHealth::default()));
    let name: Arc<str> = Arc::from(name);
    let task = Task {
        name: name.clone(),
        service,
        batch,
        retry,
        rx,
        shutdown: shutdown_rx,
        health: health.clone(),
    };
    tokio::spawn(async move {
        task.run().await;
        let _ = stopped_tx.send(true);
    });
    SinkHandle {
        name,
        tx,
        health,
        shutdown: shutdown_tx,
        stopped: stopped_rx,
    }
}

struct Task {
    name: Arc<str>,
    service: Arc<dyn Service>,
    batch: BatchConfig,
    retry: RetryConfig,
    rx: mpsc::Receiver<Item>,
    shutdown: watch::Receiver<bool>,
    health: Arc<Mutex<SinkHealth>>,
}

/// Resolves when shutdown was requested; never resolves if every handle is gone (then the
/// closed queue ends the task after draining it normally).
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        futures::future::pending::<()>().await;
    }
}

impl Task {
    async fn run(mut self) {
        let max = self.batch.max_events.max(1);
        let linger = self.batch.timeout.get();
        loop {
            let first = tokio::select! {
                biased;
                _ = shutdown_requested(&mut self.shutdown) => break,
                item = self.rx.recv() => match item { Some(i) => i, None => break },
            };
            let mut items = vec![first];
            let deadline = Instant::now() + linger;
            let mut stop = false;
            while items.len() < max {
                tokio::select! {
                    biased;
                    item = self.rx.recv() => match item {
                        Some(i) => items.push(i),
                        None => break,
                    },
                    _ = sleep_until(deadline) => break,
                    _ = shutdown_requested(&mut self.shutdown) => { stop = true; break }
                }
            }
            self.deliver(items).await;
            if stop {
                break;
            }
        }
        // Shutdown or every handle dropped: whatever is still queued gets one attempt if we are
        // shutting down, full retries if the producers simply went away.
        self.rx.close();
        let mut rest = Vec::new();
        while let Ok(i) = self.rx.try_recv() {
            rest.push(i);
        }
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(max));
            let chunk = std::mem::replace(&mut rest, tail);
            self.deliver(chunk).await;
        }
        tracing::debug!(message = "Sink stopped.", sink = %self.name);
    }

    fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Delivers one batch until it is settled: confirmed, rejected, or given up.
    async fn deliver(&mut self, items: Vec<Item>) {
        let (mut findings, mut tickets): (Vec<Finding>, Vec<Option<Arc<Ticket>>>) =
            items.into_iter().map(|i| (i.finding, i.ticket)).unzip();
        let mut attempt: u32 = 0;
        loop {
            let outcome = match tokio::time::timeout(
                self.retry.request_timeout(),
                self.service.send(&findings),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(SendError::retryable(
                    &self.service.destination(),
                    "timeout",
                    format!("no answer within {:?}", self.retry.request_timeout()),
                )),
            };
            match outcome {
                Ok(report) => {
                    let (rf, rt) = self.settle_report(findings, tickets, report);
                    if rf.is_empty() {
                        return;
                    }
                    telemetry::retried(&self.name, "partial", rf.len());
                    findings = rf;
                    tickets = rt;
                }
                Err(e) => {
                    self.record_failure(&e);
                    if !e.retryable {
                        tracing::error!(message = "Sink gave up on a batch.", sink = %self.name,
                            destination = %e.destination, code = %e.code, error = %e.message,
                            findings = findings.len());
                        settle_all(&tickets, Settled::Failed);
                        telemetry::failed(&self.name, &e.code, findings.len());
                        return;
                    }
                    tracing::warn!(message = "Sink delivery failed, will retry.", sink = %self.name,
                        destination = %e.destination, code = %e.code, error = %e.message, attempt);
                    telemetry::retried(&self.name, &e.code, findings.len());
                }
            }
            let out_of_retries = self.retry.max_retries.is_some_and(|m| attempt >= m);
            if out_of_retries || self.shutting_down() {
                settle_all(&tickets, Settled::Failed);
                telemetry::failed(&self.name, "gave_up", findings.len());
                return;
            }
            let wait = self.retry.backoff(attempt);
            attempt = attempt.saturating_add(1);
            // A shutdown during the backoff still gets one last attempt (the loop comes back
            // here and sees `shutting_down`).
            tokio::select! {
                _ = sleep(wait) => {}
                _ = shutdown_requested(&mut self.shutdown) => {}
            }
        }
    }

    /// Settles what the destination answered and returns the findings to send again.
    fn settle_report(
        &self,
        findings: Vec<Finding>,
        tickets: Vec<Option<Arc<Ticket>>>,
        report: SendReport,
    ) -> (Vec<Finding>, Vec<Option<Arc<Ticket>>>) {
        let mut retry = vec![false; findings.len()];
        for i in report.retry {
            if let Some(r) = retry.get_mut(i) {
                *r = true;
            }
        }
        let mut rejected_left = report.rejected;
        let mut delivered = 0usize;
        let mut rejected = 0usize;
        let mut again = (Vec::new(), Vec::new());
        for ((f, t), r) in findings.into_iter().zip(tickets).zip(retry) {
            if r {
                again.0.push(f);
                again.1.push(t);
                continue;
            }
            // Partial success (OTLP) says how many were refused, not which: count them against
            // the receipts in order, which keeps the totals right.
            let how = if rejected_left > 0 {
                rejected_left -= 1;
                rejected += 1;
                Settled::Rejected
            } else {
                delivered += 1;
                Settled::Delivered
            };
            if let Some(t) = t {
                t.settle(how);
            }
        }
        telemetry::sent(&self.name, delivered);
        telemetry::rejected(&self.name, rejected);
        let mut h = self.health.lock().expect("health lock poisoned");
        h.last_success = Some(SystemTime::now());
        h.last_error = None;
        h.consecutive_failures = 0;
        h.delivered_total += delivered as u64;
        again
    }

    fn record_failure(&self, e: &SendError) {
        let mut h = self.health.lock().expect("health lock poisoned");
        h.last_error = Some(e.to_string());
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
    }
}

fn settle_all(tickets: &[Option<Arc<Ticket>>], how: Settled) {
    for t in tickets.iter().flatten() {
        t.settle(how);
    }
}
