//! Evidence is the whole error: an ExchangeSetup.log `[ERROR]` entry up to the next
//! timestamped line, a failed custom action's own output, bounded and marked when cut; and an
//! error no rule knows is titled by what it says.

use crate::common::{catalog, derived_only, scan, utf16le_bom};
use patchwatch_pipeline::{
    collect, scan_bytes, FileScanner, Finding, LogKind, Outcome, ScanContext, ScanOutput,
};
use std::sync::Arc;

const T: &str = "[05/04/2023 10:15:00.0001]";

fn exchange_run(entry: &str) -> String {
    format!(
        "{T} [0] **********************************************\n\
{T} [0] Starting Microsoft Exchange Server 2019 Setup\n\
{T} [0] **********************************************\n\
{T} [0] Setup version: 15.2.1258.12.\n\
{T} [0] Logged on user: CONTOSO\\admin.\n\
{T} [1] Processing component 'BridgeheadRole' (Configuring Transport).\n\
{T} [2] Beginning processing Start-SetupProcess\n\
{entry}\
{T} [1] [ERROR-REFERENCE] Id=BridgeheadComponent___b8f7c4c6a4e94a6cb7f5d3f0a0b1c2d3 Component=EXCHANGE14:\\Current\\Release\\Transport\\BridgeheadRole\n\
{T} [1] Setup is stopping now because of one or more critical errors.\n\
{T} [0] The Exchange Server setup operation didn't complete.  More details can be found in ExchangeSetup.log located in the <SystemDrive>:\\ExchangeSetupLogs folder.\n\
{T} [0] End of Setup\n"
    )
}

/// A generated error whose task calls a program that is not on PATH (no rule knows it).
fn where_exe_entry() -> String {
    format!(
        "{T} [1] [ERROR] The following error was generated when \"$error.Clear();\n\
          $path = where.exe /r $RoleInstallPath Microsoft.Exchange.Contoso.dll;\n\
          Set-ContosoTransportAgent -Path $path\n\
        \" was run: \"System.Management.Automation.CommandNotFoundException: The term 'where.exe' is not recognized as the name of a cmdlet, function, script file, or operable program. ---> System.IO.FileNotFoundException: where.exe\n\
   at System.Management.Automation.CommandDiscovery.LookupCommandInfo(String commandName)\n\
   at System.Management.Automation.ExecutionContext.CreateCommand(String command, Boolean dotSource)\".\n\
{T} [1] [ERROR] The term 'where.exe' is not recognized as the name of a cmdlet, function, script file, or operable program.\n"
    )
}

fn primary(out: &ScanOutput, run: usize) -> &Finding {
    let id = out.runs[run]
        .primary_finding_id
        .as_deref()
        .expect("a failed run has a primary cause");
    out.findings.iter().find(|f| f.id == id).expect("emitted")
}

#[test]
fn a_multi_line_error_entry_is_carried_whole_with_its_fields() {
    let log = exchange_run(&where_exe_entry());
    let out = scan_bytes(
        derived_only("exchange.toml"),
        ScanContext::new("EX01", "ExchangeSetup.log"),
        log.as_bytes(),
    );
    assert_eq!(out.runs[0].outcome, Outcome::Failed);
    let f = primary(&out, 0);
    assert_eq!(f.rule_id, "exchange.setup.failed.command-not-found");
    assert_eq!(f.line, 8, "the entry's first line");
    // Two lines of context, lines 8..=13 (the entry); 14 is the next [ERROR] (its own entry),
    // 15 the error reference, 16 `Setup is stopping now`.
    let lines: Vec<u64> = f.evidence.iter().map(|e| e.line).collect();
    assert_eq!(
        lines,
        vec![6, 7, 8, 9, 10, 11, 12, 13, 15, 16],
        "{:#?}",
        f.evidence
    );
    assert!(f.evidence[5].text.contains("CommandNotFoundException"));
    assert_eq!(
        f.fields["exception"],
        "System.Management.Automation.CommandNotFoundException"
    );
    assert_eq!(
        f.fields["inner_exceptions"],
        "System.IO.FileNotFoundException"
    );
    assert!(f.fields["error_message"].starts_with("The term 'where.exe' is not recognized"));
    assert_eq!(
        f.fields["task"],
        "$path = where.exe /r $RoleInstallPath Microsoft.Exchange.Contoso.dll"
    );
    assert_eq!(
        f.fields["component"],
        "EXCHANGE14:\\Current\\Release\\Transport\\BridgeheadRole"
    );
    // Titled by the error itself, advised by its class.
    assert!(
        f.title
            .starts_with("CommandNotFoundException: The term 'where.exe' is not recognized"),
        "{}",
        f.title
    );
    assert!(f.remediation.summary.contains("$path = where.exe"));
    assert!(f.remediation.steps.iter().any(|s| s.contains("System32")));
}

#[test]
fn an_exception_no_rule_knows_is_the_primary_cause_titled_by_what_it_says() {
    let entry = format!(
        "{T} [1] [ERROR] The following error was generated when \"$error.Clear(); Set-ContosoWidget -Align Left\" was run: \"Contoso.Setup.WidgetMisalignedException: The widget on ExSvr1 is misaligned by 3 degrees.\n\
   at Contoso.Setup.Widget.Align()\".\n"
    );
    let out = scan("ExchangeSetup.log", exchange_run(&entry).as_bytes());
    let f = primary(&out, 0);
    assert_eq!(f.rule_id, "exchange.setup.failed");
    assert_eq!(
        f.title,
        "WidgetMisalignedException: The widget on ExSvr1 is misaligned by 3 degrees."
    );
    assert_eq!(f.fields["task"], "Set-ContosoWidget -Align Left");
    assert!(f
        .remediation
        .summary
        .contains("Set-ContosoWidget -Align Left"));
    // The class table: each class of error gets its own advice.
    for (exception, rule) in [
        ("System.UnauthorizedAccessException: Access to the path 'C:\\x' is denied.", "access-denied"),
        ("Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException: The operation couldn't be performed because object 'ExSvr1\\OWA' couldn't be found on 'DC1'.", "object-not-found"),
        ("System.NullReferenceException: Object reference not set to an instance of an object.", "null-reference"),
        ("System.DirectoryServices.Protocols.DirectoryOperationException: The server cannot handle directory requests.", "active-directory"),
        ("System.InvalidOperationException: Cannot start service MSExchangeTransport on computer '.'.", "service-start"),
    ] {
        let entry = format!(
            "{T} [1] [ERROR] The following error was generated when \"$error.Clear(); Do-Contoso\" was run: \"{exception}\".\n"
        );
        let out = scan_bytes(
            derived_only("exchange.toml"),
            ScanContext::new("EX01", "ExchangeSetup.log"),
            exchange_run(&entry).as_bytes(),
        );
        let f = primary(&out, 0);
        assert_eq!(f.rule_id, format!("exchange.setup.failed.{rule}"), "{exception}");
        let ty = exception.split(':').next().and_then(|t| t.rsplit('.').next());
        assert!(f.title.starts_with(ty.expect("a type")), "{}", f.title);
    }
}

#[test]
fn an_error_rule_matched_inside_an_entry_shows_the_whole_entry() {
    // `exchange.error.service-disabled` matches the `" was run: "` continuation line.
    let entry = format!(
        "{T} [1] [ERROR] The following error was generated when \"$error.Clear(); Start-SetupService -ServiceName MSExchangeServiceHost\n\
        \" was run: \"System.ComponentModel.Win32Exception: The service cannot be started, either because it is disabled or because it has no enabled devices associated with it\n\
   at Microsoft.Exchange.Configuration.Tasks.ManageSetupService.StartService(ServiceController serviceController, Boolean ignoreServiceStartTimeout)\".\n"
    );
    let out = scan("ExchangeSetup.log", exchange_run(&entry).as_bytes());
    let f = out
        .findings
        .iter()
        .find(|f| f.line == 9 && f.priority.is_some())
        .expect("a rule matches the continuation line");
    let lines: Vec<u64> = f.evidence.iter().map(|e| e.line).collect();
    for l in 8..=10 {
        assert!(lines.contains(&l), "line {l} missing: {lines:?}");
    }
    assert_eq!(
        f.fields.get("exception").map(String::as_str),
        Some("System.ComponentModel.Win32Exception")
    );
}

#[test]
fn a_long_entry_is_cut_at_64_lines_and_says_how_many_are_left_out() {
    let mut entry =
        format!("{T} [1] [ERROR] The following error was generated when \"$error.Clear();\n");
    for i in 0..100 {
        entry.push_str(&format!("          Write-ContosoStep -Step {i}\n"));
    }
    entry.push_str("        \" was run: \"System.InvalidOperationException: Step 100 failed\".\n");
    let out = scan("ExchangeSetup.log", exchange_run(&entry).as_bytes());
    let f = primary(&out, 0);
    assert_eq!(f.rule_id, "exchange.setup.failed");
    // Two lines of context, 64 lines of the entry (8..=71), the mark, the error reference
    // (line 110) and `Setup is stopping now` (111).
    assert_eq!(f.evidence.len(), 69, "{:#?}", f.evidence);
    assert_eq!(f.evidence[65].line, 71);
    assert_eq!(f.evidence[66].text, "… (38 more lines)");
    assert_eq!(f.evidence[66].line, 72);
    assert_eq!(f.evidence[67].line, 110);
    assert_eq!(f.evidence[68].line, 111);
    assert!(f.evidence.iter().all(|e| !e.text.contains("Step 99")));
    // The fields come from the lines kept: the task is the first statement.
    assert_eq!(f.fields["task"], "Write-ContosoStep -Step 0");
}

#[test]
fn a_wide_entry_is_cut_at_16_kib() {
    let wide = "x".repeat(3000);
    let mut entry = format!("{T} [1] [ERROR] Contoso failed:\n");
    for _ in 0..10 {
        entry.push_str(&format!("{wide}\n"));
    }
    let out = scan("ExchangeSetup.log", exchange_run(&entry).as_bytes());
    let f = primary(&out, 0);
    let bytes: usize = f.evidence.iter().map(|e| e.text.len()).sum();
    assert!(bytes <= 16 << 10, "{bytes}");
    let mark = f
        .evidence
        .iter()
        .find(|e| e.text.starts_with('…'))
        .expect("a cut mark");
    assert_eq!(mark.text, "… (5 more lines)");
}

const CA_LOG: &str = "\
=== Verbose logging started: 5/4/2023  10:15:00  Build type: SHIP UNICODE 5.00.10011.00  Calling process: C:\\Windows\\system32\\msiexec.exe ===\r
MSI (s) (B4:20) [10:15:01:000]: Doing action: InstallFiles\r
Action start 10:15:01: InstallFiles.\r
Action ended 10:15:02: InstallFiles. Return value 1.\r
MSI (s) (B4:20) [10:15:02:000]: Doing action: CA_CONTOSO_CONFIGURE\r
Action start 10:15:02: CA_CONTOSO_CONFIGURE.\r
MSI (s) (B4:48) [10:15:02:100]: Invoking remote custom action. DLL: C:\\Windows\\Installer\\MSI2978.tmp, Entrypoint: CAQuietExec\r
CAQuietExec:  File C:\\Program Files\\Contoso\\configure.ps1 cannot be loaded because running scripts is disabled on this system.\r
CAQuietExec:      + CategoryInfo          : SecurityError: (:) [], PSSecurityException\r
CAQuietExec:      + FullyQualifiedErrorId : UnauthorizedAccess\r
CAQuietExec:  Cannot create a file when that file already exists.\r
CAQuietExec:  Error 0x80070001: Command line returned an error.\r
CAQuietExec:  Error 0x80070001: CAQuietExec Failed\r
CustomAction CA_CONTOSO_CONFIGURE returned actual error code 1603 (note this may not be 100% accurate if translation happened inside sandbox)\r
Action ended 10:15:03: CA_CONTOSO_CONFIGURE. Return value 3.\r
Action ended 10:15:03: INSTALL. Return value 3.\r
MSI (s) (B4:20) [10:15:04:000]: Product: Contoso Agent -- Installation failed.\r
MSI (s) (B4:20) [10:15:04:000]: Windows Installer installed the product. Product Name: Contoso Agent. Product Version: 2.1.0. Product Language: 1033. Manufacturer: Contoso. Installation success or error status: 1603.\r
MSI (s) (B4:20) [10:15:04:100]: MainEngineThread is returning 1603\r
=== Verbose logging stopped: 5/4/2023  10:15:04 ===\r
";

#[test]
fn a_failed_custom_action_carries_its_output_block() {
    let out = scan("MSI1234.LOG", &utf16le_bom(CA_LOG));
    assert_eq!(out.runs[0].outcome, Outcome::Failed);
    let f = out
        .findings
        .iter()
        .find(|f| f.rule_id == "msi.custom-action-failed")
        .expect("custom action finding");
    assert_eq!(f.line, 14);
    let lines: Vec<u64> = f.evidence.iter().map(|e| e.line).collect();
    // From the first line naming the action (`Doing action:`) to its result; the rule's one
    // line after it stays.
    assert_eq!(lines, (5..=15).collect::<Vec<u64>>(), "{:#?}", f.evidence);
    let text: String = f.evidence.iter().map(|e| e.text.as_str()).collect();
    for needle in [
        "PSSecurityException",
        "Error 0x80070001",
        "file already exists",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
    assert_eq!(
        f.fields.get("exception").map(String::as_str),
        Some("PSSecurityException")
    );
    assert!(f.fields["action_error"].contains("0x80070001"));
}

/// Feeds `bytes` in pieces of `step`, then resumes a second scanner from the first one's
/// resume point after `cut` bytes: both must give the whole scan's findings.
fn same_whatever_the_reads(path: &str, bytes: &[u8]) {
    let whole = scan(path, bytes);
    let essence = |o: &ScanOutput| {
        let mut v: Vec<String> = o
            .findings
            .iter()
            .map(|f| {
                format!(
                    "{} {} {:?} {:?} {}",
                    f.id, f.title, f.evidence, f.fields, f.line
                )
            })
            .collect();
        v.sort();
        v
    };
    for step in [1, 7, 64, 1000] {
        let mut s = FileScanner::new(catalog(), ScanContext::new("EX01", path));
        for piece in bytes.chunks(step) {
            s.feed(piece);
        }
        s.finish();
        assert_eq!(essence(&collect(s)), essence(&whole), "pieces of {step}");
    }
    for cut in [bytes.len() / 4, bytes.len() / 2, bytes.len() * 3 / 4] {
        let cut = cut & !1;
        let mut first = FileScanner::new(catalog(), ScanContext::new("EX01", path));
        first.feed(&bytes[..cut]);
        let point = first.resume_point();
        let mut seen = collect(first).findings;
        let mut second = FileScanner::resume(
            Arc::clone(&catalog()),
            ScanContext::new("EX01", path),
            &point,
        );
        second.feed(&bytes[point.offset as usize..]);
        second.finish();
        seen.extend(collect(second).findings);
        let mut got: Vec<String> = seen
            .iter()
            .map(|f| format!("{} {:?} {:?}", f.id, f.evidence, f.fields))
            .collect();
        got.sort();
        got.dedup();
        let mut want: Vec<String> = whole
            .findings
            .iter()
            .map(|f| format!("{} {:?} {:?}", f.id, f.evidence, f.fields))
            .collect();
        want.sort();
        assert_eq!(got, want, "resumed after {cut} bytes");
    }
}

#[test]
fn blocks_do_not_depend_on_how_the_file_is_read() {
    same_whatever_the_reads(
        "ExchangeSetup.log",
        exchange_run(&where_exe_entry()).as_bytes(),
    );
    let mut long =
        format!("{T} [1] [ERROR] The following error was generated when \"$error.Clear();\n");
    for i in 0..100 {
        long.push_str(&format!("          Write-ContosoStep -Step {i}\n"));
    }
    same_whatever_the_reads("ExchangeSetup.log", exchange_run(&long).as_bytes());
    same_whatever_the_reads("MSI1234.LOG", &utf16le_bom(CA_LOG));
}

#[test]
fn setup_console_output_is_a_run_with_its_readiness_errors() {
    let console = "Performing Microsoft Exchange Server Prerequisite Check\n\
\n\
    Prerequisite Analysis                                                                             FAILED\n\
\n\
Error:\n\
The Active Directory schema isn't up-to-date, and this user account isn't a member of the 'Schema Admins' and/or 'Enterprise Admins' groups.\n\
For more information, visit: http://technet.microsoft.com/library(EXCHG.150)/ms.exch.setupreadiness.SchemaUpdateRequired.aspx\n\
\n\
The Exchange Server setup operation didn't complete. More details can be found in ExchangeSetup.log located in the <SystemDrive>:\\ExchangeSetupLogs folder.\n";
    let out = scan("setup-output.txt", console.as_bytes());
    assert_eq!(out.runs.len(), 1, "{:#?}", out.runs);
    assert_eq!(out.runs[0].log_kind, LogKind::ExchangeSetup);
    assert_eq!(out.runs[0].outcome, Outcome::Failed);
    let f = primary(&out, 0);
    assert_eq!(f.rule_id, "exchange.readiness.console-check-failed");
    assert_eq!(f.fields["check"], "SchemaUpdateRequired");
    assert!(
        f.evidence.iter().any(|e| e.text.contains("Schema Admins")),
        "{:#?}",
        f.evidence
    );
}
