//! The routing decision for one finding: maintenance-window tag, silences, then the routes in
//! order (first match wins, `continue = true` keeps going, `mute` drops, `escalate` raises the
//! severity for its own receivers and later routes), and the default receivers when no route
//! matched.

use std::collections::HashSet;
use std::sync::RwLock;

use patchwatch_proto::{Finding, Severity};
use patchwatch_sinks::encoding::severity_name;
use time::OffsetDateTime;

use super::config::{RouteAction, RouteConfig, RoutingConfig, SilenceConfig};
use super::error::RoutingError;
use super::matcher::{Route, Silence, ESCALATED_FROM_LABEL};
use super::window::WindowSet;

/// What the router decided for one finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Dropped by the silence with this id.
    Silenced(String),
    /// Dropped by a `mute` route with this name.
    Muted(String),
    /// No route matched and there are no default receivers.
    Unrouted,
    /// Delivered: (route name, receiver name) pairs, in route order.
    Routed(Vec<(String, String)>),
}

/// [`Decision`] as the driver needs it: route indices and severities instead of names.
pub(super) enum Outcome {
    Silenced(String),
    Muted(String),
    /// Empty when no route matched and there are no default receivers.
    Routed(Vec<Target>),
}

/// One delivery: route index ([`DEFAULT_ROUTE`] for the default receivers), receiver, and the
/// finding's severity at that route (escalation raises it for later routes only).
pub(super) struct Target {
    pub(super) route: usize,
    pub(super) receiver: String,
    pub(super) severity: Severity,
}

/// Route index of the default receivers' synthetic route.
pub(super) const DEFAULT_ROUTE: usize = usize::MAX;

/// Compiled routes, silences and the window set: everything a decision reads.
pub(super) struct Decider {
    routes: Vec<Route>,
    default_route: Option<Route>,
    /// `[[silences]]` of the configuration (or the last `set_silences`).
    silences: RwLock<Vec<Silence>>,
    /// Silences created at run time (the aggregator's store), kept apart so that replacing
    /// them never drops a configured one.
    stored_silences: RwLock<Vec<Silence>>,
    windows: WindowSet,
}

impl Decider {
    /// Compiles the routes (checking their receivers against `receivers`), the default
    /// route and the silences of `config`.
    pub(super) fn new(
        config: &RoutingConfig,
        receivers: &[String],
        windows: WindowSet,
    ) -> Result<Self, RoutingError> {
        let mut routes = config
            .route
            .iter()
            .map(|r| Route::compile(r, receivers))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = HashSet::new();
        for r in &routes {
            if !seen.insert(r.name.clone()) {
                return Err(RoutingError::Invalid {
                    what: format!("route `{}`", r.name),
                    field: "name",
                    reason: "duplicate route name".into(),
                });
            }
        }
        routes.shrink_to_fit();
        let default_route = if config.default_receivers.is_empty() {
            None
        } else {
            let cfg: RouteConfig = toml::from_str(&format!(
                "name = \"default\"\nreceivers = {:?}\n",
                config.default_receivers
            ))
            .expect("synthetic route parses");
            Some(Route::compile(&cfg, receivers).map_err(|e| match e {
                RoutingError::Invalid { reason, .. } => RoutingError::Invalid {
                    what: "routing".into(),
                    field: "default_receivers",
                    reason,
                },
                e => e,
            })?)
        };
        Ok(Decider {
            routes,
            default_route,
            silences: RwLock::new(compile_silences(&config.silences)?),
            stored_silences: RwLock::new(Vec::new()),
            windows,
        })
    }

    /// The maintenance windows decisions are made with.
    pub(super) fn windows(&self) -> &WindowSet {
        &self.windows
    }

    /// Number of configured routes (not counting the default one).
    pub(super) fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// The route at `idx` ([`DEFAULT_ROUTE`] for the default one).
    ///
    /// # Panics
    /// `idx` did not come from a [`Target`] of this decider.
    pub(super) fn route(&self, idx: usize) -> &Route {
        self.routes
            .get(idx)
            .or(self.default_route.as_ref())
            .expect("route index from decide")
    }

    /// Replaces the configured silences. All-or-nothing.
    pub(super) fn set_silences(&self, silences: &[SilenceConfig]) -> Result<(), RoutingError> {
        let compiled = compile_silences(silences)?;
        *self.silences.write().expect("silences lock poisoned") = compiled;
        Ok(())
    }

    /// Replaces the stored silences. All-or-nothing.
    pub(super) fn set_stored_silences(
        &self,
        silences: &[SilenceConfig],
    ) -> Result<(), RoutingError> {
        let compiled = compile_silences(silences)?;
        *self
            .stored_silences
            .write()
            .expect("silences lock poisoned") = compiled;
        Ok(())
    }

    /// The configured silences, as written.
    pub(super) fn silences(&self) -> Vec<SilenceConfig> {
        self.silences
            .read()
            .expect("silences lock poisoned")
            .iter()
            .map(|s| s.config.clone())
            .collect()
    }

    fn silenced_by(&self, f: &Finding, now: OffsetDateTime) -> Option<String> {
        [&self.silences, &self.stored_silences]
            .into_iter()
            .find_map(|set| {
                set.read()
                    .expect("silences lock poisoned")
                    .iter()
                    .find(|s| s.matches(f, now))
                    .map(|s| s.config.id.clone())
            })
    }

    /// Tags `f` with its maintenance window, then decides where it goes; an escalating route
    /// raises `f`'s severity and sets the label `escalated_from`.
    pub(super) fn decide(&self, f: &mut Finding) -> Outcome {
        self.windows.tag(f);
        if let Some(id) = self.silenced_by(f, OffsetDateTime::now_utc()) {
            return Outcome::Silenced(id);
        }
        let mut out = Vec::new();
        let mut matched = false;
        for (i, r) in self.routes.iter().enumerate() {
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
                    return Outcome::Muted(r.name.clone());
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
            if let Some(d) = &self.default_route {
                let severity = f.severity();
                out.extend(d.receivers.iter().map(|recv| Target {
                    route: DEFAULT_ROUTE,
                    receiver: recv.clone(),
                    severity,
                }));
            }
        }
        Outcome::Routed(out)
    }
}

fn compile_silences(silences: &[SilenceConfig]) -> Result<Vec<Silence>, RoutingError> {
    let mut seen = HashSet::new();
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
pub(super) fn as_before_escalation(f: &Finding, severity: Severity) -> Finding {
    let mut g = f.clone();
    g.set_severity(severity);
    if f.labels.get(ESCALATED_FROM_LABEL).map(String::as_str) == Some(severity_name(severity)) {
        g.labels.remove(ESCALATED_FROM_LABEL);
    }
    g
}
