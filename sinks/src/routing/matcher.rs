//! Compiled routes and silences, and the routing decision for one finding.

use std::collections::BTreeMap;
use std::time::Duration;

use globset::GlobMatcher;
use patchwatch_proto::{Finding, Severity};
use time::OffsetDateTime;

use super::config::{parse_duration, RouteAction, RouteConfig, SilenceConfig};
use super::router::RoutingError;
use super::window::{host_glob, MAINTENANCE_WINDOW_LABEL};
use crate::encoding::{host_name, parse_severity};

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

#[derive(Debug, Clone)]
pub(crate) struct Timing {
    pub(crate) group_wait: Duration,
    pub(crate) group_interval: Duration,
    pub(crate) repeat_interval: Duration,
    pub(crate) resolve_after: Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) name: String,
    min_severity: Option<Severity>,
    rule_ids: Vec<GlobMatcher>,
    categories: Vec<String>,
    hosts: Vec<GlobMatcher>,
    labels: BTreeMap<String, String>,
    in_window: Option<bool>,
    pub(crate) action: RouteAction,
    pub(crate) receivers: Vec<String>,
    pub(crate) group_by: Vec<String>,
    pub(crate) timing: Timing,
    pub(crate) continue_: bool,
}

fn globs(
    route: &str,
    field: &'static str,
    pats: &[String],
) -> Result<Vec<GlobMatcher>, RoutingError> {
    pats.iter()
        .map(|p| {
            host_glob(p).map_err(|e| RoutingError::Invalid {
                what: format!("route `{route}`"),
                field,
                reason: format!("`{p}`: {}", e.kind()),
            })
        })
        .collect()
}

impl Route {
    pub(crate) fn compile(c: &RouteConfig, receivers: &[String]) -> Result<Route, RoutingError> {
        let invalid = |field: &'static str, reason: String| RoutingError::Invalid {
            what: format!("route `{}`", c.name),
            field,
            reason,
        };
        let dur = |field: &'static str, s: &str| parse_duration(s).map_err(|r| invalid(field, r));
        let min_severity = c
            .min_severity
            .as_deref()
            .map(|s| {
                parse_severity(s).ok_or_else(|| {
                    invalid(
                        "min_severity",
                        format!("`{s}` is not info, low, medium, high or critical"),
                    )
                })
            })
            .transpose()?;
        if c.action == RouteAction::Deliver && c.receivers.is_empty() {
            return Err(invalid(
                "receivers",
                "a delivering route needs at least one receiver".into(),
            ));
        }
        for r in &c.receivers {
            if !receivers.contains(r) {
                return Err(invalid("receivers", format!("no receiver named `{r}`")));
            }
        }
        Ok(Route {
            name: c.name.clone(),
            min_severity,
            rule_ids: globs(&c.name, "rule_ids", &c.rule_ids)?,
            categories: c.categories.clone(),
            hosts: globs(&c.name, "hosts", &c.hosts)?,
            labels: c.labels.clone(),
            in_window: c.in_window,
            action: c.action,
            receivers: c.receivers.clone(),
            group_by: c.group_by.clone(),
            timing: Timing {
                group_wait: dur("group_wait", &c.group_wait)?,
                group_interval: dur("group_interval", &c.group_interval)?,
                repeat_interval: dur("repeat_interval", &c.repeat_interval)?,
                resolve_after: dur("resolve_after", &c.resolve_after)?,
            },
            continue_: c.continue_,
        })
    }

    pub(crate) fn matches(&self, f: &Finding) -> bool {
        let host = host_name(f);
        let sev = f.severity();
        self.min_severity.is_none_or(|m| sev >= m)
            && (self.rule_ids.is_empty() || self.rule_ids.iter().any(|g| g.is_match(&f.rule_id)))
            && (self.categories.is_empty() || self.categories.contains(&f.category))
            && (self.hosts.is_empty() || self.hosts.iter().any(|g| g.is_match(host)))
            && self.labels.iter().all(|(k, v)| f.labels.get(k) == Some(v))
            && self
                .in_window
                .is_none_or(|w| f.labels.contains_key(MAINTENANCE_WINDOW_LABEL) == w)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Silence {
    pub(crate) id: String,
    rule_ids: Vec<GlobMatcher>,
    hosts: Vec<GlobMatcher>,
    labels: BTreeMap<String, String>,
    starts_at: Option<OffsetDateTime>,
    ends_at: Option<OffsetDateTime>,
}

impl Silence {
    pub(crate) fn compile(c: &SilenceConfig) -> Result<Silence, RoutingError> {
        let name = format!("silence {}", c.id);
        if let (Some(s), Some(e)) = (c.starts_at, c.ends_at) {
            if e <= s {
                return Err(RoutingError::Invalid {
                    what: format!("silence `{}`", c.id),
                    field: "ends_at",
                    reason: "must be after `starts_at`".into(),
                });
            }
        }
        Ok(Silence {
            id: c.id.clone(),
            rule_ids: globs(&name, "rule_ids", &c.rule_ids)?,
            hosts: globs(&name, "hosts", &c.hosts)?,
            labels: c.labels.clone(),
            starts_at: c.starts_at,
            ends_at: c.ends_at,
        })
    }

    pub(crate) fn matches(&self, f: &Finding, now: OffsetDateTime) -> bool {
        self.starts_at.is_none_or(|s| now >= s)
            && self.ends_at.is_none_or(|e| now < e)
            && (self.rule_ids.is_empty() || self.rule_ids.iter().any(|g| g.is_match(&f.rule_id)))
            && (self.hosts.is_empty() || self.hosts.iter().any(|g| g.is_match(host_name(f))))
            && self.labels.iter().all(|(k, v)| f.labels.get(k) == Some(v))
    }
}
