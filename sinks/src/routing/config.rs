//! The routing TOML: routes, receivers, silences and static maintenance windows.
//!
//! ```toml
//! dashboard_url = "https://patchwatch.example"
//! default_receivers = ["oncall"]
//!
//! [[route]]
//! name = "maintenance"
//! in_window = true
//! action = "mute"
//!
//! [[route]]
//! name = "exchange-critical"
//! min_severity = "high"
//! rule_ids = ["EXCH-*"]
//! hosts = ["EXCH*"]
//! receivers = ["oncall", "chat"]
//! group_by = ["rule_id", "host"]
//! group_wait = "30s"
//! repeat_interval = "4h"
//!
//! [receivers.oncall]
//! type = "alertmanager"
//! url = "http://alertmanager:9093"
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::window::MaintenanceWindow;
use crate::driver::RetryConfig;
use crate::{elasticsearch, jsonl, otlp, splunk_hec, syslog, webhook, SinkConfig};

/// Top-level routing configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Base URL of the dashboard; alerts link to `<dashboard_url>/findings/<id>`.
    #[serde(default)]
    pub dashboard_url: Option<String>,
    /// Receivers for findings no route matched; empty drops them (counted).
    #[serde(default)]
    pub default_receivers: Vec<String>,
    /// Routes, evaluated in order.
    #[serde(default)]
    pub route: Vec<RouteConfig>,
    /// Receivers by name.
    #[serde(default)]
    pub receivers: BTreeMap<String, ReceiverConfig>,
    /// Silences: matching findings are dropped while the silence is active.
    #[serde(default)]
    pub silences: Vec<SilenceConfig>,
    /// Maintenance windows known at start (the aggregator adds more with `Router::set_windows`).
    #[serde(default)]
    pub windows: Vec<MaintenanceWindow>,
    /// Findings the router queue holds before `submit` reports it full and `send` waits
    /// (default 10000).
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
}

fn default_queue() -> usize {
    10_000
}

/// What a matching route does.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RouteAction {
    /// Send to the route's receivers (default).
    #[default]
    Deliver,
    /// Drop the finding (e.g. during maintenance); counted, not sent anywhere.
    Mute,
}

/// One route. Every matcher that is set must match; unset matchers match everything.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name, used in logs and as part of the group key.
    pub name: String,
    /// Minimum severity: `info`, `low`, `medium`, `high` or `critical`.
    #[serde(default)]
    pub min_severity: Option<String>,
    /// Rule ids or globs (`EXCH-*`); any may match.
    #[serde(default)]
    pub rule_ids: Vec<String>,
    /// Categories (exact); any may match.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Host name globs, case-insensitive (`EXCH*`); any may match.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Labels that must all be present with these values (the finding's labels plus
    /// `maintenance_window` when tagged).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `true`: only findings inside a maintenance window; `false`: only those outside.
    #[serde(default)]
    pub in_window: Option<bool>,
    /// `deliver` (default) or `mute`.
    #[serde(default)]
    pub action: RouteAction,
    /// Receiver names (required for `deliver`).
    #[serde(default)]
    pub receivers: Vec<String>,
    /// Alert labels that split groups (default `["rule_id"]`; `[]` puts everything in one group).
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    /// Wait before the first notification of a new group, e.g. `30s` (default 30s).
    #[serde(default = "default_group_wait")]
    pub group_wait: String,
    /// Minimum time between notifications of a group with new findings (default 5m).
    #[serde(default = "default_group_interval")]
    pub group_interval: String,
    /// Re-send a still-firing group after this long (default 4h; Alertmanager receivers).
    #[serde(default = "default_repeat")]
    pub repeat_interval: String,
    /// An alert without new findings for this long is resolved (default 1h).
    #[serde(default = "default_resolve")]
    pub resolve_after: String,
    /// Keep evaluating later routes after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
}

fn default_group_by() -> Vec<String> {
    vec!["rule_id".into()]
}
fn default_group_wait() -> String {
    "30s".into()
}
fn default_group_interval() -> String {
    "5m".into()
}
fn default_repeat() -> String {
    "4h".into()
}
fn default_resolve() -> String {
    "1h".into()
}

/// A silence: while active, matching findings are dropped.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SilenceConfig {
    /// Identifier, for logs.
    pub id: String,
    /// Why (who asked, ticket).
    #[serde(default)]
    pub comment: String,
    /// Rule ids or globs; empty matches all.
    #[serde(default)]
    pub rule_ids: Vec<String>,
    /// Host globs; empty matches all.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Labels that must all match.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Start (RFC 3339); absent means already active.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub starts_at: Option<time::OffsetDateTime>,
    /// End (RFC 3339); absent means until removed.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub ends_at: Option<time::OffsetDateTime>,
}

/// Prometheus Alertmanager API v2 receiver.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URL, e.g. `http://alertmanager:9093`; alerts go to `<url>/api/v2/alerts`. For an HA
    /// pair list each instance as its own receiver (Alertmanager asks clients not to load-balance).
    pub url: String,
    /// `alertname` label (default `PatchwatchFinding`).
    #[serde(default = "default_alertname")]
    pub alertname: String,
    /// Retries of one post; alerts are re-sent on `repeat_interval` anyway.
    #[serde(default = "am_retry")]
    pub retry: RetryConfig,
}

fn default_alertname() -> String {
    "PatchwatchFinding".into()
}
fn am_retry() -> RetryConfig {
    RetryConfig {
        max_retries: Some(5),
        ..Default::default()
    }
}

/// A receiver: Alertmanager, or any sink type with the sink's own fields.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReceiverConfig {
    /// Prometheus Alertmanager API v2.
    Alertmanager(AlertmanagerConfig),
    /// OTLP logs.
    Otlp(otlp::OtlpConfig),
    /// Splunk HEC.
    SplunkHec(splunk_hec::SplunkHecConfig),
    /// Syslog / CEF.
    Syslog(syslog::SyslogConfig),
    /// Elasticsearch bulk.
    Elasticsearch(elasticsearch::ElasticsearchConfig),
    /// Webhook (with `template` for chat tools).
    Webhook(webhook::WebhookConfig),
    /// JSON Lines.
    Jsonl(jsonl::JsonlConfig),
}

impl ReceiverConfig {
    /// The sink configuration, for every receiver type except Alertmanager.
    pub fn as_sink(&self) -> Option<SinkConfig> {
        Some(match self {
            ReceiverConfig::Alertmanager(_) => return None,
            ReceiverConfig::Otlp(c) => SinkConfig::Otlp(c.clone()),
            ReceiverConfig::SplunkHec(c) => SinkConfig::SplunkHec(c.clone()),
            ReceiverConfig::Syslog(c) => SinkConfig::Syslog(c.clone()),
            ReceiverConfig::Elasticsearch(c) => SinkConfig::Elasticsearch(c.clone()),
            ReceiverConfig::Webhook(c) => SinkConfig::Webhook(c.clone()),
            ReceiverConfig::Jsonl(c) => SinkConfig::Jsonl(c.clone()),
        })
    }
}

/// Parses `30s`, `5m`, `4h`, `1h30m`, `250ms`, `1d`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{s}`: expected a number, e.g. 30s, 5m, 1h30m"));
        }
        let n: u64 = rest[..digits].parse().map_err(|e| format!("`{s}`: {e}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86_400),
            _ => return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m, h, d)")),
        };
        total += d;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("m").is_err());
    }
}
