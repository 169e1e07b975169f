//! The `patchwatch` command line, run as a user would: exit codes, JSON Lines, bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

fn patchwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchwatch"))
        .args(args)
        .output()
        .expect("runs")
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../pipeline/tests/data/exchange")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn scan_json_lines_name_runs_and_findings_and_unreadable_paths_do_not_stop_it() {
    let missing = "/nonexistent/ExchangeSetup.log";
    let out = patchwatch(&[
        "scan",
        "--format",
        "json",
        missing,
        &fixture("ExchangeSetup_MSI_1.log"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unreadable path gives status 2"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(missing), "{stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let run = lines
        .iter()
        .find(|v| v["type"] == "run")
        .expect("a run object");
    assert_eq!(run["outcome"], "failed");
    let primary = run["primary_finding_id"].as_str().expect("primary id");
    let f = lines
        .iter()
        .find(|v| v["type"] == "finding" && v["id"] == primary)
        .expect("primary finding");
    assert_eq!(f["rule_id"], "exchange.msi.install-source-missing-remove");
    assert_eq!(f["primary"], true);
    assert!(f["remediation"]["summary"]
        .as_str()
        .unwrap()
        .contains("15.0.995.29"));
    assert!(lines
        .iter()
        .any(|v| v["type"] == "error" && v["path"] == missing));
}

#[test]
fn fail_on_sets_the_exit_status() {
    let f = fixture("ExchangeSetup_Service_Disabled.log");
    assert_eq!(
        patchwatch(&["scan", "--fail-on", "critical", &f])
            .status
            .code(),
        Some(1)
    );
    let human = patchwatch(&["scan", &f]);
    assert_eq!(human.status.code(), Some(0));
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("Primary cause:") && text.contains("FAILED"),
        "{text}"
    );
    assert!(
        !text.contains("\u{1b}["),
        "no colour codes when stdout is not a terminal"
    );
}

#[test]
fn explain_matches_pasted_text_and_says_when_nothing_matches() {
    let out = patchwatch(&["explain", "Could not load file or assembly 'Microsoft.Exchange.Common, Version=15.0.0.0' or one of its dependencies."]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("elevated"));
    assert_eq!(
        patchwatch(&["explain", "everything is fine"]).status.code(),
        Some(1)
    );
}

#[test]
fn a_bad_rule_file_is_refused_naming_file_rule_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("site.toml");
    std::fs::write(&p, "[[rule]]\nid = \"site.x\"\ntitle = \"t\"\nseverity = \"severe\"\nanchors = [\"abcd\"]\nremediation = { summary = \"s\" }\n").unwrap();
    let out = patchwatch(&["rules", "check", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("site.toml") && err.contains("site.x") && err.contains("severity"),
        "{err}"
    );
    // And a bad --encoding is refused before scanning.
    let out = patchwatch(&[
        "scan",
        "--encoding",
        "klingon",
        &fixture("ExchangeSetup_MSI_1.log"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--encoding"));
}
