//! OTLP logs over gRPC (`opentelemetry.proto.collector.logs.v1.LogsService/Export`).
//!
//! Findings become `LogRecord`s grouped per host into `ResourceLogs` (resource attributes
//! `host.name`, `service.name = patchwatch`, `service.version`, `os.type`), with severity numbers
//! from [`crate::encoding::otel_severity_number`], `event_name = patchwatch.finding` and attributes
//! for rule, codes and file. A partial-success response is never retried; its
//! `rejected_log_records` are counted as rejected.

mod config;
mod encoder;
mod service;
#[cfg(test)]
mod tests;

pub use config::{build, OtlpConfig};
pub use encoder::export_request;
