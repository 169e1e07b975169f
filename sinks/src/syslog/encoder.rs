//! RFC 5424 messages and CEF payloads.

use std::collections::BTreeMap;

use patchwatch_proto::Finding;

use super::config::{CefConfig, SyslogConfig};
use crate::encoding::{
    cef_severity, event_time_nanos, host_name, rfc3339_micros, severity_name, syslog_severity,
};

/// PRINTUSASCII (33..=126) only, at most `max` bytes, `-` (NILVALUE) when empty.
fn header_field(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if out.is_empty() {
        "-".into()
    } else {
        out
    }
}

/// PARAM-VALUE escaping (RFC 5424 §6.3.3): `"`, `\` and `]` get a backslash.
fn sd_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// SD-NAME: printable ASCII without `=`, space, `]`, `"`, at most 32 bytes.
fn sd_name(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"'))
        .take(32)
        .collect()
}

fn header(f: &Finding, cfg: &SyslogConfig) -> String {
    let pri = u16::from(cfg.facility) * 8 + u16::from(syslog_severity(f.severity()));
    format!(
        "<{pri}>1 {} {} {} - {}",
        rfc3339_micros(event_time_nanos(f)),
        header_field(host_name(f), 255),
        header_field(&cfg.app_name, 48),
        header_field(&f.rule_id, 32),
    )
}

/// Structured data: the `finding@<pen>` element, then a `labels@<pen>` element if any.
fn structured_data(f: &Finding, sd_id: &str) -> String {
    let mut params: Vec<(&str, String)> = vec![
        ("id", f.id.clone()),
        ("rule", f.rule_id.clone()),
        ("rule_version", f.rule_version.to_string()),
        ("sev", severity_name(f.severity()).into()),
        ("file", f.source_path.clone()),
        ("line", f.line_number.to_string()),
        ("offset", f.byte_offset.to_string()),
    ];
    if !f.category.is_empty() {
        params.push(("category", f.category.clone()));
    }
    if !f.run_id.is_empty() {
        params.push(("run", f.run_id.clone()));
    }
    if let Some(code) = f.fields.get("error_code") {
        params.push(("error_code", code.clone()));
    }
    let mut sd = format!("[{sd_id}");
    for (k, v) in params {
        sd.push_str(&format!(" {k}=\"{}\"", sd_value(&v)));
    }
    sd.push(']');
    if !f.labels.is_empty() {
        let pen = sd_id.split_once('@').map(|(_, p)| p).unwrap_or("32473");
        sd.push_str(&format!("[labels@{pen}"));
        for (k, v) in f.labels.iter().collect::<BTreeMap<_, _>>() {
            let name = sd_name(k);
            if !name.is_empty() {
                sd.push_str(&format!(" {name}=\"{}\"", sd_value(v)));
            }
        }
        sd.push(']');
    }
    sd
}

/// MSG text on one line: CR and LF would split the message for line-based receivers.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// A complete RFC 5424 message (no framing): header, structured data, title as MSG.
pub fn rfc5424_message(f: &Finding, cfg: &SyslogConfig) -> String {
    format!(
        "{} {} {}",
        header(f, cfg),
        structured_data(f, &cfg.sd_id),
        one_line(&f.title)
    )
}

/// CEF header field: `\` and `|` escaped, no CR/LF, at most `max` characters.
fn cef_header(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars().take(max) {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// CEF extension value: `\` and `=` escaped, newlines as `\n` / `\r`, at most `max` characters.
fn cef_ext(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars().take(max) {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// The CEF:0 payload of a finding.
pub fn cef_message(f: &Finding, cef: &CefConfig) -> String {
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", (event_time_nanos(f) / 1_000_000).to_string()),
        ("dvchost", cef_ext(host_name(f), 100)),
        ("filePath", cef_ext(&f.source_path, 1023)),
        ("msg", cef_ext(&f.title, 1023)),
        ("externalId", cef_ext(&f.id, 40)),
        ("cs1Label", "findingId".into()),
        ("cs1", cef_ext(&f.id, 4000)),
        ("cn1Label", "line".into()),
        ("cn1", f.line_number.to_string()),
        ("outcome", "failure".into()),
    ];
    if !f.category.is_empty() {
        ext.push(("cat", cef_ext(&f.category, 1023)));
    }
    if let Some(code) = f.fields.get("error_code") {
        ext.push(("cs2Label", "errorCode".into()));
        ext.push(("cs2", cef_ext(code, 4000)));
    }
    if !f.run_id.is_empty() {
        ext.push(("cs3Label", "runId".into()));
        ext.push(("cs3", cef_ext(&f.run_id, 4000)));
    }
    if let Some(line) = f.evidence.first() {
        ext.push(("cs4Label", "evidence".into()));
        ext.push(("cs4", cef_ext(line, 4000)));
    }
    let ext: Vec<String> = ext.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "CEF:0|{}|{}|{}|{}|{}|{}|{}",
        cef_header(&cef.vendor, 63),
        cef_header(&cef.product, 63),
        cef_header(&cef.version, 31),
        cef_header(&f.rule_id, 1023),
        cef_header(&f.title, 512),
        cef_severity(f.severity()),
        ext.join(" ")
    )
}

/// The message for the configured format.
pub(super) fn message(f: &Finding, cfg: &SyslogConfig) -> String {
    match cfg.format {
        super::SyslogFormat::Rfc5424 => rfc5424_message(f, cfg),
        super::SyslogFormat::Cef => format!("{} - {}", header(f, cfg), cef_message(f, &cfg.cef)),
    }
}

/// RFC 6587 §3.4.1 / RFC 5425 framing: `MSG-LEN SP SYSLOG-MSG`, length in octets.
pub(super) fn octet_counted(msg: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg.as_bytes());
}
