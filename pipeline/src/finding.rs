//! The pipeline's output types: [`Finding`], [`RunSummary`] and the [`Event`]s that carry them.
//!
//! These are plain data. The collector converts them to the wire types of `patchwatch-proto` with
//! a plain function; nothing here knows about protobuf or storage.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Context or advice; never a failure on its own.
    Info,
    /// Worth a look.
    Low,
    /// Likely to cause trouble.
    Medium,
    /// The update failed or will fail.
    High,
    /// The server is left unusable (services disabled, setup half done).
    Critical,
}

impl Severity {
    /// Lower-case name, as used in rule files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses a lower-case (or any case) severity name.
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.to_ascii_lowercase().as_str() {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

/// Which grammar a log follows, detected from its content (file names are only a hint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    /// `C:\ExchangeSetupLogs\ExchangeSetup.log`: `[MM/dd/yyyy HH:mm:ss.ffff] [N] text`.
    ExchangeSetup,
    /// Windows Installer log (verbose or not), including Exchange's `*.msilog`.
    Msi,
    /// `ServiceControl.log`, `UpdateCas.log` and friends: `[HH:mm:ss] text`.
    ServiceControl,
    /// Anything else, e.g. text pasted into `patchwatch explain`. All rules apply.
    Plain,
}

impl LogKind {
    /// Snake-case name, as used in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::ExchangeSetup => "exchange_setup",
            LogKind::Msi => "msi",
            LogKind::ServiceControl => "service_control",
            LogKind::Plain => "plain",
        }
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No end line seen yet.
    InProgress,
    /// The log says the operation finished successfully (reboot-required codes count as success).
    Succeeded,
    /// The log says the operation failed.
    Failed,
}

impl Outcome {
    /// Snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::InProgress => "in_progress",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
        }
    }
}

/// The fix for a finding, with placeholders already filled in from captured values.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Remediation {
    /// One sentence: what to do.
    pub summary: String,
    /// Ordered steps.
    pub steps: Vec<String>,
    /// Reference links (KB articles, tools).
    pub links: Vec<String>,
}

/// A line of evidence shown with a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceLine {
    /// 1-based physical line number.
    pub line: u64,
    /// Decoded text, without its terminator, cut to [`crate::MAX_EVIDENCE_CHARS`].
    pub text: String,
}

/// One detected known issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Deterministic id: the same file bytes always give the same id (see [`crate::ScanContext`]).
    pub id: String,
    /// Rule that produced it.
    pub rule_id: String,
    /// Version of that rule.
    pub rule_version: u32,
    /// Rule title.
    pub title: String,
    /// Rule category, e.g. `readiness`, `msi`, `services`.
    pub category: String,
    /// Severity.
    pub severity: Severity,
    /// Host name from the scan context.
    pub host: String,
    /// Source path from the scan context.
    pub path: String,
    /// Log kind of the file.
    pub log_kind: LogKind,
    /// Byte offset of the start of the matched line in the raw file.
    pub byte_offset: u64,
    /// 1-based line number of the matched line.
    pub line: u64,
    /// Run this finding belongs to (see [`RunSummary::run_id`]).
    pub run_id: String,
    /// 0-based index of the run in the file.
    pub run_index: u32,
    /// Time written on the log line, as naive local time `YYYY-MM-DDTHH:MM:SS.fff`, if any.
    pub event_time: Option<String>,
    /// `event_time` converted with [`crate::ScanContext::utc_offset_seconds`], as Unix nanoseconds.
    pub event_time_unix_nano: Option<i64>,
    /// Evidence lines in file order; the matched line is among them.
    pub evidence: Vec<EvidenceLine>,
    /// Values extracted by the rule and the run model.
    pub fields: BTreeMap<String, String>,
    /// The fix.
    pub remediation: Remediation,
    /// Primary-cause precedence of the rule (lower wins); `None` for advisory rules.
    pub priority: Option<u32>,
}

/// What is known about one run (a setup invocation, an MSI session, a ServiceControl.ps1 run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Stable id: derived from the source key and the run's start offset.
    pub run_id: String,
    /// 0-based index of the run in the file.
    pub index: u32,
    /// Host name from the scan context.
    pub host: String,
    /// Source path.
    pub path: String,
    /// Log kind.
    pub log_kind: LogKind,
    /// Byte offset where the run starts.
    pub start_offset: u64,
    /// 1-based line where the run starts.
    pub start_line: u64,
    /// Time of the first line, naive local.
    pub started: Option<String>,
    /// Time of the last line seen, naive local.
    pub last_time: Option<String>,
    /// Seconds between the first and the last timestamped line.
    pub duration_seconds: Option<i64>,
    /// Outcome so far.
    pub outcome: Outcome,
    /// Exit or status code when the log states one.
    pub exit_code: Option<i64>,
    /// Exchange setup mode (`Install`, `Upgrade`, `Unknown`) or MSI operation (`install`, `reconfigure`, `remove`).
    pub mode: Option<String>,
    /// Product: `Microsoft Exchange Server 2019`, an MSI ProductName.
    pub product: Option<String>,
    /// Build being installed: Exchange `Setup version`, MSI ProductVersion.
    pub target_build: Option<String>,
    /// Build installed before the run, when known.
    pub installed_build: Option<String>,
    /// Last phase seen: the component or MSI action being processed.
    pub phase: Option<String>,
    /// Id of the primary finding, chosen by rule precedence once the run fails.
    pub primary_finding_id: Option<String>,
    /// Run-level values (user, computer, settings) usable in remediation templates.
    pub fields: BTreeMap<String, String>,
}

/// What a [`crate::FileScanner`] emits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A finding whose evidence is complete.
    Finding(Box<Finding>),
    /// A run started, changed phase or ended.
    Run(Box<RunSummary>),
}

/// A problem with the input that did not stop the scan: it is data, not an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// 1-based line number concerned.
    pub line: u64,
    /// What happened, e.g. `line longer than 1048576 bytes, truncated`.
    pub message: String,
}
