//! Run durations come from the log's own times: the header's date plus each line's clock
//! time, moved on a day when the clock passes midnight.

use crate::common::{scan, utf16le_bom};
use patchwatch_pipeline::Outcome;

const ACROSS_MIDNIGHT: &str = "\
=== Verbose logging started: 31.12.2021  23:59:50  Build type: SHIP UNICODE 5.00.10011.00  Calling process: C:\\Windows\\system32\\msiexec.exe ===\r
MSI (c) (A4:0C) [23:59:50:100]: Resetting cached policy values\r
Action start 23:59:51: INSTALL.\r
MSI (s) (D0:A0) [23:59:59:900]: Doing action: InstallFiles\r
MSI (s) (D0:A0) [00:00:05:250]: Doing action: InstallFinalize\r
Action ended 0:00:19: INSTALL. Return value 1.\r
MSI (s) (D0:A0) [00:00:19:500]: Windows Installer installed the product. Product Name: Midnight. Product Version: 1.0. Product Language: 1033. Manufacturer: Contoso. Installation success or error status: 0.\r
MSI (s) (D0:A0) [00:00:20:000]: MainEngineThread is returning 0\r
=== Verbose logging stopped: 1.1.2022  00:00:20 ===\r
";

#[test]
fn an_msi_run_across_midnight_lasts_thirty_seconds() {
    let out = scan("MSI1234.LOG", &utf16le_bom(ACROSS_MIDNIGHT));
    let run = &out.runs[0];
    assert_eq!(run.outcome, Outcome::Succeeded);
    assert_eq!(run.started.as_deref(), Some("2021-12-31T23:59:50.000"));
    assert_eq!(run.last_time.as_deref(), Some("2022-01-01T00:00:20.000"));
    assert_eq!(run.duration_seconds, Some(30));
}

#[test]
fn an_msi_excerpt_without_a_stop_line_ends_at_its_last_timed_line() {
    // No `=== Verbose logging stopped`: the run ends with the file, its last time is the last
    // engine line's, past midnight.
    let text: String = ACROSS_MIDNIGHT
        .lines()
        .filter(|l| !l.starts_with("=== Verbose logging stopped"))
        .map(|l| format!("{l}\n"))
        .collect();
    let out = scan("MSI1234.LOG", text.as_bytes());
    assert_eq!(out.runs[0].duration_seconds, Some(30));
    assert_eq!(
        out.runs[0].last_time.as_deref(),
        Some("2022-01-01T00:00:20.000")
    );
}

#[test]
fn a_servicecontrol_run_across_midnight() {
    let log = "\
[23:58:00] -----------------------------------------------\r
[23:58:00] * ServiceControl.ps1: 21/11/2022 23:58:00 AfterPatch\r
[23:59:30] Starting services\r
[00:01:10] Script completed succesfully.\r
";
    let out = scan("ServiceControl.log", log.as_bytes());
    let run = out.runs.last().expect("a run");
    assert_eq!(run.outcome, Outcome::Succeeded);
    assert_eq!(run.last_time.as_deref(), Some("2022-11-22T00:01:10.000"));
    assert_eq!(run.duration_seconds, Some(190));
}

/// A log cut before its status line, like the one Wine's msiexec writes (a message record
/// first, no `MainEngineThread` line): read as a Windows Installer log, the top-level action's
/// `Return value` is the outcome; `0` (nothing done) decides nothing.
#[test]
fn top_level_action_end_gives_the_outcome_without_a_status_line() {
    let log = |value: u8| {
        format!(
            "1: 0 2: 1033 3: 0 \r\n=== Logging started: 12/5/2026  7:09:42 ===\r\n\
             Action start 7:09:42: INSTALL.\r\n\
             Action ended 7:09:42: LaunchConditions. Return value 1.\r\n\
             Action ended 7:09:43: INSTALL. Return value {value}.\r\n"
        )
    };
    for (value, want) in [
        (1, Outcome::Succeeded),
        (3, Outcome::Failed),
        (0, Outcome::InProgress),
    ] {
        let out = scan("install.log", utf16le_bom(&log(value)).as_slice());
        assert_eq!(out.runs.len(), 1, "{value}: {:?}", out.runs);
        let run = &out.runs[0];
        assert_eq!(run.log_kind.as_str(), "msi", "{value}");
        assert_eq!(run.outcome, want, "Return value {value}");
    }
}
