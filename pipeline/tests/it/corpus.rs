//! Every sample of the shared corpus gives what `shared/corpus/EXPECTED.md` says: outcome,
//! primary cause, the strings a reviewer must mention, and no false positives.

use crate::common::{corpus_file, fixture, scan};
use patchwatch_pipeline::{Finding, Outcome, ScanOutput, Severity};

struct Expect<'a> {
    run: usize,
    outcome: Outcome,
    primary: &'a str,
    mention: &'a [&'a str],
}

/// Everything a reader sees for a run's findings: evidence, fields, remediation.
fn run_text(out: &ScanOutput, run: usize) -> String {
    let mut s = String::new();
    for f in out.findings.iter().filter(|f| f.run_index as usize == run) {
        push_finding(&mut s, f);
    }
    s
}

fn push_finding(s: &mut String, f: &Finding) {
    for e in &f.evidence {
        s.push_str(&e.text);
        s.push('\n');
    }
    for (k, v) in &f.fields {
        s.push_str(&format!("{k}={v}\n"));
    }
    s.push_str(&f.remediation.summary);
    s.push('\n');
    for x in f.remediation.steps.iter().chain(&f.remediation.links) {
        s.push_str(x);
        s.push('\n');
    }
}

fn check(name: &str, out: &ScanOutput, e: &Expect) {
    let run = out
        .runs
        .iter()
        .find(|r| r.index as usize == e.run)
        .unwrap_or_else(|| panic!("{name}: no run {}", e.run));
    assert_eq!(run.outcome, e.outcome, "{name}: outcome of run {}", e.run);
    let primary_id = run
        .primary_finding_id
        .as_deref()
        .unwrap_or_else(|| panic!("{name}: run {} has no primary cause", e.run));
    let primary = out
        .findings
        .iter()
        .find(|f| f.id == primary_id)
        .expect("primary finding is emitted");
    assert_eq!(
        primary.rule_id, e.primary,
        "{name}: primary cause of run {}",
        e.run
    );
    let text = run_text(out, e.run).to_lowercase();
    for m in e.mention {
        assert!(
            text.contains(&m.to_lowercase()),
            "{name}: run {} does not mention `{m}`:\n{text}",
            e.run
        );
    }
}

fn exchange(name: &str) -> ScanOutput {
    let bytes = std::fs::read(fixture(&format!("exchange/{name}"))).expect("fixture");
    scan(name, &bytes)
}

#[test]
fn exchange_msi_1_installer_cache_1612() {
    check(
        "MSI_1",
        &exchange("ExchangeSetup_MSI_1.log"),
        &Expect {
            run: 0,
            outcome: Outcome::Failed,
            primary: "exchange.msi.install-source-missing-remove",
            mention: &[
                "8466eaed-7024-4aee-9d13-f3a55b98d114",
                "Error code is 1612",
                "15.0.995.29",
            ],
        },
    );
}

#[test]
fn exchange_msi_3_fatal_1603() {
    check(
        "MSI_3",
        &exchange("ExchangeSetup_MSI_3.log"),
        &Expect {
            run: 0,
            outcome: Outcome::Failed,
            primary: "exchange.msi.install-failed-1603",
            mention: &[
                "exchangeserver.msi",
                "Fatal error during installation. Error code is 1603",
                "15.0.1130.7",
            ],
        },
    );
}

#[test]
fn exchange_servicecontrol_reverse() {
    check(
        "ServiceControl_Reverse",
        &exchange("ExchangeSetup_ServiceControl_Reverse.log"),
        &Expect {
            run: 0,
            outcome: Outcome::Failed,
            primary: "exchange.error.servicecontrol-reverse",
            mention: &[
                "MethodInvocationException",
                "Exception calling \"Reverse\" with \"1\" argument",
                "ServiceControl.ps1",
            ],
        },
    );
}

#[test]
fn exchange_service_disabled() {
    check("Service_Disabled", &exchange("ExchangeSetup_Service_Disabled.log"), &Expect {
        run: 0,
        outcome: Outcome::Failed,
        primary: "exchange.error.service-disabled",
        mention: &[
            "System.ComponentModel.Win32Exception: The service cannot be started, either because it is disabled or because it has no enabled devices associated with it",
            "MSExchangeServiceHost",
        ],
    });
}

#[test]
fn exchange_reboot_pending() {
    check(
        "Reboot_Pending",
        &exchange("ExchangeSetup_Reboot_Pending.log"),
        &Expect {
            run: 0,
            outcome: Outcome::Failed,
            primary: "exchange.readiness.pending-reboot-windows-components",
            mention: &["reboot"],
        },
    );
}

#[test]
fn exchange_dc_out_of_site() {
    check(
        "DC_Site_1",
        &exchange("ExchangeSetup_DC_Site_1.log"),
        &Expect {
            run: 0,
            outcome: Outcome::Failed,
            primary: "exchange.readiness.dc-out-of-site",
            mention: &[
                "DC2.Solo.local",
                "SOLO\\Han",
                "ExSvr1.Solo.local",
                "NorthAmerica",
            ],
        },
    );
}

#[test]
fn exchange_vdir_not_found() {
    check(
        "Vdir_1",
        &exchange("ExchangeSetup_Vdir_1.log"),
        &Expect {
            run: 0,
            outcome: Outcome::Failed,
            primary: "exchange.error.vdir-object-not-found",
            mention: &[
                "ExSvr1\\OWA (Exchange Back End)",
                "couldn't be found on 'DC2.Solo.local'",
                "ManagementObjectNotFoundException",
            ],
        },
    );
}

#[test]
fn exchange_install_from_bin() {
    check(
        "InstallFromBin",
        &exchange("ExchangeSetup_InstallFromBin.log"),
        &Expect {
            run: 0,
            outcome: Outcome::Failed,
            primary: "exchange.error.install-from-bin",
            mention: &[
                "ManageScheduledTask.ps1",
                "CommandNotFoundException",
                "D:\\Program Files\\Microsoft\\Exchange Server\\V15\\Bin",
            ],
        },
    );
}

#[test]
fn exchange_prepare_schema_two_runs() {
    let out = exchange("ExchangeSetup_SchemaAdmin_PrepareSchema.log");
    assert_eq!(out.runs.len(), 2);
    check(
        "PrepareSchema run 1",
        &out,
        &Expect {
            run: 0,
            outcome: Outcome::Failed,
            primary: "exchange.setup.invalid-mode",
            mention: &["The mode 'prepareschema' is not a valid mode."],
        },
    );
    check(
        "PrepareSchema run 2",
        &out,
        &Expect {
            run: 1,
            outcome: Outcome::Failed,
            primary: "exchange.prereq.schema-enterprise-admins-required",
            mention: &["SOLO\\Han", "Enterprise Admins", "Solo-DC1.Solo.com"],
        },
    );
}

/// A successful run has no primary cause (SetupLogReviewer's success short-circuit).
#[test]
fn exchange_success_short_circuits() {
    let log = "[03/13/2021 05:01:28.0382] [0] **********************************************\n\
[03/13/2021 05:01:29.0411] [0] Starting Microsoft Exchange Server 2019 Setup\n\
[03/13/2021 05:01:29.0411] [0] Setup version: 15.2.1118.7.\n\
[03/13/2021 05:02:29.0411] [1] [ERROR] Cannot start service MSExchangeServiceHost on computer '.'.\n\
[03/13/2021 06:01:29.0411] [0] The Exchange Server setup operation completed successfully.\n";
    let out = scan("ExchangeSetup.log", log.as_bytes());
    assert_eq!(out.runs[0].outcome, Outcome::Succeeded);
    assert_eq!(out.runs[0].primary_finding_id, None);
    assert_eq!(out.runs[0].duration_seconds, Some(3600));
}

fn msi(name: &str) -> Option<ScanOutput> {
    corpus_file(&format!("msi/{name}")).map(|b| scan(name, &b))
}

fn failure_findings(out: &ScanOutput) -> Vec<&Finding> {
    out.findings
        .iter()
        .filter(|f| f.severity >= Severity::Medium)
        .collect()
}

#[test]
fn msi_planned_failure_blames_the_deferred_custom_action() {
    let Some(out) = msi("wixpills-planned-failure-install-with-error.log") else {
        return;
    };
    check(
        "planned-failure",
        &out,
        &Expect {
            run: 0,
            outcome: Outcome::Failed,
            primary: "msi.custom-action-failed",
            mention: &["WixFailWhenDeferred", "1603", "Planned Failure"],
        },
    );
    let primary = out
        .findings
        .iter()
        .find(|f| Some(&f.id) == out.runs[0].primary_finding_id.as_ref())
        .unwrap();
    assert_eq!(primary.fields["action"], "WixFailWhenDeferred");
    assert!(out
        .findings
        .iter()
        .all(|f| f.fields.get("action").map(String::as_str) != Some("InstallFinalize")));
}

#[test]
fn msi_rollback_custom_action() {
    let Some(out) = msi("wixpills-rollback-ca-install-with-error.log") else {
        return;
    };
    check(
        "rollback-ca",
        &out,
        &Expect {
            run: 0,
            outcome: Outcome::Failed,
            primary: "msi.custom-action-failed",
            mention: &["WixFailWhenDeferred", "1603"],
        },
    );
}

#[test]
fn msi_launch_condition() {
    let Some(out) = msi("wixpills-prevent-downgrade-install-v1-error.log") else {
        return;
    };
    check(
        "prevent-downgrade",
        &out,
        &Expect {
            run: 0,
            outcome: Outcome::Failed,
            primary: "msi.launch-condition",
            mention: &["A newer version", "LaunchConditions", "1603"],
        },
    );
}

#[test]
fn msi_error_1310() {
    let Some(out) = msi("pycapture2-error1310-install.log") else {
        return;
    };
    check(
        "pycapture2",
        &out,
        &Expect {
            run: 0,
            outcome: Outcome::Failed,
            primary: "msi.error-1310",
            mention: &["1310", "C:\\avcodec-57.dll", "1603"],
        },
    );
}

#[test]
fn msi_ignored_custom_action_is_not_a_failure() {
    let Some(out) = msi("notepadpp-nonverbose-ca-ignored.log") else {
        return;
    };
    assert_eq!(out.runs.len(), 1);
    assert_eq!(out.runs[0].outcome, Outcome::Succeeded);
    assert_eq!(out.runs[0].exit_code, Some(0));
    assert!(out.runs[0]
        .product
        .as_deref()
        .unwrap_or("")
        .contains("Notepad++"));
    assert!(
        failure_findings(&out).is_empty(),
        "{:#?}",
        failure_findings(&out)
    );
}

#[test]
fn msi_success_with_benign_notes_has_no_failure() {
    let Some(out) = msi("dell-supportassist-success-verbose.log") else {
        return;
    };
    assert_eq!(out.runs.len(), 1);
    assert_eq!(out.runs[0].outcome, Outcome::Succeeded);
    assert!(out.runs[0]
        .product
        .as_deref()
        .unwrap_or("")
        .contains("Dell SupportAssist"));
    assert!(
        failure_findings(&out).is_empty(),
        "{:#?}",
        failure_findings(&out)
    );
}

#[test]
fn msi_exchange_su_excerpt() {
    let Some(out) = msi("exchange2013-su-kb5000871-msp-tail.excerpt.txt") else {
        return;
    };
    check(
        "exchange-su-excerpt",
        &out,
        &Expect {
            run: 0,
            outcome: Outcome::Failed,
            primary: "msi.install-failed",
            mention: &["Microsoft Exchange Server", "15.0.1497.2", "1603"],
        },
    );
    assert!(out
        .findings
        .iter()
        .all(|f| f.rule_id != "msi.su-blocked-by-interim-update"));
    assert!(out.findings.iter().all(
        |f| f.fields.get("action").map(String::as_str) != Some("CA_CUSTOMER_PREPATCH_INSTALL")
    ));
}

/// The seed: a Japanese Windows Installer log (UTF-16LE) of an Exchange 2010 update rollup whose
/// ServiceControl.ps1, run by CAQuietExec, fails with 0x80070001 because PowerShell's
/// ExecutionPolicy is defined by Group Policy.
#[test]
fn seed_japanese_rollup_caquietexec_execution_policy() {
    let Some(bytes) = corpus_file("seed/seed-ja-rollup1-caquietexec.log") else {
        return;
    };
    let out = scan("seed-ja-rollup1-caquietexec.log", &bytes);
    check(
        "seed",
        &out,
        &Expect {
            run: 0,
            outcome: Outcome::Failed,
            primary: "exchange.su.servicecontrol-execution-policy",
            mention: &[
                "CA_START_REMOVEDATA_SERVICES",
                "0x80070001",
                "ExecutionPolicy",
            ],
        },
    );
}
