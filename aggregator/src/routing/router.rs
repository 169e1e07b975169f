//! The router: a queue of findings, the driver task that decides, groups and notifies, and
//! receipts for callers that keep a durable cursor.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patchwatch_proto::Finding;
use patchwatch_sinks::{Receipt, Ticket};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::ack::Pending;
use super::alertmanager::check_url;
use super::config::{RoutingConfig, SilenceConfig, MAX_PREFLIGHT_GATE_LEAD};
use super::decide::{as_before_escalation, Decider, Decision, Outcome, Target};
use super::error::RoutingError;
use super::group::{Groups, Notifier};
use super::receiver;
use super::telemetry;
use super::window::WindowSet;

/// A finding on its way through the router, with the obligation to settle it when it came
/// through [`Router::send`].
struct Queued {
    finding: Finding,
    ack: Option<Pending>,
}

struct Shared {
    tx: mpsc::Sender<Queued>,
    rx: Mutex<Option<mpsc::Receiver<Queued>>>,
    decider: Decider,
    notifier: Notifier,
    preflight_gate_lead: std::time::Duration,
}

/// The alert router. Cheap to clone; all clones feed the same driver.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.inner.decider.route_count())
            .field("receivers", &self.inner.notifier.names())
            .finish()
    }
}

impl RoutingConfig {
    /// Parses TOML text; deprecated keys (a receiver's `[retry] initial_backoff_ms`, ...) are
    /// rewritten, each with a warning naming its replacement.
    ///
    /// # Errors
    /// [`RoutingError::Toml`] naming the key and line.
    pub fn from_toml(text: &str) -> Result<Self, RoutingError> {
        patchwatch_config::from_toml(text)
            .map(|loaded| loaded.value)
            .map_err(|e| RoutingError::Toml(e.to_string()))
    }
}

impl Router {
    /// Validates `config`, starts the receivers (sinks and Alertmanager posters) and returns the
    /// router. Call [`Router::run`] to start routing. The static windows of `config` start the
    /// router's [`WindowSet`] ([`Router::windows`]).
    ///
    /// # Errors
    /// [`RoutingError`] naming the route, receiver, silence or window and the field.
    pub fn new(config: RoutingConfig) -> Result<Router, RoutingError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RoutingError::NoRuntime);
        }
        let names: Vec<String> = config.receivers.keys().cloned().collect();
        let windows = WindowSet::new(config.windows.clone())?;
        let decider = Decider::new(&config, &names, windows)?;
        if let Some(u) = &config.dashboard_url {
            check_url("routing", "dashboard_url", u)?;
        }
        let preflight_gate_lead = config.preflight_gate_lead();
        if preflight_gate_lead > MAX_PREFLIGHT_GATE_LEAD {
            return Err(RoutingError::Invalid {
                what: "routing".to_owned(),
                field: "preflight_gate_lead",
                reason: format!(
                    "\"{}\" is longer than \"7d\" (default \"1h\")",
                    patchwatch_config::Duration::from(preflight_gate_lead)
                ),
            });
        }
        let receivers = receiver::start_all(&config.receivers)?;
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        Ok(Router {
            inner: Arc::new(Shared {
                tx,
                rx: Mutex::new(Some(rx)),
                decider,
                notifier: Notifier::new(receivers, config.dashboard_url),
                preflight_gate_lead,
            }),
        })
    }

    /// Queues a finding for routing without blocking.
    ///
    /// # Errors
    /// [`RoutingError::QueueFull`] with the finding when the driver is behind or stopped.
    pub fn submit(&self, finding: Finding) -> Result<(), RoutingError> {
        self.inner
            .tx
            .try_send(Queued { finding, ack: None })
            .map_err(|e| {
                telemetry::routed("queue_full");
                let q = match e {
                    mpsc::error::TrySendError::Full(q) | mpsc::error::TrySendError::Closed(q) => q,
                };
                RoutingError::QueueFull(Box::new(q.finding))
            })
    }

    /// Queues findings for routing, waiting for queue space, and returns a receipt that
    /// resolves once each finding is settled.
    ///
    /// A finding counts as `delivered` when every receiver it was routed to confirmed the
    /// notification that carried it (Alertmanager answered 2xx, a sink receiver's destination
    /// confirmed), or when a rule suppressed it (silenced, muted, or no route and no default
    /// receivers). It counts as `failed` when a receiver gave up on it, its receiver queue was
    /// full, or the router stopped before its group was sent. Confirmation therefore comes
    /// after the route's `group_wait` (or `group_interval`): callers that wait for receipts
    /// should keep several submissions in flight.
    pub async fn send(&self, findings: Vec<Finding>) -> Receipt {
        let (ticket, receipt) = Ticket::issue(findings.len());
        for finding in findings {
            let ack = Some(Pending::new(Arc::clone(&ticket)));
            // A stopped router hands the item back; dropping it fails the finding.
            let _ = self.inner.tx.send(Queued { finding, ack }).await;
        }
        receipt
    }

    /// The maintenance windows decisions are made with: the static ones of the configuration
    /// plus those the aggregator stores ([`WindowSet::replace`]). Clones share the set.
    pub fn windows(&self) -> WindowSet {
        self.inner.decider.windows().clone()
    }

    /// Replaces the configured silences (`[[silences]]`). All-or-nothing.
    ///
    /// # Errors
    /// The first invalid silence.
    pub fn set_silences(&self, silences: Vec<SilenceConfig>) -> Result<(), RoutingError> {
        self.inner.decider.set_silences(&silences)
    }

    /// Replaces the silences created at run time (the aggregator calls this whenever its
    /// stored set changes); the configured ones stay. All-or-nothing: on error the previous
    /// set stays.
    ///
    /// # Errors
    /// The first invalid silence, naming the field.
    pub fn set_stored_silences(&self, silences: Vec<SilenceConfig>) -> Result<(), RoutingError> {
        self.inner.decider.set_stored_silences(&silences)
    }

    /// How long before a window requiring a clean preflight starts its hosts that are not
    /// clean are alerted on (`preflight_gate_lead`).
    pub fn preflight_gate_lead(&self) -> std::time::Duration {
        self.inner.preflight_gate_lead
    }

    /// The configured silences (`[[silences]]`), as written.
    pub fn silences(&self) -> Vec<SilenceConfig> {
        self.inner.decider.silences()
    }

    /// Tags `finding` with the maintenance window covering its host at its observed time
    /// (label `maintenance_window`), then decides where it goes. Pure apart from the tag and
    /// escalation (an `escalate` route raises the finding's severity and sets the label
    /// `escalated_from`): the aggregator can use it to preview routing.
    pub fn decide(&self, finding: &mut Finding) -> Decision {
        let decider = &self.inner.decider;
        match decider.decide(finding) {
            Outcome::Silenced(id) => Decision::Silenced(id),
            Outcome::Muted(r) => Decision::Muted(r),
            Outcome::Routed(v) if v.is_empty() => Decision::Unrouted,
            Outcome::Routed(v) => Decision::Routed(
                v.into_iter()
                    .map(|t| (decider.route(t.route).name.clone(), t.receiver))
                    .collect(),
            ),
        }
    }

    /// The driver: routes queued findings, and sends notifications on `group_wait`,
    /// `group_interval`, `repeat_interval` and resolution. Returns when `shutdown` resolves
    /// (after flushing groups that have unsent findings) or every `Router` clone is dropped.
    ///
    /// # Errors
    /// [`RoutingError::NotRunning`] if another `run` already took the queue.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), RoutingError> {
        let mut rx = self
            .inner
            .rx
            .lock()
            .expect("rx lock poisoned")
            .take()
            .ok_or(RoutingError::NotRunning)?;
        let Shared {
            decider, notifier, ..
        } = &*self.inner;
        let mut groups = Groups::default();
        tokio::pin!(shutdown);
        loop {
            let deadline = groups
                .deadline(notifier, decider)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = &mut shutdown => {
                    groups.flush_unsent(notifier, decider);
                    return Ok(());
                }
                q = rx.recv() => match q {
                    Some(q) => self.process(&mut groups, q.finding, q.ack),
                    None => return Ok(()),
                },
                _ = tokio::time::sleep_until(deadline) => groups.tick(notifier, decider),
            }
        }
    }

    fn process(&self, groups: &mut Groups, mut f: Finding, ack: Option<Pending>) {
        let Shared {
            decider, notifier, ..
        } = &*self.inner;
        // A finding a rule suppresses is settled here: nothing more is owed for it.
        let targets = match decider.decide(&mut f) {
            Outcome::Silenced(id) => {
                tracing::debug!(message = "Finding silenced.", finding = %f.id, silence = %id);
                telemetry::routed("silenced");
                ack.into_iter().for_each(Pending::confirm);
                return;
            }
            Outcome::Muted(route) => {
                tracing::debug!(message = "Finding muted.", finding = %f.id, route = %route);
                telemetry::routed("muted");
                ack.into_iter().for_each(Pending::confirm);
                return;
            }
            Outcome::Routed(t) if t.is_empty() => {
                telemetry::routed("unrouted");
                ack.into_iter().for_each(Pending::confirm);
                return;
            }
            Outcome::Routed(t) => t,
        };
        telemetry::routed("routed");
        for Target {
            route,
            receiver,
            severity,
        } in targets
        {
            // A receiver of a route before the escalating one gets the severity it saw.
            let lower;
            let f: &Finding = if severity == f.severity() {
                &f
            } else {
                lower = as_before_escalation(&f, severity);
                &lower
            };
            groups.add(notifier, decider, route, &receiver, f, ack.as_ref());
        }
        // Every target now holds its own obligation.
        ack.into_iter().for_each(Pending::confirm);
    }
}
