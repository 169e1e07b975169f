//! Findings to an `ExportLogsServiceRequest`.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use patchwatch_proto::Finding;

use crate::encoding::{
    host_name, log_kind_name, otel_severity_number, otel_severity_text, severity_name, EVENT_NAME,
};

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.to_string()))
}

fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

/// The log record of one finding.
pub(super) fn log_record(f: &Finding) -> LogRecord {
    let sev = f.severity();
    let mut attrs = vec![
        s("log.record.uid", &f.id),
        s("security_rule.uuid", &f.rule_id),
        s("security_rule.name", &f.title),
        s("security_rule.version", &f.rule_version.to_string()),
        s("security_rule.ruleset.name", "patchwatch"),
        s("log.file.path", &f.source_path),
        i("patchwatch.line_number", f.line_number as i64),
        i("patchwatch.byte_offset", f.byte_offset as i64),
        s("patchwatch.severity", severity_name(sev)),
        s("patchwatch.log_kind", log_kind_name(f.log_kind())),
    ];
    if !f.category.is_empty() {
        attrs.push(s("security_rule.category", &f.category));
    }
    if !f.run_id.is_empty() {
        attrs.push(s("patchwatch.run_id", &f.run_id));
    }
    if let Some(code) = f.fields.get("error_code") {
        attrs.push(s("error.type", code));
    }
    if let Some(line) = f.evidence.first() {
        attrs.push(s("log.record.original", line));
    }
    if let Some(r) = &f.remediation {
        attrs.push(s("patchwatch.remediation", &r.summary));
    }
    for (k, v) in f.fields.iter().collect::<BTreeMap<_, _>>() {
        attrs.push(s(&format!("patchwatch.field.{k}"), v));
    }
    for (k, v) in f.labels.iter().collect::<BTreeMap<_, _>>() {
        attrs.push(s(&format!("patchwatch.label.{k}"), v));
    }
    LogRecord {
        time_unix_nano: f.event_time_unix_nano.max(0) as u64,
        observed_time_unix_nano: f.observed_time_unix_nano.max(0) as u64,
        severity_number: otel_severity_number(sev),
        severity_text: otel_severity_text(sev).to_string(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(f.title.clone())),
        }),
        attributes: attrs,
        event_name: EVENT_NAME.to_string(),
        ..Default::default()
    }
}

/// One `ResourceLogs` per host (in first-seen order), each with one scope.
pub fn export_request(batch: &[Finding], service_name: &str) -> ExportLogsServiceRequest {
    let mut order: Vec<&str> = Vec::new();
    let mut by_host: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in batch {
        let h = host_name(f);
        by_host
            .entry(h)
            .or_insert_with(|| {
                order.push(h);
                Vec::new()
            })
            .push(f);
    }
    let resource_logs = order
        .into_iter()
        .map(|h| {
            let fs = &by_host[h];
            let first = fs[0];
            let mut attrs = vec![
                s("service.name", service_name),
                s("host.name", h),
                s("os.type", "windows"),
            ];
            if let Some(info) = &first.host {
                if !info.agent_version.is_empty() {
                    attrs.push(s("service.version", &info.agent_version));
                }
                if !info.os.is_empty() {
                    attrs.push(s("os.description", &info.os));
                }
                if !info.fqdn.is_empty() {
                    attrs.push(s("host.id", &info.fqdn));
                }
            }
            ResourceLogs {
                resource: Some(Resource {
                    attributes: attrs,
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "patchwatch".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    log_records: fs.iter().map(|f| log_record(f)).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }
}
