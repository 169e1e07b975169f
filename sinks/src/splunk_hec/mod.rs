//! Splunk HTTP Event Collector: JSON envelopes (`time`, `host`, `source`, `sourcetype`, `index`,
//! `event`, `fields`) concatenated in one `POST /services/collector/event`, with optional indexer
//! acknowledgement (`X-Splunk-Request-Channel`, `ackId`, polling `/services/collector/ack`).

mod config;
mod encoder;
mod service;
#[cfg(test)]
mod tests;

pub use config::{build, SplunkHecConfig};
