//! What the store keeps and the HTTP API returns: findings, runs and hosts as plain records,
//! the validated batch the store writes, and the query types.
//!
//! These are deliberately not the prost types: the API is a boundary of its own (JSON with
//! readable enums and RFC 3339 times), converted by hand in `ingest::validate`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Severity names by number (index = `patchwatch.v1.Severity` value).
pub(crate) const SEVERITY_NAMES: [&str; 6] =
    ["unspecified", "info", "low", "medium", "high", "critical"];

/// The API name of a severity number; `None` for unspecified or unknown values.
pub fn severity_name(n: i32) -> Option<&'static str> {
    match n {
        1..=5 => Some(SEVERITY_NAMES[n as usize]),
        _ => None,
    }
}

/// The severity number of an API name (`info` .. `critical`), case-insensitive.
pub fn severity_number(name: &str) -> Option<i32> {
    SEVERITY_NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .filter(|&i| i > 0)
        .map(|i| i as i32)
}

/// The API name of a `patchwatch.v1.RunOutcome` value; unknown values read as unspecified.
pub fn outcome_name(n: i32) -> &'static str {
    match n {
        1 => "in_progress",
        2 => "succeeded",
        3 => "failed",
        4 => "stalled",
        _ => "unspecified",
    }
}

/// The outcome number of an API name.
pub fn outcome_number(name: &str) -> Option<i32> {
    (0..=4).find(|&n| outcome_name(n).eq_ignore_ascii_case(name))
}

/// The API name of a `patchwatch.v1.LogKind` value; unknown values read as unspecified.
pub fn log_kind_name(n: i32) -> &'static str {
    match n {
        1 => "exchange_setup",
        2 => "msi",
        3 => "service_control",
        4 => "plain",
        _ => "unspecified",
    }
}

/// Unix nanoseconds as RFC 3339 (UTC), or `None` for 0 (unknown).
pub fn rfc3339(unix_nano: i64) -> Option<String> {
    if unix_nano == 0 {
        return None;
    }
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_nano))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
}

/// Now, as Unix nanoseconds.
pub(crate) fn now_unix_nano() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// The parts of a finding that are shown but never filtered on; stored as one JSON document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FindingDetail {
    /// The collector host's identity as the finding carried it.
    pub host_info: HostInfoRecord,
    /// The file's identity across renames.
    pub file: FileIdentityRecord,
    /// The log lines that show the issue.
    pub evidence: Vec<String>,
    /// Values the rule captured.
    pub fields: BTreeMap<String, String>,
    /// The fix.
    pub remediation: RemediationRecord,
    /// Routing labels.
    pub labels: BTreeMap<String, String>,
}

/// `patchwatch.v1.HostInfo` as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostInfoRecord {
    /// Short host name; the key of the host.
    pub hostname: String,
    /// Fully qualified name.
    pub fqdn: String,
    /// Operating system.
    pub os: String,
    /// Collector version.
    pub agent_version: String,
    /// Time zone the collector assumes for log timestamps.
    pub time_zone: String,
    /// That zone's offset from UTC in seconds.
    pub utc_offset_seconds: i32,
}

/// `patchwatch.v1.FileIdentity` as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileIdentityRecord {
    /// Volume or device.
    pub device: u64,
    /// File id or inode.
    pub inode: u64,
    /// Fingerprint of the first bytes.
    pub fingerprint: String,
}

/// `patchwatch.v1.Remediation` as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemediationRecord {
    /// One-line fix.
    pub summary: String,
    /// Ordered steps.
    pub steps: Vec<String>,
    /// Reference links.
    pub links: Vec<String>,
}

/// A finding that passed validation, ready to be written. Its `detail_json` is serialised
/// before it reaches the store so the single SQLite writer does no JSON work.
#[derive(Debug, Clone)]
pub struct NewFinding {
    /// Deterministic id; the deduplication key.
    pub id: String,
    /// Host name (the finding's own, else the batch's).
    pub host: String,
    /// Rule id.
    pub rule_id: String,
    /// Rule version.
    pub rule_version: i64,
    /// Title.
    pub title: String,
    /// Severity number, 1 (info) ..= 5 (critical).
    pub severity: i32,
    /// Category.
    pub category: String,
    /// The run's primary cause.
    pub primary: bool,
    /// `patchwatch.v1.LogKind` number.
    pub log_kind: i32,
    /// Path of the log file.
    pub source_path: String,
    /// Byte offset of the matched line.
    pub byte_offset: i64,
    /// 1-based line number.
    pub line_number: i64,
    /// Run id, possibly empty.
    pub run_id: String,
    /// Time from the log line (Unix ns), 0 if none.
    pub event_ns: i64,
    /// When the collector saw the line (Unix ns).
    pub observed_ns: i64,
    /// [`FindingDetail`] as JSON.
    pub detail_json: String,
}

/// A run update that passed validation.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    /// Run id; the upsert key.
    pub run_id: String,
    /// Host name.
    pub host: String,
    /// Log file path.
    pub source_path: String,
    /// `patchwatch.v1.LogKind` number.
    pub log_kind: i32,
    /// Index of the run within its file.
    pub run_index: i64,
    /// `patchwatch.v1.RunOutcome` number (unknown values already mapped to 0).
    pub outcome: i32,
    /// Setup mode.
    pub mode: String,
    /// Product name.
    pub product: String,
    /// Build being installed.
    pub target_build: String,
    /// Build installed before.
    pub installed_build: String,
    /// Last known phase.
    pub phase: String,
    /// Exit code once finished.
    pub exit_code: Option<i64>,
    /// Id of the primary finding.
    pub primary_finding_id: String,
    /// Start (Unix ns).
    pub started_ns: i64,
    /// Time of this update (Unix ns); an update older than the stored one is ignored.
    pub updated_ns: i64,
    /// Time of the last log line (Unix ns).
    pub last_line_ns: i64,
}

/// A host to upsert: its identity as far as the batch knows it.
#[derive(Debug, Clone, Default)]
pub struct NewHost {
    /// Identity; empty fields leave the stored values alone.
    pub info: HostInfoRecord,
}

/// A validated batch: what the store writes in one transaction.
#[derive(Debug, Clone, Default)]
pub struct ValidBatch {
    /// Collector the batch came from (from its token when authenticated).
    pub collector_id: String,
    /// When the aggregator received it (Unix ns).
    pub received_ns: i64,
    /// Hosts named by the batch, deduplicated by hostname.
    pub hosts: Vec<NewHost>,
    /// Valid findings, in batch order.
    pub findings: Vec<NewFinding>,
    /// Valid run updates, in batch order.
    pub runs: Vec<NewRun>,
}

impl ValidBatch {
    /// Rows the batch writes (findings + run updates); used to size group commits.
    pub fn rows(&self) -> usize {
        self.findings.len() + self.runs.len()
    }
}

/// What a durable write changed, for the event stream.
#[derive(Debug, Clone, Default)]
pub struct WriteOutcome {
    /// Findings that were new (not already stored), with their store sequence numbers.
    pub new_findings: Vec<FindingSummary>,
    /// Runs as stored after the batch's updates (runs whose update was stale are absent).
    pub runs: Vec<RunRecord>,
}

/// The short form of a finding, sent on the event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingSummary {
    /// Store sequence number (newest is highest).
    pub seq: i64,
    /// Finding id.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Rule id.
    pub rule_id: String,
    /// Title.
    pub title: String,
    /// `info` .. `critical`.
    pub severity: String,
    /// Run id.
    pub run_id: String,
    /// Category.
    pub category: String,
    /// The run's primary cause.
    pub primary: bool,
    /// When the collector saw the line (RFC 3339).
    pub observed_time: Option<String>,
}

/// A stored finding, everything included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingRecord {
    /// Store sequence number (newest is highest); the paging cursor.
    pub seq: i64,
    /// Finding id.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Rule id.
    pub rule_id: String,
    /// Rule version.
    pub rule_version: i64,
    /// Title.
    pub title: String,
    /// `info` .. `critical`.
    pub severity: String,
    /// 1 (info) ..= 5 (critical).
    pub severity_num: i32,
    /// Category.
    pub category: String,
    /// The run's primary cause.
    pub primary: bool,
    /// `exchange_setup`, `msi`, `service_control`, `plain` or `unspecified`.
    pub log_kind: String,
    /// Log file path.
    pub source_path: String,
    /// Byte offset of the matched line.
    pub byte_offset: i64,
    /// 1-based line number.
    pub line_number: i64,
    /// Run id.
    pub run_id: String,
    /// Time from the log line (RFC 3339), if it had one.
    pub event_time: Option<String>,
    /// When the collector saw the line (RFC 3339).
    pub observed_time: Option<String>,
    /// When the aggregator stored it (RFC 3339).
    pub received_time: Option<String>,
    /// Collector that sent it.
    pub collector_id: String,
    /// Evidence, fields, fix, labels, file and host identity.
    #[serde(flatten)]
    pub detail: FindingDetail,
}

impl FindingRecord {
    /// The short form used on the event stream.
    pub fn summary(&self) -> FindingSummary {
        FindingSummary {
            seq: self.seq,
            id: self.id.clone(),
            host: self.host.clone(),
            rule_id: self.rule_id.clone(),
            title: self.title.clone(),
            severity: self.severity.clone(),
            run_id: self.run_id.clone(),
            category: self.category.clone(),
            primary: self.primary,
            observed_time: self.observed_time.clone(),
        }
    }
}

/// A stored run: the merged state of all its updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id.
    pub run_id: String,
    /// Host name.
    pub host: String,
    /// Log file path.
    pub source_path: String,
    /// Log kind name.
    pub log_kind: String,
    /// Index of the run within its file.
    pub run_index: i64,
    /// `in_progress`, `succeeded`, `failed`, `stalled` or `unspecified`.
    pub outcome: String,
    /// Setup mode.
    pub mode: String,
    /// Product name.
    pub product: String,
    /// Build being installed.
    pub target_build: String,
    /// Build installed before.
    pub installed_build: String,
    /// Last known phase.
    pub phase: String,
    /// Exit code once finished.
    pub exit_code: Option<i64>,
    /// Id of the primary finding.
    pub primary_finding_id: String,
    /// Start (RFC 3339).
    pub started_time: Option<String>,
    /// Last update (RFC 3339).
    pub updated_time: Option<String>,
    /// Last log line (RFC 3339).
    pub last_line_time: Option<String>,
}

/// Finding counts by severity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeverityCounts {
    /// Critical findings.
    pub critical: u64,
    /// High findings.
    pub high: u64,
    /// Medium findings.
    pub medium: u64,
    /// Low findings.
    pub low: u64,
    /// Informational findings.
    pub info: u64,
}

impl SeverityCounts {
    /// Adds `n` findings of severity number `severity`.
    pub fn add(&mut self, severity: i32, n: u64) {
        match severity {
            5 => self.critical += n,
            4 => self.high += n,
            3 => self.medium += n,
            2 => self.low += n,
            1 => self.info += n,
            _ => {}
        }
    }

    /// All findings counted.
    pub fn total(&self) -> u64 {
        self.critical + self.high + self.medium + self.low + self.info
    }
}

/// A host with its latest run and finding counts: one row of the fleet view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Host name.
    pub hostname: String,
    /// Fully qualified name.
    pub fqdn: String,
    /// Operating system.
    pub os: String,
    /// Collector version.
    pub agent_version: String,
    /// Time zone the collector assumes.
    pub time_zone: String,
    /// Collector that last reported the host.
    pub collector_id: String,
    /// First batch naming the host (RFC 3339).
    pub first_seen: Option<String>,
    /// Last batch naming the host (RFC 3339).
    pub last_seen: Option<String>,
    /// The run that started last, if any.
    pub latest_run: Option<RunRecord>,
    /// Findings of the current runs by severity (all the host's findings when it has no run).
    pub findings: SeverityCounts,
    /// All the host's findings, any run.
    pub findings_total: u64,
    /// The host's state over all its current runs, worst first: `failed`, `stalled`,
    /// `in_progress`, `succeeded`, or `unspecified` when it has no run.
    pub state: String,
    /// The latest run of each log file the host wrote in its latest stretch of activity
    /// (ExchangeSetup.log, ServiceControl.log, each Windows Installer log), worst and active
    /// first: what the host's state rolls up.
    pub current_runs: Vec<RunRecord>,
    /// The primary cause of each failed or stalled current run, in `current_runs` order.
    pub causes: Vec<CauseRecord>,
    /// The host's latest preflight run (a prediction from its state, kept out of `state`),
    /// for a fleet column of its own.
    #[serde(default)]
    pub preflight: Option<RunRecord>,
    /// Why the latest preflight run predicts a failure (its primary finding, else its most
    /// severe one); `None` when it predicts none or there is no preflight run.
    #[serde(default)]
    pub preflight_cause: Option<CauseRecord>,
    /// Maintenance windows active now whose globs name the host (filled in by the HTTP API).
    #[serde(default)]
    pub windows: Vec<WindowRef>,
}

/// Why a run failed or stalled: its primary finding (or, when the run names none, its most
/// severe one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CauseRecord {
    /// The run.
    pub run_id: String,
    /// The finding.
    pub finding_id: String,
    /// Its rule.
    pub rule_id: String,
    /// Its title.
    pub title: String,
    /// `info` .. `critical`.
    pub severity: String,
    /// Whether the run named it as its primary cause (false: the most severe finding instead).
    pub primary: bool,
}

/// A maintenance window as a host row names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRef {
    /// Window id.
    pub id: String,
    /// Window name.
    pub name: String,
    /// End (RFC 3339).
    pub ends_at: Option<String>,
    /// Whether the window requires a clean preflight of its hosts.
    #[serde(default)]
    pub require_clean_preflight: bool,
}

/// The order of run states on the board: failed, stalled, in progress, succeeded, then the
/// rest. Lower is shown first.
pub fn state_rank(outcome: &str) -> u8 {
    match outcome {
        "failed" => 0,
        "stalled" => 1,
        "in_progress" => 2,
        "succeeded" => 3,
        _ => 4,
    }
}

/// The state a [`state_rank`] stands for (`unspecified` for 4 and above).
pub fn rank_state(rank: u8) -> &'static str {
    match rank {
        0 => "failed",
        1 => "stalled",
        2 => "in_progress",
        3 => "succeeded",
        _ => "unspecified",
    }
}

/// Which page of the fleet to read: hosts worst first (by [`state_rank`], then host name in
/// byte order), optionally only one state and only names containing some text.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetQuery {
    /// Only hosts whose state has this [`state_rank`].
    pub state: Option<u8>,
    /// Only hosts whose name or FQDN contains this text, ignoring ASCII case.
    pub text: Option<String>,
    /// 1-based page number; a page past the last is read as the last.
    pub page: u64,
    /// Hosts per page, at least 1.
    pub per_page: u32,
}

/// How many hosts are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StateCounts {
    /// Hosts whose state is `failed`.
    pub failed: u64,
    /// `stalled`.
    pub stalled: u64,
    /// `in_progress`.
    pub in_progress: u64,
    /// `succeeded`.
    pub succeeded: u64,
    /// Hosts with no current run (state `unspecified`).
    pub other: u64,
}

impl StateCounts {
    /// Adds `n` hosts of [`state_rank`] `rank`.
    pub fn add(&mut self, rank: u8, n: u64) {
        match rank {
            0 => self.failed += n,
            1 => self.stalled += n,
            2 => self.in_progress += n,
            3 => self.succeeded += n,
            _ => self.other += n,
        }
    }

    /// Every host.
    pub fn total(&self) -> u64 {
        self.failed + self.stalled + self.in_progress + self.succeeded + self.other
    }
}

/// One page of the fleet (see [`FleetQuery`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetPage {
    /// Hosts by state over the whole fleet, whatever the query's filters.
    pub counts: StateCounts,
    /// Hosts that match the query's filters, on all pages.
    pub matched: u64,
    /// The page served: the one asked for, or the last when it asked past the end (1 when
    /// nothing matches).
    pub page: u64,
    /// The page's hosts, worst first; their `windows` are not filled in.
    pub hosts: Vec<HostRecord>,
}

/// Filters and paging of `/api/v1/findings`. Results are newest first.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingQuery {
    /// Only this host.
    pub host: Option<String>,
    /// Only this rule id.
    pub rule: Option<String>,
    /// Only this severity (`info` .. `critical`).
    pub severity: Option<String>,
    /// Only this severity or worse.
    pub min_severity: Option<String>,
    /// Only this run id.
    pub run: Option<String>,
    /// Only findings observed at or after this time (RFC 3339, or Unix seconds).
    pub since: Option<String>,
    /// Page size (default 100, at most `http.max_page_size`).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<i64>,
}

/// Filters of a finding query after parsing: what the stores execute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindingFilter {
    /// Only this host.
    pub host: Option<String>,
    /// Only this rule id.
    pub rule: Option<String>,
    /// Only this severity number.
    pub severity: Option<i32>,
    /// Only this severity number or higher.
    pub min_severity: Option<i32>,
    /// Only this run id.
    pub run: Option<String>,
    /// Only `observed_ns >= since_ns`.
    pub since_ns: Option<i64>,
    /// Only `seq < before_seq` (the cursor).
    pub before_seq: Option<i64>,
    /// Page size.
    pub limit: u32,
    /// Only hosts matching one of these globs (`*`, `?`; case-insensitive). Empty: any host.
    pub host_globs: Vec<String>,
    /// Only findings whose title or evidence contains this text (case-insensitive).
    pub text: Option<String>,
    /// Only `observed_ns < until_ns`.
    pub until_ns: Option<i64>,
    /// Only findings of runs with this outcome number.
    pub run_outcome: Option<i32>,
}

/// Filters and paging of `/api/v1/runs`. Results are most recently updated first.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    /// Only this host.
    pub host: Option<String>,
    /// Only this outcome (`in_progress`, `succeeded`, `failed`, `stalled`).
    pub outcome: Option<String>,
    /// Page size (default 100, at most `http.max_page_size`).
    pub limit: Option<u32>,
    /// Rows to skip.
    pub offset: Option<u32>,
}

/// Filters of a run query after parsing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    /// Only this host.
    pub host: Option<String>,
    /// Only this run id.
    pub run: Option<String>,
    /// Only this outcome number.
    pub outcome: Option<i32>,
    /// Page size.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
}

/// One phase of a run's history: a phase the run reported, from the log line that showed it.
/// A phase lasts until the next one starts (the last one until the run's last log line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseRecord {
    /// The run.
    pub run_id: String,
    /// 1 for the run's first phase, counting on; earlier phases of a run that had more than
    /// the store keeps are gone, so the first kept one may be higher than 1.
    pub ordinal: i64,
    /// The phase, e.g. the Exchange component or the Windows Installer action.
    pub phase: String,
    /// When it started (RFC 3339): the time of the log line of the update that reported it.
    pub started_time: Option<String>,
}

/// A triage note on a finding or run: acknowledged, assigned or noted, by whom and when.
/// Notes are kept as a log; the latest `ack` and `assign` are the current ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnotationRecord {
    /// Store sequence number (later is higher).
    pub seq: i64,
    /// `finding` or `run`.
    pub target: String,
    /// The finding or run id.
    pub id: String,
    /// `ack`, `assign` or `note`.
    pub action: String,
    /// The assignee (assign), the text (note), an optional remark (ack).
    pub value: String,
    /// Who.
    pub by: String,
    /// When (RFC 3339).
    pub at: Option<String>,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Pass as `cursor` (findings) to get the next page; absent on the last page.
    pub next_cursor: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_names_round_trip() {
        for n in 1..=5 {
            assert_eq!(severity_number(severity_name(n).unwrap()), Some(n));
        }
        assert_eq!(severity_name(0), None);
        assert_eq!(severity_name(9), None);
        assert_eq!(severity_number("unspecified"), None);
        assert_eq!(severity_number("HIGH"), Some(4));
    }

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(rfc3339(0), None);
        assert_eq!(
            rfc3339(1_700_000_000_000_000_000).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
    }
}
