//! The routing TOML (`[routing]`): routes, receivers, silences and static maintenance windows.
//!
//! Plain serde data: validation and compilation live with the code that uses each part
//! (`matcher` for routes and silences, `window` for windows, `receiver` for receivers).
//!
//! ```toml
//! dashboard_url = "https://patchwatch.example"
//! default_receivers = ["oncall"]
//!
//! [[route]]
//! name = "maintenance-page"
//! in_window = true
//! min_severity = "high"
//! action = "escalate"
//! escalate_to = "critical"
//! receivers = ["oncall"]
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

use patchwatch_config::Duration;
use patchwatch_sinks::{elasticsearch, jsonl, otlp, splunk_hec, syslog, webhook, RetryConfig};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

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
    /// Maintenance windows known at start (the aggregator adds the stored ones to the same
    /// [`WindowSet`](super::WindowSet)).
    #[serde(default)]
    pub windows: Vec<MaintenanceWindow>,
    /// Findings the router queue holds before `submit` reports it full and `send` waits
    /// (default 10000).
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// How long before a window that requires a clean preflight starts its hosts that are
    /// not clean are alerted on (`patchwatch.preflight-gate`), so there is time to fix them;
    /// absent: [`DEFAULT_PREFLIGHT_GATE_LEAD`]; `"0s"`: only once it is active. At most
    /// [`MAX_PREFLIGHT_GATE_LEAD`].
    #[serde(default)]
    pub preflight_gate_lead: Option<Duration>,
}

/// `preflight_gate_lead` when absent: an hour is enough to fix a pending restart or a
/// Group Policy setting before the update starts.
pub const DEFAULT_PREFLIGHT_GATE_LEAD: std::time::Duration = std::time::Duration::from_secs(3600);

/// The longest `preflight_gate_lead`: a week ahead the preflight that will count (the one at
/// the window's start) has not run yet.
pub const MAX_PREFLIGHT_GATE_LEAD: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 3600);

impl RoutingConfig {
    /// `preflight_gate_lead`, or its default.
    pub fn preflight_gate_lead(&self) -> std::time::Duration {
        self.preflight_gate_lead
            .map_or(DEFAULT_PREFLIGHT_GATE_LEAD, Duration::get)
    }
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
    /// Raise the finding's severity to `escalate_to`, then deliver it to the route's receivers
    /// (if any). With `continue = true` later routes see, match on and send the raised
    /// severity, so an escalating route without receivers can feed a paging route below it.
    Escalate,
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
    /// `deliver` (default), `mute` or `escalate`.
    #[serde(default)]
    pub action: RouteAction,
    /// With `action = "escalate"` (required there, refused elsewhere): the severity findings
    /// are raised to (`"high"`, `"critical"`), or a number of steps up (`"+1"`, `"+2"`) along
    /// info < low < medium < high < critical. Never lowers a severity. The raised severity is
    /// the `severity` label Alertmanager gets and the finding's severity other receivers get;
    /// the original is kept in the `escalated_from` label of the finding (and annotation of
    /// the alert). The stored finding and the `[sinks]` forwarding keep the original.
    #[serde(default)]
    pub escalate_to: Option<String>,
    /// Receiver names (required for `deliver`; for `escalate` unless `continue = true`).
    #[serde(default)]
    pub receivers: Vec<String>,
    /// Alert labels that split groups (default `["rule_id"]`; `[]` puts everything in one group).
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    /// Wait before the first notification of a new group, e.g. `"30s"` (default 30s).
    #[serde(default = "default_group_wait")]
    pub group_wait: Duration,
    /// Minimum time between notifications of a group with new findings (default 5m).
    #[serde(default = "default_group_interval")]
    pub group_interval: Duration,
    /// Re-send a still-firing group after this long (default 4h; Alertmanager receivers).
    #[serde(default = "default_repeat")]
    pub repeat_interval: Duration,
    /// An alert without new findings for this long is resolved (default 1h).
    #[serde(default = "default_resolve")]
    pub resolve_after: Duration,
    /// Keep evaluating later routes after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
}

fn default_group_by() -> Vec<String> {
    vec!["rule_id".into()]
}
fn default_group_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_group_interval() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_repeat() -> Duration {
    Duration::from_secs(4 * 3600)
}
fn default_resolve() -> Duration {
    Duration::from_secs(3600)
}

/// A silence: while active, matching findings raise no notification (no alert, nothing to
/// any routing receiver); they are still stored and forwarded to `[sinks]`. Every matcher that
/// is set must match; an unset one matches everything. Silences are checked before routes,
/// against the finding's own severity (before any escalation) and its labels, including
/// `maintenance_window`.
///
/// The same shape is stored by the aggregator for silences created at run time
/// (`POST /api/v1/silences`, `patchwatch window silence add`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SilenceConfig {
    /// Identifier: letters, digits, `-`, `_`, `.`; 1..=64 characters.
    pub id: String,
    /// Why (ticket, change number).
    #[serde(default)]
    pub comment: String,
    /// Who created it (a user name; the aggregator records it for run-time silences).
    #[serde(default)]
    pub created_by: String,
    /// Rule ids or globs; empty matches all.
    #[serde(default)]
    pub rule_ids: Vec<String>,
    /// Severities (`info` .. `critical`), any may match; empty matches all.
    #[serde(default)]
    pub severities: Vec<String>,
    /// Host globs, case-insensitive; empty matches all.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Labels that must all match.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Start (RFC 3339); absent means already active.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub starts_at: Option<OffsetDateTime>,
    /// End (RFC 3339, after `starts_at`); absent means until removed.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub ends_at: Option<OffsetDateTime>,
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

/// A planned maintenance: findings from matching hosts between `starts_at` (inclusive) and
/// `ends_at` (exclusive) get the label `maintenance_window = <id>`, which routes can mute or
/// re-route with `in_window`. Static ones come from `[[routing.windows]]`, the others are stored
/// by the aggregator; a [`WindowSet`](super::WindowSet) holds both, compiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// Stable identifier (also the label value): letters, digits, `-`, `_`, `.`; 1..=64 chars.
    pub id: String,
    /// Human name, e.g. "CU15 rollout wave 2".
    pub name: String,
    /// Host name globs, case-insensitive, e.g. `EXCH0*`, `*.corp.example`.
    pub hosts: Vec<String>,
    /// Start (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// End (RFC 3339), after `starts_at`.
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// Whether every host in scope must have a clean preflight while the window is active
    /// (no finding at high severity or worse in its latest preflight run, and a preflight run
    /// at all). A host that is not clean is marked on the board and alerted on
    /// (`patchwatch.preflight-gate`).
    #[serde(default)]
    pub require_clean_preflight: bool,
}
