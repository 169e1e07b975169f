//! The router: decision per finding, groups, timing, and notification.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use patchwatch_proto::{Finding, Severity};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::ack::{confirm_all, Pending};
use super::alertmanager::{self, AlertBatch, PostableAlert};
use super::config::{ReceiverConfig, RouteAction, RouteConfig, RoutingConfig, SilenceConfig};
use super::matcher::{Decision, Route, Silence};
use super::window::{
    compile_all, CompiledWindow, MaintenanceWindow, WindowError, MAINTENANCE_WINDOW_LABEL,
};
use crate::driver::{Receipt, Ticket};
use crate::encoding::{host_name, rfc3339_micros, severity_name};
use crate::{telemetry, SinkError, SinkHandle};

/// Errors of router construction and use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoutingError {
    /// A route, silence or receiver field is invalid.
    #[error("{what}: invalid `{field}`: {reason}")]
    Invalid {
        /// Which item, e.g. "route `oncall`".
        what: String,
        /// Field name as written in TOML.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A maintenance window is invalid.
    #[error(transparent)]
    Window(#[from] WindowError),
    /// A sink receiver could not be built.
    #[error("receiver: {0}")]
    Sink(#[from] SinkError),
    /// The TOML does not parse or match the schema.
    #[error("invalid routing configuration: {0}")]
    Toml(String),
    /// `Router::new` was called outside a tokio runtime (receivers run as tasks).
    #[error("Router::new must be called inside a tokio runtime")]
    NoRuntime,
    /// The router queue is full; the finding is handed back.
    #[error("router queue is full")]
    QueueFull(Box<Finding>),
    /// `run` was called twice, or the driver has stopped.
    #[error("router driver is not running or already started")]
    NotRunning,
}

enum Receiver {
    Alertmanager {
        tx: mpsc::Sender<AlertBatch>,
        alertname: String,
    },
    Sink(SinkHandle),
}

/// A finding on its way through the router, with the obligation to settle it when it came
/// through [`Router::send`].
struct Queued {
    finding: Finding,
    ack: Option<Pending>,
}

struct Shared {
    tx: mpsc::Sender<Queued>,
    rx: Mutex<Option<mpsc::Receiver<Queued>>>,
    routes: Vec<Route>,
    default_route: Option<Route>,
    receivers: BTreeMap<String, Receiver>,
    /// `[[silences]]` of the configuration (or the last `set_silences`).
    silences: RwLock<Vec<Silence>>,
    /// Silences created at run time (the aggregator's store), kept apart so that replacing
    /// them never drops a configured one.
    stored_silences: RwLock<Vec<Silence>>,
    windows: RwLock<Vec<CompiledWindow>>,
    dashboard_url: Option<String>,
}

/// The alert router. Cheap to clone; all clones feed the same driver.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.inner.routes.len())
            .field(
                "receivers",
                &self.inner.receivers.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Most recent finding ids listed in an alert's `finding_ids` annotation.
const MAX_IDS: usize = 10;

impl RoutingConfig {
    /// Parses TOML text.
    ///
    /// # Errors
    /// [`RoutingError::Toml`] naming the key and line.
    pub fn from_toml(text: &str) -> Result<Self, RoutingError> {
        toml::from_str(text).map_err(|e| RoutingError::Toml(e.to_string()))
    }
}

impl Router {
    /// Validates `config`, starts the receivers (sinks and Alertmanager posters) and returns the
    /// router. Call [`Router::run`] to start routing.
    ///
    /// # Errors
    /// [`RoutingError`] naming the route, receiver, silence or window and the field.
    pub fn new(config: RoutingConfig) -> Result<Router, RoutingError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RoutingError::NoRuntime);
        }
        let names: Vec<String> = config.receivers.keys().cloned().collect();
        let mut routes = config
            .route
            .iter()
            .map(|r| Route::compile(r, &names))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::HashSet::new();
        for r in &routes {
            if !seen.insert(r.name.clone()) {
                return Err(RoutingError::Invalid {
                    what: format!("route `{}`", r.name),
                    field: "name",
                    reason: "duplicate route name".into(),
                });
            }
        }
        let default_route = if config.default_receivers.is_empty() {
            None
        } else {
            let cfg: RouteConfig = toml::from_str(&format!(
                "name = \"default\"\nreceivers = {:?}\n",
                config.default_receivers
            ))
            .expect("synthetic route parses");
            Some(Route::compile(&cfg, &names).map_err(|e| match e {
                RoutingError::Invalid { reason, .. } => RoutingError::Invalid {
                    what: "routing".into(),
                    field: "default_receivers",
                    reason,
                },
                e => e,
            })?)
        };
        let silences = compile_silences(&config.silences)?;
        let windows = compile_all(&config.windows)?;
        if let Some(u) = &config.dashboard_url {
            crate::http::check_url("routing", "dashboard_url", u)?;
        }
        let mut receivers = BTreeMap::new();
        for (name, rc) in &config.receivers {
            let r = match rc {
                ReceiverConfig::Alertmanager(am) => Receiver::Alertmanager {
                    tx: alertmanager::spawn(name.clone(), am.clone())?,
                    alertname: am.alertname.clone(),
                },
                other => {
                    let sink = other
                        .as_sink()
                        .expect("non-alertmanager receivers are sinks");
                    let (h, hc) = crate::build(&format!("receiver.{name}"), &sink)?;
                    let n = name.clone();
                    tokio::spawn(async move {
                        if let Err(error) = hc.await {
                            tracing::warn!(message = "Receiver healthcheck failed.", receiver = %n, %error);
                        }
                    });
                    Receiver::Sink(h)
                }
            };
            receivers.insert(name.clone(), r);
        }
        routes.shrink_to_fit();
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        Ok(Router {
            inner: Arc::new(Shared {
                tx,
                rx: Mutex::new(Some(rx)),
                routes,
                default_route,
                receivers,
                silences: RwLock::new(silences),
                stored_silences: RwLock::new(Vec::new()),
                windows: RwLock::new(windows),
                dashboard_url: config
                    .dashboard_url
                    .map(|u| u.trim_end_matches('/').to_string()),
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        let ticket = Ticket::new(findings.len(), tx);
        for finding in findings {
            let ack = Some(Pending::new(Arc::clone(&ticket)));
            // A stopped router hands the item back; dropping it fails the finding.
            let _ = self.inner.tx.send(Queued { finding, ack }).await;
        }
        Receipt { rx }
    }

    /// Replaces the maintenance windows (the aggregator calls this whenever its stored set
    /// changes). All-or-nothing: on error the previous set stays.
    ///
    /// # Errors
    /// The first invalid window, naming the field.
    pub fn set_windows(&self, windows: Vec<MaintenanceWindow>) -> Result<(), WindowError> {
        let compiled = compile_all(&windows)?;
        *self.inner.windows.write().expect("windows lock poisoned") = compiled;
        Ok(())
    }

    /// The current maintenance windows.
    pub fn windows(&self) -> Vec<MaintenanceWindow> {
        self.inner
            .windows
            .read()
            .expect("windows lock poisoned")
            .iter()
            .map(|w| w.window.clone())
            .collect()
    }

    /// Replaces the configured silences (`[[silences]]`). All-or-nothing.
    ///
    /// # Errors
    /// The first invalid silence.
    pub fn set_silences(&self, silences: Vec<SilenceConfig>) -> Result<(), RoutingError> {
        let compiled = compile_silences(&silences)?;
        *self.inner.silences.write().expect("silences lock poisoned") = compiled;
        Ok(())
    }

    /// Replaces the silences created at run time (the aggregator calls this whenever its
    /// stored set changes); the configured ones stay. All-or-nothing: on error the previous
    /// set stays.
    ///
    /// # Errors
    /// The first invalid silence, naming the field.
    pub fn set_stored_silences(&self, silences: Vec<SilenceConfig>) -> Result<(), RoutingError> {
        let compiled = compile_silences(&silences)?;
        *self
            .inner
            .stored_silences
            .write()
            .expect("silences lock poisoned") = compiled;
        Ok(())
    }

    /// The configured silences (`[[silences]]`), as written.
    pub fn silences(&self) -> Vec<SilenceConfig> {
        self.inner
            .silences
            .read()
            .expect("silences lock poisoned")
            .iter()
            .map(|s| s.config.clone())
            .collect()
    }

    fn silenced_by(&self, f: &Finding, now: OffsetDateTime) -> Option<String> {
        [&self.inner.silences, &self.inner.stored_silences]
            .into_iter()
            .find_map(|set| {
                set.read()
                    .expect("silences lock poisoned")
                    .iter()
                    .find(|s| s.matches(f, now))
                    .map(|s| s.config.id.clone())
            })
    }

    /// Tags `finding` with the maintenance window covering its host at its observed time
    /// (label `maintenance_window`), then decides where it goes. Pure apart from the tag and
    /// escalation (an `escalate` route raises the finding's severity and sets the label
    /// `escalated_from`): the aggregator can use it to preview routing.
    pub fn decide(&self, finding: &mut Finding) -> Decision {
        match self.decide_inner(finding) {
            Inner::Silenced(id) => Decision::Silenced(id),
            Inner::Muted(r) => Decision::Muted(r),
            Inner::Routed(v) if v.is_empty() => Decision::Unrouted,
            Inner::Routed(v) => Decision::Routed(
                v.into_iter()
                    .map(|t| (self.route(t.route).name.clone(), t.receiver))
                    .collect(),
            ),
        }
    }

    fn route(&self, idx: usize) -> &Route {
        self.inner
            .routes
            .get(idx)
            .or(self.inner.default_route.as_ref())
            .expect("route index from decide_inner")
    }

    fn decide_inner(&self, f: &mut Finding) -> Inner {
        let at = if f.observed_time_unix_nano > 0 {
            OffsetDateTime::from_unix_timestamp_nanos(f.observed_time_unix_nano as i128)
                .unwrap_or_else(|_| OffsetDateTime::now_utc())
        } else {
            OffsetDateTime::now_utc()
        };
        {
            let windows = self.inner.windows.read().expect("windows lock poisoned");
            if let Some(w) = windows.iter().find(|w| w.covers(host_name(f), at)) {
                f.labels
                    .insert(MAINTENANCE_WINDOW_LABEL.into(), w.window.id.clone());
            }
        }
        if let Some(id) = self.silenced_by(f, OffsetDateTime::now_utc()) {
            return Inner::Silenced(id);
        }
        let mut out = Vec::new();
        let mut matched = false;
        for (i, r) in self.inner.routes.iter().enumerate() {
            if !r.matches(f) {
                continue;
            }
            if let Some(e) = r.escalation {
                let from = f.severity();
                let raised = e.apply(from);
                if raised != from {
                    f.labels
                        .entry(ESCALATED_FROM_LABEL.into())
                        .or_insert_with(|| severity_name(from).into());
                    f.set_severity(raised);
                }
            }
            // An escalating route without receivers only raises the severity: it does not
            // count as a match, so the default receivers still apply when nothing else does.
            matched |= !(r.action == RouteAction::Escalate && r.receivers.is_empty());
            if r.action == RouteAction::Mute {
                if out.is_empty() {
                    return Inner::Muted(r.name.clone());
                }
                break;
            }
            let severity = f.severity();
            out.extend(r.receivers.iter().map(|recv| Target {
                route: i,
                receiver: recv.clone(),
                severity,
            }));
            if !r.continue_ {
                break;
            }
        }
        if !matched {
            if let Some(d) = &self.inner.default_route {
                let severity = f.severity();
                out.extend(d.receivers.iter().map(|recv| Target {
                    route: usize::MAX,
                    receiver: recv.clone(),
                    severity,
                }));
            }
        }
        Inner::Routed(out)
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
        let mut groups: HashMap<String, Group> = HashMap::new();
        tokio::pin!(shutdown);
        loop {
            let deadline = groups
                .values()
                .filter_map(|g| g.deadline(self))
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = &mut shutdown => {
                    let now = Instant::now();
                    for g in groups.values_mut().filter(|g| g.dirty) {
                        self.flush(g, now);
                    }
                    return Ok(());
                }
                q = rx.recv() => match q {
                    Some(q) => self.process(&mut groups, q.finding, q.ack),
                    None => return Ok(()),
                },
                _ = tokio::time::sleep_until(deadline) => self.tick(&mut groups),
            }
        }
    }

    fn process(&self, groups: &mut HashMap<String, Group>, mut f: Finding, ack: Option<Pending>) {
        // A finding a rule suppresses is settled here: nothing more is owed for it.
        let targets = match self.decide_inner(&mut f) {
            Inner::Silenced(id) => {
                tracing::debug!(message = "Finding silenced.", finding = %f.id, silence = %id);
                telemetry::routed("silenced");
                ack.into_iter().for_each(Pending::confirm);
                return;
            }
            Inner::Muted(route) => {
                tracing::debug!(message = "Finding muted.", finding = %f.id, route = %route);
                telemetry::routed("muted");
                ack.into_iter().for_each(Pending::confirm);
                return;
            }
            Inner::Routed(t) if t.is_empty() => {
                telemetry::routed("unrouted");
                ack.into_iter().for_each(Pending::confirm);
                return;
            }
            Inner::Routed(t) => t,
        };
        telemetry::routed("routed");
        let now = Instant::now();
        let wall = OffsetDateTime::now_utc();
        for Target {
            route: route_idx,
            receiver: recv,
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
            let route = self.route(route_idx);
            let alertname = match self.inner.receivers.get(&recv) {
                Some(Receiver::Alertmanager { alertname, .. }) => alertname.as_str(),
                _ => "PatchwatchFinding",
            };
            let labels = alert_labels(f, alertname);
            let group_labels: BTreeMap<String, String> = route
                .group_by
                .iter()
                .map(|k| {
                    let v = labels
                        .get(k)
                        .or_else(|| f.labels.get(k))
                        .cloned()
                        .unwrap_or_default();
                    (k.clone(), v)
                })
                .collect();
            let key = format!("{}\u{1f}{recv}\u{1f}{group_labels:?}", route.name);
            let g = groups.entry(key).or_insert_with(|| Group {
                route: route_idx,
                receiver: recv.clone(),
                alerts: BTreeMap::new(),
                pending: Vec::new(),
                acks: Vec::new(),
                dirty: false,
                next_flush: Some(now + route.timing.group_wait),
                last_flush: None,
            });
            if let Some(last) = g.last_flush {
                let earliest = (last + route.timing.group_interval).max(now);
                g.next_flush = Some(g.next_flush.map_or(earliest, |n| n.min(earliest)));
            }
            g.dirty = true;
            let fp = format!("{labels:?}");
            let st = g.alerts.entry(fp).or_insert_with(|| AlertState {
                labels: labels.clone(),
                annotations: BTreeMap::new(),
                starts_at: wall,
                last_seen: now,
                last_seen_wall: wall,
                ids: VecDeque::new(),
                count: 0,
                resolved: false,
            });
            st.last_seen = now;
            st.last_seen_wall = wall;
            st.resolved = false;
            st.count += 1;
            st.ids.push_back(f.id.clone());
            while st.ids.len() > MAX_IDS {
                st.ids.pop_front();
            }
            st.annotations = annotations(f, st);
            if matches!(self.inner.receivers.get(&recv), Some(Receiver::Sink(_))) {
                g.pending.push(f.clone());
            }
            if let Some(a) = &ack {
                g.acks.push(a.share());
            }
        }
        // Every target now holds its own obligation.
        ack.into_iter().for_each(Pending::confirm);
    }

    fn tick(&self, groups: &mut HashMap<String, Group>) {
        let now = Instant::now();
        for g in groups.values_mut() {
            let route = self.route(g.route);
            let mut due = g.next_flush.is_some_and(|t| t <= now);
            for a in g.alerts.values_mut() {
                if !a.resolved && a.last_seen + route.timing.resolve_after <= now {
                    a.resolved = true;
                    due = true;
                }
            }
            if self.is_alertmanager(&g.receiver)
                && g.next_flush.is_none()
                && g.last_flush
                    .is_some_and(|l| l + route.timing.repeat_interval <= now)
            {
                due = true;
            }
            if due {
                self.flush(g, now);
            }
        }
        groups.retain(|_, g| !g.alerts.is_empty() || !g.pending.is_empty() || !g.acks.is_empty());
    }

    fn is_alertmanager(&self, recv: &str) -> bool {
        matches!(
            self.inner.receivers.get(recv),
            Some(Receiver::Alertmanager { .. })
        )
    }

    fn flush(&self, g: &mut Group, now: Instant) {
        let route = self.route(g.route);
        let wall = OffsetDateTime::now_utc();
        match self.inner.receivers.get(&g.receiver) {
            Some(Receiver::Alertmanager { tx, .. }) => {
                let alerts: Vec<PostableAlert> = g
                    .alerts
                    .values()
                    .map(|a| {
                        let ends = if a.resolved {
                            wall
                        } else {
                            a.last_seen_wall + route.timing.resolve_after
                        };
                        let nanos = |t: OffsetDateTime| t.unix_timestamp_nanos() as i64;
                        PostableAlert {
                            labels: a.labels.clone(),
                            annotations: a.annotations.clone(),
                            starts_at: rfc3339_micros(nanos(a.starts_at)),
                            ends_at: rfc3339_micros(nanos(ends)),
                            generator_url: match (&self.inner.dashboard_url, a.ids.back()) {
                                (Some(base), Some(id)) => format!("{base}/findings/{id}"),
                                _ => String::new(),
                            },
                        }
                    })
                    .collect();
                let acks = std::mem::take(&mut g.acks);
                if alerts.is_empty() {
                    confirm_all(acks);
                } else if tx.try_send(AlertBatch { alerts, acks }).is_err() {
                    // The dropped batch fails its findings' receipts, so a caller that
                    // routed them with `send` sends them again.
                    telemetry::notifications(&g.receiver, "queue_full");
                    tracing::warn!(message = "Alertmanager receiver queue full; alerts go out on the next repeat.",
                        receiver = %g.receiver);
                }
            }
            Some(Receiver::Sink(h)) if !g.pending.is_empty() => {
                let findings = std::mem::take(&mut g.pending);
                let acks = std::mem::take(&mut g.acks);
                let h = h.clone();
                let recv = g.receiver.clone();
                // Findings that came with an obligation wait for queue space (their caller
                // bounds how many are in flight); the others never make the router wait.
                let tracked = !acks.is_empty();
                let receipt = (!tracked).then(|| h.try_send(findings.clone()));
                tokio::spawn(async move {
                    let receipt = match receipt {
                        Some(r) => r,
                        None => h.send(findings).await,
                    };
                    let r = receipt.wait().await;
                    let outcome = if r.is_complete() { "sent" } else { "failed" };
                    telemetry::notifications(&recv, outcome);
                    if r.is_complete() {
                        confirm_all(acks);
                    } else {
                        tracing::warn!(message = "Receiver did not deliver every finding.", receiver = %recv,
                                delivered = r.delivered, rejected = r.rejected, failed = r.failed);
                    }
                });
            }
            Some(Receiver::Sink(_)) => {}
            None => confirm_all(std::mem::take(&mut g.acks)),
        }
        g.alerts.retain(|_, a| !a.resolved);
        g.pending.clear();
        g.dirty = false;
        g.last_flush = Some(now);
        g.next_flush = None;
    }
}

enum Inner {
    Silenced(String),
    Muted(String),
    Routed(Vec<Target>),
}

/// One delivery: route index (`usize::MAX` for the default route), receiver, and the
/// finding's severity at that route (escalation raises it for later routes only).
struct Target {
    route: usize,
    receiver: String,
    severity: Severity,
}

/// Label (on the finding routed on, and annotation on its alert) holding the severity a
/// finding had before an `escalate` route raised it.
pub const ESCALATED_FROM_LABEL: &str = "escalated_from";

fn compile_silences(silences: &[SilenceConfig]) -> Result<Vec<Silence>, RoutingError> {
    let mut seen = std::collections::HashSet::new();
    silences
        .iter()
        .map(|c| {
            if !seen.insert(c.id.as_str()) {
                return Err(RoutingError::Invalid {
                    what: format!("silence `{}`", c.id),
                    field: "id",
                    reason: "duplicate silence id".into(),
                });
            }
            Silence::compile(c)
        })
        .collect()
}

/// `f` with the severity it had at an earlier route (before a later one escalated it).
fn as_before_escalation(f: &Finding, severity: Severity) -> Finding {
    let mut g = f.clone();
    g.set_severity(severity);
    if f.labels.get(ESCALATED_FROM_LABEL).map(String::as_str) == Some(severity_name(severity)) {
        g.labels.remove(ESCALATED_FROM_LABEL);
    }
    g
}

struct Group {
    route: usize,
    receiver: String,
    alerts: BTreeMap<String, AlertState>,
    pending: Vec<Finding>,
    /// Obligations of the findings added since the last flush; met when the flush is
    /// confirmed by the receiver.
    acks: Vec<Pending>,
    dirty: bool,
    next_flush: Option<Instant>,
    last_flush: Option<Instant>,
}

impl Group {
    fn deadline(&self, router: &Router) -> Option<Instant> {
        let t = &router.route(self.route).timing;
        let resolve = self
            .alerts
            .values()
            .filter(|a| !a.resolved)
            .map(|a| a.last_seen + t.resolve_after)
            .min();
        let repeat = if router.is_alertmanager(&self.receiver) && self.next_flush.is_none() {
            self.last_flush.map(|l| l + t.repeat_interval)
        } else {
            None
        };
        [self.next_flush, resolve, repeat]
            .into_iter()
            .flatten()
            .min()
    }
}

struct AlertState {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: OffsetDateTime,
    last_seen: Instant,
    last_seen_wall: OffsetDateTime,
    ids: VecDeque<String>,
    count: u64,
    resolved: bool,
}

/// Identity labels: low-cardinality only (no ids, paths or times).
fn alert_labels(f: &Finding, alertname: &str) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert("alertname".into(), alertname.to_string());
    l.insert("rule_id".into(), f.rule_id.clone());
    l.insert("severity".into(), severity_name(f.severity()).into());
    l.insert("host".into(), host_name(f).to_string());
    if !f.category.is_empty() {
        l.insert("category".into(), f.category.clone());
    }
    if let Some(w) = f.labels.get(MAINTENANCE_WINDOW_LABEL) {
        l.insert(MAINTENANCE_WINDOW_LABEL.into(), w.clone());
    }
    l
}

fn annotations(f: &Finding, st: &AlertState) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert("summary".into(), f.title.clone());
    let ids: Vec<&str> = st.ids.iter().map(String::as_str).collect();
    a.insert("finding_ids".into(), ids.join(","));
    a.insert("last_finding_id".into(), f.id.clone());
    a.insert("finding_count".into(), st.count.to_string());
    if !f.source_path.is_empty() {
        a.insert(
            "log_file".into(),
            format!("{}:{}", f.source_path, f.line_number),
        );
    }
    if let Some(from) = f.labels.get(ESCALATED_FROM_LABEL) {
        a.insert(ESCALATED_FROM_LABEL.into(), from.clone());
    }
    if let Some(e) = f.evidence.first() {
        a.insert("evidence".into(), e.chars().take(1024).collect());
    }
    if let Some(r) = &f.remediation {
        if !r.summary.is_empty() {
            a.insert("description".into(), r.summary.clone());
        }
        if let Some(link) = r.links.first() {
            a.insert("runbook_url".into(), link.clone());
        }
    }
    a
}
