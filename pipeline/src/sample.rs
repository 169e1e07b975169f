//! Realistic generated logs, for the demo, tests and benchmarks (the real MSI samples may not be
//! committed). The line shapes are those of `msi-log.md` §1 and of ServiceControl.ps1; the text
//! is generated, not copied. Pure functions: no IO.

pub mod exchange;

/// How a generated Windows Installer session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsiScenario {
    /// Installs and returns 0.
    Success,
    /// Installs and returns 3010 (restart required).
    RebootRequired,
    /// An Exchange update's `CAQuietExec` custom action runs ServiceControl.ps1, which fails
    /// (`known-issues.md` A): 1603.
    ServiceControlExecutionPolicy,
    /// A custom action's failure is ignored (continue marking): returns 0.
    IgnoredCustomAction,
    /// `Error 1310` writing a file: 1603.
    FileInUse,
}

/// Parameters of a generated MSI log.
#[derive(Debug, Clone)]
pub struct MsiLog<'a> {
    /// Product name, e.g. `Microsoft Exchange Server`.
    pub product: &'a str,
    /// Product version, e.g. `15.2.1544.4`.
    pub version: &'a str,
    /// Scenario.
    pub scenario: MsiScenario,
    /// Date in the header, `dd.mm.yyyy` or `m/d/yyyy`.
    pub date: &'a str,
    /// Start time, seconds after midnight.
    pub start_seconds: u32,
    /// Repeat the file-costing part this many times to make the log longer.
    pub filler_blocks: usize,
}

const STANDARD_ACTIONS: &[&str] = &[
    "FindRelatedProducts",
    "AppSearch",
    "LaunchConditions",
    "ValidateProductID",
    "CostInitialize",
    "FileCost",
    "CostFinalize",
    "MigrateFeatureStates",
    "InstallValidate",
    "InstallInitialize",
    "ProcessComponents",
    "UnpublishFeatures",
    "StopServices",
    "RemoveRegistryValues",
    "RemoveFiles",
    "InstallFiles",
    "WriteRegistryValues",
    "InstallServices",
    "StartServices",
    "RegisterProduct",
    "PublishFeatures",
    "PublishProduct",
];

struct Clock {
    s: u32,
    ms: u32,
}

impl Clock {
    fn tick(&mut self, ms: u32) {
        self.ms += ms;
        self.s += self.ms / 1000;
        self.ms %= 1000;
    }
    fn engine(&self) -> String {
        format!(
            "{:02}:{:02}:{:02}:{:03}",
            self.s / 3600 % 24,
            self.s / 60 % 60,
            self.s % 60,
            self.ms
        )
    }
    fn action(&self) -> String {
        format!(
            "{}:{:02}:{:02}",
            self.s / 3600 % 24,
            self.s / 60 % 60,
            self.s % 60
        )
    }
}

/// A verbose Windows Installer log (`/l*vx`) as text with CRLF line ends; encode it as
/// UTF-16LE with a BOM to get what msiexec writes.
pub fn msi_verbose_log(p: &MsiLog) -> String {
    let mut out = String::new();
    let mut c = Clock {
        s: p.start_seconds,
        ms: 17,
    };
    let mut l = |line: String| {
        out.push_str(&line);
        out.push_str("\r\n");
    };
    let s = |c: &Clock, t: &str| format!("MSI (s) (B4:20) [{}]: {t}", c.engine());
    let cl = |c: &Clock, t: &str| format!("MSI (c) (68:04) [{}]: {t}", c.engine());
    l(format!(
        "=== Verbose logging started: {}  {}  Build type: SHIP UNICODE 5.00.10011.00  Calling process: C:\\Windows\\system32\\msiexec.exe ===",
        p.date,
        c.action()
    ));
    l(cl(&c, "Resetting cached policy values"));
    l(cl(&c, "Machine policy value 'Debug' is 0"));
    l(cl(&c, "******* RunEngine:"));
    l("           ******* Product: C:\\Updates\\update.msp".into());
    l("           ******* Action: ".into());
    l("           ******* CommandLine: **********".into());
    c.tick(40);
    l(cl(
        &c,
        "Client-side and UI is none or basic: Running entire install on the server.",
    ));
    l(cl(&c, "Grabbed execution mutex."));
    l(s(
        &c,
        "Running installation inside multi-package transaction C:\\Updates\\update.msp",
    ));
    l(format!(
        "=== Logging started: {}  {} ===",
        p.date,
        c.action()
    ));
    l(s(
        &c,
        "Note: 1: 2203 2: C:\\Windows\\Installer\\inprogressinstallinfo.ipi 3: -2147287038 ",
    ));
    l(s(&c, "Note: 1: 2262 2: DigitalSignature 3: -2147287038 "));
    l(format!("Action {}: INSTALL. ", c.action()));
    l(format!("Action start {}: INSTALL.", c.action()));
    for block in 0..=p.filler_blocks {
        for (i, a) in STANDARD_ACTIONS.iter().enumerate() {
            c.tick(130 + (i as u32 * 37) % 300);
            l(s(&c, &format!("Doing action: {a}")));
            l(s(&c, "Note: 1: 2205 2:  3: ActionText "));
            l(format!("Action start {}: {a}.", c.action()));
            if *a == "FileCost" || *a == "InstallFiles" {
                for n in 0..12 {
                    c.tick(3);
                    l(s(&c, &format!(
                        "Executing op: FileCopy(SourceName=Microsoft.Exchange.Data{block}_{n}.dll,SourceCabKey=F{n}_{block},DestName=Microsoft.Exchange.Data{block}_{n}.dll,Attributes=512,FileSize=1048576,PerTick=65536,,VerifyMedia=1,,,,,CheckCRC=0,Version=15.2.1544.4,Language=0,InstallMode=58982400,,,,,,,)"
                    )));
                }
            }
            if *a == "RemoveRegistryValues" {
                l(s(&c, "Note: 1: 1402 2: HKEY_LOCAL_MACHINE\\Software\\Microsoft\\Windows\\CurrentVersion\\Installer\\Rollback\\Scripts 3: 2 "));
            }
            let rv = if *a == "FindRelatedProducts" || *a == "MigrateFeatureStates" {
                0
            } else {
                1
            };
            l(format!(
                "Action ended {}: {a}. Return value {rv}.",
                c.action()
            ));
        }
    }
    let fail_code = match p.scenario {
        MsiScenario::ServiceControlExecutionPolicy => {
            c.tick(900);
            l(s(&c, "Doing action: CA_START_REMOVEDATA_SERVICES"));
            l(format!(
                "Action start {}: CA_START_REMOVEDATA_SERVICES.",
                c.action()
            ));
            l(s(&c, "Invoking remote custom action. DLL: C:\\Windows\\Installer\\MSI2978.tmp, Entrypoint: CAQuietExec"));
            l(s(&c, "PROPERTY CHANGE: Deleting QtExecCmdLine property. Its current value is '\"C:\\Program Files\\Microsoft\\Exchange Server\\V15\\\\bin\\QuietExe.exe\" \"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe\" -command \". 'C:\\Program Files\\Microsoft\\Exchange Server\\V15\\bin\\servicecontrol.ps1' AfterPatch\"'."));
            c.tick(2200);
            l("CAQuietExec:  Error 0x80070001: Command line returned an error.".into());
            l("CAQuietExec:  Error 0x80070001: CAQuietExec Failed".into());
            l("CustomAction CA_START_REMOVEDATA_SERVICES returned actual error code 1603 (note this may not be 100% accurate if translation happened inside sandbox)".into());
            l(s(&c, "Note: 1: 2262 2: CustomAction 3: -2147287038 "));
            l(format!(
                "Action ended {}: CA_START_REMOVEDATA_SERVICES. Return value 3.",
                c.action()
            ));
            Some(1603)
        }
        MsiScenario::FileInUse => {
            c.tick(500);
            l(s(&c, &format!("Product: {} -- Error 1310. Error writing to file: C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Bin\\Microsoft.Exchange.Store.Worker.exe.  System error 32.  Verify that you have access to that directory.", p.product)));
            l("Error 1310. Error writing to file: C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Bin\\Microsoft.Exchange.Store.Worker.exe.  System error 32.  Verify that you have access to that directory.".into());
            l(format!(
                "Action ended {}: InstallFinalize. Return value 3.",
                c.action()
            ));
            Some(1603)
        }
        MsiScenario::IgnoredCustomAction => {
            l(format!(
                "Action start {}: CA_CUSTOMER_PREPATCH_INSTALL.",
                c.action()
            ));
            l("CAQuietExec:  Error 0x80070001: Command line returned an error.".into());
            l("CustomAction CA_CUSTOMER_PREPATCH_INSTALL returned actual error code 1603 but will be translated to success due to continue marking".into());
            l(format!(
                "Action ended {}: CA_CUSTOMER_PREPATCH_INSTALL. Return value 1.",
                c.action()
            ));
            None
        }
        MsiScenario::Success | MsiScenario::RebootRequired => None,
    };
    c.tick(700);
    let code = fail_code.unwrap_or(if p.scenario == MsiScenario::RebootRequired {
        3010
    } else {
        0
    });
    if code == 3010 {
        l(s(&c, "Info 1903.Scheduling reboot operation: Deleting file C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Bin\\Microsoft.Exchange.Diagnostics.dll. Must reboot to complete operation."));
    }
    let rv = if fail_code.is_some() { 3 } else { 1 };
    l(format!(
        "Action ended {}: INSTALL. Return value {rv}.",
        c.action()
    ));
    for (k, v) in [
        ("ProductName", p.product),
        ("ProductVersion", p.version),
        ("ProductCode", "{CD981244-E9B8-405A-9026-6AEB9DCEF1F1}"),
    ] {
        l(format!("Property(S): {k} = {v}"));
    }
    l(format!("Property(S): msgInterimIncorrectRollup = Installation cannot continue. The Setup Wizard has determined that this Interim Update is incompatible with the current {} configuration.", p.product));
    l(format!(
        "=== Logging stopped: {}  {} ===",
        p.date,
        c.action()
    ));
    let status = if fail_code.is_some() {
        "Configuration failed."
    } else {
        "Configuration completed successfully."
    };
    l(s(&c, &format!("Product: {} -- {status}", p.product)));
    l(String::new());
    l(s(&c, &format!(
        "Windows Installer reconfigured the product. Product Name: {}. Product Version: {}. Product Language: 1033. Manufacturer: Microsoft Corporation. Reconfiguration success or error status: {code}.",
        p.product, p.version
    )));
    l(String::new());
    l(s(&c, &format!("MainEngineThread is returning {code}")));
    l(cl(&c, &format!("MainEngineThread is returning {code}")));
    l(format!(
        "=== Verbose logging stopped: {}  {} ===",
        p.date,
        c.action()
    ));
    out
}

/// A ServiceControl.log run (`[HH:mm:ss] text`) in which services are stopped and disabled
/// before patching; with `fail`, one service fails to stop and the script ends with errors.
pub fn service_control_log(date: &str, start_seconds: u32, fail: bool) -> String {
    let mut out = String::new();
    let mut t = start_seconds;
    let mut l = |t: u32, text: &str| {
        out.push_str(&format!(
            "[{:02}:{:02}:{:02}] {text}\r\n",
            t / 3600 % 24,
            t / 60 % 60,
            t % 60
        ));
    };
    l(t, "-----------------------------------------------");
    l(
        t,
        &format!(
            "* ServiceControl.ps1: {date} {:02}:{:02}:{:02} BeforePatch",
            t / 3600 % 24,
            t / 60 % 60,
            t % 60
        ),
    );
    for svc in [
        "MSExchangeTransport",
        "MSExchangeIS",
        "MSExchangeServiceHost",
        "MSExchangeRepl",
        "W3SVC",
    ] {
        t += 3;
        l(t, &format!("Stopping service {svc}"));
        if fail && svc == "MSExchangeIS" {
            t += 120;
            l(
                t,
                &format!("[Error] Service '{svc}' failed to stop within the timeout."),
            );
            continue;
        }
        l(t, &format!("Setting service {svc} to Disabled"));
    }
    t += 1;
    l(
        t,
        if fail {
            "Script completed with one or more errors."
        } else {
            "Script completed succesfully."
        },
    );
    out
}

/// Encodes text as Windows Installer writes it: UTF-16LE with a byte order mark.
pub fn utf16le_with_bom(text: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + text.len() * 2);
    v.extend_from_slice(&[0xFF, 0xFE]);
    v.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    v
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{scan_bytes, Catalog, Outcome, ScanContext};

    fn scan(bytes: &[u8]) -> crate::ScanOutput {
        scan_bytes(
            Arc::new(Catalog::builtin()),
            ScanContext::new("EX02", "MSI1a2b.LOG"),
            bytes,
        )
    }

    fn log(scenario: MsiScenario) -> Vec<u8> {
        utf16le_with_bom(&msi_verbose_log(&MsiLog {
            product: "Microsoft Exchange Server",
            version: "15.2.1544.4",
            scenario,
            date: "21.11.2026",
            start_seconds: 3600,
            filler_blocks: 1,
        }))
    }

    #[test]
    fn generated_logs_scan_as_their_scenario_says() {
        let out = scan(&log(MsiScenario::ServiceControlExecutionPolicy));
        assert_eq!(out.runs[0].outcome, Outcome::Failed);
        let primary = out.runs[0].primary_finding_id.clone().unwrap();
        assert_eq!(
            out.findings
                .iter()
                .find(|f| f.id == primary)
                .unwrap()
                .rule_id,
            "exchange.su.servicecontrol-execution-policy"
        );
        let out = scan(&log(MsiScenario::RebootRequired));
        assert_eq!(out.runs[0].outcome, Outcome::Succeeded);
        assert!(out
            .findings
            .iter()
            .any(|f| f.rule_id == "msi.reboot-required"));
        for ok in [MsiScenario::Success, MsiScenario::IgnoredCustomAction] {
            let out = scan(&log(ok));
            assert_eq!(out.runs[0].outcome, Outcome::Succeeded, "{ok:?}");
            assert!(
                out.findings
                    .iter()
                    .all(|f| f.severity < crate::Severity::Medium),
                "{ok:?}: {:?}",
                out.findings
            );
        }
        let out = scan(&log(MsiScenario::FileInUse));
        assert!(out.findings.iter().any(|f| f.rule_id == "msi.error-1310"));
    }

    #[test]
    fn generated_service_control_log_runs() {
        let out = scan_bytes(
            Arc::new(Catalog::builtin()),
            ScanContext::new("EX02", "ServiceControl.log"),
            service_control_log("21/11/2026", 3000, true).as_bytes(),
        );
        assert_eq!(out.runs[0].outcome, Outcome::Failed);
        let ids: Vec<_> = out.findings.iter().map(|f| f.rule_id.as_str()).collect();
        assert!(
            ids.contains(&"servicecontrol.services-disabled")
                && ids.contains(&"servicecontrol.error"),
            "{ids:?}"
        );
    }
}
