//! Prometheus Alertmanager API v2 receiver: `POST <url>/api/v2/alerts`, and the labels and
//! annotations an alert for a finding carries.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use patchwatch_proto::Finding;
use patchwatch_sinks::encoding::{host_name, severity_name};
use patchwatch_sinks::SendError;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::ack::{confirm_all, Pending};
use super::config::AlertmanagerConfig;
use super::error::RoutingError;
use super::matcher::ESCALATED_FROM_LABEL;
use super::telemetry;
use super::window::MAINTENANCE_WINDOW_LABEL;

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

/// Checks that `url` parses and uses http or https; the error names `what` and `field`.
pub(crate) fn check_url(what: &str, field: &'static str, url: &str) -> Result<(), RoutingError> {
    let reason = match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => return Ok(()),
        Ok(u) => format!("scheme `{}` is not http or https", u.scheme()),
        Err(e) => format!("`{url}`: {e}"),
    };
    Err(RoutingError::Invalid {
        what: what.to_owned(),
        field,
        reason,
    })
}

/// Starts the posting task of one Alertmanager receiver; returns its queue.
pub(crate) fn spawn(
    name: String,
    cfg: AlertmanagerConfig,
) -> Result<mpsc::Sender<AlertBatch>, RoutingError> {
    let what = format!("receiver `{name}`");
    check_url(&what, "url", &cfg.url)?;
    let timeout = cfg.retry.request_timeout();
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("patchwatch-aggregator/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RoutingError::Invalid {
            what,
            field: "url",
            reason: e.to_string(),
        })?;
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

/// Identity labels of the alert for `f`: low-cardinality only (no ids, paths or times).
pub(crate) fn alert_labels(f: &Finding, alertname: &str) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert("alertname".into(), alertname.to_string());
    l.insert("rule_id".into(), f.rule_id.clone());
    l.insert("severity".into(), severity_name(f.severity()).into());
    l.insert("host".into(), host_name(f).to_string());
    if !f.category.is_empty() {
        l.insert("category".into(), f.category.clone());
    }
    if let Some(w) = f.labels.get(MAINTENANCE_WINDOW_LABEL) {
        l.insert(MAINTENANCE_WINDOW_LABEL.into(), w.clone());
    }
    l
}

/// Details of the alert whose latest finding is `f`: `ids` are the most recent finding ids
/// (oldest first), `count` how many findings the alert has had.
pub(crate) fn annotations(
    f: &Finding,
    ids: &VecDeque<String>,
    count: u64,
) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert("summary".into(), f.title.clone());
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    a.insert("finding_ids".into(), ids.join(","));
    a.insert("last_finding_id".into(), f.id.clone());
    a.insert("finding_count".into(), count.to_string());
    if !f.source_path.is_empty() {
        a.insert(
            "log_file".into(),
            format!("{}:{}", f.source_path, f.line_number),
        );
    }
    if let Some(from) = f.labels.get(ESCALATED_FROM_LABEL) {
        a.insert(ESCALATED_FROM_LABEL.into(), from.clone());
    }
    if let Some(e) = f.evidence.first() {
        a.insert("evidence".into(), e.chars().take(1024).collect());
    }
    if let Some(r) = &f.remediation {
        if !r.summary.is_empty() {
            a.insert("description".into(), r.summary.clone());
        }
        if let Some(link) = r.links.first() {
            a.insert("runbook_url".into(), link.clone());
        }
    }
    a
}
