//! Alert routing: which findings page whom, grouped and timed like Alertmanager.
//!
//! A [`Router`] is built from a [`RoutingConfig`] (TOML). [`Router::submit`] queues a finding
//! without blocking and without a receipt; [`Router::send`] waits for queue space and returns
//! a [`Receipt`](crate::Receipt) that resolves once every receiver the findings were routed to
//! confirmed them (or a rule suppressed them), which lets a caller keep a durable cursor. The
//! driver task [`Router::run`] tags it with the maintenance windows that
//! cover its host, drops it if a silence matches (configured ones, and those the aggregator
//! stored at run time: [`Router::set_stored_silences`]), walks the routes in order (first match
//! wins, `continue = true` keeps going; `action = "escalate"` raises its severity for that
//! route's receivers and later routes), and adds it to a group per (route, receiver, `group_by`
//! values). A group is flushed `group_wait` after it was created, then at most every
//! `group_interval` when new findings arrive, and re-sent every `repeat_interval` while it fires
//! (Alertmanager receivers only). An alert resolves after `resolve_after` without new findings
//! and is sent once more with `endsAt` = now.
//!
//! Alert labels are low-cardinality (`alertname`, `rule_id`, `severity`, `host`, `category`,
//! `maintenance_window`); `severity` is the escalated one, the original is the annotation
//! `escalated_from`; finding ids go in annotations, and `generatorURL` points at the
//! dashboard's finding view `<dashboard_url>/findings/<id>`.

mod ack;
mod alertmanager;
mod config;
mod matcher;
mod router;
mod window;

pub use alertmanager::PostableAlert;
pub use config::{
    AlertmanagerConfig, ReceiverConfig, RouteAction, RouteConfig, RoutingConfig, SilenceConfig,
};
pub use matcher::Decision;
pub use router::{Router, RoutingError, ESCALATED_FROM_LABEL};
pub use window::{MaintenanceWindow, WindowError, MAINTENANCE_WINDOW_LABEL};

#[cfg(test)]
mod tests;
