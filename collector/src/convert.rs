//! Conversion of the pipeline's plain types to the wire types of `patchwatch-proto`.
//!
//! Plain functions rather than `From` impls: both types are foreign to this crate.

use patchwatch_pipeline as pl;
use patchwatch_proto as pb;

/// Severity on the wire.
pub fn severity(s: pl::Severity) -> pb::Severity {
    match s {
        pl::Severity::Info => pb::Severity::Info,
        pl::Severity::Low => pb::Severity::Low,
        pl::Severity::Medium => pb::Severity::Medium,
        pl::Severity::High => pb::Severity::High,
        pl::Severity::Critical => pb::Severity::Critical,
    }
}

/// Log kind on the wire.
pub fn log_kind(k: pl::LogKind) -> pb::LogKind {
    match k {
        pl::LogKind::ExchangeSetup => pb::LogKind::ExchangeSetup,
        pl::LogKind::Msi => pb::LogKind::Msi,
        pl::LogKind::ServiceControl => pb::LogKind::ServiceControl,
        pl::LogKind::Plain => pb::LogKind::Plain,
    }
}

/// Run outcome on the wire.
pub fn outcome(o: pl::Outcome) -> pb::RunOutcome {
    match o {
        pl::Outcome::InProgress => pb::RunOutcome::InProgress,
        pl::Outcome::Succeeded => pb::RunOutcome::Succeeded,
        pl::Outcome::Failed => pb::RunOutcome::Failed,
    }
}

/// Current time as Unix nanoseconds.
pub fn now_unix_nano() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}

/// A finding on the wire. `file` identifies the file generation; `host` is the collector's.
pub fn finding(
    f: &pl::Finding,
    host: &pb::HostInfo,
    file: Option<pb::FileIdentity>,
    primary: bool,
) -> pb::Finding {
    pb::Finding {
        id: f.id.clone(),
        rule_id: f.rule_id.clone(),
        rule_version: f.rule_version,
        title: f.title.clone(),
        severity: severity(f.severity) as i32,
        host: Some(host.clone()),
        log_kind: log_kind(f.log_kind) as i32,
        source_path: f.path.clone(),
        file,
        byte_offset: f.byte_offset,
        line_number: f.line,
        run_id: f.run_id.clone(),
        event_time_unix_nano: f.event_time_unix_nano.unwrap_or(0),
        observed_time_unix_nano: now_unix_nano(),
        evidence: f
            .evidence
            .iter()
            .map(|e| format!("{}: {}", e.line, e.text))
            .collect(),
        fields: f.fields.clone().into_iter().collect(),
        remediation: Some(pb::Remediation {
            summary: f.remediation.summary.clone(),
            steps: f.remediation.steps.clone(),
            links: f.remediation.links.clone(),
        }),
        labels: Default::default(),
        category: f.category.clone(),
        primary,
    }
}

/// Naive `YYYY-MM-DDTHH:MM:SS.fff` local time to Unix nanoseconds with the collector's offset.
pub fn naive_to_unix_nano(s: Option<&str>, utc_offset_seconds: i32) -> i64 {
    let Some(s) = s else { return 0 };
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]"
    );
    time::PrimitiveDateTime::parse(s, &fmt)
        .ok()
        .and_then(|t| {
            time::UtcOffset::from_whole_seconds(utc_offset_seconds)
                .ok()
                .map(|o| t.assume_offset(o))
        })
        .map_or(0, |t| t.unix_timestamp_nanos() as i64)
}

/// A run update on the wire.
pub fn run_update(r: &pl::RunSummary, utc_offset_seconds: i32) -> pb::RunUpdate {
    pb::RunUpdate {
        run_id: r.run_id.clone(),
        host: r.host.clone(),
        source_path: r.path.clone(),
        log_kind: log_kind(r.log_kind) as i32,
        run_index: r.index,
        outcome: outcome(r.outcome) as i32,
        mode: r.mode.clone().unwrap_or_default(),
        product: r.product.clone().unwrap_or_default(),
        target_build: r.target_build.clone().unwrap_or_default(),
        installed_build: r.installed_build.clone().unwrap_or_default(),
        phase: r.phase.clone().unwrap_or_default(),
        exit_code: r.exit_code,
        primary_finding_id: r.primary_finding_id.clone().unwrap_or_default(),
        started_unix_nano: naive_to_unix_nano(r.started.as_deref(), utc_offset_seconds),
        updated_unix_nano: now_unix_nano(),
        last_line_unix_nano: naive_to_unix_nano(r.last_time.as_deref(), utc_offset_seconds),
    }
}

/// Host identity of this machine (or the configured name).
pub fn host_info(name: Option<&str>, utc_offset_seconds: i32) -> pb::HostInfo {
    let hostname = name.map(str::to_string).unwrap_or_else(crate::local_host);
    let sign = if utc_offset_seconds < 0 { '-' } else { '+' };
    let abs = utc_offset_seconds.unsigned_abs();
    pb::HostInfo {
        fqdn: hostname.clone(),
        hostname,
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        time_zone: format!("UTC{sign}{:02}:{:02}", abs / 3600, (abs % 3600) / 60),
        utc_offset_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive_time_uses_the_assumed_offset() {
        let utc = naive_to_unix_nano(Some("2021-03-13T05:01:28.038"), 0);
        assert_eq!(utc, 1_615_611_688_038_000_000);
        assert_eq!(
            naive_to_unix_nano(Some("2021-03-13T05:01:28.038"), -6 * 3600),
            utc + 6 * 3_600_000_000_000
        );
        assert_eq!(naive_to_unix_nano(None, 0), 0);
    }

    #[test]
    fn host_info_names_the_zone() {
        assert_eq!(host_info(Some("EX01"), -21600).time_zone, "UTC-06:00");
        assert_eq!(host_info(Some("EX01"), 19800).time_zone, "UTC+05:30");
    }
}
