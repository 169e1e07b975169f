//! Durable forwarding of stored findings to the alert router and the SIEM sinks.
//!
//! Each destination (the router, and each `[sinks.<name>]`) has its own task and its own
//! cursor in the store ([`crate::store::ForwardCursor`]). The task reads findings after its
//! position in batches (`forwarding.batch_size`), hands them to the destination, and keeps up
//! to `forwarding.max_inflight` findings unconfirmed at once. The cursor advances, in order,
//! only over batches the destination confirmed (a sink's [`patchwatch_sinks::Receipt`]; for
//! the router, every receiver the findings were routed to confirmed them, or a rule suppressed
//! them), and is persisted at most every `forwarding.cursor_write_interval`. A batch that is
//! not confirmed sends everything after the cursor again, after a backoff.
//!
//! Guarantees:
//! - **Nothing is lost**: a finding stays in the store until every destination's cursor has
//!   passed it, across destination outages and aggregator restarts. Delivery is at least once:
//!   findings sent but not yet recorded as confirmed when the aggregator stops are sent again.
//! - **Nothing waits on a destination**: ingest only wakes the tasks ([`Forwarder::stored`]);
//!   a destination that is down or slow stalls its own task and nothing else.
//! - **Lag is visible**: `patchwatch_aggregator_forward_lag_findings{destination}` (store max seq minus
//!   the destination's cursor) and the `forwarding` list of `/healthz`.
//!
//! A destination seen for the first time starts at `forwarding.new_destination_start`
//! ([`StartFrom::Now`] by default; [`StartFrom::Beginning`] to backfill).

mod config;
mod destination;
mod forwarder;
mod status;
mod task;

pub use config::{ForwardingConfig, StartFrom};
pub use forwarder::Forwarder;
pub use status::DestinationStatus;
