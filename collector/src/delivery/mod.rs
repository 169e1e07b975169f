//! Delivery of spooled findings to the aggregator over the gRPC `Ingest` stream.
//!
//! [`run`] is a tokio task: it reads [`Spool`](crate::spool::Spool) records (encoded
//! [`SpoolItem`]s), sends them as `patchwatch_proto::Batch`es with several batches in flight,
//! and acknowledges the spool only when the aggregator's `Ack` arrives. Reconnects use capped
//! exponential backoff with full jitter; TLS/mTLS, a bearer token (`authorization` metadata,
//! never logged) and gzip compression come from [`DeliveryOptions`].
//!
//! Delivery is at-least-once: a batch whose ack was lost is sent again after reconnecting.
//!
//! An idle connection sends an empty batch (its host set) every `heartbeat`, so that acks,
//! and with them the aggregator's preflight requests ([`SnapshotRequests`]), reach a
//! collector with nothing to deliver.

mod item;
mod options;
mod request;
mod stream;

pub use item::{ItemError, SpoolItem};
pub use options::{BearerToken, DeliveryError, DeliveryOptions, TlsMaterial, DEFAULT_HEARTBEAT};
pub use request::{snapshot_requests, SnapshotRequests};
pub use stream::run;
