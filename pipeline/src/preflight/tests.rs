//! Every check both ways through [`FakeState`], and the findings they become.

use super::*;

const PS: &str = r"SOFTWARE\Policies\Microsoft\Windows\PowerShell";
const SM: &str = r"SYSTEM\CurrentControlSet\Control\Session Manager";
const PRODUCTS: &str =
    r"SOFTWARE\Microsoft\Windows\CurrentVersion\Installer\UserData\S-1-5-18\Products";
const PATCHES: &str =
    r"SOFTWARE\Microsoft\Windows\CurrentVersion\Installer\UserData\S-1-5-18\Patches";
const EXSETUP: &str = r"SOFTWARE\Microsoft\ExchangeServer\v15\Setup";
const INSTALL: &str = r"C:\Program Files\Microsoft\Exchange Server\V15";
const LM: Hive = Hive::LocalMachine;

fn s(v: &str) -> RegValue {
    RegValue::String(v.into())
}

/// An installed product as the installer cache check reads it: its name and cached package
/// under `InstallProperties`.
trait Installed {
    fn installed(self, squid: &str, name: &str, package: &str) -> FakeState;
}

impl Installed for FakeState {
    fn installed(self, squid: &str, name: &str, package: &str) -> FakeState {
        let key = format!(r"{PRODUCTS}\{squid}\InstallProperties");
        self.value(LM, &key, "DisplayName", s(name))
            .value(LM, &key, "LocalPackage", s(package))
    }
}

/// A healthy Exchange server: every check clean.
fn healthy() -> FakeState {
    FakeState::new()
        .value(LM, EXSETUP, "MsiInstallPath", s(&format!(r"{INSTALL}\")))
        .installed("AE1D439464EB1B8488741FFA028E291C", "Microsoft Exchange Server", r"C:\Windows\Installer\2b1c6b.msi")
        .path(r"C:\Windows\Installer\2b1c6b.msi")
        .key(
            LM,
            &format!(r"{PRODUCTS}\AE1D439464EB1B8488741FFA028E291C\Patches\11111111111111111111111111111111"),
        )
        .value(
            LM,
            &format!(r"{PATCHES}\11111111111111111111111111111111"),
            "LocalPackage",
            s(r"C:\Windows\Installer\5d2e.msp"),
        )
        .path(r"C:\Windows\Installer\5d2e.msp")
        .installed("00000000000000000000000000000001", "Some Other Product", r"C:\Windows\Installer\gone.msi")
        .value(
            LM,
            &format!(r"{}\MSExchangeIS", checks::SERVICES),
            "Start",
            RegValue::Dword(2),
        )
        .value(
            LM,
            &format!(r"{}\MSExchangeIMAP4", checks::SERVICES),
            "Start",
            RegValue::Dword(4),
        )
        .value(
            LM,
            &format!(r"{}\Spooler", checks::SERVICES),
            "Start",
            RegValue::Dword(4),
        )
        .value(LM, SM, "PendingFileRenameOperations", RegValue::MultiString(vec![]))
        .value(LM, r"SOFTWARE\Microsoft\Updates", "UpdateExeVolatile", RegValue::Dword(0))
        .value(
            LM,
            r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\{KB5000871}",
            "DisplayName",
            s("Security Update for Exchange Server 2019 CU8 (KB5000871)"),
        )
        .path(&format!(r"{INSTALL}\ClientAccess"))
        .path(&format!(r"{INSTALL}\ClientAccess\SharedWebConfig.config"))
        .path(&format!(r"{INSTALL}\FrontEnd\HttpProxy"))
        .path(&format!(r"{INSTALL}\FrontEnd\HttpProxy\SharedWebConfig.config"))
        .value(
            LM,
            r"SOFTWARE\Microsoft\NET Framework Setup\NDP\v4\Full",
            "Release",
            RegValue::Dword(533_320),
        )
        .free("C:", 200 << 30)
        .key(Hive::Users, r"S-1-5-21-1-500\Software\Policies\Microsoft")
        .account("Administrator")
        // Renewed: the old certificate is still in the store, expired.
        .certificate("My", auth_cert("AAAA", NOW - 30 * DAY))
        .certificate("My", auth_cert("BBBB", NOW + 1_000 * DAY))
        .certificate("My", cert("CN=mail.contoso.com", "CCCC", NOW - DAY))
        .value(LM, CV, "CurrentVersion", s("6.3"))
        .value(LM, CV, "CurrentMajorVersionNumber", RegValue::Dword(10))
        .value(LM, CV, "ProductName", s("Windows Server 2019 Datacenter"))
        .value(LM, NLS, "ACP", s("1252"))
        .value(
            LM,
            &format!(r"{PRODUCTS}\AE1D439464EB1B8488741FFA028E291C\InstallProperties"),
            "InstallDate",
            s("20251110"),
        )
        .value(
            LM,
            &format!(r"{PRODUCTS}\AE1D439464EB1B8488741FFA028E291C\Patches\11111111111111111111111111111111"),
            "Installed",
            s("20251201"),
        )
        // Written by the update's own setup, the day after it was installed.
        .file(&format!(r"{INSTALL}\ClientAccess\Owa\web.config"), DEC_1 + DAY + 3_600)
        .file(&format!(r"{INSTALL}\FrontEnd\HttpProxy\owa\auth\logon.aspx"), DEC_1 - 30 * DAY)
        .now(NOW)
}

const NOW: i64 = FakeState::DEFAULT_NOW;
const DAY: i64 = 86_400;
/// 2025-12-01T00:00:00Z, the day the healthy server's latest patch was installed.
const DEC_1: i64 = NOW - 31 * DAY;
const CV: &str = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion";
const NLS: &str = r"SYSTEM\CurrentControlSet\Control\Nls\CodePage";
/// Where Exchange 2010 records its setup.
const EX2010: &str = r"SOFTWARE\Microsoft\ExchangeServer\v14\Setup";
const AUTH: &str = "CN=Microsoft Exchange Server Auth Certificate";

fn cert(subject: &str, thumbprint: &str, not_after_unix: i64) -> Certificate {
    Certificate {
        subject: subject.into(),
        thumbprint: thumbprint.into(),
        not_after_unix,
    }
}

fn auth_cert(thumbprint: &str, not_after_unix: i64) -> Certificate {
    cert(AUTH, thumbprint, not_after_unix)
}

fn check(id: &str) -> &'static Check {
    CHECKS
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id}"))
}

fn status(state: &FakeState, id: &str) -> Status {
    evaluate(state, CHECKS)
        .into_iter()
        .find(|r| r.check.id == id)
        .expect("every check reports")
        .status
}

fn facts(state: &FakeState, id: &str) -> Vec<String> {
    match status(state, id) {
        Status::Found { facts, .. } => facts,
        other => panic!("{id}: expected Found, got {other:?}"),
    }
}

#[test]
fn a_healthy_server_is_clean_on_every_check() {
    for r in evaluate(&healthy(), CHECKS) {
        assert_eq!(r.status, Status::Clean, "{}", r.check.id);
    }
    let catalog = Catalog::builtin();
    let snap = Snapshot {
        host: "EX01".into(),
        taken_unix_ms: 1,
    };
    let f = findings(&evaluate(&healthy(), CHECKS), &catalog, &snap);
    assert!(f.is_empty());
    let run = run_summary(&f, &snap);
    assert_eq!(run.outcome, Outcome::Succeeded);
    assert_eq!(run.primary_finding_id, None);
}

#[test]
fn every_check_names_a_rule_of_the_catalog() {
    let catalog = Catalog::builtin();
    for c in CHECKS {
        assert!(
            catalog.get(c.rule_id).is_some(),
            "{}: no rule {}",
            c.id,
            c.rule_id
        );
    }
}

#[test]
fn execution_policy_by_machine_or_user_policy() {
    let st = healthy().value(LM, PS, "ExecutionPolicy", s("AllSigned"));
    assert_eq!(
        facts(&st, "execution-policy-gpo"),
        vec![format!(r"HKLM\{PS}\ExecutionPolicy = AllSigned")]
    );
    // The user policy of any loaded profile; a disabled policy (EnableScripts = 0) counts.
    let st = healthy().value(
        Hive::Users,
        &format!(r"S-1-5-21-1-500\{}", PS.replace("SOFTWARE", "Software")),
        "EnableScripts",
        RegValue::Dword(0),
    );
    let f = facts(&st, "execution-policy-gpo");
    assert_eq!(f.len(), 1);
    assert!(
        f[0].starts_with(r"HKU\S-1-5-21-1-500\Software\Policies") && f[0].ends_with("= 0"),
        "{f:?}"
    );
    // An empty value is no policy; the `_Classes` view of a profile is not read twice.
    let st = healthy()
        .value(LM, PS, "ExecutionPolicy", s(""))
        .key(Hive::Users, "S-1-5-21-1-500_Classes");
    assert_eq!(status(&st, "execution-policy-gpo"), Status::Clean);
}

#[test]
fn pending_restart_from_each_of_its_four_sources() {
    let cases = [
        healthy().key(
            LM,
            r"SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending",
        ),
        healthy().key(
            LM,
            r"SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired",
        ),
        healthy().value(
            LM,
            SM,
            "PendingFileRenameOperations",
            RegValue::MultiString(vec![r"\??\C:\Temp\a.dll".into(), String::new()]),
        ),
        healthy().value(
            LM,
            r"SOFTWARE\Microsoft\Updates",
            "UpdateExeVolatile",
            RegValue::Dword(1),
        ),
    ];
    let expect = [
        "RebootPending exists",
        "RebootRequired exists",
        r"PendingFileRenameOperations = \??\C:\Temp\a.dll",
        "UpdateExeVolatile = 1",
    ];
    for (st, want) in cases.iter().zip(expect) {
        let f = facts(st, "pending-restart");
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].ends_with(want), "{f:?} does not end with {want}");
    }
}

#[test]
fn disabled_exchange_services_but_not_the_ones_off_by_default() {
    let st = healthy()
        .value(
            LM,
            &format!(r"{}\MSExchangeTransport", checks::SERVICES),
            "Start",
            RegValue::Dword(4),
        )
        .value(
            LM,
            &format!(r"{}\Winmgmt", checks::SERVICES),
            "Start",
            RegValue::Dword(4),
        );
    let Status::Found { facts, fields } = status(&st, "services-disabled") else {
        panic!("expected Found");
    };
    assert_eq!(
        facts,
        vec![
            "MSExchangeTransport: start type Disabled",
            "Winmgmt: start type Disabled"
        ]
    );
    assert_eq!(fields["services"], "MSExchangeTransport, Winmgmt");
}

#[test]
fn installer_cache_missing_product_or_patch_package() {
    let st = FakeState::new().installed(
        "AE1D439464EB1B8488741FFA028E291C",
        "Microsoft Exchange Server",
        r"C:\Windows\Installer\2b1c6b.msi",
    );
    let Status::Found {
        facts: found,
        fields,
    } = status(&st, "installer-cache")
    else {
        panic!("expected Found");
    };
    assert_eq!(
        found,
        vec![
            r"Microsoft Exchange Server: cached package C:\Windows\Installer\2b1c6b.msi is missing"
        ]
    );
    assert_eq!(fields["cached_package"], r"C:\Windows\Installer\2b1c6b.msi");
    // The patch's package, on a server whose product package is present.
    let st = FakeState::new()
        .path(r"C:\Windows\Installer\2b1c6b.msi")
        .installed(
            "AE1D439464EB1B8488741FFA028E291C",
            "Microsoft Exchange Server",
            r"C:\Windows\Installer\2b1c6b.msi",
        )
        .key(
            LM,
            &format!(r"{PRODUCTS}\AE1D439464EB1B8488741FFA028E291C\Patches\2222"),
        )
        .value(
            LM,
            &format!(r"{PATCHES}\2222"),
            "LocalPackage",
            s(r"C:\Windows\Installer\77.msp"),
        );
    let f = facts(&st, "installer-cache");
    assert_eq!(f.len(), 1);
    assert!(
        f[0].contains("patch 2222") && f[0].contains("77.msp"),
        "{f:?}"
    );
    // The other product's missing package in healthy() is not Exchange's business.
    assert_eq!(status(&healthy(), "installer-cache"), Status::Clean);
}

#[test]
fn interim_update_installed() {
    let st = healthy().value(
        LM,
        r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\{IU}",
        "DisplayName",
        s("Interim Update for Exchange Server 2019 CU12 (KB5012345)"),
    );
    assert_eq!(
        facts(&st, "interim-update"),
        vec!["installed: Interim Update for Exchange Server 2019 CU12 (KB5012345)"]
    );
}

#[test]
fn shared_web_config_missing_only_where_its_folder_is() {
    let mut st = FakeState::new()
        .value(LM, EXSETUP, "MsiInstallPath", s(INSTALL))
        .path(&format!(r"{INSTALL}\ClientAccess"))
        .path(&format!(r"{INSTALL}\FrontEnd\HttpProxy"))
        .path(&format!(
            r"{INSTALL}\FrontEnd\HttpProxy\SharedWebConfig.config"
        ));
    assert_eq!(
        facts(&st, "shared-web-config"),
        vec![format!(
            r"{INSTALL}\ClientAccess\SharedWebConfig.config is missing"
        )]
    );
    // An Edge server: no ClientAccess, nothing to miss.
    st = FakeState::new().value(LM, EXSETUP, "MsiInstallPath", s(INSTALL));
    assert_eq!(status(&st, "shared-web-config"), Status::Clean);
}

#[test]
fn dotnet_older_than_needed_or_absent() {
    let st = healthy().value(
        LM,
        r"SOFTWARE\Microsoft\NET Framework Setup\NDP\v4\Full",
        "Release",
        RegValue::Dword(461_814),
    );
    let f = facts(&st, "dotnet-release");
    assert!(f[0].contains("= 461814") && f[0].contains("4.8"), "{f:?}");
    let st = FakeState::new().value(LM, EXSETUP, "MsiInstallPath", s(INSTALL));
    assert!(facts(&st, "dotnet-release")[0].contains("not installed"));
}

#[test]
fn free_space_on_the_system_and_the_install_drive() {
    let st = healthy().free("C:", 10 << 30);
    assert_eq!(
        facts(&st, "free-space"),
        vec!["C: has 10.0 GiB free; at least 30 GiB needed"]
    );
    let st = healthy()
        .value(LM, EXSETUP, "MsiInstallPath", s(r"E:\Exchange"))
        .free("E:", 1 << 30);
    assert_eq!(
        facts(&st, "free-space"),
        vec!["E: has 1.0 GiB free; at least 30 GiB needed"]
    );
}

#[test]
fn account_name_with_a_dollar() {
    let st = healthy().account("Admin$");
    let Status::Found { fields, .. } = status(&st, "account-name-dollar") else {
        panic!("expected Found");
    };
    assert_eq!(fields["logon_user"], "Admin$");
    // A service account reads as unknown, not as clean or found.
    let st = FakeState::new();
    assert!(matches!(
        status(&st, "account-name-dollar"),
        Status::Skipped(_)
    ));
}

#[test]
fn oauth_certificate_expired_or_expiring_by_the_newest_in_the_store() {
    let expired_only = |st: FakeState| {
        // A server whose only Auth certificate expired two days ago.
        st.now(NOW + 1_002 * DAY)
    };
    let st = expired_only(healthy());
    let f = facts(&st, "oauth-certificate-expired");
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].contains("(BBBB) expired on 2028-09-27, 2 day(s) ago"),
        "{f:?}"
    );
    // Expired is not also reported as expiring.
    assert_eq!(status(&st, "oauth-certificate-expiring"), Status::Clean);
    // 59 days left: expiring (HealthChecker's 60-day warning), not expired.
    let st = healthy().now(NOW + 941 * DAY);
    assert_eq!(status(&st, "oauth-certificate-expired"), Status::Clean);
    let f = facts(&st, "oauth-certificate-expiring");
    assert!(
        f[0].contains("(BBBB) expires on 2028-09-27, in 59 day(s)"),
        "{f:?}"
    );
    // 61 days left: clean.
    let st = healthy().now(NOW + 939 * DAY);
    assert_eq!(status(&st, "oauth-certificate-expiring"), Status::Clean);
    // No Auth certificate at all (another certificate does not count): not known, not clean.
    let st = FakeState::new()
        .value(LM, EXSETUP, "MsiInstallPath", s(INSTALL))
        .certificate("My", cert("CN=mail.contoso.com", "CCCC", NOW - DAY));
    assert!(matches!(
        status(&st, "oauth-certificate-expired"),
        Status::Skipped(_)
    ));
    // The subject compares case-insensitively, like Windows.
    let st = FakeState::new()
        .value(LM, EXSETUP, "MsiInstallPath", s(INSTALL))
        .certificate("My", cert(&AUTH.to_uppercase(), "DDDD", NOW - DAY));
    assert_eq!(facts(&st, "oauth-certificate-expired").len(), 1);
}

#[test]
fn dbcs_code_page_on_windows_server_2012_only() {
    // Exchange 2010 SP3, the version known issue B23 names.
    let server_2012 = |acp: &str| {
        FakeState::new()
            .value(LM, CV, "CurrentVersion", s("6.2"))
            .value(LM, CV, "ProductName", s("Windows Server 2012 Standard"))
            .value(LM, CV, "InstallationType", s("Server"))
            .value(LM, NLS, "ACP", s(acp))
            .value(LM, EX2010, "MsiProductMajor", RegValue::Dword(14))
            .value(LM, EX2010, "MsiProductMinor", RegValue::Dword(3))
    };
    let f = facts(&server_2012("932"), "dbcs-server-2012");
    assert_eq!(
        f,
        vec![
            format!(r"HKLM\{CV}\CurrentVersion = 6.2 (Windows Server 2012 Standard)"),
            format!(r"HKLM\{NLS}\ACP = 932 (a double-byte code page)"),
            format!(
                r"HKLM\{EX2010}\MsiProductMajor = 14, MsiProductMinor = 3 (Exchange Server 2010)"
            ),
        ]
    );
    for acp in ["936", "949", "950"] {
        assert_eq!(
            facts(&server_2012(acp), "dbcs-server-2012").len(),
            3,
            "{acp}"
        );
    }
    // 2012 R2 too.
    let st = server_2012("949").value(LM, CV, "CurrentVersion", s("6.3"));
    assert_eq!(facts(&st, "dbcs-server-2012").len(), 3);
    // The same DBCS Windows Server 2012 with Exchange 2013 or later (v15) instead of 2010,
    // or with no Exchange: the issue is with Exchange 2010's update rollups only.
    let without_2010 = || {
        FakeState::new()
            .value(LM, CV, "CurrentVersion", s("6.2"))
            .value(LM, CV, "InstallationType", s("Server"))
            .value(LM, NLS, "ACP", s("932"))
    };
    let v15 = without_2010()
        .value(LM, EXSETUP, "MsiInstallPath", s(INSTALL))
        .value(LM, EXSETUP, "MsiProductMajor", RegValue::Dword(15));
    assert_eq!(status(&v15, "dbcs-server-2012"), Status::Clean);
    assert_eq!(status(&without_2010(), "dbcs-server-2012"), Status::Clean);
    // A v14 key naming another major version is not Exchange 2010.
    let odd = without_2010().value(LM, EX2010, "MsiProductMajor", RegValue::Dword(8));
    assert_eq!(status(&odd, "dbcs-server-2012"), Status::Clean);
    // A single-byte code page; Windows Server 2016+ (6.3 with a major version of 10);
    // Windows 8 (a client); 2008 R2 (6.1).
    for st in [
        server_2012("1252"),
        server_2012("932")
            .value(LM, CV, "CurrentVersion", s("6.3"))
            .value(LM, CV, "CurrentMajorVersionNumber", RegValue::Dword(10)),
        server_2012("932").value(LM, CV, "InstallationType", s("Client")),
        server_2012("932").value(LM, CV, "CurrentVersion", s("6.1")),
    ] {
        assert_eq!(status(&st, "dbcs-server-2012"), Status::Clean);
    }
}

#[test]
fn config_files_modified_after_the_last_update() {
    let owa = format!(r"{INSTALL}\FrontEnd\HttpProxy\owa\auth\logon.aspx");
    let edge = format!(r"{INSTALL}\Bin\EdgeTransport.exe.config");
    // Customized a week after the December patch.
    let st = healthy()
        .file(&owa, DEC_1 + 7 * DAY)
        .file(&edge, DEC_1 + 10 * DAY);
    assert_eq!(
        facts(&st, "customized-config"),
        vec![
            format!("{owa} modified on 2025-12-08, after the last update (20251201)"),
            format!("{edge} modified on 2025-12-11, after the last update (20251201)"),
        ]
    );
    // A later patch installed after the customization: nothing to lose now that could
    // not be seen before (the files predate it).
    let st = st.value(
        LM,
        &format!(r"{PRODUCTS}\AE1D439464EB1B8488741FFA028E291C\Patches\33"),
        "Installed",
        s("20251215"),
    );
    assert_eq!(status(&st, "customized-config"), Status::Clean);
    // No install date to compare with: unknown, not clean.
    let st = FakeState::new()
        .value(LM, EXSETUP, "MsiInstallPath", s(INSTALL))
        .file(&owa, NOW);
    assert!(matches!(
        status(&st, "customized-config"),
        Status::Skipped(_)
    ));
}

#[test]
fn exchange_only_checks_skip_other_servers_and_a_failed_read_is_no_clean() {
    let st = FakeState::new();
    for id in [
        "interim-update",
        "shared-web-config",
        "dotnet-release",
        "free-space",
        "oauth-certificate-expired",
        "oauth-certificate-expiring",
        "customized-config",
    ] {
        assert!(matches!(status(&st, id), Status::Skipped(_)), "{id}");
    }
    let st = healthy().failing(LM, PS, "access denied");
    let Status::Failed(e) = status(&st, "execution-policy-gpo") else {
        panic!("expected Failed");
    };
    assert!(e.to_string().contains("access denied"), "{e}");
}

#[test]
fn findings_carry_the_predicted_rule_and_its_remediation() {
    let catalog = Catalog::builtin();
    let st = healthy()
        .value(LM, PS, "ExecutionPolicy", s("AllSigned"))
        .free("C:", 10 << 30);
    let snap = Snapshot {
        host: "EX03".into(),
        taken_unix_ms: 1_700_000_000_000,
    };
    let f = findings(&evaluate(&st, CHECKS), &catalog, &snap);
    assert_eq!(f.len(), 2, "{f:#?}");
    let rule = catalog
        .get("exchange.su.servicecontrol-execution-policy")
        .unwrap();
    let ep = &f[0];
    assert_eq!(ep.rule_id, rule.id);
    assert_eq!(ep.title, format!("Will fail with: {}", rule.title));
    assert_eq!(ep.category, CATEGORY);
    assert_eq!(ep.severity, Severity::High);
    assert_eq!(ep.run_id, "preflight-EX03-1700000000000");
    assert_eq!(ep.remediation.summary, rule.remediation.summary);
    assert!(!ep.remediation.steps.is_empty());
    assert_eq!(ep.evidence[0].text, check("execution-policy-gpo").condition);
    assert!(ep.evidence[1].text.ends_with("= AllSigned"));
    assert_eq!(ep.fields["predicts"], rule.id);
    // Ids differ per snapshot and per check, and repeat for the same ones.
    let again = findings(&evaluate(&st, CHECKS), &catalog, &snap);
    assert_eq!(again[0].id, ep.id);
    assert_ne!(f[1].id, ep.id);
    let later = Snapshot {
        taken_unix_ms: snap.taken_unix_ms + 1,
        ..snap.clone()
    };
    assert_ne!(
        findings(&evaluate(&st, CHECKS), &catalog, &later)[0].id,
        ep.id
    );
    let run = run_summary(&f, &snap);
    assert_eq!(run.outcome, Outcome::Failed);
    assert_eq!(run.primary_finding_id.as_deref(), Some(ep.id.as_str()));
    assert_eq!(run.mode.as_deref(), Some(CATEGORY));
    // Only a medium finding: predicted trouble, not a predicted failure.
    let f = findings(&evaluate(&healthy().free("C:", 1), CHECKS), &catalog, &snap);
    assert_eq!(run_summary(&f, &snap).outcome, Outcome::Succeeded);
}
