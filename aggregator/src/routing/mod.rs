//! Alert routing: which findings page whom, grouped and timed like Alertmanager.
//!
//! A [`Router`] is built from a [`RoutingConfig`] (`[routing]` in the aggregator's TOML).
//! [`Router::submit`] queues a finding without blocking and without a receipt; [`Router::send`]
//! waits for queue space and returns a [`Receipt`](patchwatch_sinks::Receipt) that resolves once
//! every receiver the findings were routed to confirmed them (or a rule suppressed them), which
//! lets a caller keep a durable cursor. The driver task [`Router::run`] tags each finding with
//! the maintenance window covering its host (the [`WindowSet`] ingest and the HTTP API use
//! too), drops it if a silence matches (configured ones, and those the aggregator stored at run
//! time: [`Router::set_stored_silences`]), walks the routes in order (first match wins,
//! `continue = true` keeps going; `action = "escalate"` raises its severity for that route's
//! receivers and later routes), and adds it to a group per (route, receiver, `group_by`
//! values). A group is flushed `group_wait` after it was created, then at most every
//! `group_interval` when new findings arrive, and re-sent every `repeat_interval` while it fires
//! (Alertmanager receivers only). An alert resolves after `resolve_after` without new findings
//! and is sent once more with `endsAt` = now.
//!
//! Alert labels are low-cardinality (`alertname`, `rule_id`, `severity`, `host`, `category`,
//! `maintenance_window`); `severity` is the escalated one, the original is the annotation
//! `escalated_from`; finding ids go in annotations, and `generatorURL` points at the
//! dashboard's finding view `<dashboard_url>/findings/<id>`.
//!
//! Files import each other in one direction only; each imports only files listed before it:
//! `error`, `config`, `ack`, `telemetry` (no sibling), `window`, `matcher`, `decide`,
//! `alertmanager`, `receiver`, `group`, `router`.

mod ack;
mod alertmanager;
mod config;
mod decide;
mod error;
mod group;
mod matcher;
mod receiver;
mod router;
mod telemetry;
mod window;

pub use alertmanager::PostableAlert;
pub use config::{
    AlertmanagerConfig, MaintenanceWindow, ReceiverConfig, RouteAction, RouteConfig, RoutingConfig,
    SilenceConfig, DEFAULT_PREFLIGHT_GATE_LEAD, MAX_PREFLIGHT_GATE_LEAD,
};
pub use decide::Decision;
pub use error::{RoutingError, WindowError};
pub use matcher::ESCALATED_FROM_LABEL;
pub use router::Router;
pub(crate) use window::host_glob;
pub use window::{WindowSet, MAINTENANCE_WINDOW_LABEL};

#[cfg(test)]
mod tests;
