//! Protocol-neutral views of a [`Finding`]: severity scales, times, host name and a JSON form.
//!
//! The mappings follow the summary table of `sinks-and-perf.md`: severity info/low/medium/high/
//! critical maps to OTel SeverityNumber 9/13/17/18/19, syslog severity 6/4/3/2/1 and CEF 2/4/6/8/10.

use patchwatch_proto::{Finding, LogKind, Severity};
use serde_json::{json, Map, Value};

/// The event name every finding carries (OTLP `event_name`, ECS `event.dataset`).
pub const EVENT_NAME: &str = "patchwatch.finding";

/// Lower-case severity name: `info`, `low`, `medium`, `high`, `critical` or `unspecified`.
pub fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Unspecified => "unspecified",
        Severity::Info => "info",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// Parses a severity name as written in configs (case-insensitive).
pub fn parse_severity(s: &str) -> Option<Severity> {
    match s.to_ascii_lowercase().as_str() {
        "info" => Some(Severity::Info),
        "low" => Some(Severity::Low),
        "medium" => Some(Severity::Medium),
        "high" => Some(Severity::High),
        "critical" => Some(Severity::Critical),
        _ => None,
    }
}

/// OpenTelemetry SeverityNumber (INFO=9, WARN=13, ERROR=17, ERROR2=18, ERROR3=19).
pub fn otel_severity_number(s: Severity) -> i32 {
    match s {
        Severity::Unspecified | Severity::Info => 9,
        Severity::Low => 13,
        Severity::Medium => 17,
        Severity::High => 18,
        Severity::Critical => 19,
    }
}

/// OTel severity text matching [`otel_severity_number`].
pub fn otel_severity_text(s: Severity) -> &'static str {
    match s {
        Severity::Unspecified | Severity::Info => "INFO",
        Severity::Low => "WARN",
        Severity::Medium | Severity::High => "ERROR",
        Severity::Critical => "ERROR3",
    }
}

/// Syslog severity (RFC 5424 §6.2.1): info 6, low 4 (warning), medium 3 (err), high 2 (crit),
/// critical 1 (alert).
pub fn syslog_severity(s: Severity) -> u8 {
    match s {
        Severity::Unspecified | Severity::Info => 6,
        Severity::Low => 4,
        Severity::Medium => 3,
        Severity::High => 2,
        Severity::Critical => 1,
    }
}

/// CEF severity 0..=10.
pub fn cef_severity(s: Severity) -> u8 {
    match s {
        Severity::Unspecified | Severity::Info => 2,
        Severity::Low => 4,
        Severity::Medium => 6,
        Severity::High => 8,
        Severity::Critical => 10,
    }
}

/// Host name of the finding: `host.hostname`, else `host.fqdn`, else `"-"`-free empty string.
pub fn host_name(f: &Finding) -> &str {
    match &f.host {
        Some(h) if !h.hostname.is_empty() => &h.hostname,
        Some(h) => &h.fqdn,
        None => "",
    }
}

/// Time of the finding in Unix nanoseconds: the log line's time when known, else when it was
/// observed, else 0.
pub fn event_time_nanos(f: &Finding) -> i64 {
    if f.event_time_unix_nano > 0 {
        f.event_time_unix_nano
    } else {
        f.observed_time_unix_nano.max(0)
    }
}

/// RFC 3339 UTC timestamp with microseconds, e.g. `2026-11-21T05:28:01.123456Z`.
pub fn rfc3339_micros(nanos: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos as i128)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Current time in Unix nanoseconds.
pub fn now_nanos() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}

/// Name of the log grammar, e.g. `exchange_setup`, `msi`.
pub fn log_kind_name(k: LogKind) -> &'static str {
    match k {
        LogKind::Unspecified => "unspecified",
        LogKind::ExchangeSetup => "exchange_setup",
        LogKind::Msi => "msi",
        LogKind::ServiceControl => "service_control",
        LogKind::Plain => "plain",
    }
}

/// A stable JSON form of a finding, used by the webhook and JSON Lines sinks. Field names are
/// those of the proto message; maps are sorted so output is deterministic.
pub fn finding_json(f: &Finding) -> Value {
    let sorted = |m: &std::collections::HashMap<String, String>| -> Value {
        let mut keys: Vec<_> = m.iter().collect();
        keys.sort();
        Value::Object(
            keys.into_iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect::<Map<_, _>>(),
        )
    };
    let nanos = event_time_nanos(f);
    json!({
        "id": f.id,
        "time": rfc3339_micros(nanos),
        "rule_id": f.rule_id,
        "rule_version": f.rule_version,
        "title": f.title,
        "severity": severity_name(f.severity()),
        "category": f.category,
        "host": host_name(f),
        "log_kind": log_kind_name(f.log_kind()),
        "source_path": f.source_path,
        "line_number": f.line_number,
        "byte_offset": f.byte_offset,
        "run_id": f.run_id,
        "primary": f.primary,
        "event_time_unix_nano": f.event_time_unix_nano,
        "observed_time_unix_nano": f.observed_time_unix_nano,
        "evidence": f.evidence,
        "fields": sorted(&f.fields),
        "labels": sorted(&f.labels),
        "remediation": f.remediation.as_ref().map(|r| json!({
            "summary": r.summary, "steps": r.steps, "links": r.links,
        })),
    })
}

/// Builds a realistic finding for tests and examples.
#[doc(hidden)]
pub fn sample_finding(id: &str, rule: &str, sev: Severity, host: &str) -> Finding {
    let mut f = Finding {
        id: id.to_string(),
        rule_id: rule.to_string(),
        rule_version: 1,
        title: format!("Exchange setup failed: 0x80070643 ({rule})"),
        host: Some(patchwatch_proto::HostInfo {
            hostname: host.to_string(),
            fqdn: format!("{host}.corp.example"),
            os: "Windows Server 2019".into(),
            agent_version: "0.1.0".into(),
            time_zone: "UTC".into(),
            utc_offset_seconds: 0,
        }),
        source_path: r"C:\ExchangeSetupLogs\ExchangeSetup.log".into(),
        byte_offset: 4096,
        line_number: 18231,
        run_id: "run-1".into(),
        event_time_unix_nano: 1_763_702_881_123_456_000,
        observed_time_unix_nano: 1_763_702_882_000_000_000,
        evidence: vec![
            "[ERROR] The following error was generated: \"0x80070643\"=\"quote\" ] [x]".into(),
        ],
        category: "package".into(),
        primary: true,
        remediation: Some(patchwatch_proto::Remediation {
            summary: "Repair the .NET Framework installation".into(),
            steps: vec!["Run the repair tool".into()],
            links: vec!["https://support.example/kb/1".into()],
        }),
        ..Default::default()
    };
    f.set_severity(sev);
    f.log_kind = LogKind::ExchangeSetup as i32;
    f.fields.insert("error_code".into(), "0x80070643".into());
    f.labels.insert("env".into(), "prod".into());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_ordered_and_documented() {
        let all = [
            Severity::Info,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ];
        let otel: Vec<_> = all.iter().map(|s| otel_severity_number(*s)).collect();
        assert_eq!(otel, [9, 13, 17, 18, 19]);
        let sys: Vec<_> = all.iter().map(|s| syslog_severity(*s)).collect();
        assert_eq!(sys, [6, 4, 3, 2, 1]);
        let cef: Vec<_> = all.iter().map(|s| cef_severity(*s)).collect();
        assert_eq!(cef, [2, 4, 6, 8, 10]);
        for s in all {
            assert_eq!(parse_severity(severity_name(s)), Some(s));
        }
    }

    #[test]
    fn rfc3339_has_micros_and_z() {
        assert_eq!(
            rfc3339_micros(1_763_702_881_123_456_789),
            "2025-11-21T05:28:01.123456Z"
        );
    }

    #[test]
    fn json_has_core_fields() {
        let f = sample_finding("f1", "EXCH-0042", Severity::High, "EXCH01");
        let v = finding_json(&f);
        assert_eq!(v["severity"], "high");
        assert_eq!(v["host"], "EXCH01");
        assert_eq!(v["fields"]["error_code"], "0x80070643");
    }
}
