//! Elastic Common Schema documents and bulk request bodies.

use patchwatch_proto::Finding;
use serde_json::{json, Value};

use crate::encoding::{
    event_time_nanos, host_name, log_kind_name, rfc3339_micros, severity_name, EVENT_NAME,
};

/// ECS version the documents follow.
pub const ECS_VERSION: &str = "9.4.0";

/// The ECS document of a finding: `event.kind = alert` (a detection made outside the Elastic
/// Stack), `event.category = [package]`, `rule.*`, `log.file.path`, `host.*`, `error.*`.
pub fn ecs_document(f: &Finding) -> Value {
    let sev = f.severity();
    let mut labels = serde_json::Map::new();
    let mut keys: Vec<_> = f.labels.iter().collect();
    keys.sort();
    for (k, v) in keys {
        labels.insert(k.clone(), Value::String(v.clone()));
    }
    let mut doc = json!({
        "@timestamp": rfc3339_micros(event_time_nanos(f)),
        "message": f.title,
        "ecs": { "version": ECS_VERSION },
        "event": {
            "kind": "alert",
            "category": ["package"],
            "type": ["installation", "error"],
            "outcome": "failure",
            "severity": sev as i32,
            "id": f.id,
            "created": rfc3339_micros(f.observed_time_unix_nano),
            "dataset": EVENT_NAME,
            "module": "patchwatch",
            "provider": log_kind_name(f.log_kind()),
            "original": f.evidence.first().cloned().unwrap_or_default(),
        },
        "rule": {
            "id": f.rule_id,
            "name": f.title,
            "version": f.rule_version.to_string(),
            "category": f.category,
            "ruleset": "patchwatch",
        },
        "log": {
            "level": severity_name(sev),
            "file": { "path": f.source_path },
            "offset": f.byte_offset,
        },
        "host": {
            "name": host_name(f),
            "hostname": f.host.as_ref().map(|h| h.hostname.clone()).unwrap_or_default(),
            "os": { "type": "windows", "full": f.host.as_ref().map(|h| h.os.clone()).unwrap_or_default() },
        },
        "agent": {
            "type": "patchwatch",
            "version": f.host.as_ref().map(|h| h.agent_version.clone()).unwrap_or_default(),
        },
        "labels": labels,
        "patchwatch": {
            "line_number": f.line_number,
            "run_id": f.run_id,
            "primary": f.primary,
            "remediation": f.remediation.as_ref().map(|r| r.summary.clone()),
        },
    });
    if let Some(code) = f.fields.get("error_code") {
        doc["error"] = json!({ "code": code, "message": f.fields.get("error_message") });
        doc["event"]["code"] = Value::String(code.clone());
    }
    if let Some(url) = f.remediation.as_ref().and_then(|r| r.links.first()) {
        doc["rule"]["reference"] = Value::String(url.clone());
    }
    doc
}

/// NDJSON bulk body: a `create` action with `_id` then the document, for every finding.
pub(super) fn bulk_body(batch: &[Finding], index: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.len() * 1500);
    for f in batch {
        let action = json!({ "create": { "_index": index, "_id": f.id } });
        serde_json::to_writer(&mut out, &action).expect("JSON values always serialize");
        out.push(b'\n');
        serde_json::to_writer(&mut out, &ecs_document(f)).expect("JSON values always serialize");
        out.push(b'\n');
    }
    out
}
