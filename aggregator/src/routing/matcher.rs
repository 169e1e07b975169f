//! Compiled routes and silences: which findings a route or a silence matches, and how an
//! escalating route raises a severity.

use std::collections::BTreeMap;
use std::time::Duration;

use globset::GlobMatcher;
use patchwatch_proto::{Finding, Severity};
use patchwatch_sinks::encoding::{host_name, parse_severity};
use time::OffsetDateTime;

use super::config::{RouteAction, RouteConfig, SilenceConfig};
use super::error::RoutingError;
use super::window::{host_glob, valid_id, MAINTENANCE_WINDOW_LABEL};

/// Label (on the finding routed on, and annotation on its alert) holding the severity a
/// finding had before an `escalate` route raised it.
pub const ESCALATED_FROM_LABEL: &str = "escalated_from";

/// A route's timers, parsed from its `group_wait`, `group_interval`, `repeat_interval` and
/// `resolve_after`.
#[derive(Debug, Clone)]
pub(crate) struct Timing {
    pub(crate) group_wait: Duration,
    pub(crate) group_interval: Duration,
    pub(crate) repeat_interval: Duration,
    pub(crate) resolve_after: Duration,
}

/// How an escalating route raises a severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escalation {
    /// To at least this severity.
    To(Severity),
    /// This many steps up along info < low < medium < high < critical, capped at critical.
    Steps(u8),
}

impl Escalation {
    /// Parses `escalate_to`: a severity name or `+N` (1..=4).
    fn parse(s: &str) -> Result<Escalation, String> {
        let t = s.trim();
        if let Some(n) = t.strip_prefix('+') {
            return match n.parse::<u8>() {
                Ok(n @ 1..=4) => Ok(Escalation::Steps(n)),
                _ => Err(format!("`{s}`: a step up is `+1` to `+4`")),
            };
        }
        parse_severity(t).map(Escalation::To).ok_or_else(|| {
            format!("`{s}` is not info, low, medium, high, critical or a step up such as `+1`")
        })
    }

    /// The raised severity; never lower than `sev`. An unspecified severity counts as info.
    pub(crate) fn apply(self, sev: Severity) -> Severity {
        let base = if sev == Severity::Unspecified {
            Severity::Info
        } else {
            sev
        };
        let raised = match self {
            Escalation::To(t) => t,
            Escalation::Steps(n) => {
                let v = (base as i32 + i32::from(n)).min(Severity::Critical as i32);
                Severity::try_from(v).unwrap_or(Severity::Critical)
            }
        };
        raised.max(sev)
    }
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
    /// Set exactly when `action` is `Escalate`.
    pub(crate) escalation: Option<Escalation>,
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
        let escalation = match (c.action, c.escalate_to.as_deref()) {
            (RouteAction::Escalate, None) => {
                return Err(invalid(
                    "escalate_to",
                    "required with action = \"escalate\" (e.g. \"critical\" or \"+1\")".into(),
                ))
            }
            (RouteAction::Escalate, Some(e)) => {
                Some(Escalation::parse(e).map_err(|r| invalid("escalate_to", r))?)
            }
            (_, Some(_)) => {
                return Err(invalid(
                    "escalate_to",
                    "only valid with action = \"escalate\"".into(),
                ))
            }
            (_, None) => None,
        };
        if c.action == RouteAction::Escalate && c.receivers.is_empty() && !c.continue_ {
            return Err(invalid(
                "receivers",
                "an escalating route needs receivers, or `continue = true` so that later routes \
                 deliver the escalated finding"
                    .into(),
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
            escalation,
            receivers: c.receivers.clone(),
            group_by: c.group_by.clone(),
            timing: Timing {
                group_wait: c.group_wait.get(),
                group_interval: c.group_interval.get(),
                repeat_interval: c.repeat_interval.get(),
                resolve_after: c.resolve_after.get(),
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
    pub(crate) config: SilenceConfig,
    rule_ids: Vec<GlobMatcher>,
    severities: Vec<Severity>,
    hosts: Vec<GlobMatcher>,
}

impl Silence {
    pub(crate) fn compile(c: &SilenceConfig) -> Result<Silence, RoutingError> {
        let invalid = |field: &'static str, reason: String| RoutingError::Invalid {
            what: format!("silence `{}`", c.id),
            field,
            reason,
        };
        if !valid_id(&c.id) {
            return Err(invalid(
                "id",
                "must be 1 to 64 characters of letters, digits, '-', '_', '.'".into(),
            ));
        }
        if let (Some(s), Some(e)) = (c.starts_at, c.ends_at) {
            if e <= s {
                return Err(invalid("ends_at", "must be after `starts_at`".into()));
            }
        }
        let severities = c
            .severities
            .iter()
            .map(|s| {
                parse_severity(s.trim()).ok_or_else(|| {
                    invalid(
                        "severities",
                        format!("`{s}` is not info, low, medium, high or critical"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let glob_list = |field: &'static str, pats: &[String]| {
            pats.iter()
                .map(|p| {
                    if p.trim().is_empty() {
                        return Err(invalid(field, "empty glob".into()));
                    }
                    host_glob(p).map_err(|e| invalid(field, format!("`{p}`: {}", e.kind())))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Silence {
            rule_ids: glob_list("rule_ids", &c.rule_ids)?,
            hosts: glob_list("hosts", &c.hosts)?,
            severities,
            config: c.clone(),
        })
    }

    pub(crate) fn matches(&self, f: &Finding, now: OffsetDateTime) -> bool {
        self.config.is_active(now)
            && (self.rule_ids.is_empty() || self.rule_ids.iter().any(|g| g.is_match(&f.rule_id)))
            && (self.severities.is_empty() || self.severities.contains(&f.severity()))
            && (self.hosts.is_empty() || self.hosts.iter().any(|g| g.is_match(host_name(f))))
            && self
                .config
                .labels
                .iter()
                .all(|(k, v)| f.labels.get(k) == Some(v))
    }
}

impl SilenceConfig {
    /// Checks the silence: id, globs, severities and time range.
    ///
    /// # Errors
    /// [`RoutingError::Invalid`] naming the field as written in TOML or JSON (`id`,
    /// `rule_ids`, `hosts`, `severities`, `ends_at`).
    pub fn validate(&self) -> Result<(), RoutingError> {
        Silence::compile(self).map(|_| ())
    }

    /// True when the silence is in force at `at` (start inclusive, end exclusive).
    pub fn is_active(&self, at: OffsetDateTime) -> bool {
        self.starts_at.is_none_or(|s| at >= s) && self.ends_at.is_none_or(|e| at < e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalation_raises_never_lowers() {
        let to = Escalation::parse("critical").unwrap();
        assert_eq!(to.apply(Severity::Low), Severity::Critical);
        let high = Escalation::parse("high").unwrap();
        assert_eq!(high.apply(Severity::Critical), Severity::Critical);
        let one = Escalation::parse("+1").unwrap();
        assert_eq!(one.apply(Severity::Medium), Severity::High);
        assert_eq!(one.apply(Severity::Critical), Severity::Critical);
        assert_eq!(one.apply(Severity::Unspecified), Severity::Low);
        assert_eq!(
            Escalation::parse("+2").unwrap().apply(Severity::High),
            Severity::Critical
        );
        for bad in ["+0", "+5", "urgent", "", "+x"] {
            assert!(Escalation::parse(bad).is_err(), "{bad}");
        }
    }
}
