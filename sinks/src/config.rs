//! The `[sinks.<name>]` TOML tables, and building running sinks from them.
//!
//! ```toml
//! [sinks.siem]
//! type = "splunk_hec"            # otlp | splunk_hec | syslog | elasticsearch | webhook | jsonl
//! endpoint = "https://splunk.example:8088"
//! token = { env = "PATCHWATCH_HEC_TOKEN" }
//! [sinks.siem.batch]
//! max_events = 200
//! ```
//! Parsing checks the schema (unknown keys are errors naming the key); [`build`] validates values
//! (URLs, secrets, certificates) and starts the sink.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use patchwatch_proto::Finding;
use serde::Deserialize;

use crate::driver::{DeliveryReport, Receipt, SinkHandle};
use crate::error::SinkError;
use crate::{elasticsearch, jsonl, otlp, splunk_hec, syslog, webhook};

/// Resolves once the destination answered a probe; sinks run whether or not it succeeds.
pub type Healthcheck = BoxFuture<'static, Result<(), SinkError>>;

/// All configured sinks, keyed by name.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    /// Sinks by name; the name appears in logs, metrics and errors.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
}

impl SinksConfig {
    /// Parses TOML text; deprecated keys (`token_env`, `timeout_ms`, a sink's own `ca_file`,
    /// ...) are rewritten, each with a warning naming its replacement.
    ///
    /// # Errors
    /// [`SinkError::ConfigToml`] naming the key and line.
    pub fn from_toml(text: &str) -> Result<Self, SinkError> {
        patchwatch_config::from_toml(text)
            .map(|loaded| loaded.value)
            .map_err(|e| SinkError::ConfigToml(e.to_string()))
    }
}

/// One sink, selected by `type`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    /// OTLP logs over gRPC.
    Otlp(otlp::OtlpConfig),
    /// Splunk HTTP Event Collector.
    SplunkHec(splunk_hec::SplunkHecConfig),
    /// Syslog RFC 5424 (optionally CEF) over UDP, TCP or TLS.
    Syslog(syslog::SyslogConfig),
    /// Elasticsearch / OpenSearch bulk API with ECS documents.
    Elasticsearch(elasticsearch::ElasticsearchConfig),
    /// JSON webhook, optionally templated for chat tools.
    Webhook(webhook::WebhookConfig),
    /// JSON Lines to a file or stdout.
    Jsonl(jsonl::JsonlConfig),
}

/// Validates `cfg` and starts the sink `name` (needs a tokio runtime).
///
/// # Errors
/// [`SinkError`] naming the sink and the field when a value is unusable (bad URL, missing secret,
/// unreadable certificate). An unreachable destination is not an error here: the healthcheck
/// reports it and the sink keeps retrying.
pub fn build(name: &str, cfg: &SinkConfig) -> Result<(SinkHandle, Healthcheck), SinkError> {
    match cfg {
        SinkConfig::Otlp(c) => otlp::build(name, c),
        SinkConfig::SplunkHec(c) => splunk_hec::build(name, c),
        SinkConfig::Syslog(c) => syslog::build(name, c),
        SinkConfig::Elasticsearch(c) => elasticsearch::build(name, c),
        SinkConfig::Webhook(c) => webhook::build(name, c),
        SinkConfig::Jsonl(c) => jsonl::build(name, c),
    }
}

/// A set of running sinks fed together: the agent's direct-to-SIEM output or the aggregator's
/// forwarder. Each sink has its own queue and task, so one slow destination never holds up
/// another.
#[derive(Debug, Clone, Default)]
pub struct Sinks {
    handles: Vec<SinkHandle>,
}

impl Sinks {
    /// Builds every sink of `cfg` and logs the outcome of each healthcheck in the background.
    ///
    /// # Errors
    /// The first configuration error, naming the sink and field.
    pub fn build(cfg: &SinksConfig) -> Result<Self, SinkError> {
        let mut handles = Vec::new();
        for (name, c) in &cfg.sinks {
            let (h, hc) = build(name, c)?;
            let n = name.clone();
            tokio::spawn(async move {
                match hc.await {
                    Ok(()) => tracing::info!(message = "Sink healthcheck passed.", sink = %n),
                    Err(error) => {
                        tracing::warn!(message = "Sink healthcheck failed.", sink = %n, %error)
                    }
                }
            });
            handles.push(h);
        }
        Ok(Sinks { handles })
    }

    /// Wraps already running sinks.
    pub fn from_handles(handles: Vec<SinkHandle>) -> Self {
        Sinks { handles }
    }

    /// The running sinks.
    pub fn handles(&self) -> &[SinkHandle] {
        &self.handles
    }

    /// Sends `findings` to every sink without waiting for queue space; the receipt resolves when
    /// every sink settled them. `delivered` counts a finding once per sink that confirmed it.
    pub fn send(&self, findings: Vec<Finding>) -> FanoutReceipt {
        FanoutReceipt {
            receipts: self
                .handles
                .iter()
                .map(|h| (h.name().to_string(), h.try_send(findings.clone())))
                .collect(),
        }
    }

    /// Stops every sink (see [`SinkHandle::shutdown`]).
    pub async fn shutdown(&self) {
        futures::future::join_all(self.handles.iter().map(|h| h.shutdown())).await;
    }
}

/// Receipts of one fan-out, one per sink.
#[derive(Debug)]
pub struct FanoutReceipt {
    receipts: Vec<(String, Receipt)>,
}

impl FanoutReceipt {
    /// Waits for every sink and sums their reports.
    pub async fn wait(self) -> DeliveryReport {
        self.wait_each()
            .await
            .into_iter()
            .fold(DeliveryReport::default(), |mut acc, (_, r)| {
                acc.delivered += r.delivered;
                acc.rejected += r.rejected;
                acc.failed += r.failed;
                acc
            })
    }

    /// Waits for every sink and returns each sink's report.
    pub async fn wait_each(self) -> Vec<(String, DeliveryReport)> {
        let (names, receipts): (Vec<_>, Vec<_>) = self.receipts.into_iter().unzip();
        let reports = futures::future::join_all(receipts.into_iter().map(|r| r.wait())).await;
        names.into_iter().zip(reports).collect()
    }
}
