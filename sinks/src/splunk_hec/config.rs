//! Configuration of the Splunk HEC sink.

use std::sync::Arc;

use patchwatch_config::{ClientTls, Duration};
use serde::Deserialize;

use super::service::HecService;
use crate::config::Healthcheck;
use crate::driver::{self, BatchConfig, RetryConfig, Service};
use crate::{Secret, SinkError, SinkHandle};

/// `type = "splunk_hec"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecConfig {
    /// Base URL of the collector, e.g. `https://splunk.example:8088` (paths are appended).
    pub endpoint: String,
    /// HEC token (a GUID): `{ env = "VAR" }`, `{ file = "/path" }` or inline. Required.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Target index; absent uses the token's default index.
    #[serde(default)]
    pub index: Option<String>,
    /// `source` of every event (default `patchwatch`).
    #[serde(default = "default_source")]
    pub source: String,
    /// `sourcetype` of every event (default `patchwatch:finding`).
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// Wait for indexer acknowledgement before calling a batch delivered (the token must have
    /// it enabled; Splunk Enterprise only). Without it, HTTP 200 only means "looks valid".
    #[serde(default)]
    pub indexer_ack: bool,
    /// Channel GUID sent in `X-Splunk-Request-Channel`; absent picks a random one at start.
    #[serde(default)]
    pub channel: Option<String>,
    /// Interval between ack polls (default 1s).
    #[serde(default = "default_ack_poll")]
    pub ack_poll_interval: Duration,
    /// How long to wait for an ack before sending the batch again (default 60s).
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout: Duration,
    /// TLS: `ca_file` (an extra CA to trust), `cert_file` and `key_file` (client certificate).
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// Batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retries.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_source() -> String {
    "patchwatch".into()
}
fn default_sourcetype() -> String {
    "patchwatch:finding".into()
}
fn default_ack_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Validates the config and starts the sink.
///
/// # Errors
/// Bad `endpoint`, missing token, `channel` not a GUID, unreadable CA file.
pub fn build(name: &str, cfg: &SplunkHecConfig) -> Result<(SinkHandle, Healthcheck), SinkError> {
    crate::http::check_url(name, "endpoint", &cfg.endpoint)?;
    let token =
        crate::http::secret(name, "token", &cfg.token)?.ok_or_else(|| SinkError::InvalidField {
            sink: name.to_string(),
            field: "token",
            reason:
                "a HEC token is required: `token = { env = \"VAR\" }` or `{ file = \"/path\" }`"
                    .into(),
        })?;
    let channel = match &cfg.channel {
        Some(c) => uuid::Uuid::parse_str(c)
            .map_err(|e| SinkError::InvalidField {
                sink: name.to_string(),
                field: "channel",
                reason: format!("must be a GUID: {e}"),
            })?
            .to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    // The request timeout must leave room for the ack wait.
    let mut retry = cfg.retry.clone();
    if cfg.indexer_ack {
        retry.request_timeout = retry
            .request_timeout
            .get()
            .saturating_add(cfg.ack_timeout.get())
            .into();
    }
    let client = crate::http::client(name, cfg.retry.request_timeout(), cfg.tls.as_ref())?;
    let svc = Arc::new(HecService {
        client,
        base: cfg.endpoint.trim_end_matches('/').to_string(),
        token,
        channel,
        cfg: cfg.clone(),
    });
    let hc = svc.clone();
    let sink = name.to_string();
    let health: Healthcheck = Box::pin(async move {
        hc.healthcheck().await.map_err(|e| SinkError::Unhealthy {
            sink,
            destination: e.destination.clone(),
            reason: e.message,
        })
    });
    Ok((driver::spawn(name, svc, cfg.batch.clone(), retry), health))
}
