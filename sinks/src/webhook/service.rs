//! Sends webhook requests.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use patchwatch_proto::Finding;
use serde_json::json;

use super::encoder::Template;
use crate::driver::{SendReport, Service};
use crate::encoding::finding_json;
use crate::error::SendError;
use crate::secret::SecretValue;

pub(super) struct WebhookService {
    pub(super) client: reqwest::Client,
    pub(super) url: String,
    pub(super) headers: BTreeMap<String, String>,
    pub(super) token: Option<SecretValue>,
    pub(super) template: Option<Template>,
    pub(super) template_field: String,
}

impl WebhookService {
    async fn post(&self, body: &serde_json::Value) -> Result<(), SendError> {
        let mut req = self.client.post(&self.url).json(body);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| SendError::from_reqwest(&self.url, &e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(SendError::from_http_status(
            &self.url,
            status.as_u16(),
            &text,
        ))
    }
}

impl Service for WebhookService {
    fn destination(&self) -> String {
        self.url.clone()
    }

    fn send<'a>(&'a self, batch: &'a [Finding]) -> BoxFuture<'a, Result<SendReport, SendError>> {
        Box::pin(async move {
            let Some(t) = &self.template else {
                let findings: Vec<_> = batch.iter().map(finding_json).collect();
                self.post(&json!({ "source": "patchwatch", "findings": findings }))
                    .await?;
                return Ok(SendReport::default());
            };
            // One message per finding: chat tools show one post per request. On a failure the
            // ones already posted are not re-sent; the rest are retried.
            let mut report = SendReport::default();
            for (i, f) in batch.iter().enumerate() {
                let mut body = serde_json::Map::new();
                body.insert(self.template_field.clone(), t.render(f).into());
                match self.post(&serde_json::Value::Object(body)).await {
                    Ok(()) => {}
                    Err(e) if i == 0 => return Err(e),
                    Err(e) if e.retryable => {
                        report.retry.extend(i..batch.len());
                        return Ok(report);
                    }
                    Err(_) => report.rejected += 1,
                }
            }
            Ok(report)
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SendError>> {
        // A webhook has no probe endpoint; a HEAD request tells whether the host answers at all.
        Box::pin(async move {
            self.client
                .head(&self.url)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| SendError::from_reqwest(&self.url, &e))
        })
    }
}
