//! The aggregator's Prometheus recorder and the description (HELP, unit) of every metric it
//! exports. Metrics are counted where they happen; their names are listed here once, so
//! `/metrics` shows HELP and TYPE for each, and latencies are histograms with buckets (the
//! exporter's default would be a summary, which cannot be aggregated across aggregators).

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

/// Bucket bounds in seconds for latency histograms (ack latency, store commits): an SQLite
/// group commit takes about a millisecond, a PostgreSQL one over a network tens.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Bucket bounds for rows per store commit (group commits hold up to a few thousand).
const ROW_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0,
];

static BUILD: OnceLock<(String, String)> = OnceLock::new();

/// Records the version and commit of the running binary for `patchwatch_build_info`; call
/// before the first [`crate::prometheus_handle`] (the first call wins).
pub fn set_build_info(version: &str, commit: &str) {
    let _ = BUILD.set((version.to_owned(), commit.to_owned()));
}

/// A recorder with histogram buckets for the aggregator's histograms.
pub(crate) fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_rows".into()), ROW_BUCKETS))
        .expect("the bucket lists are not empty")
        .build_recorder()
}

/// Describes every aggregator metric to the installed recorder and sets the build info.
pub(crate) fn describe() {
    describe_gauge!(
        "patchwatch_build_info",
        "Always 1; labels: version and commit of the running binary"
    );
    let (version, commit) = BUILD
        .get()
        .cloned()
        .unwrap_or_else(|| (env!("CARGO_PKG_VERSION").to_owned(), "unknown".to_owned()));
    gauge!("patchwatch_build_info", "version" => version, "commit" => commit).set(1.0);

    describe_gauge!(
        "patchwatch_aggregator_streams",
        "Collector streams open now"
    );
    describe_gauge!(
        "patchwatch_aggregator_preflight_gate_hosts",
        "Hosts not clean in active maintenance windows that require a clean preflight, \
         counted per window (set at each check)"
    );
    describe_counter!(
        "patchwatch_aggregator_batches_received_total",
        "Batches received from collectors"
    );
    describe_counter!(
        "patchwatch_aggregator_items_rejected_total",
        "Items of received batches rejected in their ack, by reason (invalid, host_not_owned, \
         time_out_of_range)"
    );
    describe_counter!(
        "patchwatch_aggregator_findings_stored_total",
        "Findings stored for the first time"
    );
    describe_counter!(
        "patchwatch_aggregator_findings_duplicate_total",
        "Findings received again and already stored"
    );
    describe_histogram!(
        "patchwatch_aggregator_ack_latency_seconds",
        Unit::Seconds,
        "Seconds from receiving a batch to acknowledging it"
    );
    describe_counter!(
        "patchwatch_aggregator_store_errors_total",
        "Batches the store failed to write"
    );
    describe_histogram!(
        "patchwatch_aggregator_store_commit_seconds",
        Unit::Seconds,
        "Seconds per store commit, by backend"
    );
    describe_histogram!(
        "patchwatch_aggregator_store_commit_rows",
        "Rows per store commit, by backend"
    );
    describe_counter!(
        "patchwatch_aggregator_auth_failures_total",
        "Requests refused for a missing or wrong credential, by listener"
    );
    describe_counter!(
        "patchwatch_aggregator_scope_refusals_total",
        "Requests with a valid token whose scopes do not allow them, by listener"
    );
    describe_counter!(
        "patchwatch_aggregator_streams_refused_total",
        "Collector streams refused by a per-collector limit, by reason"
    );
    describe_counter!(
        "patchwatch_aggregator_cross_site_writes_refused_total",
        "HTTP writes refused as cross-site (Origin, Sec-Fetch-Site, Host or Content-Type)"
    );
    describe_counter!(
        "patchwatch_aggregator_forward_retries_total",
        "Forwarding attempts retried, by destination"
    );
    describe_gauge!(
        "patchwatch_aggregator_forward_lag_findings",
        "Stored findings a destination's cursor is behind, by destination"
    );
    describe_counter!(
        "patchwatch_routing_findings_total",
        "Findings seen by the alert router, by outcome"
    );
    describe_counter!(
        "patchwatch_routing_notifications_total",
        "Notifications sent by the alert router, by receiver and outcome"
    );
    describe_counter!(
        "patchwatch_sink_findings_sent_total",
        "Findings a sink's destination accepted"
    );
    describe_counter!(
        "patchwatch_sink_findings_rejected_total",
        "Findings a sink's destination refused for good"
    );
    describe_counter!(
        "patchwatch_sink_findings_failed_total",
        "Findings a sink failed to deliver, by error code"
    );
    describe_counter!(
        "patchwatch_sink_findings_retried_total",
        "Findings a sink sent again, by error code"
    );
    describe_counter!(
        "patchwatch_sink_queue_full_events_total",
        "Times a sink's queue was full"
    );
}
