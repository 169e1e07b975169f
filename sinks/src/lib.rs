//! Outputs for patchwatch findings.
//!
//! # Brief overview
//!
//! A *sink* delivers [`Finding`](patchwatch_proto::Finding)s to one destination: OTLP logs over
//! gRPC ([`otlp`]), Splunk HTTP Event Collector ([`splunk_hec`]), syslog RFC 5424 / CEF over
//! UDP, TCP or TLS ([`syslog`]), the Elasticsearch / OpenSearch bulk API ([`elasticsearch`]),
//! JSON webhooks ([`webhook`]) and JSON Lines files ([`jsonl`]). Every sink runs as its own tokio
//! task behind a bounded queue ([`SinkHandle`]), batches, retries with capped exponential backoff
//! and jitter, and reports a batch delivered only once the destination confirmed it (an HTTP
//! 2xx, a gRPC response, a Splunk indexer ack, a TCP write that reached a live connection).
//! A slow or dead destination therefore fills its own queue and never blocks another sink.
//!
//! Sinks are configured in TOML ([`SinksConfig`]); [`build`] turns one entry into a running
//! sink and a healthcheck.
//!
//! ```no_run
//! # async fn demo() -> Result<(), patchwatch_sinks::SinkError> {
//! let cfg: patchwatch_sinks::SinksConfig = toml::from_str(r#"
//!     [sinks.local]
//!     type = "jsonl"
//!     path = "/tmp/findings.jsonl"
//! "#).map_err(patchwatch_sinks::SinkError::config_toml)?;
//! let sinks = patchwatch_sinks::Sinks::build(&cfg)?;
//! let receipt = sinks.send(vec![patchwatch_proto::Finding::default()]);
//! let report = receipt.wait().await;
//! assert_eq!(report.delivered, 1);
//! # Ok(()) }
//! ```
//!
//! Architecture invariant: this crate knows nothing of the aggregator's storage or the collector;
//! it depends only on `patchwatch-proto`.
#![deny(missing_docs)]

pub mod config;
pub mod driver;
pub mod elasticsearch;
pub mod encoding;
pub mod error;
pub(crate) mod http;
pub mod jsonl;
pub mod otlp;
pub mod secret;
pub mod splunk_hec;
pub mod syslog;
pub(crate) mod telemetry;
#[cfg(test)]
pub(crate) mod testutil;
pub mod webhook;

pub use config::{build, Healthcheck, SinkConfig, Sinks, SinksConfig};
pub use driver::{
    BatchConfig, DeliveryReport, Receipt, RetryConfig, Settled, SinkHandle, SinkHealth, Ticket,
};
pub use error::{SendError, SinkError};
pub use secret::Secret;
