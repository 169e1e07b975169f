//! Starting, waking, inspecting and stopping the forwarding tasks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::routing::Router;
use patchwatch_sinks::Sinks;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::{ForwardingConfig, StartFrom};
use super::destination::Destination;
use super::status::DestinationStatus;
use super::task::Task;
use crate::store::{ForwardPosition, Store, StoreError};

struct Inner {
    wakes: Vec<Arc<Notify>>,
    head: Arc<AtomicI64>,
    statuses: Vec<Arc<Mutex<DestinationStatus>>>,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    sinks: Option<Sinks>,
}

/// Runs one forwarding task per destination (see [`crate::forward`]). Cheap to clone; the
/// default value forwards nowhere.
#[derive(Clone, Default)]
pub struct Forwarder {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("destinations", &self.status())
            .finish()
    }
}

impl Forwarder {
    /// Loads (or creates) each destination's cursor and starts its task. A destination without
    /// a cursor starts where `cfg.new_destination_start` says, and that start is persisted at
    /// once, so a restart before its first delivery does not move it.
    ///
    /// # Errors
    /// The store cannot be read or the new cursors written.
    pub async fn start(
        store: Arc<dyn Store>,
        router: Option<Router>,
        sinks: Option<Sinks>,
        cfg: ForwardingConfig,
        drain: Duration,
    ) -> Result<Forwarder, StoreError> {
        let mut dests: Vec<Destination> = router.into_iter().map(Destination::Router).collect();
        if let Some(s) = &sinks {
            dests.extend(s.handles().iter().cloned().map(Destination::Sink));
        }
        if dests.is_empty() {
            return Ok(Forwarder::default());
        }
        let known: HashMap<String, ForwardPosition> = store
            .forward_cursors()
            .await?
            .into_iter()
            .map(|c| (c.destination, c.position))
            .collect();
        let head_pos = store.forward_head().await?;
        let head = Arc::new(AtomicI64::new(head_pos.seq));
        let stop = CancellationToken::new();
        let (mut wakes, mut statuses, mut tasks) = (Vec::new(), Vec::new(), Vec::new());
        for dest in dests {
            let name = dest.name();
            let start = match known.get(&name) {
                Some(p) => *p,
                None => {
                    let p = match cfg.new_destination_start {
                        StartFrom::Now => head_pos,
                        StartFrom::Beginning => ForwardPosition::START,
                    };
                    store.set_forward_cursor(name.clone(), p).await?;
                    tracing::info!(message = "New forwarding destination.", destination = %name,
                        start = ?cfg.new_destination_start, seq = p.seq);
                    p
                }
            };
            let wake = Arc::new(Notify::new());
            let status = Arc::new(Mutex::new(DestinationStatus {
                destination: name.clone(),
                cursor_seq: start.seq,
                persisted_seq: start.seq,
                lag: (head_pos.seq - start.seq).max(0),
                ..DestinationStatus::default()
            }));
            let task = Task {
                dest,
                name,
                store: Arc::clone(&store),
                cfg: cfg.clone(),
                wake: Arc::clone(&wake),
                head: Arc::clone(&head),
                status: Arc::clone(&status),
                stop: stop.clone(),
                drain,
            };
            tasks.push(tokio::spawn(task.run(start)));
            wakes.push(wake);
            statuses.push(status);
        }
        Ok(Forwarder {
            inner: Some(Arc::new(Inner {
                wakes,
                head,
                statuses,
                stop,
                tasks: Mutex::new(tasks),
                sinks,
            })),
        })
    }

    /// True when there is somewhere to forward to.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Tells the tasks that findings up to `max_seq` are durable. Never waits.
    pub fn stored(&self, max_seq: i64) {
        if let Some(inner) = &self.inner {
            inner.head.fetch_max(max_seq, Ordering::Relaxed);
            for w in &inner.wakes {
                w.notify_one();
            }
        }
    }

    /// Where each destination stands.
    pub fn status(&self) -> Vec<DestinationStatus> {
        self.inner.as_ref().map_or_else(Vec::new, |inner| {
            inner
                .statuses
                .iter()
                .map(|s| s.lock().expect("status lock").clone())
                .collect()
        })
    }

    /// Stops the tasks: each waits (up to the `drain` given at start) for its batches in
    /// flight, persists its cursor and ends, while the sinks get one last attempt at what
    /// they hold. Call before closing the store; the router should be told to stop (and
    /// flush its groups) first or at the same time.
    pub async fn shutdown(&self) {
        let Some(inner) = &self.inner else {
            return;
        };
        inner.stop.cancel();
        let tasks = std::mem::take(&mut *inner.tasks.lock().expect("tasks lock"));
        let sinks = async {
            if let Some(s) = &inner.sinks {
                s.shutdown().await;
            }
        };
        tokio::join!(sinks, futures::future::join_all(tasks));
    }
}
