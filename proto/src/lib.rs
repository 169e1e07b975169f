//! The patchwatch wire protocol (`patchwatch.v1`): messages and the `Ingest` gRPC service.
//!
//! Generated at build time from `patchwatch/v1/patchwatch.proto` with a vendored `protoc`.
//! The compatibility rules (field numbers never reused, unknown fields ignored) are stated at
//! the top of that file; read them before changing it.

#![allow(missing_docs)]

/// Generated types of package `patchwatch.v1`.
pub mod v1 {
    tonic::include_proto!("patchwatch.v1");
}

pub use v1::*;
