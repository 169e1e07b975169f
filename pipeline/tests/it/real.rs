//! Real logs collected from public sources (`tests/data/real/SOURCES.md`), against what an
//! expert would report (`tests/data/real/expected.toml`, the twin of `EXPECTED.md`): the run's
//! outcome, the class of its primary cause, the strings a good report mentions, and no false
//! positives. Prints a scoreboard. Expectations are never edited to make this pass; logs the
//! tool does not yet diagnose are listed in [`KNOWN_MISSES`] with the reason.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use patchwatch_pipeline::{
    scan_bytes, Catalog, Finding, LogKind, Outcome, ScanContext, ScanOutput, Severity,
};
use serde::Deserialize;

/// Logs not yet diagnosed as expected, and why.
const KNOWN_MISSES: &[(&str, &str)] = &[];

/// The scoreboard may not fall below this (raise it when the tool gets better).
const MIN_PASSES: usize = 51;

#[derive(Debug, Deserialize)]
struct Expected {
    log: Vec<Log>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // exit_code is documentation here: the outcome is what is checked
struct Log {
    file: String,
    kind: String,
    outcome: String,
    exit_code: Option<i64>,
    cause_class: String,
    language: String,
    #[serde(default)]
    must_mention: Vec<String>,
    #[serde(default)]
    must_not: Vec<String>,
}

/// The cause class of a rule, in the vocabulary of `expected.toml`.
fn cause_class(rule_id: &str) -> &'static str {
    const CLASSES: &[(&str, &[&str])] = &[
        (
            "service_start",
            &[
                "msi.error-1920",
                "msi.service-install-failed",
                "exchange.error.cannot-start-service-host",
                "exchange.error.service-disabled",
                "exchange.error.service-did-not-reach-status",
                "servicecontrol.",
            ],
        ),
        (
            "policy",
            &[
                "msi.powershell-language-mode",
                "msi.powershell-execution-policy",
                "msi.software-restriction-policy",
                "msi.rejected-by-policy",
                "exchange.su.servicecontrol-execution-policy",
                "msi.quietexec-powershell-failed",
            ],
        ),
        ("install_in_progress", &["msi.another-install-in-progress"]),
        (
            "custom_action",
            &[
                "msi.custom-action-failed",
                "msi.error-1722",
                "msi.error-1723",
                "msi.caquietexec-error",
            ],
        ),
        ("newer_version", &["msi.other-version-installed"]),
        ("internal_error", &["msi.internal-error"]),
        (
            "source_missing",
            &[
                "msi.package-open-failed",
                "msi.install-source-absent",
                "msi.older-version-not-removed",
                "msi.cached-package-missing",
                "exchange.msi.install-source-missing",
                "exchange.msi.unable-to-remove-product",
            ],
        ),
        (
            "access_denied",
            &[
                "msi.insufficient-privileges",
                "msi.error-1310",
                "exchange.msi.insufficient-privileges",
                "exchange.ref.insufficient-access-rights",
                "exchange.error.access-denied",
                "exchange.error.eventlog-access-denied",
            ],
        ),
        (
            "launch_condition",
            &[
                "msi.launch-condition",
                "msi.dotnet-prerequisite-missing",
                "exchange.readiness.",
                "exchange.prereq.",
            ],
        ),
        (
            "null_reference",
            &[
                "exchange.error.null-reference",
                "exchange.error.null-argument",
                "exchange.hybrid.",
            ],
        ),
        (
            "ad_ldap",
            &[
                "exchange.error.ad-",
                "exchange.ad.",
                "exchange.schema.",
                "exchange.ref.ad-",
            ],
        ),
        ("user_cancel", &["msi.user-cancelled"]),
        ("patch_not_applicable", &["msi.patch-target-not-found"]),
        ("file_in_use", &["msi.file-in-use"]),
        ("target_path", &["msi.error-1324", "msi.error-1327"]),
    ];
    // The fallback rules' ids name their class (`exchange.setup.failed.access-denied`).
    for (suffix, class) in [
        ("access-denied", "access_denied"),
        ("null-reference", "null_reference"),
    ] {
        if rule_id.ends_with(suffix) {
            return class;
        }
    }
    for (class, ids) in CLASSES {
        if ids.iter().any(|p| {
            rule_id == *p
                || (p.ends_with('.') && rule_id.starts_with(p))
                || (p.ends_with('-') && rule_id.starts_with(p))
        }) {
            return class;
        }
    }
    "other"
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/real")
}

fn kind(s: &str) -> LogKind {
    match s {
        "exchange_setup" => LogKind::ExchangeSetup,
        "msi" => LogKind::Msi,
        "service_control" => LogKind::ServiceControl,
        _ => LogKind::Plain,
    }
}

/// What a reader sees of a finding: title, evidence, fields, remediation.
fn finding_text(f: &Finding, evidence: bool) -> String {
    let mut s = format!("{}\n{}\n", f.title, f.remediation.summary);
    for x in f.remediation.steps.iter() {
        s.push_str(x);
        s.push('\n');
    }
    for (k, v) in &f.fields {
        s.push_str(&format!("{k}={v}\n"));
    }
    for e in &f.evidence {
        if evidence || e.line == f.line {
            s.push_str(&e.text);
            s.push('\n');
        }
    }
    s.to_lowercase()
}

/// Checks one log; the problems found (empty when it is diagnosed as expected).
fn check(log: &Log, out: &ScanOutput) -> Vec<String> {
    let mut problems = Vec::new();
    let want = match log.outcome.as_str() {
        "failed" => Outcome::Failed,
        "succeeded" => Outcome::Succeeded,
        _ => Outcome::InProgress,
    };
    let run = out
        .runs
        .iter()
        .find(|r| r.outcome == want)
        .or_else(|| out.runs.last());
    let Some(run) = run else {
        return vec!["no run".into()];
    };
    if run.outcome != want {
        problems.push(format!(
            "outcome {} (expected {})",
            run.outcome.as_str(),
            log.outcome
        ));
    }
    let findings: Vec<&Finding> = out
        .findings
        .iter()
        .filter(|f| f.run_index == run.index)
        .collect();
    let primary = run
        .primary_finding_id
        .as_deref()
        .and_then(|id| findings.iter().find(|f| f.id == id).copied());
    let class = primary.map_or("none", |f| cause_class(&f.rule_id));
    if class != log.cause_class {
        problems.push(format!(
            "primary cause {} is class {class} (expected {})",
            primary.map_or("(none)", |f| f.rule_id.as_str()),
            log.cause_class
        ));
    }
    let all: String = findings.iter().map(|f| finding_text(f, true)).collect();
    for m in &log.must_mention {
        if !all.contains(&m.to_lowercase()) {
            problems.push(format!("does not mention `{m}`"));
        }
    }
    for m in &log.must_not {
        let lower = m.to_lowercase();
        // "X as the cause" / "X as a cause": the primary cause must not be about X; any other
        // string: no finding above info may report it (context lines around a match are fine).
        let cause = lower
            .strip_suffix(" as the cause")
            .or_else(|| lower.strip_suffix(" as a cause"));
        let hit = match cause {
            Some(x) => primary.is_some_and(|f| finding_text(f, false).contains(x)),
            None => findings
                .iter()
                .filter(|f| f.severity > Severity::Info)
                .any(|f| finding_text(f, false).contains(&lower)),
        };
        if hit {
            problems.push(format!("reports `{m}`"));
        }
    }
    problems
}

#[test]
fn real_logs_are_diagnosed_as_expected() {
    let text = std::fs::read_to_string(data_dir().join("expected.toml")).expect("expected.toml");
    let expected: Expected = toml::from_str(&text).expect("expected.toml parses");
    let catalog = Arc::new(Catalog::builtin());
    let mut passes = 0;
    let mut by_class: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut by_language: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut report = String::new();
    for log in &expected.log {
        let bytes = std::fs::read(data_dir().join(&log.file)).expect("real log is committed");
        let mut ctx = ScanContext::new("HOST", log.file.clone());
        ctx.kind = Some(kind(&log.kind));
        let out = scan_bytes(Arc::clone(&catalog), ctx, &bytes);
        let problems = check(log, &out);
        let ok = problems.is_empty();
        passes += usize::from(ok);
        for (map, key) in [
            (&mut by_class, &log.cause_class),
            (&mut by_language, &log.language),
        ] {
            let e = map.entry(key.clone()).or_default();
            e.0 += usize::from(ok);
            e.1 += 1;
        }
        let known = KNOWN_MISSES.iter().find(|(f, _)| *f == log.file);
        match (ok, known) {
            (true, Some(_)) => report.push_str(&format!(
                "  now passes (remove from KNOWN_MISSES): {}\n",
                log.file
            )),
            (false, Some((_, why))) => report.push_str(&format!(
                "  known miss {}: {why}\n    {}\n",
                log.file,
                problems.join("; ")
            )),
            (false, None) => unexpected.push(format!("{}: {}", log.file, problems.join("; "))),
            (true, None) => {}
        }
    }
    let total = expected.log.len();
    println!("{passes} of {total} real logs diagnosed as expected");
    for (name, map) in [("class", &by_class), ("language", &by_language)] {
        let cells: Vec<String> = map
            .iter()
            .map(|(k, (p, n))| format!("{k} {p}/{n}"))
            .collect();
        println!("  by {name}: {}", cells.join(", "));
    }
    print!("{report}");
    assert!(
        unexpected.is_empty(),
        "not diagnosed as expected:\n{}",
        unexpected.join("\n")
    );
    assert!(
        passes >= MIN_PASSES,
        "{passes} of {total} pass; at least {MIN_PASSES} did before"
    );
    let readme = readme_figure();
    assert_eq!(
        readme,
        (passes, total, total),
        "README.md states (passes, total, logs) = {readme:?}; the scoreboard says {passes} of {total}"
    );
}

/// What README.md claims: "On M real setup and installer logs ... N of M real logs are
/// diagnosed as expected", as (N, M of the claim, M of the opening).
fn readme_figure() -> (usize, usize, usize) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&path).expect("README.md");
    // The sentence may wrap: compare on single spaces.
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let number_before = |marker: &str| -> Vec<usize> {
        let at = text
            .find(marker)
            .unwrap_or_else(|| panic!("README.md has no `{marker}`"));
        text[..at]
            .split(' ')
            .rev()
            .take(3)
            .filter_map(|w| w.parse().ok())
            .collect()
    };
    let claim = number_before(" real logs are diagnosed as expected");
    let opening = number_before(" real setup and installer logs");
    assert_eq!(
        claim.len(),
        2,
        "`N of M real logs are diagnosed as expected`"
    );
    (claim[1], claim[0], opening[0])
}

/// Scans one committed real log as the scoreboard does.
fn scan_real(file: &str) -> ScanOutput {
    let bytes = std::fs::read(data_dir().join(file)).expect("real log is committed");
    let mut ctx = ScanContext::new("HOST", file);
    ctx.kind = Some(LogKind::Msi);
    scan_bytes(Arc::new(Catalog::builtin()), ctx, &bytes)
}

/// The primary finding of the run, which must exist.
fn primary(out: &ScanOutput) -> &Finding {
    let id = out.runs[0]
        .primary_finding_id
        .as_deref()
        .expect("a primary cause");
    out.findings.iter().find(|f| f.id == id).expect("emitted")
}

#[test]
fn another_install_in_progress_1618_from_the_execution_mutex() {
    let out = scan_real("msi/powertoys-15191-1618-execution-mutex.excerpt.log");
    assert_eq!(out.runs[0].outcome, Outcome::Failed);
    assert_eq!(out.runs[0].exit_code, Some(1618));
    let f = primary(&out);
    assert_eq!(f.rule_id, "msi.another-install-in-progress");
    assert_eq!(f.line, 1, "the mutex line is the cause, not the exit line");
}

#[test]
fn powershell_custom_action_refused_by_the_execution_policy() {
    let out = scan_real("msi/lithnet-108-powershell-not-digitally-signed.excerpt.log");
    assert_eq!(out.runs[0].outcome, Outcome::Failed);
    let f = primary(&out);
    assert_eq!(cause_class(&f.rule_id), "policy", "{}", f.rule_id);
    let text = finding_text(f, true);
    assert!(text.contains("is not digitally signed"), "{text}");
    // The failed custom action is named by the run, whatever rule titles the cause.
    assert_eq!(out.runs[0].fields["failed_action"], "CreateEventSource");
}

#[test]
fn a_wrapper_reporting_3010_is_a_success_that_needs_a_restart() {
    let out = scan_real("success/owncloud-winget-3010-status-0.excerpt.log");
    assert!(out.runs.iter().all(|r| r.outcome == Outcome::Succeeded));
    assert!(out.findings.iter().all(|f| f.severity == Severity::Info));
    let note = out
        .findings
        .iter()
        .find(|f| f.rule_id == "msi.wrapper-exit-reboot")
        .expect("the 3010 is explained");
    assert!(note.remediation.summary.contains("restart"));
}

#[test]
fn a_deferred_powershell_action_refused_by_policy_is_named_from_its_schedule() {
    // German PowerShell output under WixQuietExec; the log is cut before the action's result.
    let out = scan_real("msi/gitextensions-7379-wixquietexec-pssecurityexception-de.excerpt.log");
    assert_eq!(out.runs[0].outcome, Outcome::Failed);
    let f = primary(&out);
    assert_eq!(f.rule_id, "msi.powershell-execution-policy");
    // `Executing op: CustomActionSchedule(Action=ConfigureTelemetry,...` names it.
    assert!(
        f.remediation
            .summary
            .contains("(in action ConfigureTelemetry)"),
        "{}",
        f.remediation.summary
    );
}
