//! Prometheus Alertmanager API v2 receiver: `POST <url>/api/v2/alerts`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::ack::{confirm_all, Pending};
use super::config::AlertmanagerConfig;
use crate::error::SendError;
use crate::telemetry;

/// One element of the `postableAlerts` array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostableAlert {
    /// Identity of the alert (low-cardinality): alertname, rule_id, severity, host, ...
    pub labels: BTreeMap<String, String>,
    /// Details: summary, description, runbook_url, finding_ids, evidence, ...
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339 time the alert started firing.
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// RFC 3339 time it resolves (in the past or now for a resolution).
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    /// Link to the finding in the dashboard.
    #[serde(
        rename = "generatorURL",
        skip_serializing_if = "String::is_empty",
        default
    )]
    pub generator_url: String,
}

/// One post: the alerts of a group flush and the obligations it meets once Alertmanager
/// answered 2xx (dropped unconfirmed, and so failed, when the post is given up).
pub(crate) struct AlertBatch {
    pub(crate) alerts: Vec<PostableAlert>,
    pub(crate) acks: Vec<Pending>,
}

/// Starts the posting task of one Alertmanager receiver; returns its queue.
pub(crate) fn spawn(
    name: String,
    cfg: AlertmanagerConfig,
) -> Result<mpsc::Sender<AlertBatch>, crate::SinkError> {
    crate::http::check_url(&name, "url", &cfg.url)?;
    let client = crate::http::client(&name, cfg.retry.request_timeout(), None)?;
    let url = format!("{}/api/v2/alerts", cfg.url.trim_end_matches('/'));
    let (tx, mut rx) = mpsc::channel::<AlertBatch>(1024);
    tokio::spawn(async move {
        while let Some(AlertBatch { alerts, mut acks }) = rx.recv().await {
            let mut attempt = 0u32;
            loop {
                match post(&client, &url, &alerts).await {
                    Ok(()) => {
                        telemetry::notifications(&name, "sent");
                        confirm_all(std::mem::take(&mut acks));
                        break;
                    }
                    Err(e) => {
                        let give_up =
                            !e.retryable || cfg.retry.max_retries.is_some_and(|m| attempt >= m);
                        tracing::warn!(message = "Alertmanager post failed.", receiver = %name,
                            destination = %e.destination, error = %e.message, attempt, give_up);
                        if give_up {
                            // The next group flush or repeat sends the alerts again.
                            telemetry::notifications(&name, "failed");
                            break;
                        }
                        tokio::time::sleep(cfg.retry.backoff(attempt)).await;
                        attempt += 1;
                    }
                }
            }
        }
    });
    Ok(tx)
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    alerts: &[PostableAlert],
) -> Result<(), SendError> {
    let resp = client
        .post(url)
        .json(alerts)
        .send()
        .await
        .map_err(|e| SendError::from_reqwest(url, &e))?;
    let s = resp.status().as_u16();
    if (200..300).contains(&s) {
        Ok(())
    } else {
        Err(SendError::from_http_status(
            url,
            s,
            &resp.text().await.unwrap_or_default(),
        ))
    }
}
