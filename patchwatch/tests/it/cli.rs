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

#[test]
fn scan_json_carries_host_offset_times_and_ends_many_files_with_a_summary() {
    let out = patchwatch(&[
        "scan",
        "--format",
        "json",
        "--host",
        "EX07",
        "--utc-offset",
        "-300",
        &fixture("ExchangeSetup_MSI_1.log"),
        &fixture("ExchangeSetup_Vdir_1.log"),
    ]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let findings: Vec<&serde_json::Value> =
        lines.iter().filter(|v| v["type"] == "finding").collect();
    assert!(!findings.is_empty());
    for f in &findings {
        assert_eq!(f["host"], "EX07", "{f}");
        if let Some(t) = f["event_time"].as_str() {
            assert!(
                t.ends_with("-05:00"),
                "RFC 3339 with the offset read in: {t}"
            );
        }
    }
    assert!(findings.iter().any(|f| f["event_time"].is_string()));
    let last = lines.last().expect("output");
    assert_eq!(last["type"], "summary", "{last}");
    assert_eq!(last["files"], 2);
    assert_eq!(last["findings"].as_u64(), Some(findings.len() as u64));
}

#[test]
fn a_closed_pipe_ends_quietly_with_status_0() {
    use std::io::Read;
    // The completions (73 KB) overflow the pipe's buffer, so their writes do meet the closed
    // pipe (clap_complete used to panic there).
    for args in [&["rules", "list"][..], &["completions", "zsh"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_patchwatch"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("runs");
        let mut stdout = child.stdout.take().expect("piped");
        let mut first = [0u8; 16];
        stdout.read_exact(&mut first).expect("some output");
        drop(stdout); // like `| head -c 16`: the reader goes away mid-listing
        let out = child.wait_with_output().expect("exits");
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn version_names_the_commit_for_every_command() {
    for args in [&["--version"][..], &["agent", "--version"][..]] {
        let out = patchwatch(args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("patchwatch "), "{args:?}: {text}");
        assert!(text.contains("(commit "), "{args:?}: {text}");
    }
}

#[test]
fn completions_for_each_shell_and_a_man_page() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef patchwatch"),
        ("fish", "complete -c patchwatch"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = patchwatch(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell}: no `{marker}`");
        assert!(text.contains("scan"), "{shell}: subcommands listed");
    }
    let man = patchwatch(&["man"]);
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(text.contains(".TH patchwatch 1"), "{text}");
    assert!(
        text.contains(".TH patchwatch-scan 1"),
        "a page per subcommand"
    );
}
