//! Receivers: where a route's notifications go. An Alertmanager receiver gets alerts; every
//! other type is one of the `patchwatch-sinks` sinks and gets the findings themselves.

use std::collections::BTreeMap;

use patchwatch_sinks::{SinkConfig, SinkHandle};
use tokio::sync::mpsc;

use super::alertmanager::{self, AlertBatch};
use super::config::ReceiverConfig;
use super::error::RoutingError;

/// A running receiver.
pub(crate) enum Receiver {
    /// The posting task's queue, and the `alertname` label of its alerts.
    Alertmanager {
        tx: mpsc::Sender<AlertBatch>,
        alertname: String,
    },
    /// A sink.
    Sink(SinkHandle),
}

impl ReceiverConfig {
    /// The sink configuration, for every receiver type except Alertmanager.
    pub fn as_sink(&self) -> Option<SinkConfig> {
        Some(match self {
            ReceiverConfig::Alertmanager(_) => return None,
            ReceiverConfig::Otlp(c) => SinkConfig::Otlp(c.clone()),
            ReceiverConfig::SplunkHec(c) => SinkConfig::SplunkHec(c.clone()),
            ReceiverConfig::Syslog(c) => SinkConfig::Syslog(c.clone()),
            ReceiverConfig::Elasticsearch(c) => SinkConfig::Elasticsearch(c.clone()),
            ReceiverConfig::Webhook(c) => SinkConfig::Webhook(c.clone()),
            ReceiverConfig::Jsonl(c) => SinkConfig::Jsonl(c.clone()),
        })
    }
}

/// Starts every configured receiver (posting tasks, sinks and their healthchecks). Must run
/// inside a tokio runtime.
pub(crate) fn start_all(
    configs: &BTreeMap<String, ReceiverConfig>,
) -> Result<BTreeMap<String, Receiver>, RoutingError> {
    let mut receivers = BTreeMap::new();
    for (name, rc) in configs {
        let r = match rc {
            ReceiverConfig::Alertmanager(am) => Receiver::Alertmanager {
                tx: alertmanager::spawn(name.clone(), am.clone())?,
                alertname: am.alertname.clone(),
            },
            other => {
                let sink = other
                    .as_sink()
                    .expect("non-alertmanager receivers are sinks");
                let (h, hc) = patchwatch_sinks::build(&format!("receiver.{name}"), &sink)?;
                let n = name.clone();
                tokio::spawn(async move {
                    if let Err(error) = hc.await {
                        tracing::warn!(message = "Receiver healthcheck failed.", receiver = %n, %error);
                    }
                });
                Receiver::Sink(h)
            }
        };
        receivers.insert(name.clone(), r);
    }
    Ok(receivers)
}
