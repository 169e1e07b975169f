//! Configuration of the JSON Lines sink.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::service::JsonlService;
use crate::config::Healthcheck;
use crate::driver::{self, BatchConfig, RetryConfig, Service};
use crate::{SinkError, SinkHandle};

/// `type = "jsonl"`: append findings as JSON Lines.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    /// File to append to; `-` or absent writes to stdout.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Call `fsync` after each batch, so a confirmed batch survives a power cut (default false).
    #[serde(default)]
    pub fsync: bool,
    /// Batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retries.
    #[serde(default)]
    pub retry: RetryConfig,
}

/// Starts the sink.
///
/// # Errors
/// None today; the file is opened on first write so that a missing directory is reported as a
/// delivery error and retried.
pub fn build(name: &str, cfg: &JsonlConfig) -> Result<(SinkHandle, Healthcheck), SinkError> {
    let path = cfg.path.clone().filter(|p| p.as_os_str() != "-");
    let svc = Arc::new(JsonlService::new(path, cfg.fsync));
    let hc_svc = svc.clone();
    let sink = name.to_string();
    let health: Healthcheck = Box::pin(async move {
        hc_svc
            .healthcheck()
            .await
            .map_err(|e| SinkError::Unhealthy {
                sink,
                destination: e.destination.clone(),
                reason: e.message,
            })
    });
    let handle = driver::spawn(name, svc, cfg.batch.clone(), cfg.retry.clone());
    Ok((handle, health))
}
