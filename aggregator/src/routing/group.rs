//! Grouping and timing: findings become alerts in a group per (route, receiver, `group_by`
//! values); a group is flushed `group_wait` after it was created, then at most every
//! `group_interval` when new findings arrive, and re-sent every `repeat_interval` while it
//! fires (Alertmanager receivers only). An alert resolves after `resolve_after` without new
//! findings and is sent once more with `endsAt` = now.

use std::collections::{BTreeMap, HashMap, VecDeque};

use patchwatch_proto::Finding;
use patchwatch_sinks::encoding::rfc3339_micros;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::ack::{confirm_all, Pending};
use super::alertmanager::{alert_labels, annotations, AlertBatch, PostableAlert};
use super::decide::Decider;
use super::matcher::Route;
use super::receiver::Receiver;
use super::telemetry;

/// Most recent finding ids listed in an alert's `finding_ids` annotation.
const MAX_IDS: usize = 10;

/// The receivers and what alerts link to: everything a flush sends with.
pub(super) struct Notifier {
    receivers: BTreeMap<String, Receiver>,
    /// Without a trailing `/`.
    dashboard_url: Option<String>,
}

impl Notifier {
    pub(super) fn new(
        receivers: BTreeMap<String, Receiver>,
        dashboard_url: Option<String>,
    ) -> Self {
        Notifier {
            receivers,
            dashboard_url: dashboard_url.map(|u| u.trim_end_matches('/').to_owned()),
        }
    }

    /// Receiver names, for logs.
    pub(super) fn names(&self) -> Vec<&String> {
        self.receivers.keys().collect()
    }

    fn is_alertmanager(&self, recv: &str) -> bool {
        matches!(
            self.receivers.get(recv),
            Some(Receiver::Alertmanager { .. })
        )
    }

    /// Sends what `g` has to its receiver and resets the group's timers.
    fn flush(&self, g: &mut Group, route: &Route, now: Instant) {
        let wall = OffsetDateTime::now_utc();
        match self.receivers.get(&g.receiver) {
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
                            generator_url: match (&self.dashboard_url, a.ids.back()) {
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

/// Every open group, keyed by route, receiver and `group_by` values.
#[derive(Default)]
pub(super) struct Groups {
    groups: HashMap<String, Group>,
}

impl Groups {
    /// Adds `f` (as routed to `receiver` by route `route_idx`) to its group, creating the group
    /// and the alert as needed, and takes a share of `ack` for the group's next flush.
    pub(super) fn add(
        &mut self,
        notifier: &Notifier,
        decider: &Decider,
        route_idx: usize,
        receiver: &str,
        f: &Finding,
        ack: Option<&Pending>,
    ) {
        let now = Instant::now();
        let wall = OffsetDateTime::now_utc();
        let route = decider.route(route_idx);
        let alertname = match notifier.receivers.get(receiver) {
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
        let key = format!("{}\u{1f}{receiver}\u{1f}{group_labels:?}", route.name);
        let g = self.groups.entry(key).or_insert_with(|| Group {
            route: route_idx,
            receiver: receiver.to_owned(),
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
        // A finding sent again is counted and listed once. One submitted again without a
        // receipt to keep its alert firing (a preflight gate) reaches a sink receiver once: the
        // alert's next flush only extends its end at Alertmanager. One sent again with a
        // receipt (a forwarding cursor retrying) is delivered again, so the receipt settles.
        let again = st.ids.back() == Some(&f.id);
        if !again {
            st.count += 1;
            st.ids.push_back(f.id.clone());
            while st.ids.len() > MAX_IDS {
                st.ids.pop_front();
            }
        }
        st.annotations = annotations(f, &st.ids, st.count);
        if !(again && ack.is_none())
            && matches!(notifier.receivers.get(receiver), Some(Receiver::Sink(_)))
        {
            g.pending.push(f.clone());
        }
        if let Some(a) = ack {
            g.acks.push(a.share());
        }
    }

    /// When the next group is due (flush, resolution or repeat), if any.
    pub(super) fn deadline(&self, notifier: &Notifier, decider: &Decider) -> Option<Instant> {
        self.groups
            .values()
            .filter_map(|g| g.deadline(notifier, decider.route(g.route)))
            .min()
    }

    /// Resolves quiet alerts and flushes every group that is due; forgets empty groups.
    pub(super) fn tick(&mut self, notifier: &Notifier, decider: &Decider) {
        let now = Instant::now();
        for g in self.groups.values_mut() {
            let route = decider.route(g.route);
            let mut due = g.next_flush.is_some_and(|t| t <= now);
            for a in g.alerts.values_mut() {
                if !a.resolved && a.last_seen + route.timing.resolve_after <= now {
                    a.resolved = true;
                    due = true;
                }
            }
            if notifier.is_alertmanager(&g.receiver)
                && g.next_flush.is_none()
                && g.last_flush
                    .is_some_and(|l| l + route.timing.repeat_interval <= now)
            {
                due = true;
            }
            if due {
                notifier.flush(g, route, now);
            }
        }
        self.groups
            .retain(|_, g| !g.alerts.is_empty() || !g.pending.is_empty() || !g.acks.is_empty());
    }

    /// Flushes every group with findings not yet sent (at shutdown).
    pub(super) fn flush_unsent(&mut self, notifier: &Notifier, decider: &Decider) {
        let now = Instant::now();
        for g in self.groups.values_mut().filter(|g| g.dirty) {
            notifier.flush(g, decider.route(g.route), now);
        }
    }
}

struct Group {
    route: usize,
    receiver: String,
    alerts: BTreeMap<String, AlertState>,
    /// Findings for a sink receiver, sent at the next flush.
    pending: Vec<Finding>,
    /// Obligations of the findings added since the last flush; met when the flush is
    /// confirmed by the receiver.
    acks: Vec<Pending>,
    /// Findings were added since the last flush.
    dirty: bool,
    next_flush: Option<Instant>,
    last_flush: Option<Instant>,
}

impl Group {
    fn deadline(&self, notifier: &Notifier, route: &Route) -> Option<Instant> {
        let t = &route.timing;
        let resolve = self
            .alerts
            .values()
            .filter(|a| !a.resolved)
            .map(|a| a.last_seen + t.resolve_after)
            .min();
        let repeat = if notifier.is_alertmanager(&self.receiver) && self.next_flush.is_none() {
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

/// One alert of a group: the findings with the same identity labels.
struct AlertState {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: OffsetDateTime,
    last_seen: Instant,
    last_seen_wall: OffsetDateTime,
    /// The most recent finding ids, oldest first, at most [`MAX_IDS`].
    ids: VecDeque<String>,
    count: u64,
    resolved: bool,
}
