//! gRPC ingest: the `patchwatch.v1.Ingest` service, its authentication, validation and the
//! mapping of failures to `Status`.

pub mod auth;
pub mod owner;
mod preflight;
pub mod service;
pub mod status;
pub mod validate;

pub use owner::HostOwnership;
pub use service::{Caller, IngestLimits, IngestService};
