//! Sends bulk requests and reads per-item results.

use futures::future::BoxFuture;
use patchwatch_proto::Finding;
use serde_json::Value;

use super::config::Auth;
use super::encoder::bulk_body;
use crate::driver::{SendReport, Service};
use crate::error::SendError;

pub(super) struct BulkService {
    pub(super) client: reqwest::Client,
    pub(super) base: String,
    pub(super) index: String,
    pub(super) pipeline: Option<String>,
    pub(super) auth: Auth,
}

impl BulkService {
    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p.expose())),
            Auth::ApiKey(k) => req.header("Authorization", format!("ApiKey {}", k.expose())),
        }
    }
}

/// Classifies the items of a bulk response: indices to retry and the count rejected.
pub(super) fn classify_items(resp: &Value, n: usize, dest: &str) -> Result<SendReport, SendError> {
    let mut report = SendReport::default();
    if resp.get("errors").and_then(Value::as_bool) != Some(true) {
        return Ok(report);
    }
    let items = resp.get("items").and_then(Value::as_array).ok_or_else(|| {
        SendError::retryable(dest, "bad_bulk_response", "errors=true without items")
    })?;
    if items.len() != n {
        return Err(SendError::retryable(
            dest,
            "bad_bulk_response",
            format!("{} items for {n} actions", items.len()),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let Some(result) = item.as_object().and_then(|o| o.values().next()) else {
            continue;
        };
        let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
        match status {
            200..=299 | 409 => {}
            429 | 500..=599 => report.retry.push(i),
            _ => {
                report.rejected += 1;
                tracing::warn!(message = "Bulk item rejected.", destination = %dest, status,
                    error = %result.get("error").map(|e| e.to_string()).unwrap_or_default());
            }
        }
    }
    Ok(report)
}

impl Service for BulkService {
    fn destination(&self) -> String {
        format!("{}/_bulk", self.base)
    }

    fn send<'a>(&'a self, batch: &'a [Finding]) -> BoxFuture<'a, Result<SendReport, SendError>> {
        Box::pin(async move {
            let url = self.destination();
            let mut req = self
                .client
                .post(&url)
                .header("Content-Type", "application/x-ndjson")
                .body(bulk_body(batch, &self.index));
            if let Some(p) = &self.pipeline {
                req = req.query(&[("pipeline", p)]);
            }
            let resp = self
                .authed(req)
                .send()
                .await
                .map_err(|e| SendError::from_reqwest(&url, &e))?;
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            if !(200..300).contains(&status) {
                return Err(SendError::from_http_status(&url, status, &text));
            }
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                SendError::retryable(&url, "bad_bulk_response", format!("not JSON: {e}"))
            })?;
            classify_items(&v, batch.len(), &url)
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(async move {
            let url = format!("{}/", self.base);
            let resp = self
                .authed(self.client.get(&url))
                .send()
                .await
                .map_err(|e| SendError::from_reqwest(&url, &e))?;
            let s = resp.status().as_u16();
            if (200..300).contains(&s) {
                Ok(())
            } else {
                Err(SendError::from_http_status(
                    &url,
                    s,
                    &resp.text().await.unwrap_or_default(),
                ))
            }
        })
    }
}
