//! Metric names and small helpers shared by the collector's modules.
//!
//! Names follow the house rule: counters are `patchwatch_<name>_<unit>_total`, gauges and
//! histograms drop the `_total`. Every metric is described once by [`describe`], which the agent
//! calls after installing its recorder (descriptions registered before a recorder is installed
//! are lost, which is harmless). With no recorder installed every helper is a cheap no-op, so
//! tests and library users pay nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use metrics::{counter, gauge, histogram};

/// Bytes read from watched log files (counter, label `path` omitted on purpose: cardinality).
pub const BYTES_READ: &str = "patchwatch_read_bytes_total";
/// Lines framed by the pipeline (counter; the wiring increments it).
pub const LINES: &str = "patchwatch_lines_total";
/// Findings produced, by `rule` and its `severity` (counter; the wiring increments it).
pub const FINDINGS: &str = "patchwatch_findings_total";
/// Lines that could not be decoded in the file's encoding (counter).
pub const DECODE_ERRORS: &str = "patchwatch_decode_errors_total";
/// Over-long lines cut by the pipeline (counter).
pub const TRUNCATED_LINES: &str = "patchwatch_truncated_lines_total";
/// Files currently held open by the tailer (gauge).
pub const OPEN_FILES: &str = "patchwatch_open_files";
/// Files that wanted a handle in the tailer's last round and waited for the open-file cap
/// (gauge).
pub const QUEUED_FILES: &str = "patchwatch_agent_queued_files";
/// Warnings about watched folders that cannot be walked: deleted, unreadable, a symbolic
/// link loop; one per folder and state (counter).
pub const WALK_WARNINGS: &str = "patchwatch_agent_walk_warnings_total";
/// Files currently tracked by the tailer, open or not (gauge).
pub const TRACKED_FILES: &str = "patchwatch_tracked_files";
/// File size minus its committed checkpoint, per `path` (gauge).
pub const FILE_LAG: &str = "patchwatch_file_lag_bytes";
/// File generations ended by truncation or rewrite (counter).
pub const FILE_TRUNCATIONS: &str = "patchwatch_file_truncations_total";
/// Files renamed while tailed (counter).
pub const FILE_ROTATIONS: &str = "patchwatch_file_rotations_total";
/// Files deleted or moved out of the watched set while tailed (counter).
pub const FILE_DELETIONS: &str = "patchwatch_file_deletions_total";
/// Corrupt checkpoint files moved aside and rebuilt (counter).
pub const CHECKPOINT_CORRUPT: &str = "patchwatch_checkpoint_corrupt_total";
/// Checkpoint flushes that failed (counter).
pub const CHECKPOINT_WRITE_ERRORS: &str = "patchwatch_checkpoint_write_errors_total";
/// Bytes held by the spool on disk (gauge).
pub const SPOOL_BYTES: &str = "patchwatch_spool_bytes";
/// Records appended to the spool (counter).
pub const SPOOL_RECORDS: &str = "patchwatch_spool_records_total";
/// Appends refused because the spool was full (counter).
pub const SPOOL_FULL: &str = "patchwatch_spool_full_total";
/// Spool appends that failed on the disk (full disk, IO error) and were retried (counter).
pub const SPOOL_WRITE_ERRORS: &str = "patchwatch_spool_write_errors_total";
/// Records too large for the spool, skipped (counter).
pub const RECORDS_TOO_LARGE: &str = "patchwatch_spool_records_too_large_total";
/// Watched files that cannot be read right now (permissions, sharing violation) (gauge).
pub const UNREADABLE_FILES: &str = "patchwatch_agent_unreadable_files";
/// Torn or corrupt spool records cut off during recovery (counter).
pub const SPOOL_CORRUPT: &str = "patchwatch_spool_corrupt_records_total";
/// Seconds from sending a batch to receiving its ack (histogram).
pub const ACK_LATENCY: &str = "patchwatch_ack_latency_seconds";
/// Batches sent, including resends (counter).
pub const BATCHES_SENT: &str = "patchwatch_batches_sent_total";
/// Batches acknowledged (counter).
pub const BATCHES_ACKED: &str = "patchwatch_batches_acked_total";
/// Items the aggregator rejected in an ack (counter).
pub const ITEMS_REJECTED: &str = "patchwatch_rejected_items_total";
/// Reconnect attempts to the aggregator (counter).
pub const RETRIES: &str = "patchwatch_delivery_retries_total";
/// Spool records that could not be decoded for delivery (counter).
pub const UNDECODABLE_RECORDS: &str = "patchwatch_undecodable_records_total";
/// Records a direct sink's spool cursor is behind the spool's end, per `sink` (gauge).
pub const SINK_LAG: &str = "patchwatch_agent_sink_lag_records";
/// Hand-overs to a direct sink not confirmed and sent again from its cursor, per `sink`
/// (counter).
pub const SINK_REWINDS: &str = "patchwatch_agent_sink_rewinds_total";
/// Streams open to the aggregator: 1 while connected, 0 otherwise (gauge).
pub const CONNECTED: &str = "patchwatch_agent_aggregator_streams";
/// Seconds since the aggregator last acknowledged a batch (gauge, set at scrape time; absent
/// before the first ack).
pub const LAST_ACK_AGE: &str = "patchwatch_agent_last_ack_age_seconds";
/// Spool records not yet acknowledged, per `consumer` (`aggregator`, `sink:<name>`) (gauge,
/// set at scrape time).
pub const SPOOL_PENDING: &str = "patchwatch_agent_spool_pending_records";
/// Always 1, labelled with the `version` and `commit` the binary was built from (gauge).
pub const BUILD_INFO: &str = "patchwatch_build_info";
/// Sink metrics (the `patchwatch-sinks` crate counts them; described here for the agent).
const SINK_SENT: &str = "patchwatch_sink_findings_sent_total";
const SINK_REJECTED: &str = "patchwatch_sink_findings_rejected_total";
const SINK_FAILED: &str = "patchwatch_sink_findings_failed_total";
const SINK_RETRIED: &str = "patchwatch_sink_findings_retried_total";
const SINK_QUEUE_FULL: &str = "patchwatch_sink_queue_full_events_total";

/// Bucket bounds in seconds for latency histograms: a loopback ack takes a millisecond, a
/// stalled aggregator tens of seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

static BUILD: OnceLock<(String, String)> = OnceLock::new();
/// Unix time in milliseconds of the last ack; 0: none yet.
static LAST_ACK_MS: AtomicU64 = AtomicU64::new(0);
/// A stream to the aggregator is open.
static CONNECTED_NOW: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records the version and commit of the running binary for [`BUILD_INFO`]; call before the
/// recorder is installed (the first call wins).
pub fn set_build_info(version: &str, commit: &str) {
    let _ = BUILD.set((version.to_owned(), commit.to_owned()));
}

/// Registers a description for every metric above with the installed recorder, and sets
/// [`BUILD_INFO`].
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        BUILD_INFO,
        "Always 1; labels: version and commit of the running binary"
    );
    let (version, commit) = BUILD
        .get()
        .cloned()
        .unwrap_or_else(|| (env!("CARGO_PKG_VERSION").to_owned(), "unknown".to_owned()));
    gauge!(BUILD_INFO, "version" => version, "commit" => commit).set(1.0);
    describe_gauge!(CONNECTED, "1 while a stream to the aggregator is open");
    describe_gauge!(
        LAST_ACK_AGE,
        Unit::Seconds,
        "Seconds since the aggregator last acknowledged a batch"
    );
    describe_gauge!(
        SPOOL_PENDING,
        "Spool records not yet acknowledged, per consumer"
    );
    describe_counter!(SINK_SENT, "Findings a sink's destination accepted");
    describe_counter!(
        SINK_REJECTED,
        "Findings a sink's destination refused for good"
    );
    describe_counter!(
        SINK_FAILED,
        "Findings a sink failed to deliver, by error code"
    );
    describe_counter!(SINK_RETRIED, "Findings a sink sent again, by error code");
    describe_counter!(SINK_QUEUE_FULL, "Times a sink's queue was full");
    describe_counter!(BYTES_READ, Unit::Bytes, "Bytes read from watched log files");
    describe_counter!(LINES, "Lines framed by the pipeline");
    describe_counter!(FINDINGS, "Findings produced, by rule and severity");
    describe_counter!(DECODE_ERRORS, "Lines not decodable in the file's encoding");
    describe_counter!(TRUNCATED_LINES, "Over-long lines cut by the pipeline");
    describe_gauge!(OPEN_FILES, "Files currently held open");
    describe_gauge!(TRACKED_FILES, "Files currently tracked");
    describe_counter!(
        WALK_WARNINGS,
        "Warnings about watched folders: deleted, unreadable, symbolic link loops"
    );
    describe_gauge!(
        QUEUED_FILES,
        "Files waiting for a handle under the open-file cap"
    );
    describe_gauge!(
        FILE_LAG,
        Unit::Bytes,
        "File size minus committed checkpoint"
    );
    describe_counter!(FILE_TRUNCATIONS, "File generations ended by truncation");
    describe_counter!(FILE_ROTATIONS, "Files renamed while tailed");
    describe_counter!(FILE_DELETIONS, "Files deleted or moved out of scope");
    describe_counter!(CHECKPOINT_CORRUPT, "Corrupt checkpoint files rebuilt");
    describe_counter!(CHECKPOINT_WRITE_ERRORS, "Failed checkpoint flushes");
    describe_gauge!(SPOOL_BYTES, Unit::Bytes, "Bytes held by the spool");
    describe_counter!(SPOOL_RECORDS, "Records appended to the spool");
    describe_counter!(SPOOL_FULL, "Appends refused because the spool was full");
    describe_counter!(SPOOL_CORRUPT, "Torn or corrupt spool records cut off");
    describe_counter!(
        SPOOL_WRITE_ERRORS,
        "Spool appends that failed on the disk and were retried"
    );
    describe_counter!(
        RECORDS_TOO_LARGE,
        "Records too large for the spool, skipped"
    );
    describe_gauge!(
        UNREADABLE_FILES,
        "Watched files that cannot be read right now"
    );
    describe_histogram!(ACK_LATENCY, Unit::Seconds, "Batch send to ack latency");
    describe_counter!(BATCHES_SENT, "Batches sent, including resends");
    describe_counter!(BATCHES_ACKED, "Batches acknowledged");
    describe_counter!(ITEMS_REJECTED, "Items rejected by the aggregator");
    describe_counter!(RETRIES, "Reconnect attempts to the aggregator");
    describe_counter!(
        UNDECODABLE_RECORDS,
        "Spool records not decodable for delivery"
    );
    describe_gauge!(
        SINK_LAG,
        "Records a direct sink's cursor is behind the spool end"
    );
    describe_counter!(
        SINK_REWINDS,
        "Direct sink hand-overs not confirmed and resent"
    );
}

/// Counts `n` bytes read from a log file.
pub fn bytes_read(n: u64) {
    counter!(BYTES_READ).increment(n);
}

/// Counts `n` framed lines.
pub fn lines(n: u64) {
    counter!(LINES).increment(n);
}

/// Counts one finding of `rule_id`, whose severity is `severity` (a rule has one severity, so
/// the label adds no series).
pub fn finding(rule_id: &str, severity: &'static str) {
    counter!(FINDINGS, "rule" => rule_id.to_owned(), "severity" => severity).increment(1);
}

/// Counts `n` decode errors.
pub fn decode_errors(n: u64) {
    counter!(DECODE_ERRORS).increment(n);
}

/// Counts `n` truncated lines.
pub fn truncated_lines(n: u64) {
    counter!(TRUNCATED_LINES).increment(n);
}

/// Sets the per-file lag gauge for `path`.
pub fn file_lag(path: &str, lag: u64) {
    gauge!(FILE_LAG, "path" => path.to_owned()).set(lag as f64);
}

/// Records one batch's send-to-ack latency.
pub fn ack_latency(seconds: f64) {
    histogram!(ACK_LATENCY).record(seconds);
}

/// Increments a plain counter by `n`.
pub fn count(name: &'static str, n: u64) {
    counter!(name).increment(n);
}

/// Sets a plain gauge.
pub fn set_gauge(name: &'static str, value: f64) {
    gauge!(name).set(value);
}

/// Marks the stream to the aggregator as open or closed.
pub fn connected(open: bool) {
    CONNECTED_NOW.store(open, Ordering::Relaxed);
    gauge!(CONNECTED).set(if open { 1.0 } else { 0.0 });
}

/// Notes that the aggregator acknowledged a batch now.
pub fn acked() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    LAST_ACK_MS.store(now.max(1), Ordering::Relaxed);
}

/// True while a stream to the aggregator is open.
pub fn is_connected() -> bool {
    CONNECTED_NOW.load(Ordering::Relaxed)
}

/// Seconds since the aggregator last acknowledged a batch; `None` before the first.
pub fn last_ack_age() -> Option<f64> {
    let last = LAST_ACK_MS.load(Ordering::Relaxed);
    (last > 0).then(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        now.saturating_sub(last) as f64 / 1000.0
    })
}

/// Sets the gauges computed when scraped: last-ack age and records pending per consumer.
pub fn refresh(pending: &[(String, u64)]) {
    if let Some(age) = last_ack_age() {
        gauge!(LAST_ACK_AGE).set(age);
    }
    for (consumer, n) in pending {
        gauge!(SPOOL_PENDING, "consumer" => consumer.clone()).set(*n as f64);
    }
}
