//! Configuration of the Elasticsearch sink.

use std::sync::Arc;

use serde::Deserialize;

use super::service::BulkService;
use crate::config::Healthcheck;
use crate::driver::{self, BatchConfig, RetryConfig, Service};
use crate::secret::SecretValue;
use crate::{Secret, SinkError, SinkHandle};
use patchwatch_config::ClientTls;

/// `type = "elasticsearch"` (also for OpenSearch).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URL of the cluster, e.g. `https://es.example:9200`.
    pub endpoint: String,
    /// Index or data stream to write to (default `patchwatch-findings`).
    #[serde(default = "default_index")]
    pub index: String,
    /// Ingest pipeline to run, if any.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// User for HTTP basic authentication (with one of the `password*` fields).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password: `{ env = "VAR" }`, `{ file = "/path" }` or inline.
    #[serde(default)]
    pub password: Option<Secret>,
    /// API key (the base64 `id:key` form) sent as `Authorization: ApiKey`, a secret like
    /// `password`.
    #[serde(default)]
    pub api_key: Option<Secret>,
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

fn default_index() -> String {
    "patchwatch-findings".into()
}

/// Credentials resolved from the config.
#[derive(Debug, Clone)]
pub(super) enum Auth {
    None,
    Basic(String, SecretValue),
    ApiKey(SecretValue),
}

/// Validates the config and starts the sink.
///
/// # Errors
/// Bad `endpoint` or `index`, both basic auth and an API key, a password without a user,
/// unreadable secrets or CA file.
pub fn build(
    name: &str,
    cfg: &ElasticsearchConfig,
) -> Result<(SinkHandle, Healthcheck), SinkError> {
    crate::http::check_url(name, "endpoint", &cfg.endpoint)?;
    let invalid = |field: &'static str, reason: &str| SinkError::InvalidField {
        sink: name.to_string(),
        field,
        reason: reason.to_string(),
    };
    if cfg.index.is_empty()
        || cfg.index != cfg.index.to_lowercase()
        || cfg
            .index
            .contains([' ', '"', '*', '\\', '<', '|', ',', '>', '/', '?'])
    {
        return Err(invalid(
            "index",
            "index names are lowercase, non-empty, without spaces or \\/*?\"<>|,",
        ));
    }
    let password = crate::http::secret(name, "password", &cfg.password)?;
    let api_key = crate::http::secret(name, "api_key", &cfg.api_key)?;
    let auth = match (&cfg.username, password, api_key) {
        (Some(_), _, Some(_)) => {
            return Err(invalid(
                "api_key",
                "use either basic auth or an API key, not both",
            ))
        }
        (Some(u), Some(p), None) => Auth::Basic(u.clone(), p),
        (Some(_), None, None) => return Err(invalid("password", "`username` needs a password")),
        (None, Some(_), _) => return Err(invalid("username", "a password needs `username`")),
        (None, None, Some(k)) => Auth::ApiKey(k),
        (None, None, None) => Auth::None,
    };
    let client = crate::http::client(name, cfg.retry.request_timeout(), cfg.tls.as_ref())?;
    let svc = Arc::new(BulkService {
        client,
        base: cfg.endpoint.trim_end_matches('/').to_string(),
        index: cfg.index.clone(),
        pipeline: cfg.pipeline.clone(),
        auth,
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
    Ok((
        driver::spawn(name, svc, cfg.batch.clone(), cfg.retry.clone()),
        health,
    ))
}
