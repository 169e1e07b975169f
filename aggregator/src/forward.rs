//! Forwarding of newly stored findings to the alert router and the SIEM sinks.
//!
//! Architecture invariant: a finding is forwarded only after the batch that carried it is
//! durable, and forwarding never waits. [`Forwarder::forward`] hands each finding to the
//! router's queue ([`Router::submit`]) and to each sink's queue ([`SinkHandle::submit`]), all
//! non-blocking; a full queue (a destination that is down or slow) drops the finding for that
//! destination only, counted in `patchwatch_aggregator_forward_dropped_total{destination}` and
//! logged. The ack to the collector never depends on a destination.
//!
//! Delivery is therefore at most once per stored finding and per destination: a finding
//! dropped on a full queue, or queued when the aggregator stops, is not re-sent (it stays in
//! the store and the dashboard).

use patchwatch_proto::Finding;
use patchwatch_sinks::routing::Router;
use patchwatch_sinks::{SinkHandle, Sinks};

/// Hands newly stored findings to the router and the sinks. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Forwarder {
    router: Option<Router>,
    sinks: Option<Sinks>,
}

impl Forwarder {
    /// A forwarder to `router` and `sinks` (either may be absent).
    pub fn new(router: Option<Router>, sinks: Option<Sinks>) -> Self {
        Self {
            router,
            sinks: sinks.filter(|s| !s.handles().is_empty()),
        }
    }

    /// True when there is somewhere to forward to; when false, ingest skips the copy.
    pub fn is_enabled(&self) -> bool {
        self.router.is_some() || self.sinks.is_some()
    }

    /// Queues `findings` for every destination without waiting; see the module doc.
    pub fn forward(&self, findings: Vec<Finding>) {
        if findings.is_empty() {
            return;
        }
        if let Some(sinks) = &self.sinks {
            for handle in sinks.handles() {
                submit_to_sink(handle, &findings);
            }
        }
        if let Some(router) = &self.router {
            let mut dropped = 0u64;
            for f in findings {
                if router.submit(f).is_err() {
                    dropped += 1;
                }
            }
            if dropped > 0 {
                count_dropped("router", dropped);
            }
        }
    }

    /// Stops the sinks (flushing what they can within their own limits).
    pub async fn shutdown(&self) {
        if let Some(sinks) = &self.sinks {
            sinks.shutdown().await;
        }
    }
}

fn submit_to_sink(handle: &SinkHandle, findings: &[Finding]) {
    let mut dropped = 0u64;
    for f in findings {
        if handle.submit(f.clone()).is_err() {
            dropped += 1;
        }
    }
    if dropped > 0 {
        count_dropped(&format!("sink:{}", handle.name()), dropped);
    }
}

fn count_dropped(destination: &str, n: u64) {
    metrics::counter!(
        "patchwatch_aggregator_forward_dropped_total",
        "destination" => destination.to_owned()
    )
    .increment(n);
    tracing::warn!(
        message = "Forwarding queue full; findings dropped for this destination.",
        destination,
        dropped = n
    );
}
