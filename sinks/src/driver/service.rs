//! The contract between the delivery engine and a protocol implementation.

use futures::future::BoxFuture;
use patchwatch_proto::Finding;

use crate::error::SendError;

/// What the destination said about a batch it answered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SendReport {
    /// Number of findings the destination refused for good (bad data, partial success): they are
    /// not retried and count as rejected.
    pub rejected: usize,
    /// Indices into the batch of findings to send again (e.g. bulk items answered 429/503).
    pub retry: Vec<usize>,
}

/// One protocol's way of delivering a batch.
///
/// `send` must return `Ok` only once the destination confirmed the batch (or the part of it not
/// listed in [`SendReport::retry`] / counted in [`SendReport::rejected`]). It must be safe to call
/// again with the same findings: delivery is at least once, and destinations that can deduplicate
/// (Elasticsearch `_id`, Alertmanager labels) are given the finding id.
pub trait Service: Send + Sync + 'static {
    /// Address or URL of the destination, for logs and errors.
    fn destination(&self) -> String;

    /// Sends one batch.
    fn send<'a>(&'a self, batch: &'a [Finding]) -> BoxFuture<'a, Result<SendReport, SendError>>;

    /// Checks the destination is reachable and accepts our credentials, without sending data
    /// where the protocol allows it.
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SendError>>;
}
