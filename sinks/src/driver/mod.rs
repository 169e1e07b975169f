//! The delivery engine shared by every sink: a bounded queue, batching, retries and acks.
//!
//! A protocol implements [`Service`] (send one batch, report what the destination confirmed).
//! [`spawn`] runs it as a tokio task behind a [`SinkHandle`]. The task takes findings from the
//! queue, cuts batches by count and linger time ([`BatchConfig`]), and retries failed attempts
//! with capped exponential backoff and jitter ([`RetryConfig`]). A [`Receipt`] resolves once every
//! finding of a submission was confirmed, rejected by the destination, or given up on.

mod handle;
mod retry;
mod service;
mod task;

pub use handle::{DeliveryReport, Receipt, Settled, SinkHandle, SinkHealth, Ticket};
pub use retry::{BatchConfig, RetryConfig};
pub use service::{SendReport, Service};
pub use task::spawn;
