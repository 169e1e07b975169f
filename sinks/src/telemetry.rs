//! Metrics of sinks. Only this module names metrics, so names stay consistent:
//! `patchwatch_<name>_<unit>_total`, labels low-cardinality (sink name, bounded error code).

use metrics::counter;

pub(crate) fn sent(sink: &str, n: usize) {
    if n > 0 {
        counter!("patchwatch_sink_findings_sent_total", "sink" => sink.to_string())
            .increment(n as u64);
    }
}

pub(crate) fn rejected(sink: &str, n: usize) {
    if n > 0 {
        counter!("patchwatch_sink_findings_rejected_total", "sink" => sink.to_string())
            .increment(n as u64);
    }
}

pub(crate) fn failed(sink: &str, code: &str, n: usize) {
    counter!("patchwatch_sink_findings_failed_total", "sink" => sink.to_string(),
        "error_code" => code.to_string())
    .increment(n as u64);
}

pub(crate) fn retried(sink: &str, code: &str, n: usize) {
    counter!("patchwatch_sink_findings_retried_total", "sink" => sink.to_string(),
        "error_code" => code.to_string())
    .increment(n as u64);
}

pub(crate) fn queue_full(sink: &str) {
    counter!("patchwatch_sink_queue_full_events_total", "sink" => sink.to_string()).increment(1);
}
