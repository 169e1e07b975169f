//! ExchangeSetup.log: runs start at the `Starting Microsoft Exchange Server ... Setup` banner and
//! end at `The Exchange Server setup operation completed successfully.` or `... didn't
//! complete.`. Readiness checks follow SetupLogReviewer's `Test-PrerequisiteCheck`
//! (`exchange-setup-log.md` §5.1): they combine several `Evaluated [...]` values, so they run
//! once the run ends, on the last value of each setting.
//!
//! setup.exe's console output (what admins paste: no timestamps) is read by the same model: a run
//! starts at `Performing Microsoft Exchange Server Prerequisite Check`, its error is the
//! `The following error was generated when ...` block, and it ends at the same outcome lines.

use std::collections::{BTreeMap, HashMap};

use super::{between, find_ci, s, Boundary, Derived, Line, LogModel};
use crate::finding::{EvidenceLine, Outcome};
use crate::time::NaiveTime;
use crate::RunSummary;

/// What the Exchange model remembers about one run.
#[derive(Debug, Default)]
pub(crate) struct ExchangeRun {
    /// `Setting:Name` / `Rule:Name` → last evaluated value, its line and offset.
    settings: HashMap<String, (String, EvidenceLine, u64)>,
    /// Rules that evaluated True at least once (for `InstallWatermark`).
    ever_true: HashMap<String, (EvidenceLine, u64)>,
    /// `Failed [Rule:X] [Message:...]` lines by rule name.
    failed_rules: HashMap<String, EvidenceLine>,
    /// `Schema` / `Organization Configuration` / `Domain Configuration` → True/False and line.
    update_required: HashMap<String, (bool, EvidenceLine, u64)>,
    first_error: Option<(EvidenceLine, u64)>,
    /// The first `[ERROR]` entry, whole (bounded), and what it says.
    first_block: Option<(Vec<EvidenceLine>, BTreeMap<String, String>)>,
    last_error_reference: Option<EvidenceLine>,
    /// The first readiness setting whose evaluation threw (`[HasException:True]`), and its
    /// exception block: the run's first error when it logged no `[ERROR]` entry.
    threw: Option<(EvidenceLine, u64)>,
    threw_block: Option<(Vec<EvidenceLine>, BTreeMap<String, String>)>,
    /// `Setup is stopping now because of one or more critical errors.`
    stopping: Option<EvidenceLine>,
    /// The first `ErrorRecord:` line naming an exception type, and that type.
    error_record: Option<(EvidenceLine, String)>,
}

impl LogModel for ExchangeRun {
    fn observe_line(&mut self, anchor: usize, line: &Line, sum: &mut RunSummary) -> Boundary {
        on_line(self, anchor, line, sum)
    }

    /// True once an `[ERROR]` line (or setup.exe's console error), a setting that threw, or
    /// `Setup is stopping now` was seen in the run.
    fn has_errors(&self) -> bool {
        self.first_error.is_some() || self.threw.is_some() || self.stopping.is_some()
    }

    /// A console run's first line inside a run still in progress is part of it.
    fn absorbs_start(&self, anchor: usize, sum: &RunSummary) -> bool {
        anchor == s::CONSOLE_START && sum.outcome == Outcome::InProgress
    }

    fn derived_findings(&self, sum: &mut RunSummary) -> Vec<Derived> {
        finalize(self, sum)
    }

    fn error_block(
        &mut self,
        start_line: u64,
        evidence: [&[EvidenceLine]; 2],
        fields: &BTreeMap<String, String>,
    ) {
        if self
            .threw
            .as_ref()
            .is_some_and(|(e, _)| e.line == start_line)
        {
            if self.threw_block.is_none() {
                self.threw_block = Some((evidence.concat(), fields.clone()));
            }
            return;
        }
        let first = self.first_error.as_ref().map(|(e, _)| e.line);
        match &mut self.first_block {
            None if first.is_none_or(|l| l == start_line) => {
                self.first_block = Some((evidence.concat(), fields.clone()));
            }
            // A later entry of the same failure may name the task the first one did not.
            Some((_, f)) => {
                if let Some(task) = fields.get("task") {
                    f.entry("task".into()).or_insert_with(|| task.clone());
                }
            }
            None => {}
        }
    }

    fn line_time(&self, line: &[u8]) -> Option<NaiveTime> {
        crate::time::exchange_prefix(line)
    }
}

fn on_line(x: &mut ExchangeRun, anchor: usize, line: &Line, sum: &mut RunSummary) -> Boundary {
    let t = line.text;
    match anchor {
        s::BANNER => {
            if let Some(p) = between(t, "Starting ", " Setup") {
                sum.product = Some(p.to_string());
            }
            return Boundary::Start;
        }
        s::SETUP_VERSION => {
            if let Some(v) = after(t, "Setup version: ").map(|v| v.trim_end_matches('.')) {
                sum.target_build = Some(v.to_string());
                sum.fields.insert("setup_version".into(), v.to_string());
            }
        }
        s::LOGGED_ON_USER => {
            if let Some(v) = after(t, "Logged on user: ").map(|v| v.trim_end_matches('.')) {
                sum.fields.insert("user".into(), v.to_string());
            }
        }
        s::CMD_PARAM => {
            if let (Some(name), Some(value)) =
                (between(t, "Name='", "'"), between(t, "Value='", "'"))
            {
                let name = name.to_ascii_lowercase();
                if name == "mode" {
                    sum.mode = Some(value.to_string());
                } else if name.starts_with("prepare") && sum.mode.is_none() {
                    // SetupLogReviewer reports these runs as mode `Unknown`; naming the switch
                    // tells the operator more.
                    sum.mode = Some(format!("/{name}"));
                }
            }
        }
        s::LOCAL_VERSION => {
            // The backup copy's version, when present, is the build installed before the run.
            let v = after(t, "The locally installed version is ")
                .map(|v| v.trim_end_matches('.'))
                .filter(|_| !sum.fields.contains_key("backup_build"));
            if let Some(v) = v {
                sum.installed_build = Some(v.to_string());
                sum.fields.insert("installed_build".into(), v.to_string());
            }
        }
        s::BACKUP_VERSION => {
            if let Some(v) = between(t, "previously installed version is '", "'") {
                sum.installed_build = Some(v.to_string());
                sum.fields.insert("installed_build".into(), v.to_string());
                sum.fields.insert("backup_build".into(), v.to_string());
            }
        }
        s::CONSOLE_START if t.trim_start().starts_with("Performing ") => {
            return Boundary::Start;
        }
        s::CONSOLE_CONFIGURING if t.trim_start().starts_with("Configuring ") => {
            sum.phase = Some(t.trim().to_string());
        }
        // setup.exe's console error (the log's own has a timestamp and `[ERROR]`).
        s::GENERATED
            if x.first_error.is_none() && crate::time::exchange_prefix(t.as_bytes()).is_none() =>
        {
            x.first_error = Some((line.evidence(), line.offset));
        }
        s::HAS_EXCEPTION if x.threw.is_none() => {
            x.threw = Some((line.evidence(), line.offset));
        }
        s::STOPPING if x.stopping.is_none() => x.stopping = Some(line.evidence()),
        s::ERROR_RECORD if x.error_record.is_none() => {
            if let Some(e) = super::errors::exception_type(t) {
                x.error_record = Some((line.evidence(), e));
            }
        }
        s::SETUP_SUCCEEDED => return Boundary::End(Outcome::Succeeded),
        s::SETUP_FAILED => return Boundary::End(Outcome::Failed),
        s::ERROR if x.first_error.is_none() && find_ci(t, "[ERROR]").is_some() => {
            x.first_error = Some((line.evidence(), line.offset));
        }
        s::ERROR_REFERENCE => x.last_error_reference = Some(line.evidence()),
        // Only the settings the checks read reach here: each has its own structural anchor
        // (`EVALUATED`, `EVALUATED_MORE..` in `STRUCTURAL_ANCHORS`).
        s::EVALUATED | s::EVALUATED_MORE..=s::EVALUATED_LAST => {
            let name = between(t, "Evaluated [", "]");
            if let (Some(name), Some(value)) = (name, between(t, "[Value:\"", "\"]")) {
                if value.eq_ignore_ascii_case("true") {
                    x.ever_true
                        .insert(name.to_string(), (line.evidence(), line.offset));
                }
                x.settings.insert(
                    name.to_string(),
                    (value.to_string(), line.evidence(), line.offset),
                );
            }
        }
        s::UPDATE_STATUS => {
            for what in [
                "Schema",
                "Organization Configuration",
                "Domain Configuration",
            ] {
                if find_ci(t, &format!("] {what} Update Required Status")).is_some() {
                    let v = between(t, "Status : '", "'")
                        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
                    x.update_required
                        .insert(what.to_string(), (v, line.evidence(), line.offset));
                }
            }
        }
        s::SCHEMA_MASTER => {
            let v = after(t, "attempt to use the Schema Master domain controller ")
                .or_else(|| after(t, "setup will use "));
            if let Some(v) = v {
                sum.fields
                    .insert("schema_master".into(), v.trim().to_string());
            }
        }
        s::END_OF_SETUP => return Boundary::End(Outcome::Failed),
        s::COMPONENT => {
            if let Some(c) = between(t, "Processing component '", "'") {
                sum.phase = Some(c.to_string());
            }
        }
        s::FAILED_RULE => {
            if let Some(name) = between(t, "Failed [Rule:", "]") {
                x.failed_rules.insert(name.to_string(), line.evidence());
            }
        }
        _ => {}
    }
    Boundary::None
}

fn after<'a>(t: &'a str, marker: &str) -> Option<&'a str> {
    find_ci(t, marker).map(|i| &t[i + marker.len()..])
}

/// Readiness rules of phase A: the rule name in the log and our rule id.
const PHASE_A: &[(&str, &str)] = &[
    (
        "PendingRebootWindowsComponents",
        "exchange.readiness.pending-reboot-windows-components",
    ),
    ("RebootPending", "exchange.readiness.reboot-pending"),
    (
        "ProcessNeedsToBeClosedOnUpgrade",
        "exchange.readiness.close-powershell-sessions",
    ),
    (
        "DomainControllerIsOutOfSite",
        "exchange.readiness.dc-out-of-site",
    ),
    ("RemoteRegException", "exchange.readiness.remote-registry"),
];

/// Informational readiness rules (they still stop SetupLogReviewer's chain).
const INFORMATIONAL: &[(&str, &str)] = &[
    ("MSDTCStopped", "exchange.readiness.msdtc-stopped"),
    (
        "IisUrlRewriteNotInstalled",
        "exchange.readiness.iis-url-rewrite-missing",
    ),
];

fn finalize(x: &ExchangeRun, sum: &mut RunSummary) -> Vec<Derived> {
    let mut ctx = BTreeMap::new();
    for (k, v) in &sum.fields {
        ctx.insert(k.clone(), v.clone());
    }
    let setting = |name: &str| {
        x.settings
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let value = |name: &str| {
        setting(name)
            .map(|(v, _, _)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let is = |name: &str, want: &str| value(name).is_some_and(|v| v.eq_ignore_ascii_case(want));
    if let Some(c) = value("Setting:ComputerNameDnsFullyQualified") {
        ctx.insert("computer".into(), c.to_string());
        if let Some(d) = c.split('.').nth(1) {
            ctx.insert("domain".into(), d.to_string());
        }
    }
    if let Some(v) = value("Setting:SiteName") {
        ctx.insert("site".into(), v.to_string());
    }
    if let Some(v) = value("Setting:DomainController") {
        ctx.insert("domain_controller".into(), v.to_string());
    }
    ctx.insert(
        "dc_site".into(),
        value("Setting:DomainControllerSiteName")
            .unwrap_or("NULL VALUE")
            .to_string(),
    );
    sum.fields
        .extend(ctx.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut out = Vec::new();
    if let Some(d) = same_build(x, sum, &ctx) {
        out.push(d);
    }
    if sum.outcome == Outcome::Succeeded {
        return out;
    }
    let mut derive =
        |rule_id: &'static str, lines: Vec<(EvidenceLine, u64)>, extra: &[(&str, String)]| {
            let (line, offset) = lines.first().map(|(e, o)| (e.line, *o)).unwrap_or((0, 0));
            let mut fields = ctx.clone();
            for (k, v) in extra {
                fields.insert((*k).to_string(), v.clone());
            }
            let mut evidence: Vec<EvidenceLine> = lines.into_iter().map(|(e, _)| e).collect();
            evidence.sort_by_key(|e| e.line);
            evidence.dedup();
            out.push(Derived {
                rule_id,
                line,
                offset,
                evidence,
                fields,
            });
        };
    let with_failure = |name: &str, ev: &(String, EvidenceLine, u64)| {
        let mut v = vec![(ev.1.clone(), ev.2)];
        if let Some(f) = x.failed_rules.get(name) {
            v.push((f.clone(), ev.2));
        }
        v
    };
    let mut phase_a = false;
    for (name, id) in PHASE_A {
        let key = format!("Rule:{name}");
        if is(&key, "true") {
            phase_a = true;
            derive(id, with_failure(name, setting(&key).expect("present")), &[]);
        }
    }
    for (name, id) in INFORMATIONAL {
        let key = format!("Rule:{name}");
        if is(&key, "true") {
            derive(id, with_failure(name, setting(&key).expect("present")), &[]);
        }
    }
    if is("Setting:LocalDomainIsPrepped", "false") && is("Rule:DomainPrepRequired", "true") {
        let a = setting("Setting:LocalDomainIsPrepped").expect("present");
        let b = setting("Rule:DomainPrepRequired").expect("present");
        derive(
            "exchange.readiness.domain-not-prepared",
            vec![(a.1.clone(), a.2), (b.1.clone(), b.2)],
            &[],
        );
    }
    if let Some((e, o)) = x
        .ever_true
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Rule:InstallWatermark"))
        .map(|(_, v)| v)
    {
        derive(
            "exchange.readiness.install-watermark",
            vec![(e.clone(), *o)],
            &[],
        );
    }
    if !phase_a {
        let status = |what: &str| x.update_required.get(what).filter(|(v, _, _)| *v);
        let admin_false = |name: &str| {
            setting(&format!("Setting:{name}")).filter(|(v, _, _)| v.eq_ignore_ascii_case("false"))
        };
        let checks: [(&str, &str, &'static str, &str); 4] = [
            (
                "Schema",
                "SchemaAdmin",
                "exchange.prereq.schema-admins-required",
                "Schema Admins",
            ),
            (
                "Schema",
                "EnterpriseAdmin",
                "exchange.prereq.schema-enterprise-admins-required",
                "Enterprise Admins",
            ),
            (
                "Organization Configuration",
                "EnterpriseAdmin",
                "exchange.prereq.prepare-ad-enterprise-admins-required",
                "Enterprise Admins",
            ),
            (
                "Domain Configuration",
                "EnterpriseAdmin",
                "exchange.prereq.prepare-domain-enterprise-admins-required",
                "Enterprise Admins",
            ),
        ];
        for (what, admin, id, group) in checks {
            if let (Some(st), Some(ad)) = (status(what), admin_false(admin)) {
                derive(
                    id,
                    vec![(st.1.clone(), st.2), (ad.1.clone(), ad.2)],
                    &[("group", group.to_string())],
                );
            }
        }
        if let Some(org) = admin_false("ExOrgAdmin") {
            match value("Setting:SidExOrgAdmins") {
                Some(sid) if is("Rule:DelegatedMailboxFirstInstall", "true") => derive(
                    "exchange.prereq.not-organization-management",
                    vec![(org.1.clone(), org.2)],
                    &[("sid", sid.to_string())],
                ),
                Some(_) => {}
                None => derive(
                    "exchange.prereq.organization-not-prepared",
                    vec![(org.1.clone(), org.2)],
                    &[],
                ),
            }
        }
    }
    if sum.outcome == Outcome::Failed {
        if let Some(d) = first_error(x, &ctx) {
            out.push(d);
        }
    }
    out
}

/// SetupLogReviewer's fallback: the run's first error, whole, titled by what it says and
/// advised by its class (the `exchange.setup.failed*` rules, shown only when no rule with a
/// better priority names the cause).
fn first_error(x: &ExchangeRun, ctx: &BTreeMap<String, String>) -> Option<Derived> {
    let ((first, offset), first_block) = match (&x.first_error, &x.threw) {
        (Some(e), _) => (e, &x.first_block),
        (None, Some(t)) => (t, &x.threw_block),
        (None, None) => return None,
    };
    let mut fields = ctx.clone();
    let mut evidence = vec![first.clone()];
    if let Some((block, block_fields)) = first_block {
        evidence = block.clone();
        fields.extend(block_fields.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let Some(r) = &x.last_error_reference {
        if let Some(c) = r
            .text
            .split_once("Component=")
            .map(|(_, c)| c.trim())
            .filter(|c| !c.is_empty())
        {
            fields.insert("component".into(), c.to_string());
        }
        if let Some(id) = between(&r.text, "Id=", " ") {
            fields.insert("error_reference".into(), id.to_string());
        }
        if !evidence.iter().any(|e| e.line == r.line) {
            evidence.push(r.clone());
        }
    }
    // The entry itself may not name its exception: the variable dump's `ErrorRecord:` does.
    if let Some((e, ty)) = x
        .error_record
        .as_ref()
        .filter(|_| !fields.contains_key("exception"))
    {
        fields.insert("exception".into(), ty.clone());
        evidence.push(e.clone());
    }
    if let Some(e) = &x.stopping {
        evidence.push(e.clone());
    }
    evidence.sort_by_key(|e| e.line);
    evidence.dedup_by_key(|e| e.line);
    let block_text: Vec<&str> = evidence
        .iter()
        .filter(|e| e.line >= first.line)
        .map(|e| e.text.as_str())
        .collect();
    if !fields.contains_key("error_title") {
        let t = first
            .text
            .split_once("[ERROR] ")
            .map_or(first.text.as_str(), |(_, t)| t);
        fields.insert("error_title".into(), super::errors::short(t));
    }
    Some(Derived {
        rule_id: error_class(&fields, &block_text),
        line: first.line,
        offset: *offset,
        evidence,
        fields,
    })
}

/// The fallback rule for an error's class, from its exception types, its message and the
/// lines of the error (a message wrapped over several lines, as in setup.exe's console).
fn error_class(f: &BTreeMap<String, String>, lines: &[&str]) -> &'static str {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let texts = [
        get("exception"),
        get("inner_exceptions"),
        get("error_message"),
    ];
    // The first class (in ERROR_CLASSES' order) that any phrase names, case-insensitively;
    // the most specific class ends the search.
    let mut best: Option<usize> = None;
    for m in texts
        .iter()
        .chain(lines)
        .flat_map(|t| error_class_matcher().find_overlapping_iter(*t))
    {
        let c = ERROR_CLASS_OF[m.pattern().as_usize()];
        best = Some(best.map_or(c, |b| b.min(c)));
        if c == 0 {
            break;
        }
    }
    best.map_or("exchange.setup.failed", |c| ERROR_CLASSES[c].0)
}

/// Error classes, most specific first, each with the phrases that name it.
const ERROR_CLASSES: [(&str, &[&str]); 6] = [
    (
        "exchange.setup.failed.command-not-found",
        &[
            "CommandNotFoundException",
            "is not recognized as the name of a cmdlet",
        ],
    ),
    (
        "exchange.setup.failed.object-not-found",
        &["ManagementObjectNotFoundException", "couldn't be found on"],
    ),
    (
        "exchange.setup.failed.access-denied",
        &[
            "UnauthorizedAccessException",
            "Access is denied",
            "Access to the path",
            "INSUFF_ACCESS_RIGHTS",
        ],
    ),
    (
        "exchange.setup.failed.null-reference",
        &["NullReferenceException"],
    ),
    (
        "exchange.setup.failed.active-directory",
        &[
            "DirectoryOperationException",
            "LdapException",
            "ADOperationException",
            "ADTransientException",
            "ADTopology",
            "LDAP",
            "domain controller",
        ],
    ),
    (
        "exchange.setup.failed.service-start",
        &[
            "ServiceStartException",
            "Cannot start service",
            "Cannot start the service",
            "service cannot be started",
            "did not reach the Running",
            "ServiceDidNotReachStatus",
            "failed to reach status",
            "failed to start",
        ],
    ),
];

/// For each phrase of [`error_class_matcher`], its index in [`ERROR_CLASSES`].
const ERROR_CLASS_OF: [usize; 24] = {
    let mut of = [0; 24];
    let (mut i, mut c) = (0, 0);
    while c < ERROR_CLASSES.len() {
        let mut p = 0;
        while p < ERROR_CLASSES[c].1.len() {
            of[i] = c;
            i += 1;
            p += 1;
        }
        c += 1;
    }
    assert!(i == of.len(), "ERROR_CLASS_OF has one entry per phrase");
    of
};

/// All phrases of [`ERROR_CLASSES`] in one automaton: an error is read once, not once per
/// phrase (22 case-insensitive searches per error were a twentieth of a scan of failed setups).
fn error_class_matcher() -> &'static aho_corasick::AhoCorasick {
    static AC: std::sync::OnceLock<aho_corasick::AhoCorasick> = std::sync::OnceLock::new();
    AC.get_or_init(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(ERROR_CLASSES.iter().flat_map(|(_, phrases)| phrases.iter()))
            .expect("error class phrases are valid")
    })
}

/// SetupLogReviewer's hint: in a non-Install run, a setup build equal to the installed one (or
/// with the same minor and build numbers) means the installed `setup.exe` ran, not the media's.
fn same_build(
    x: &ExchangeRun,
    sum: &RunSummary,
    ctx: &BTreeMap<String, String>,
) -> Option<Derived> {
    let mode = sum.mode.as_deref().unwrap_or("Unknown");
    if mode.eq_ignore_ascii_case("install") {
        return None;
    }
    let parse = |v: &str| -> Option<Vec<u32>> { v.split('.').map(|p| p.parse().ok()).collect() };
    let setup = parse(sum.target_build.as_deref()?)?;
    let local = parse(sum.installed_build.as_deref()?)?;
    if setup.len() < 3
        || local.len() < 3
        || !(setup == local || (setup[1] == local[1] && setup[2] == local[2]))
    {
        return None;
    }
    let (line, offset) = x
        .first_error
        .as_ref()
        .map(|(e, o)| (e.line, *o))
        .unwrap_or((sum.start_line, sum.start_offset));
    let mut fields = ctx.clone();
    fields.insert("mode".into(), mode.to_string());
    fields.insert(
        "installed_build".into(),
        sum.installed_build.clone().unwrap_or_default(),
    );
    Some(Derived {
        rule_id: "exchange.setup.same-build",
        line,
        offset,
        evidence: Vec::new(),
        fields,
    })
}
