//! Elasticsearch / OpenSearch `_bulk` API with Elastic Common Schema documents.
//!
//! Each finding is a `create` action with `_id` = finding id, so a resent batch cannot duplicate
//! documents (a `409` on create means "already stored" and counts as delivered). Per-item
//! statuses are read from the bulk response: 429 and 5xx items are retried alone, other errors
//! (mapping conflicts) are rejected.

mod config;
mod encoder;
mod service;
#[cfg(test)]
mod tests;

pub use config::{build, ElasticsearchConfig};
pub use encoder::ecs_document;
