//! Configuration of the OTLP sink.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::service::OtlpService;
use crate::config::Healthcheck;
use crate::driver::{self, BatchConfig, RetryConfig, Service};
use crate::{Secret, SinkError, SinkHandle};
use patchwatch_config::ClientTls;

/// `type = "otlp"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// gRPC endpoint, e.g. `http://otel-collector:4317` (https for TLS).
    pub endpoint: String,
    /// Extra gRPC metadata, e.g. `{ "x-tenant" = "exchange" }`; keys lowercase.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Bearer token sent as `authorization: Bearer <token>`: `{ env = "VAR" }`,
    /// `{ file = "/path" }` or inline.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Compress requests with gzip (servers must accept it; default true).
    #[serde(default = "yes")]
    pub gzip: bool,
    /// TLS for an https endpoint: `ca_file`, `cert_file` and `key_file` (mutual TLS),
    /// `server_name`.
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// `service.name` resource attribute (default `patchwatch`).
    #[serde(default = "default_service")]
    pub service_name: String,
    /// Batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retries.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn yes() -> bool {
    true
}
fn default_service() -> String {
    "patchwatch".into()
}

/// Validates the config and starts the sink. The channel connects lazily: an unreachable
/// collector is a delivery error (retried), not a build error.
///
/// # Errors
/// Bad `endpoint`, header names or values, unreadable token or CA file.
pub fn build(name: &str, cfg: &OtlpConfig) -> Result<(SinkHandle, Healthcheck), SinkError> {
    let invalid = |field: &'static str, reason: String| SinkError::InvalidField {
        sink: name.to_string(),
        field,
        reason,
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(cfg.endpoint.clone())
        .map_err(|e| invalid("endpoint", format!("`{}`: {e}", cfg.endpoint)))?
        .connect_timeout(
            cfg.retry
                .request_timeout()
                .min(std::time::Duration::from_secs(10)),
        )
        .timeout(cfg.retry.request_timeout());
    if cfg.endpoint.starts_with("https://") {
        let mut tls = tonic::transport::ClientTlsConfig::new().with_enabled_roots();
        if let Some(t) = &cfg.tls {
            let pem = t.load("tls").map_err(|e| invalid("tls", e.to_string()))?;
            if let Some(ca) = pem.ca {
                tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = pem.identity {
                tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            if let Some(name) = pem.server_name {
                tls = tls.domain_name(name);
            }
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| invalid("tls", e.to_string()))?;
    }
    let token = crate::http::secret(name, "token", &cfg.token)?;
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (k, v) in &cfg.headers {
        let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes())
            .map_err(|e| invalid("headers", format!("`{k}`: {e}")))?;
        let val = v
            .parse()
            .map_err(|_| invalid("headers", format!("value of `{k}` is not valid ASCII")))?;
        metadata.insert(key, val);
    }
    if let Some(t) = token {
        let val = format!("Bearer {}", t.expose())
            .parse()
            .map_err(|_| invalid("token", "not valid ASCII".into()))?;
        metadata.insert("authorization", val);
    }
    let svc = Arc::new(OtlpService::new(
        endpoint,
        metadata,
        cfg.gzip,
        cfg.service_name.clone(),
        cfg.endpoint.clone(),
    ));
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
