//! Each rule of the built-in catalog has a positive and a negative test: its `examples` in the
//! rule file. Derived rules are raised by log models and are covered by `corpus.rs` and the
//! model tests below.

use std::sync::Arc;

use crate::common::{catalog, scan};
use patchwatch_pipeline::{scan_bytes, CatalogBuilder, LogKind, Rule, ScanContext};

fn fires(rule: &Rule, text: &str) -> bool {
    let mut ctx = ScanContext::new("EX01", "example.log");
    ctx.kind = Some(rule.example_kind);
    scan_bytes(catalog(), ctx, text.as_bytes())
        .findings
        .iter()
        .any(|f| f.rule_id == rule.id)
}

#[test]
fn every_anchored_rule_has_examples_that_hold() {
    let mut failures = Vec::new();
    for rule in catalog().rules().iter().filter(|r| !r.derived) {
        if rule.examples_match.is_empty() || rule.examples_no_match.is_empty() {
            failures.push(format!(
                "{}: needs at least one `match` and one `no_match` example",
                rule.id
            ));
        }
        for m in &rule.examples_match {
            if !fires(rule, m) {
                failures.push(format!("{}: does not match its example:\n  {m}", rule.id));
            }
        }
        for m in &rule.examples_no_match {
            if fires(rule, m) {
                failures.push(format!("{}: matches its negative example:\n  {m}", rule.id));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn catalog_covers_the_known_issue_list() {
    let c = catalog();
    // known-issues.md A, B (setup-log ones and explain-only ones), C, D: one representative each.
    for id in [
        "exchange.su.servicecontrol-execution-policy",
        "explain.owa-ecp-http500-assembly",
        "exchange.setup.admin-name-ends-with-dollar",
        "explain.owa-ecp-http400-dollar-user",
        "explain.ecp-missing-images",
        "explain.blank-eac-owa-ssl-binding",
        "explain.owa-login-loop-oauth-expired",
        "explain.shared-web-config-missing",
        "exchange.setup.same-build",
        "msi.patch-target-not-found",
        "exchange.services.stop-failed",
        "servicecontrol.services-disabled",
        "exchange.readiness.ad-validation-failed",
        "exchange.setup.ngen-crl-wait",
        "exchange.error.cannot-start-service-host",
        "msi.su-blocked-by-interim-update",
        "exchange.msi.package-open-failed-1619",
        "exchange.readiness.restart-pending-message",
        "explain.mailflow-stopped",
        "exchange.ad.other-well-known-objects",
        "exchange.msi.insufficient-privileges",
        "explain.unsupported-cu-dotnet",
        "exchange.setup.customizations-overwritten",
        "explain.cas-cas-proxy-order",
        "explain.dbcs-system-locale",
        "exchange.schema.ldifde-import-failed",
        "exchange.setup.failed",
        "msi.another-install-in-progress",
        "msi.reboot-required",
        "msi.caquietexec-error",
    ] {
        assert!(c.get(id).is_some(), "missing rule {id}");
    }
}

#[test]
fn issue_a_needs_a_real_custom_action_failure() {
    let log = "MSI (s) (B4:20) [06:21:10:001]: Doing action: CA_START_REMOVEDATA_SERVICES\r\n\
MSI (s) (B4:20) [06:21:10:002]: PROPERTY CHANGE: Deleting QtExecCmdLine property. Its current value is '\"D:\\Program Files\\Microsoft\\Exchange Server\\V14\\\\bin\\QuietExe.exe\" \"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe\" -command \". 'D:\\Program Files\\Microsoft\\Exchange Server\\V14\\bin\\servicecontrol.ps1' AfterPatch\"'.\r\n\
CAQuietExec:  Error 0x80070001: Command line returned an error.\r\n\
CAQuietExec:  Error 0x80070001: CAQuietExec Failed\r\n\
CustomAction CA_START_REMOVEDATA_SERVICES returned actual error code 1603 (note this may not be 100% accurate if translation happened inside sandbox)\r\n\
Action ended 6:21:13: CA_START_REMOVEDATA_SERVICES. Return value 3.\r\n\
MSI (s) (B4:20) [06:21:13:440]: MainEngineThread is returning 1603\r\n";
    let out = scan("ru.log", log.as_bytes());
    let primary = out.runs[0].primary_finding_id.clone().expect("primary");
    let f = out.findings.iter().find(|f| f.id == primary).unwrap();
    assert_eq!(f.rule_id, "exchange.su.servicecontrol-execution-policy");
    assert!(f
        .remediation
        .steps
        .iter()
        .any(|s| s.contains("Get-ExecutionPolicy -List")));
}

#[test]
fn an_invalid_target_folder_is_the_cause_not_the_costfinalize_it_stops() {
    let log = "=== Verbose logging started: 3/1/2024  10:00:00  Build type: SHIP UNICODE 5.00.10011.00  Calling process: C:\\Windows\\system32\\msiexec.exe ===\r\n\
MSI (s) (A0:B0) [10:00:01:100]: PROPERTY CHANGE: Adding INSTALLFOLDER property. Its value is 'Q:\\Tools\\Example\\'.\r\n\
Action start 10:00:01: CostFinalize.\r\n\
MSI (s) (A0:B0) [10:00:01:200]: Note: 1: 1324 2: My Documents 3: 1 \r\n\
MSI (s) (A0:B0) [10:00:01:201]: Product: Example Tool -- Error 1324. The folder path 'My Documents' contains an invalid character.\r\n\
Action ended 10:00:01: CostFinalize. Return value 3.\r\n\
Action ended 10:00:01: INSTALL. Return value 3.\r\n\
MSI (s) (A0:B0) [10:00:01:300]: Product: Example Tool -- Installation failed.\r\n\
MSI (s) (A0:B0) [10:00:01:301]: MainEngineThread is returning 1603\r\n";
    let out = scan("install.log", log.as_bytes());
    let primary = out.runs[0].primary_finding_id.clone().expect("primary");
    let f = out.findings.iter().find(|f| f.id == primary).unwrap();
    assert_eq!(f.rule_id, "msi.error-1324");
    assert!(
        f.remediation.summary.contains("'My Documents'"),
        "{}",
        f.remediation.summary
    );
    assert_eq!(
        out.findings
            .iter()
            .filter(|f| f.rule_id == "msi.error-1324")
            .count(),
        1,
        "the Note line and the Product line are one failure"
    );
}

#[test]
fn a_missing_drive_is_the_cause_not_the_costfinalize_it_stops() {
    let log = "Action start 11:00:01: CostFinalize.\r\n\
MSI (c) (C4:D8) [11:00:01:200]: Note: 1: 1327 2: R:\\ \r\n\
Error 1327. Invalid Drive: R:\\ \r\n\
MSI (c) (C4:D8) [11:00:02:300]: Product: Example Tool -- Error 1327. Invalid Drive: R:\\ \r\n\
Action ended 11:00:02: CostFinalize. Return value 3.\r\n\
Action ended 11:00:02: INSTALL. Return value 3.\r\n\
MSI (c) (C4:D8) [11:00:02:400]: MainEngineThread is returning 1603\r\n";
    let out = scan("install.log", log.as_bytes());
    let primary = out.runs[0].primary_finding_id.clone().expect("primary");
    let f = out.findings.iter().find(|f| f.id == primary).unwrap();
    assert_eq!(f.rule_id, "msi.error-1327");
    assert!(
        f.remediation.summary.contains("drive R:\\"),
        "{}",
        f.remediation.summary
    );
}

#[test]
fn derived_readiness_rule_from_evaluated_values() {
    let log = "[03/06/2021 15:15:01.0001] [0] Starting Microsoft Exchange Server 2019 Setup\n\
[03/06/2021 15:15:01.0002] [0] Logged on user: SOLO\\Han.\n\
[03/06/2021 15:15:18.0052] [1] Evaluated [Rule:RebootPending] [HasException:False] [Value:\"True\"] [ParentValue:\"<NULL>\"] [Thread:65] [Duration:00:00:00.0080064]\n\
[03/06/2021 15:15:19.0001] [0] The Exchange Server setup operation didn't complete.  More details can be found in ExchangeSetup.log located in the <SystemDrive>:\\ExchangeSetupLogs folder.\n";
    let out = scan("ExchangeSetup.log", log.as_bytes());
    let ids: Vec<_> = out.findings.iter().map(|f| f.rule_id.as_str()).collect();
    assert!(
        ids.contains(&"exchange.readiness.reboot-pending"),
        "{ids:?}"
    );
    // A later False overrides an earlier True, as SetupLogReviewer reads the last value.
    let overridden = log.replace(
        "[03/06/2021 15:15:19.0001]",
        "[03/06/2021 15:15:18.0060] [1] Evaluated [Rule:RebootPending] [HasException:False] [Value:\"False\"] [ParentValue:\"<NULL>\"]\n[03/06/2021 15:15:19.0001]",
    );
    let out = scan("ExchangeSetup.log", overridden.as_bytes());
    assert!(out
        .findings
        .iter()
        .all(|f| f.rule_id != "exchange.readiness.reboot-pending"));
    // No other cause: the fallback is not used because this run has no [ERROR] line.
    assert!(out
        .findings
        .iter()
        .all(|f| f.rule_id != "exchange.setup.failed"));
}

#[test]
fn fallback_shows_the_first_error_only_when_nothing_else_matched() {
    let log = "[03/06/2021 15:15:01.0001] [0] Starting Microsoft Exchange Server 2019 Setup\n\
[03/06/2021 15:15:02.0001] [1] [ERROR] Something nobody has seen before.\n\
[03/06/2021 15:15:03.0001] [1] [ERROR-REFERENCE] Id=UnknownComponent___0123 Component=x\n\
[03/06/2021 15:15:04.0001] [0] The Exchange Server setup operation didn't complete.\n";
    let out = scan("ExchangeSetup.log", log.as_bytes());
    let f = out
        .findings
        .iter()
        .find(|f| f.rule_id == "exchange.setup.failed")
        .expect("fallback");
    assert_eq!(
        out.runs[0].primary_finding_id.as_deref(),
        Some(f.id.as_str())
    );
    assert!(f
        .evidence
        .iter()
        .any(|e| e.text.contains("Something nobody has seen before")));
}

#[test]
fn user_rule_file_adds_rules_and_bad_files_name_the_field() {
    let mut b = CatalogBuilder::new().with_builtin();
    b.add_str(
        "site.toml",
        r#"[[rule]]
id = "site.custom"
title = "Our own check"
severity = "low"
kinds = ["exchange_setup"]
anchors = ["CONTOSO-MAGIC"]
regex = 'CONTOSO-MAGIC (?P<code>\d+)'
remediation = { summary = "Call the Contoso desk with code {code}." }
"#,
    );
    let c = Arc::new(b.build().expect("valid"));
    let mut ctx = ScanContext::new("h", "ExchangeSetup.log");
    ctx.kind = Some(LogKind::ExchangeSetup);
    let out = scan_bytes(c, ctx, b"[03/06/2021 15:15:02.0001] [1] contoso-magic 42\n");
    let f = out
        .findings
        .iter()
        .find(|f| f.rule_id == "site.custom")
        .expect("custom rule fires");
    assert_eq!(f.remediation.summary, "Call the Contoso desk with code 42.");

    let mut b = CatalogBuilder::new().with_builtin();
    b.add_str("bad.toml", "[[rule]]\nid = \"msi.custom-action-failed\"\ntitle = \"t\"\nseverity = \"low\"\nanchors = [\"abcd\"]\nremediation = { summary = \"s\" }\n");
    let e = b.build().unwrap_err().to_string();
    assert!(
        e.contains("bad.toml") && e.contains("msi.custom-action-failed") && e.contains("duplicate"),
        "{e}"
    );
}

/// A failed Exchange run whose Evaluated lines are `evaluated` (name, value).
fn readiness_run(evaluated: &[(&str, &str)], extra: &str) -> String {
    let mut log = String::from(
        "[03/06/2021 15:15:01.0001] [0] Starting Microsoft Exchange Server 2019 Setup\n\
[03/06/2021 15:15:01.0002] [0] Logged on user: SOLO\\Han.\n",
    );
    for (name, value) in evaluated {
        log.push_str(&format!(
            "[03/06/2021 15:15:18.0052] [1] Evaluated [{name}] [HasException:False] [Value:\"{value}\"] [ParentValue:\"<NULL>\"] [Thread:9] [Duration:00:00:00]\n"
        ));
    }
    log.push_str(extra);
    log.push_str(
        "[03/06/2021 15:16:00.0001] [0] The Exchange Server setup operation didn't complete.\n",
    );
    log
}

fn rule_ids(log: &str) -> Vec<String> {
    scan("ExchangeSetup.log", log.as_bytes())
        .findings
        .into_iter()
        .map(|f| f.rule_id)
        .collect()
}

/// Each derived readiness rule: fires on its values, and not when a value is the other one.
#[test]
fn every_derived_readiness_rule_has_a_positive_and_a_negative_case() {
    let schema_true = "[03/06/2021 15:15:10.0001] [0] Schema Update Required Status : 'True'.\n";
    let org_true = "[03/06/2021 15:15:10.0001] [0] Organization Configuration Update Required Status : 'True'.\n";
    let domain_true =
        "[03/06/2021 15:15:10.0001] [0] Domain Configuration Update Required Status : 'True'.\n";
    #[allow(clippy::type_complexity)]
    let cases: &[(&str, &[(&str, &str)], &[(&str, &str)], &str)] = &[
        (
            "exchange.readiness.pending-reboot-windows-components",
            &[("Rule:PendingRebootWindowsComponents", "True")],
            &[("Rule:PendingRebootWindowsComponents", "False")],
            "",
        ),
        (
            "exchange.readiness.reboot-pending",
            &[("Rule:RebootPending", "True")],
            &[("Rule:RebootPending", "False")],
            "",
        ),
        (
            "exchange.readiness.close-powershell-sessions",
            &[("Rule:ProcessNeedsToBeClosedOnUpgrade", "True")],
            &[("Rule:ProcessNeedsToBeClosedOnUpgrade", "False")],
            "",
        ),
        (
            "exchange.readiness.dc-out-of-site",
            &[("Rule:DomainControllerIsOutOfSite", "True")],
            &[("Rule:DomainControllerIsOutOfSite", "False")],
            "",
        ),
        (
            "exchange.readiness.remote-registry",
            &[("Rule:RemoteRegException", "True")],
            &[("Rule:RemoteRegException", "False")],
            "",
        ),
        (
            "exchange.readiness.msdtc-stopped",
            &[("Rule:MSDTCStopped", "True")],
            &[("Rule:MSDTCStopped", "False")],
            "",
        ),
        (
            "exchange.readiness.iis-url-rewrite-missing",
            &[("Rule:IISURLRewriteNotInstalled", "True")],
            &[("Rule:IISURLRewriteNotInstalled", "False")],
            "",
        ),
        (
            "exchange.readiness.domain-not-prepared",
            &[
                ("Setting:LocalDomainIsPrepped", "False"),
                ("Rule:DomainPrepRequired", "True"),
            ],
            &[
                ("Setting:LocalDomainIsPrepped", "True"),
                ("Rule:DomainPrepRequired", "True"),
            ],
            "",
        ),
        (
            "exchange.readiness.install-watermark",
            &[
                ("Rule:InstallWatermark", "True"),
                ("Rule:InstallWatermark", "False"),
            ],
            &[("Rule:InstallWatermark", "False")],
            "",
        ),
        (
            "exchange.prereq.schema-admins-required",
            &[("Setting:SchemaAdmin", "False")],
            &[("Setting:SchemaAdmin", "True")],
            schema_true,
        ),
        (
            "exchange.prereq.schema-enterprise-admins-required",
            &[("Setting:EnterpriseAdmin", "False")],
            &[("Setting:EnterpriseAdmin", "True")],
            schema_true,
        ),
        (
            "exchange.prereq.prepare-ad-enterprise-admins-required",
            &[("Setting:EnterpriseAdmin", "False")],
            &[("Setting:EnterpriseAdmin", "True")],
            org_true,
        ),
        (
            "exchange.prereq.prepare-domain-enterprise-admins-required",
            &[("Setting:EnterpriseAdmin", "False")],
            &[("Setting:EnterpriseAdmin", "True")],
            domain_true,
        ),
        (
            "exchange.prereq.not-organization-management",
            &[
                ("Setting:ExOrgAdmin", "False"),
                ("Setting:SidExOrgAdmins", "S-1-5-21-1-2-3-1107"),
                ("Rule:DelegatedMailboxFirstInstall", "True"),
            ],
            &[
                ("Setting:ExOrgAdmin", "False"),
                ("Setting:SidExOrgAdmins", "S-1-5-21-1-2-3-1107"),
                ("Rule:DelegatedMailboxFirstInstall", "False"),
            ],
            "",
        ),
        (
            "exchange.prereq.organization-not-prepared",
            &[("Setting:ExOrgAdmin", "False")],
            &[("Setting:ExOrgAdmin", "True")],
            "",
        ),
    ];
    for (id, yes, no, extra) in cases {
        assert!(
            catalog().get(id).is_some_and(|r| r.derived),
            "{id} is a derived rule"
        );
        let ids = rule_ids(&readiness_run(yes, extra));
        assert!(ids.iter().any(|i| i == id), "{id} should fire: {ids:?}");
        let ids = rule_ids(&readiness_run(no, extra));
        assert!(
            !ids.iter().any(|i| i == id),
            "{id} should not fire: {ids:?}"
        );
    }
    // Phase A hides phase B, as in SetupLogReviewer.
    let ids = rule_ids(&readiness_run(
        &[
            ("Rule:RebootPending", "True"),
            ("Setting:SchemaAdmin", "False"),
        ],
        schema_true,
    ));
    assert!(
        !ids.iter()
            .any(|i| i == "exchange.prereq.schema-admins-required"),
        "{ids:?}"
    );
}

#[test]
fn msi_reboot_required_and_install_failed_are_derived_from_the_outcome() {
    let session = |code: u32| {
        format!(
            "=== Verbose logging started: 11/21/2026  9:00:00  Build type: SHIP UNICODE 5.00.10011.00  Calling process: C:\\Windows\\system32\\msiexec.exe ===\r\n\
MSI (s) (B4:20) [09:00:01:000]: Windows Installer installed the product. Product Name: Contoso. Product Version: 1.2.3. Product Language: 1033. Manufacturer: Contoso. Installation success or error status: {code}.\r\n\
MSI (s) (B4:20) [09:00:01:001]: MainEngineThread is returning {code}\r\n\
=== Verbose logging stopped: 11/21/2026  9:00:01 ===\r\n"
        )
    };
    let ids = |code| rule_ids(&session(code));
    assert!(ids(3010).contains(&"msi.reboot-required".to_string()));
    assert!(!ids(3010).contains(&"msi.install-failed".to_string()));
    assert!(ids(1603).contains(&"msi.install-failed".to_string()));
    assert!(!ids(0)
        .iter()
        .any(|i| i == "msi.install-failed" || i == "msi.reboot-required"));
}
