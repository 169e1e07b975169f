//! Every `Status` the ingest service sends, in one place, so codes and wording stay consistent.
//!
//! Codes follow OTLP's retry table: `UNAVAILABLE` means "reconnect and resend what was not
//! acknowledged"; `UNAUTHENTICATED`, `PERMISSION_DENIED` and `RESOURCE_EXHAUSTED` for a message
//! that is too large will not succeed on retry without a change on the collector's side.

use tonic::{Code, Status};

use crate::store::StoreError;

/// No or wrong credentials.
pub fn missing_token() -> Status {
    Status::unauthenticated("missing bearer token: send `authorization: Bearer <token>` metadata")
}

/// Mutual TLS is on and the client presented no certificate.
pub fn missing_client_certificate() -> Status {
    Status::unauthenticated(
        "client certificate required: this aggregator uses mutual TLS; configure the collector \
         with a certificate issued by the aggregator's client CA",
    )
}

/// The authorization metadata is not `Bearer <token>`.
pub fn malformed_token() -> Status {
    Status::unauthenticated("malformed authorization metadata: expected `Bearer <token>`")
}

/// The token is not configured.
pub fn invalid_token() -> Status {
    Status::unauthenticated("invalid bearer token")
}

/// The token has no `ingest` scope.
pub fn missing_scope(id: &str) -> Status {
    Status::permission_denied(format!(
        "token {id:?} may not stream batches: its scopes lack \"ingest\""
    ))
}

/// A batch claims another collector's identity.
pub fn collector_mismatch(claimed: &str, token_for: &str) -> Status {
    Status::permission_denied(format!(
        "batch collector_id {claimed:?} does not match the token's collector {token_for:?}"
    ))
}

/// The stream limit is reached.
pub fn too_many_streams(limit: usize) -> Status {
    Status::resource_exhausted(format!(
        "too many collector streams open (grpc.max_streams = {limit}); retry later"
    ))
}

/// One collector holds as many streams as it may.
pub fn too_many_collector_streams(collector: &str, limit: usize) -> Status {
    Status::resource_exhausted(format!(
        "collector {collector:?} already has {limit} streams open \
         (grpc.max_streams_per_collector); close one or retry later"
    ))
}

/// The aggregator is stopping.
pub fn shutting_down() -> Status {
    Status::unavailable("aggregator is shutting down; reconnect and resend unacknowledged batches")
}

/// A batch could not be made durable.
pub fn store_failed(sequence: u64, error: &StoreError) -> Status {
    Status::unavailable(format!(
        "batch {sequence} was not stored ({error}); reconnect and resend unacknowledged batches"
    ))
}

/// Rewrites an error from reading the inbound stream. tonic reports an oversized message as
/// `OUT_OF_RANGE` with a terse text; collectors get `RESOURCE_EXHAUSTED` (gRPC's code for a
/// message over the size limit) and a message that says what to do.
pub fn inbound_error(status: Status, max_message_bytes: usize) -> Status {
    if status.code() == Code::OutOfRange && status.message().contains("message length too large") {
        return Status::resource_exhausted(format!(
            "batch too large: {} (grpc.max_message_bytes = {max_message_bytes}); send smaller batches",
            status.message()
        ));
    }
    // prost's decode errors surface as INTERNAL; the fault is the collector's bytes.
    if status.code() == Code::Internal && status.message().contains("decode") {
        return Status::invalid_argument(format!("malformed Batch message: {}", status.message()));
    }
    status
}
