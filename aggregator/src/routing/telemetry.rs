//! Metrics of alert routing. Only this module names them, so names stay consistent with the
//! sinks' (`patchwatch_<name>_<unit>_total`, low-cardinality labels).

use metrics::counter;

/// One finding went through the router with `outcome` (`routed`, `silenced`, `muted`,
/// `unrouted`, `queue_full`).
pub(super) fn routed(outcome: &'static str) {
    counter!("patchwatch_routing_findings_total", "outcome" => outcome).increment(1);
}

/// One notification to `receiver` ended with `outcome` (`sent`, `failed`, `queue_full`).
pub(super) fn notifications(receiver: &str, outcome: &'static str) {
    counter!("patchwatch_routing_notifications_total", "receiver" => receiver.to_string(),
        "outcome" => outcome)
    .increment(1);
}
