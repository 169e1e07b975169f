//! Log models: the line grammars of ExchangeSetup.log, Windows Installer logs and
//! ServiceControl.log, how each splits into runs, and the checks that need a whole run.
//!
//! Models see only the lines that hit a *structural anchor* (banner, header values, outcome
//! lines); the scanner finds those with the same automaton as the rules' anchors.

pub(crate) mod errors;
pub(crate) mod exchange;
pub(crate) mod msi;
pub(crate) mod phrases;
pub(crate) mod servicecontrol;

use std::collections::BTreeMap;

use crate::finding::{EvidenceLine, LogKind, Outcome};
use crate::time::NaiveTime;
use crate::RunSummary;

/// Literals the models need to see, in the order of the indices in `s`.
pub const STRUCTURAL_ANCHORS: &[&str] = &[
    "Starting Microsoft Exchange Server",
    "Setup version: ",
    "Logged on user: ",
    "Command Line Parameter Name='",
    "The locally installed version is ",
    "The backup copy of the previously installed version is '",
    "setup operation completed successfully",
    "setup operation didn't complete",
    "[ERROR]",
    "Evaluated [Rule:PendingRebootWindowsComponents]",
    "Update Required Status : '",
    "Schema Master domain controller",
    "Processing component '",
    "Failed [Rule:",
    "=== Verbose logging started",
    "=== Logging started",
    "=== Logging stopped",
    "=== Verbose logging stopped",
    "MainEngineThread is returning ",
    "success or error status: ",
    "Action start ",
    "Return value 3",
    "Property(S): Product",
    "the product. Product Name: ",
    "* ServiceControl.ps1",
    "Script completed",
    "[ERROR-REFERENCE]",
    "] End of Setup",
    // The other `Evaluated [...]` values the Exchange checks read (handled like EVALUATED).
    // Naming them keeps the hundreds of other Evaluated lines of a run from being candidates.
    "Evaluated [Rule:RebootPending]",
    "Evaluated [Rule:ProcessNeedsToBeClosedOnUpgrade]",
    "Evaluated [Rule:DomainControllerIsOutOfSite]",
    "Evaluated [Rule:RemoteRegException]",
    "Evaluated [Rule:MSDTCStopped]",
    "Evaluated [Rule:IisUrlRewriteNotInstalled]",
    "Evaluated [Setting:LocalDomainIsPrepped]",
    "Evaluated [Rule:DomainPrepRequired]",
    "Evaluated [Rule:InstallWatermark]",
    "Evaluated [Setting:SchemaAdmin]",
    "Evaluated [Setting:EnterpriseAdmin]",
    "Evaluated [Setting:ExOrgAdmin]",
    "Evaluated [Setting:SidExOrgAdmins]",
    "Evaluated [Rule:DelegatedMailboxFirstInstall]",
    "Evaluated [Setting:ComputerNameDnsFullyQualified]",
    "Evaluated [Setting:SiteName]",
    "Evaluated [Setting:DomainController]",
    "Evaluated [Setting:DomainControllerSiteName]",
    // setup.exe's console output (no timestamps), pasted or captured by a deployment tool.
    "Performing Microsoft Exchange Server Prerequisite Check",
    "Configuring Microsoft Exchange Server",
    "The following error was generated when",
    // A readiness setting whose evaluation threw; its exception follows on the next lines.
    "[HasException:True]",
    "Setup is stopping now because of",
    // The variable dump after a failure names the exception type the `[ERROR]` line may not.
    "ErrorRecord: ",
    // Windows Installer lines that hold in any display language (`phrases.rs` for the others):
    // a custom action's result (`CustomAction X <translated words> N`), the final status line
    // (`Windows Installer <translated words>: N`), an error dialog's product line.
    "CustomAction ",
    "Windows Installer ",
    "-- Error ",
    // A product message (a launch condition's text, an error dialog, the outcome).
    "]: Product: ",
    "製品: ",
    // The top-level action's end, the outcome when no status line follows (a cut log, Wine's
    // msiexec).
    ": INSTALL. Return value ",
    // A deferred custom action about to run (`Executing op: CustomActionSchedule(Action=X,...`):
    // its output follows, without an `Action start` line of its own.
    "CustomActionSchedule(Action=",
    // `phrases::PHRASES`, in its order.
    "。 戻り値 ",
    "インストールの成功またはエラーの状態: ",
    "インストールを正しく完了しました",
    "安裝成功或錯誤狀態: ",
    "安装成功或错误状态: ",
    "ou état d’erreur : ",
    " -- Erreur ",
    "Eine andere Version des Produkts ist bereits installiert.",
];

/// Indices into [`STRUCTURAL_ANCHORS`].
#[allow(missing_docs)]
pub(crate) mod s {
    pub const BANNER: usize = 0;
    pub const SETUP_VERSION: usize = 1;
    pub const LOGGED_ON_USER: usize = 2;
    pub const CMD_PARAM: usize = 3;
    pub const LOCAL_VERSION: usize = 4;
    pub const BACKUP_VERSION: usize = 5;
    pub const SETUP_SUCCEEDED: usize = 6;
    pub const SETUP_FAILED: usize = 7;
    pub const ERROR: usize = 8;
    pub const EVALUATED: usize = 9;
    pub const UPDATE_STATUS: usize = 10;
    pub const SCHEMA_MASTER: usize = 11;
    pub const COMPONENT: usize = 12;
    pub const FAILED_RULE: usize = 13;
    pub const MSI_VERBOSE_START: usize = 14;
    pub const MSI_START: usize = 15;
    pub const MSI_STOP: usize = 16;
    pub const MSI_VERBOSE_STOP: usize = 17;
    pub const MSI_RETURNING: usize = 18;
    pub const MSI_STATUS: usize = 19;
    pub const MSI_ACTION_START: usize = 20;
    pub const MSI_RETURN_3: usize = 21;
    pub const MSI_PROPERTY: usize = 22;
    pub const MSI_SUMMARY: usize = 23;
    pub const SC_HEADER: usize = 24;
    pub const SC_COMPLETED: usize = 25;
    pub const ERROR_REFERENCE: usize = 26;
    pub const END_OF_SETUP: usize = 27;
    pub const EVALUATED_MORE: usize = 28;
    pub const EVALUATED_LAST: usize = 45;
    pub const CONSOLE_START: usize = 46;
    pub const CONSOLE_CONFIGURING: usize = 47;
    pub const GENERATED: usize = 48;
    pub const HAS_EXCEPTION: usize = 49;
    pub const STOPPING: usize = 50;
    pub const ERROR_RECORD: usize = 51;
    pub const MSI_CUSTOM_ACTION: usize = 52;
    pub const MSI_INSTALLER: usize = 53;
    pub const MSI_ERROR_DIALOG: usize = 54;
    pub const MSI_PRODUCT: usize = 55;
    pub const MSI_PRODUCT_JA: usize = 56;
    pub const MSI_TOP_LEVEL_END: usize = 57;
    pub const MSI_CA_SCHEDULE: usize = 58;
    /// First of `phrases::PHRASES`.
    pub const MSI_PHRASE: usize = 59;
}

/// The log kind whose model handles structural anchor `i`.
pub(crate) fn structural_kind(i: usize) -> LogKind {
    match i {
        s::MSI_VERBOSE_START..=s::MSI_SUMMARY | s::MSI_CUSTOM_ACTION.. => LogKind::Msi,
        s::SC_HEADER | s::SC_COMPLETED => LogKind::ServiceControl,
        _ => LogKind::ExchangeSetup,
    }
}

/// A line as a model sees it.
pub(crate) struct Line<'a> {
    pub number: u64,
    pub offset: u64,
    pub text: &'a str,
}

impl Line<'_> {
    pub(crate) fn evidence(&self) -> EvidenceLine {
        EvidenceLine {
            line: self.number,
            text: crate::cut(self.text),
        }
    }
}

/// What a structural line does to the run structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Boundary {
    /// Nothing.
    None,
    /// A new run starts with this line (the open one, if any, ends before it).
    Start,
    /// The open run ends after this line, with this outcome.
    End(Outcome),
}

/// A finding a model raises for a derived rule.
pub(crate) struct Derived {
    pub rule_id: &'static str,
    pub line: u64,
    pub offset: u64,
    pub evidence: Vec<EvidenceLine>,
    pub fields: BTreeMap<String, String>,
}

/// The grammar of one log kind, holding what it remembers about one run.
///
/// The scanner keeps one per run ([`new_model`], for the file's kind) and calls it only for
/// the lines that hit one of the kind's structural anchors, plus [`LogModel::line_time`] on the
/// few lines whose time it needs. A model sets run-level values (product, builds, mode, phase,
/// exit code) directly in the run's [`RunSummary`]; what it keeps itself is what the checks at
/// the end of the run need.
pub(crate) trait LogModel: std::fmt::Debug + Send + Sync {
    /// Reads structural line `line`, which hit structural anchor `anchor` (an index into
    /// [`STRUCTURAL_ANCHORS`]), and says what it does to the run structure.
    fn observe_line(&mut self, anchor: usize, line: &Line, summary: &mut RunSummary) -> Boundary;

    /// True when a line hitting `anchor`, which starts runs of this kind ([`starts_run`]),
    /// belongs to this run instead (this run being the current one, in state `summary`).
    fn absorbs_start(&self, _anchor: usize, _summary: &RunSummary) -> bool {
        false
    }

    /// True when the run logged errors, so that a run cut short (by the next run or the end of
    /// a complete file) counts as failed.
    fn has_errors(&self) -> bool {
        false
    }

    /// Checks that need the whole run, called once when the run ends: may settle the
    /// outcome and add run fields in `summary`, and returns the derived rules' findings.
    fn derived_findings(&self, _summary: &mut RunSummary) -> Vec<Derived> {
        Vec::new()
    }

    /// Parses the time written on a line of this kind (for logs whose lines carry only a clock
    /// time, on the date read from the run's header, moved on past midnight).
    fn line_time(&self, line: &[u8]) -> Option<NaiveTime>;

    /// Receives a finished error block of this run (an ExchangeSetup.log `[ERROR]` entry with
    /// its continuation lines, bounded): its first line, its evidence in two consecutive parts
    /// (most runs log many entries and keep one, so the parts are joined only when kept) and
    /// what it says ([`errors::error_fields`]).
    fn error_block(
        &mut self,
        _start_line: u64,
        _evidence: [&[EvidenceLine]; 2],
        _fields: &BTreeMap<String, String>,
    ) {
    }

    /// Records a time [`LogModel::line_time`] returned as the run's latest, so that a clock
    /// going back past midnight moves the date on.
    fn saw_time(&mut self, _t: NaiveTime) {}
}

/// A fresh model for a run of a file of `kind`.
pub(crate) fn new_model(kind: LogKind) -> Box<dyn LogModel> {
    match kind {
        LogKind::ExchangeSetup => Box::<exchange::ExchangeRun>::default(),
        LogKind::Msi => Box::<msi::MsiRun>::default(),
        LogKind::ServiceControl => Box::<servicecontrol::ServiceControlRun>::default(),
        LogKind::Plain => Box::new(PlainRun),
    }
}

/// Plain text (pasted errors, unknown logs): no run structure, no times.
#[derive(Debug)]
struct PlainRun;

impl LogModel for PlainRun {
    fn observe_line(&mut self, _: usize, _: &Line, _: &mut RunSummary) -> Boundary {
        Boundary::None
    }

    fn line_time(&self, _: &[u8]) -> Option<NaiveTime> {
        None
    }
}

/// Detects the log kind from the first non-empty line.
pub(crate) fn detect_kind(first_line: &[u8], path: &str) -> LogKind {
    let l = first_line;
    if crate::time::exchange_prefix(l).is_some() {
        return LogKind::ExchangeSetup;
    }
    if l.starts_with(b"=== ")
        || l.starts_with(b"MSI (")
        || l.starts_with(b"Property(")
        || l.starts_with(b"Action ")
        || is_message_record(l)
    {
        return LogKind::Msi;
    }
    // setup.exe's console output, as pasted from a console or a deployment tool's transcript.
    let trimmed = l.trim_ascii_start();
    if [
        &b"Performing Microsoft Exchange Server"[..],
        b"Welcome to Microsoft Exchange Server",
        b"Microsoft Exchange Server",
        // A readiness check's lines, pasted without their timestamps.
        b"Evaluated [Setting:",
        b"Evaluated [Rule:",
    ]
    .iter()
    .any(|p| trimmed.starts_with(p))
    {
        return LogKind::ExchangeSetup;
    }
    if l.len() > 10 && l[0] == b'[' && l[9] == b']' && crate::time::clock(&l[1..9]).is_some() {
        return LogKind::ServiceControl;
    }
    let name = path
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(path)
        .to_ascii_lowercase();
    if name.starts_with("exchangesetup") && name.ends_with(".log") {
        LogKind::ExchangeSetup
    } else if name.ends_with(".msilog") || (name.starts_with("msi") && name.ends_with(".log")) {
        LogKind::Msi
    } else if name.starts_with("servicecontrol")
        || name.starts_with("updatecas")
        || name.starts_with("updateconfigfile")
    {
        LogKind::ServiceControl
    } else {
        LogKind::Plain
    }
}

/// A Windows Installer message record (`1: 0 2: 1033 3: 0 `), the first line Wine's msiexec
/// writes before `=== Logging started`.
fn is_message_record(l: &[u8]) -> bool {
    l.starts_with(b"1: ") && memchr::memmem::find(l, b" 2: ").is_some()
}

/// Text between `start` and the next `end` after it.
pub(crate) fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = find_ci(s, start)? + start.len();
    let j = s[i..].find(end)?;
    Some(&s[i..i + j])
}

/// ASCII case-insensitive find: memchr2 on the first byte in both cases, then compare.
pub(crate) fn find_ci(s: &str, needle: &str) -> Option<usize> {
    let (h, n) = (s.as_bytes(), needle.as_bytes());
    let (&first, _) = n.split_first()?;
    if n.len() > h.len() {
        return None;
    }
    let last = h.len() - n.len();
    memchr::memchr2_iter(
        first.to_ascii_lowercase(),
        first.to_ascii_uppercase(),
        &h[..=last],
    )
    .find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// True when a structural line of `kind` that hit `anchor` starts a new run, given the
/// current run's model and summary, if there is one.
pub(crate) fn opens_run(
    kind: LogKind,
    anchor: usize,
    current: Option<(&dyn LogModel, &RunSummary)>,
) -> bool {
    starts_run(kind, anchor) && !current.is_some_and(|(m, sum)| m.absorbs_start(anchor, sum))
}

/// True when structural anchor `anchor` starts runs in logs of `kind`.
fn starts_run(kind: LogKind, anchor: usize) -> bool {
    matches!(
        (kind, anchor),
        (LogKind::ExchangeSetup, s::BANNER)
            | (LogKind::Msi, s::MSI_VERBOSE_START | s::MSI_START)
            | (LogKind::ServiceControl, s::SC_HEADER)
    )
}
