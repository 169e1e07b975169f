//! Turns a wire `Batch` into a [`ValidBatch`] plus the items it rejects, with reasons.
//!
//! A malformed item is data, not an error: it is listed in `Ack.rejected` and the rest of the
//! batch is stored. Enum values the proto does not know are handled as its compatibility rules
//! say (unknown = unspecified), except severity: a finding whose severity is unspecified or
//! unknown cannot be ranked or filtered, so it is rejected.

use std::collections::BTreeMap;

use patchwatch_proto::{Batch, Finding, HostInfo, Rejection, RunUpdate};

use crate::model::{
    FileIdentityRecord, FindingDetail, HostInfoRecord, NewFinding, NewHost, NewRun,
    RemediationRecord, ValidBatch,
};

/// Longest accepted finding id or run id, in bytes.
pub const MAX_ID_BYTES: usize = 512;

/// A batch after validation.
#[derive(Debug)]
pub struct Validated {
    /// What to store.
    pub batch: ValidBatch,
    /// What was refused, with reasons, for `Ack.rejected`.
    pub rejected: Vec<Rejection>,
}

impl Validated {
    /// Items accepted (stored, or already stored): `Ack.accepted`.
    pub fn accepted(&self) -> u32 {
        u32::try_from(self.batch.rows()).unwrap_or(u32::MAX)
    }
}

/// The checks of an item that depend on who sent it and when: host ownership and time.
pub struct ItemRules<'a> {
    /// Whether the sender may write a host; the error is the rejection reason.
    pub owns: &'a dyn Fn(&str) -> Result<(), String>,
    /// Accepted timestamps (nonzero ones; zero means unknown).
    pub times: TimeBounds,
}

/// The accepted range of an item's timestamps, around the aggregator's clock.
#[derive(Debug, Clone, Copy)]
pub struct TimeBounds {
    /// Nanoseconds a timestamp may lie after the receive time.
    pub max_future_ns: i64,
    /// Nanoseconds a timestamp may lie before the receive time.
    pub max_past_ns: i64,
}

impl TimeBounds {
    /// No bound at all.
    pub const NONE: TimeBounds = TimeBounds {
        max_future_ns: i64::MAX,
        max_past_ns: i64::MAX,
    };

    /// Bounds from durations (saturating at about 292 years).
    pub fn new(future: std::time::Duration, past: std::time::Duration) -> Self {
        let ns = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        Self {
            max_future_ns: ns(future),
            max_past_ns: ns(past),
        }
    }

    fn check(&self, field: &str, value: i64, received_ns: i64) -> Result<(), String> {
        if value == 0 {
            return Ok(());
        }
        let latest = received_ns.saturating_add(self.max_future_ns);
        let earliest = received_ns.saturating_sub(self.max_past_ns);
        if value > latest {
            metrics::counter!("patchwatch_aggregator_items_rejected_total", "reason" => "time_out_of_range")
                .increment(1);
            return Err(format!(
                "{field} {} is {}s ahead of the aggregator's clock; at most grpc.max_clock_skew \
                 ({}s) is accepted",
                crate::model::rfc3339(value).unwrap_or_else(|| value.to_string()),
                (i128::from(value) - i128::from(received_ns)) / 1_000_000_000,
                self.max_future_ns / 1_000_000_000
            ));
        }
        if value < earliest {
            metrics::counter!("patchwatch_aggregator_items_rejected_total", "reason" => "time_out_of_range")
                .increment(1);
            return Err(format!(
                "{field} {} is older than grpc.max_item_age ({}s)",
                crate::model::rfc3339(value).unwrap_or_else(|| value.to_string()),
                self.max_past_ns / 1_000_000_000
            ));
        }
        Ok(())
    }
}

/// Validates `batch` from `collector_id`, received at `received_ns`, with no ownership or time
/// rules.
pub fn validate(batch: Batch, collector_id: String, received_ns: i64) -> Validated {
    let anyone = |_: &str| Ok(());
    validate_with(
        batch,
        collector_id,
        received_ns,
        &ItemRules {
            owns: &anyone,
            times: TimeBounds::NONE,
        },
    )
}

/// Validates `batch` from `collector_id`, received at `received_ns`, under `rules`.
pub fn validate_with(
    batch: Batch,
    collector_id: String,
    received_ns: i64,
    rules: &ItemRules<'_>,
) -> Validated {
    let batch_host = batch.host.unwrap_or_default();
    let mut hosts: BTreeMap<String, HostInfoRecord> = BTreeMap::new();
    // The batch's host info is stored only for a host the sender owns; its items are checked
    // one by one below.
    if !batch_host.hostname.is_empty() && (rules.owns)(&batch_host.hostname).is_ok() {
        hosts.insert(batch_host.hostname.clone(), host_record(&batch_host));
    }
    let mut rejected = Vec::new();
    let mut findings = Vec::with_capacity(batch.findings.len());
    let finding_ok = |nf: &NewFinding| -> Result<(), String> {
        (rules.owns)(&nf.host)?;
        rules
            .times
            .check("event_time_unix_nano", nf.event_ns, received_ns)?;
        rules
            .times
            .check("observed_time_unix_nano", nf.observed_ns, received_ns)
    };
    let run_ok = |nr: &NewRun| -> Result<(), String> {
        (rules.owns)(&nr.host)?;
        rules
            .times
            .check("started_unix_nano", nr.started_ns, received_ns)?;
        rules
            .times
            .check("updated_unix_nano", nr.updated_ns, received_ns)?;
        rules
            .times
            .check("last_line_unix_nano", nr.last_line_ns, received_ns)
    };
    // Malformed items; the policy checks (`owns`, `times`) count their own refusals by reason.
    let mut malformed = 0u64;
    for (i, f) in batch.findings.into_iter().enumerate() {
        let f = finding(f, &batch_host).inspect_err(|_| malformed += 1);
        match f.and_then(|(nf, info)| finding_ok(&nf).map(|()| (nf, info))) {
            Ok((nf, info)) => {
                hosts.entry(nf.host.clone()).or_insert(info);
                findings.push(nf);
            }
            Err(reason) => rejected.push(Rejection {
                index: index(i),
                run_update: false,
                reason,
            }),
        }
    }
    let mut runs = Vec::with_capacity(batch.run_updates.len());
    for (i, r) in batch.run_updates.into_iter().enumerate() {
        let r = run(r, &batch_host).inspect_err(|_| malformed += 1);
        match r.and_then(|nr| run_ok(&nr).map(|()| nr)) {
            Ok(nr) => {
                hosts
                    .entry(nr.host.clone())
                    .or_insert_with(|| HostInfoRecord {
                        hostname: nr.host.clone(),
                        ..HostInfoRecord::default()
                    });
                runs.push(nr);
            }
            Err(reason) => rejected.push(Rejection {
                index: index(i),
                run_update: true,
                reason,
            }),
        }
    }
    if malformed > 0 {
        metrics::counter!("patchwatch_aggregator_items_rejected_total", "reason" => "invalid")
            .increment(malformed);
    }
    Validated {
        batch: ValidBatch {
            collector_id,
            received_ns,
            hosts: hosts.into_values().map(|info| NewHost { info }).collect(),
            findings,
            runs,
        },
        rejected,
    }
}

fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

fn host_record(h: &HostInfo) -> HostInfoRecord {
    HostInfoRecord {
        hostname: h.hostname.clone(),
        fqdn: h.fqdn.clone(),
        os: h.os.clone(),
        agent_version: h.agent_version.clone(),
        time_zone: h.time_zone.clone(),
        utc_offset_seconds: h.utc_offset_seconds,
    }
}

fn check_id(what: &str, id: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "{what} is {} bytes long; the limit is {MAX_ID_BYTES}",
            id.len()
        ));
    }
    Ok(())
}

fn finding(f: Finding, batch_host: &HostInfo) -> Result<(NewFinding, HostInfoRecord), String> {
    check_id("finding id", &f.id)?;
    if f.rule_id.trim().is_empty() {
        return Err("rule_id is empty".to_owned());
    }
    if !(1..=5).contains(&f.severity) {
        return Err(if f.severity == 0 {
            "severity is unspecified; expected SEVERITY_INFO ..= SEVERITY_CRITICAL".to_owned()
        } else {
            format!(
                "severity {} is not a known severity; expected 1 (info) ..= 5 (critical)",
                f.severity
            )
        });
    }
    if !f.run_id.is_empty() {
        check_id("run_id", &f.run_id)?;
    }
    let own_host = f.host.unwrap_or_default();
    let info = if own_host.hostname.is_empty() {
        host_record(batch_host)
    } else {
        host_record(&own_host)
    };
    if info.hostname.is_empty() {
        return Err(
            "no hostname: neither the finding's host nor the batch's host names one".to_owned(),
        );
    }
    let file = f.file.unwrap_or_default();
    let remediation = f.remediation.unwrap_or_default();
    let detail = FindingDetail {
        host_info: info.clone(),
        file: FileIdentityRecord {
            device: file.device,
            inode: file.inode,
            fingerprint: file.fingerprint,
        },
        evidence: f.evidence,
        fields: f.fields.into_iter().collect(),
        remediation: RemediationRecord {
            summary: remediation.summary,
            steps: remediation.steps,
            links: remediation.links,
        },
        labels: f.labels.into_iter().collect(),
    };
    let detail_json =
        serde_json::to_string(&detail).map_err(|e| format!("cannot encode finding: {e}"))?;
    Ok((
        NewFinding {
            id: f.id,
            host: info.hostname.clone(),
            rule_id: f.rule_id,
            rule_version: i64::from(f.rule_version),
            title: f.title,
            severity: f.severity,
            category: f.category,
            primary: f.primary,
            log_kind: known_or_zero(f.log_kind, 4),
            source_path: f.source_path,
            byte_offset: i64::try_from(f.byte_offset).unwrap_or(i64::MAX),
            line_number: i64::try_from(f.line_number).unwrap_or(i64::MAX),
            run_id: f.run_id,
            event_ns: f.event_time_unix_nano,
            observed_ns: f.observed_time_unix_nano,
            detail_json,
        },
        info,
    ))
}

/// Proto compatibility rule: an enum value this build does not know reads as unspecified.
fn known_or_zero(value: i32, max: i32) -> i32 {
    if (0..=max).contains(&value) {
        value
    } else {
        0
    }
}

fn run(r: RunUpdate, batch_host: &HostInfo) -> Result<NewRun, String> {
    check_id("run_id", &r.run_id)?;
    let host = if r.host.is_empty() {
        batch_host.hostname.clone()
    } else {
        r.host
    };
    if host.is_empty() {
        return Err(
            "no hostname: neither the run update nor the batch's host names one".to_owned(),
        );
    }
    Ok(NewRun {
        run_id: r.run_id,
        host,
        source_path: r.source_path,
        log_kind: known_or_zero(r.log_kind, 4),
        run_index: i64::from(r.run_index),
        outcome: known_or_zero(r.outcome, 4),
        mode: r.mode,
        product: r.product,
        target_build: r.target_build,
        installed_build: r.installed_build,
        phase: r.phase,
        exit_code: r.exit_code,
        primary_finding_id: r.primary_finding_id,
        started_ns: r.started_unix_nano,
        updated_ns: r.updated_unix_nano,
        last_line_ns: r.last_line_unix_nano,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good(id: &str) -> Finding {
        Finding {
            id: id.into(),
            rule_id: "R1".into(),
            severity: 4,
            ..Finding::default()
        }
    }

    fn batch(findings: Vec<Finding>, runs: Vec<RunUpdate>) -> Batch {
        Batch {
            collector_id: "c".into(),
            sequence: 1,
            findings,
            run_updates: runs,
            host: Some(HostInfo {
                hostname: "EXCH01".into(),
                ..HostInfo::default()
            }),
        }
    }

    #[test]
    fn rejects_bad_items_and_keeps_the_rest() {
        let v = validate(
            batch(
                vec![
                    good("a"),
                    Finding {
                        id: String::new(),
                        ..good("x")
                    },
                    Finding {
                        severity: 0,
                        ..good("b")
                    },
                    Finding {
                        severity: 42,
                        ..good("c")
                    },
                    Finding {
                        rule_id: String::new(),
                        ..good("d")
                    },
                    Finding {
                        id: "x".repeat(MAX_ID_BYTES + 1),
                        ..good("e")
                    },
                    good("f"),
                ],
                vec![
                    RunUpdate {
                        run_id: "r1".into(),
                        ..RunUpdate::default()
                    },
                    RunUpdate::default(),
                ],
            ),
            "c".into(),
            1,
        );
        let ids: Vec<_> = v.batch.findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["a", "f"]);
        assert_eq!(v.batch.runs.len(), 1);
        assert_eq!(v.batch.runs[0].host, "EXCH01");
        assert_eq!(v.accepted(), 3);
        let rej: Vec<_> = v.rejected.iter().map(|r| (r.index, r.run_update)).collect();
        assert_eq!(
            rej,
            [
                (1, false),
                (2, false),
                (3, false),
                (4, false),
                (5, false),
                (1, true)
            ]
        );
        assert!(v.rejected[0].reason.contains("finding id is empty"));
        assert!(v.rejected[1].reason.contains("unspecified"));
        assert!(v.rejected[2].reason.contains("42"));
        assert!(v.rejected[5].reason.contains("run_id is empty"));
    }

    #[test]
    fn finding_without_any_hostname_is_rejected() {
        let mut b = batch(vec![good("a")], vec![]);
        b.host = None;
        let v = validate(b, "c".into(), 1);
        assert_eq!(v.accepted(), 0);
        assert!(v.rejected[0].reason.contains("hostname"));
    }

    #[test]
    fn unknown_enums_read_as_unspecified() {
        let v = validate(
            batch(
                vec![Finding {
                    log_kind: 99,
                    ..good("a")
                }],
                vec![RunUpdate {
                    run_id: "r".into(),
                    outcome: 77,
                    ..RunUpdate::default()
                }],
            ),
            "c".into(),
            1,
        );
        assert_eq!(v.batch.findings[0].log_kind, 0);
        assert_eq!(v.batch.runs[0].outcome, 0);
    }
}
