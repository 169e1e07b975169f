//! Configuration of the webhook sink.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::encoder::Template;
use super::service::WebhookService;
use crate::config::Healthcheck;
use crate::driver::{self, BatchConfig, RetryConfig, Service};
use crate::{Secret, SinkError, SinkHandle};
use patchwatch_config::ClientTls;

/// `type = "webhook"`: POST findings as JSON.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// URL to POST to (http or https).
    pub url: String,
    /// Extra request headers, e.g. `{ "X-Team" = "exchange" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Bearer token sent as `Authorization: Bearer <token>`: `{ env = "VAR" }`,
    /// `{ file = "/path" }` or inline.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Text template, e.g. `"{{severity}}: {{title}} on {{host}}"`. When set, each finding is
    /// posted alone as `{"<template_field>": "<text>"}`. Placeholders: id, title, host, rule_id,
    /// severity, category, source_path, line_number, run_id, remediation, evidence,
    /// `labels.<key>`, `fields.<key>`.
    #[serde(default)]
    pub template: Option<String>,
    /// JSON key of the rendered text (default `text`, which Slack and Mattermost read).
    #[serde(default = "default_template_field")]
    pub template_field: String,
    /// TLS: `ca_file` (an extra CA to trust), `cert_file` and `key_file` (client certificate).
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// Batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retries; also sets the request timeout.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_template_field() -> String {
    "text".into()
}

/// Validates the config and starts the sink.
///
/// # Errors
/// Bad `url`, unknown template placeholder, unreadable secret or CA file.
pub fn build(name: &str, cfg: &WebhookConfig) -> Result<(SinkHandle, Healthcheck), SinkError> {
    crate::http::check_url(name, "url", &cfg.url)?;
    let token = crate::http::secret(name, "token", &cfg.token)?;
    let template = cfg
        .template
        .as_deref()
        .map(Template::parse)
        .transpose()
        .map_err(|reason| SinkError::InvalidField {
            sink: name.to_string(),
            field: "template",
            reason,
        })?;
    let client = crate::http::client(name, cfg.retry.request_timeout(), cfg.tls.as_ref())?;
    let svc = Arc::new(WebhookService {
        client,
        url: cfg.url.clone(),
        headers: cfg.headers.clone(),
        token,
        template,
        template_field: cfg.template_field.clone(),
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
