//! The two kinds of destination a forwarding task drives.

use crate::routing::Router;
use patchwatch_proto::Finding;
use patchwatch_sinks::{Receipt, SinkHandle};

/// The router or one sink. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) enum Destination {
    Router(Router),
    Sink(SinkHandle),
}

impl Destination {
    /// The cursor and metric name: `router` or `sink:<name>`.
    pub(crate) fn name(&self) -> String {
        match self {
            Destination::Router(_) => "router".to_owned(),
            Destination::Sink(h) => format!("sink:{}", h.name()),
        }
    }

    /// Hands `findings` over, waiting for queue space; the receipt resolves once the
    /// destination confirmed (or gave up on) each of them.
    pub(crate) async fn send(&self, findings: Vec<Finding>) -> Receipt {
        match self {
            Destination::Router(r) => r.send(findings).await,
            Destination::Sink(h) => h.send(findings).await,
        }
    }
}
