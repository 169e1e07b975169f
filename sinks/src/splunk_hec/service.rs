//! Posts batches to HEC and, when configured, waits for the indexer acknowledgement.

use std::time::Duration;

use futures::future::BoxFuture;
use patchwatch_proto::Finding;
use serde::Deserialize;

use super::encoder::encode;
use super::SplunkHecConfig;
use crate::driver::{SendReport, Service};
use crate::error::SendError;
use crate::secret::SecretValue;

pub(super) struct HecService {
    pub(super) client: reqwest::Client,
    pub(super) base: String,
    pub(super) token: SecretValue,
    pub(super) channel: String,
    pub(super) cfg: SplunkHecConfig,
}

/// HEC's reply: `{"text":"Success","code":0,"ackId":7}` or an error code.
#[derive(Debug, Default, Deserialize)]
struct HecResponse {
    #[serde(default)]
    text: String,
    #[serde(default)]
    code: i64,
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct AckResponse {
    acks: std::collections::HashMap<String, bool>,
}

impl HecService {
    fn request(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Splunk {}", self.token.expose()))
            .header("X-Splunk-Request-Channel", &self.channel)
    }

    /// Polls `/services/collector/ack` until `ack_id` is true or the ack timeout passes.
    async fn wait_for_ack(&self, ack_id: u64) -> Result<(), SendError> {
        let url = format!("{}/services/collector/ack", self.base);
        let deadline = tokio::time::Instant::now() + self.cfg.ack_timeout.get();
        let interval = self
            .cfg
            .ack_poll_interval
            .get()
            .max(Duration::from_millis(1));
        loop {
            let resp = self
                .request("/services/collector/ack")
                .json(&serde_json::json!({ "acks": [ack_id] }))
                .send()
                .await
                .map_err(|e| SendError::from_reqwest(&url, &e))?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(SendError::from_http_status(&url, status.as_u16(), &text));
            }
            let acks: AckResponse = serde_json::from_str(&text).map_err(|e| {
                SendError::retryable(&url, "bad_ack_response", format!("{e}: {text}"))
            })?;
            if acks.acks.get(&ack_id.to_string()).copied().unwrap_or(false) {
                return Ok(());
            }
            if tokio::time::Instant::now() + interval > deadline {
                // Not indexed in time: send again. HEC may then index it twice, which
                // at-least-once delivery accepts; Splunk searches can dedup on finding_id.
                return Err(SendError::retryable(
                    &url,
                    "ack_timeout",
                    format!("ackId {ack_id} not acknowledged in time"),
                ));
            }
            tokio::time::sleep(interval).await;
        }
    }
}

impl Service for HecService {
    fn destination(&self) -> String {
        format!("{}/services/collector/event", self.base)
    }

    fn send<'a>(&'a self, batch: &'a [Finding]) -> BoxFuture<'a, Result<SendReport, SendError>> {
        Box::pin(async move {
            let url = self.destination();
            let resp = self
                .request("/services/collector/event")
                .header("Content-Type", "application/json")
                .body(encode(batch, &self.cfg))
                .send()
                .await
                .map_err(|e| SendError::from_reqwest(&url, &e))?;
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            let parsed: HecResponse = serde_json::from_str(&text).unwrap_or_default();
            match (status, parsed.code) {
                (200, 0) => {}
                // Server busy (code 9) or any 5xx/429: try again later.
                (_, 9) | (429, _) | (500..=599, _) => {
                    return Err(SendError::retryable(
                        &url,
                        format!("hec_{}", parsed.code),
                        format!("HTTP {status}: {}", parsed.text),
                    ))
                }
                // Bad data (codes 5, 6, 12, 13 and an invalid event number): the batch itself is
                // at fault and will never be accepted.
                (400, 5 | 6 | 12 | 13) | (400, 0) => {
                    tracing::error!(message = "HEC refused a batch as invalid.", destination = %url,
                        code = parsed.code, text = %parsed.text);
                    return Ok(SendReport {
                        rejected: batch.len(),
                        retry: Vec::new(),
                    });
                }
                _ => {
                    return Err(SendError::fatal(
                        &url,
                        format!("hec_{}", parsed.code),
                        format!("HTTP {status}: {text}"),
                    ))
                }
            }
            if self.cfg.indexer_ack {
                let id = parsed.ack_id.ok_or_else(|| {
                    SendError::fatal(
                        &url,
                        "no_ack_id",
                        "indexer_ack is set but HEC returned no ackId; enable acknowledgement on the token",
                    )
                })?;
                self.wait_for_ack(id).await?;
            }
            Ok(SendReport::default())
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(async move {
            let url = format!("{}/services/collector/health/1.0", self.base);
            let resp = self
                .client
                .get(&url)
                .send()
                .await
                .map_err(|e| SendError::from_reqwest(&url, &e))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                let s = resp.status().as_u16();
                Err(SendError::from_http_status(
                    &url,
                    s,
                    &resp.text().await.unwrap_or_default(),
                ))
            }
        })
    }
}
