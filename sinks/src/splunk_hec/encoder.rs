//! HEC event envelopes.

use patchwatch_proto::Finding;
use serde_json::{json, Map, Value};

use super::SplunkHecConfig;
use crate::encoding::{
    event_time_nanos, finding_json, host_name, otel_severity_number, severity_name,
};

/// One envelope. `time` is epoch seconds with milliseconds (`1433188255.500`); `fields` are
/// index-time fields and must be strings.
pub(super) fn envelope(f: &Finding, cfg: &SplunkHecConfig) -> Value {
    let millis = event_time_nanos(f) / 1_000_000;
    let time = millis as f64 / 1000.0;
    let mut fields = Map::new();
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            fields.insert(k.to_string(), Value::String(v.to_string()));
        }
    };
    put("finding_id", &f.id);
    put("rule_id", &f.rule_id);
    put("severity", severity_name(f.severity()));
    put("category", &f.category);
    put("run_id", &f.run_id);
    put(
        "otel.log.severity.number",
        &otel_severity_number(f.severity()).to_string(),
    );
    if let Some(code) = f.fields.get("error_code") {
        put("error_code", code);
    }
    let mut labels: Vec<_> = f.labels.iter().collect();
    labels.sort();
    for (k, v) in labels {
        put(&format!("label_{k}"), v);
    }
    let mut env = json!({
        "time": time,
        "host": host_name(f),
        "source": cfg.source,
        "sourcetype": cfg.sourcetype,
        "event": finding_json(f),
        "fields": fields,
    });
    if let Some(index) = &cfg.index {
        env["index"] = Value::String(index.clone());
    }
    env
}

/// Envelopes back to back, as HEC expects for a batch.
pub(super) fn encode(batch: &[Finding], cfg: &SplunkHecConfig) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.len() * 1024);
    for f in batch {
        serde_json::to_writer(&mut out, &envelope(f, cfg)).expect("JSON values always serialize");
    }
    out
}
