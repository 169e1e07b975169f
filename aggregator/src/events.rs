//! The in-process event stream behind `/api/v1/events`: new findings, run updates and host
//! rows, published only after the batch that caused them is durable.
//!
//! Host rows are what the dashboard's fleet view renders; recomputing one costs a query, so
//! touched hosts are coalesced and refreshed at most every [`HOST_REFRESH_INTERVAL`], and not
//! at all while nobody listens.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::model::{FindingSummary, HostRecord, RunRecord, WriteOutcome};
use crate::store::Store;

/// How often touched hosts are re-read and published, at most.
pub const HOST_REFRESH_INTERVAL: Duration = Duration::from_millis(200);

/// Events buffered per subscriber; a subscriber further behind gets a `lagged` event and
/// should reload.
const CHANNEL_CAPACITY: usize = 4096;

/// One event of `/api/v1/events`. The SSE event name is the variant (`finding`, `run`, `host`)
/// and the data is the record as JSON.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Event {
    /// A finding stored for the first time.
    Finding(FindingSummary),
    /// A run's state after an update.
    Run(Box<RunRecord>),
    /// A host's fleet-view row after its runs or findings changed.
    Host(Box<HostRecord>),
}

impl Event {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Finding(_) => "finding",
            Event::Run(_) => "run",
            Event::Host(_) => "host",
        }
    }
}

/// Publishes events to every subscriber. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
    dirty: mpsc::UnboundedSender<String>,
}

impl EventBus {
    /// Starts the bus and its host refresher, which stops with `shutdown`.
    pub fn start(store: Arc<dyn Store>, shutdown: CancellationToken) -> Self {
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        let (dirty, dirty_rx) = mpsc::unbounded_channel();
        tokio::spawn(refresh_hosts(store, tx.clone(), dirty_rx, shutdown));
        Self { tx, dirty }
    }

    /// A new subscriber, receiving events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Publishes what a durable write changed; `hosts` are the host names the batch touched.
    pub fn publish(&self, outcome: WriteOutcome, hosts: impl IntoIterator<Item = String>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        for f in outcome.new_findings {
            let _ = self.tx.send(Arc::new(Event::Finding(f)));
        }
        for r in outcome.runs {
            let _ = self.tx.send(Arc::new(Event::Run(Box::new(r))));
        }
        for h in hosts {
            let _ = self.dirty.send(h);
        }
    }
}

async fn refresh_hosts(
    store: Arc<dyn Store>,
    tx: broadcast::Sender<Arc<Event>>,
    mut dirty: mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            h = dirty.recv() => match h { Some(h) => h, None => return },
        };
        // Let a burst of batches settle, then publish each touched host once.
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(HOST_REFRESH_INTERVAL) => {}
        }
        let mut hosts = BTreeSet::from([first]);
        while let Ok(h) = dirty.try_recv() {
            hosts.insert(h);
        }
        if tx.receiver_count() == 0 {
            continue;
        }
        match store.hosts(Some(hosts.into_iter().collect())).await {
            Ok(rows) => {
                for h in rows {
                    let _ = tx.send(Arc::new(Event::Host(Box::new(h))));
                }
            }
            Err(error) => {
                tracing::warn!(message = "Host refresh for the event stream failed.", %error)
            }
        }
    }
}
