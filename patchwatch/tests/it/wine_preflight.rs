//! `patchwatch.exe preflight` under Wine, on a real (Wine) registry and SCM: a clean prefix
//! reports nothing at high severity; a Group Policy ExecutionPolicy, a pending file rename and
//! a disabled `MSExchange*` service made with the Windows tools are each reported with the
//! predicted rule and its fix from the catalog.
//!
//! One prefix, five Wine process starts: a clean run, `reg add` twice and `sc create`, a run
//! that reports them. A second prefix runs the agent, whose snapshot at start reaches an
//! in-process aggregator. A third reports a DBCS Windows Server 2012, an expired Exchange
//! OAuth certificate read through crypt32, and an OWA page changed after the last update.

use std::collections::BTreeMap;
use std::time::Duration;

use patchwatch_aggregator::model::{FindingFilter, RunFilter};
use patchwatch_aggregator::routing::MaintenanceWindow;
use patchwatch_aggregator::windows::RELOAD_INTERVAL;
use patchwatch_collector::delivery::DEFAULT_HEARTBEAT;
use patchwatch_pipeline::Catalog;

use crate::common::TestAggregator;
use crate::wine::{windows_agent_toml, Wine};

/// `preflight --format json` (plus `extra`): exit code, `check` objects by check id and
/// `finding` objects by rule id.
fn preflight(
    w: &Wine,
    extra: &[&str],
) -> (
    i32,
    BTreeMap<String, serde_json::Value>,
    BTreeMap<String, serde_json::Value>,
) {
    let mut args = vec!["preflight", "--format", "json"];
    args.extend_from_slice(extra);
    let out = w.run(w.patchwatch(&args));
    let stdout = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let code = out.status.code().unwrap_or(-1);
    let (mut checks, mut findings) = (BTreeMap::new(), BTreeMap::new());
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {line}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let key = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        match v["type"].as_str() {
            Some("check") => {
                checks.insert(key("check"), v);
            }
            Some("finding") => {
                findings.insert(key("rule_id"), v);
            }
            _ => {}
        }
    }
    assert!(
        !checks.is_empty(),
        "no check reported (exit {code}); stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, checks, findings)
}

#[test]
fn preflight_reports_policy_restart_and_disabled_services_from_the_real_registry() {
    let Some(w) = Wine::new() else { return };
    let catalog = Catalog::builtin();

    // A fresh prefix: nothing high, and every check read what it needs.
    let (code, checks, findings) = preflight(&w, &["--fail-on", "high"]);
    let high: Vec<_> = findings
        .values()
        .filter(|f| matches!(f["severity"].as_str(), Some("high" | "critical")))
        .collect();
    assert!(high.is_empty(), "a clean prefix reports {high:#?}");
    assert_eq!(code, 0, "checks: {checks:#?}");
    for id in [
        "execution-policy-gpo",
        "pending-restart",
        "services-disabled",
    ] {
        assert_eq!(checks[id]["status"], "clean", "{id}: {:#}", checks[id]);
    }

    // The three conditions, made with the Windows tools.
    set_execution_policy(&w, "AllSigned");
    w.run_ok(w.command(
        "reg",
        &[
            "add",
            r"HKLM\SYSTEM\CurrentControlSet\Control\Session Manager",
            "/v",
            "PendingFileRenameOperations",
            "/t",
            "REG_MULTI_SZ",
            "/d",
            r"\??\C:\Windows\Temp\old.dll",
            "/f",
        ],
    ));
    w.run_ok(w.command(
        "sc",
        &[
            "create",
            "MSExchangeTransport",
            "binPath=",
            r"C:\patchwatch\patchwatch.exe",
            "start=",
            "disabled",
        ],
    ));
    let (code, checks, findings) = preflight(&w, &["--fail-on", "high"]);
    assert_eq!(code, 1, "--fail-on high with high findings");
    let expect = [
        (
            "execution-policy-gpo",
            "exchange.su.servicecontrol-execution-policy",
            r"HKLM\SOFTWARE\Policies\Microsoft\Windows\PowerShell\ExecutionPolicy = AllSigned",
        ),
        (
            "pending-restart",
            "exchange.readiness.reboot-pending",
            r"PendingFileRenameOperations = \??\C:\Windows\Temp\old.dll",
        ),
        (
            "services-disabled",
            "exchange.error.service-disabled",
            "MSExchangeTransport: start type Disabled",
        ),
    ];
    for (check, rule_id, fact) in expect {
        assert_eq!(
            checks[check]["status"], "found",
            "{check}: {:#}",
            checks[check]
        );
        let f = findings
            .get(rule_id)
            .unwrap_or_else(|| panic!("no finding of {rule_id}: {findings:#?}"));
        let rule = catalog.get(rule_id).expect("the rule is in the catalog");
        assert_eq!(f["category"], "preflight");
        assert_eq!(f["title"], format!("Will fail with: {}", rule.title));
        assert_eq!(
            f["remediation"]["summary"],
            rule.remediation.summary.as_str()
        );
        let evidence: Vec<&str> = f["evidence"]
            .as_array()
            .expect("evidence is a list")
            .iter()
            .filter_map(|e| e["text"].as_str())
            .collect();
        assert!(
            evidence.iter().any(|e| e.ends_with(fact)),
            "{rule_id}: no evidence ending in {fact}: {evidence:#?}"
        );
    }
}

/// The Windows agent takes a snapshot at start and delivers it like any finding: the
/// aggregator stores the predicted failure (category `preflight`) and the snapshot's run.
/// Then, idle, it takes another when a maintenance window covering its host starts (its
/// heartbeat's ack names the window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_delivers_a_snapshot_at_start_and_at_a_window_start() {
    let Some(w) = Wine::new() else { return };
    let host = "WINE-PREFLIGHT";
    let agg = TestAggregator::start(&w.scratch().join("aggregator")).await;
    tokio::task::block_in_place(|| set_execution_policy(&w, "RemoteSigned"));
    w.mkdir(r"C:\logs");
    let sources = "[sources]\ninclude = ['C:\\logs\\*.log']\n[preflight]\ninterval = \"1h\"\n";
    std::fs::write(
        w.unix(r"C:\agent.toml"),
        windows_agent_toml(host, &agg.endpoint(), sources),
    )
    .unwrap();
    let log = w.scratch().join("agent.log");
    let mut agent = w.spawn(&["agent", "--config", r"C:\agent.toml"], &log);
    let store = agg.store();
    let (finding, run) = patchwatch_testkit::eventually(
        Duration::from_secs(45),
        "the preflight finding and run stored",
        async || {
            let f = store
                .findings(FindingFilter {
                    host: Some(host.into()),
                    limit: 10,
                    ..Default::default()
                })
                .await
                .ok()?
                .items
                .into_iter()
                .find(|f| f.category == "preflight")?;
            let r = store
                .runs(RunFilter {
                    host: Some(host.into()),
                    limit: 10,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_iter()
                .find(|r| r.run_id == f.run_id)?;
            Some((f, r))
        },
    )
    .await;

    // A window over the host, stored as another aggregator would: loaded within the window
    // reload interval, heard within the agent's heartbeat.
    let now = time::OffsetDateTime::now_utc();
    store
        .insert_window(MaintenanceWindow {
            id: "wine-wave".into(),
            name: "Wine wave".into(),
            hosts: vec!["wine-pre*".into()],
            starts_at: now - time::Duration::minutes(1),
            ends_at: now + time::Duration::hours(1),
            require_clean_preflight: false,
        })
        .await
        .unwrap();
    let bound = RELOAD_INTERVAL + DEFAULT_HEARTBEAT + Duration::from_secs(30);
    let second =
        patchwatch_testkit::eventually(bound, "a snapshot at the window's start", async || {
            store
                .runs(RunFilter {
                    host: Some(host.into()),
                    limit: 10,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_iter()
                .find(|r| r.mode == "preflight" && r.run_id != run.run_id)
        })
        .await;
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(second.outcome, "failed", "the policy is still set");
    assert!(second.started_time > run.started_time);
    assert_eq!(
        finding.rule_id,
        "exchange.su.servicecontrol-execution-policy"
    );
    assert!(finding.primary);
    assert_eq!(
        (run.mode.as_str(), run.outcome.as_str()),
        ("preflight", "failed")
    );
    assert_eq!(run.primary_finding_id, finding.id);
}

/// A DBCS Windows Server 2012 made with `reg add` (reported once Exchange 2010 is there too, not
/// with Exchange 2013 or later alone), an expired Exchange Auth certificate in
/// `LocalMachine\My` (where the registry certificate store keeps it, read back through
/// `CertOpenStore`), and an OWA logon page changed after the Exchange install date: each
/// reported with its rule; a `web.config` older than that date is not.
#[test]
fn preflight_reports_dbcs_an_expired_auth_certificate_and_customized_files() {
    let Some(w) = Wine::new() else { return };
    let catalog = Catalog::builtin();
    let (_, checks, _) = preflight(&w, &[]);
    assert_eq!(
        checks["dbcs-server-2012"]["status"], "clean",
        "Wine says Windows 7"
    );
    for id in ["oauth-certificate-expired", "customized-config"] {
        assert_eq!(checks[id]["status"], "skipped", "{id}: no Exchange yet");
    }

    let nt = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion";
    reg_add(&w, nt, "CurrentVersion", "REG_SZ", "6.2");
    reg_add(
        &w,
        nt,
        "ProductName",
        "REG_SZ",
        "Windows Server 2012 Standard",
    );
    reg_add(
        &w,
        r"HKLM\SYSTEM\CurrentControlSet\Control\Nls\CodePage",
        "ACP",
        "REG_SZ",
        "932",
    );
    // Exchange, installed on 2025-01-10.
    let install = r"C:\Program Files\Microsoft\Exchange Server\V15";
    reg_add(
        &w,
        r"HKLM\SOFTWARE\Microsoft\ExchangeServer\v15\Setup",
        "MsiInstallPath",
        "REG_SZ",
        install,
    );
    let product = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Installer\UserData\S-1-5-18\Products\AE1D439464EB1B8488741FFA028E291C\InstallProperties";
    reg_add(
        &w,
        product,
        "DisplayName",
        "REG_SZ",
        "Microsoft Exchange Server",
    );
    reg_add(&w, product, "InstallDate", "REG_SZ", "20250110");
    let jan_5 = std::time::UNIX_EPOCH + Duration::from_secs(1_736_035_200);
    let logon = format!(r"{install}\FrontEnd\HttpProxy\owa\auth\logon.aspx");
    let web_config = format!(r"{install}\ClientAccess\Owa\web.config");
    for (file, modified) in [(&logon, None), (&web_config, Some(jan_5))] {
        let path = w.unix(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let f = std::fs::File::create(&path).unwrap();
        if let Some(t) = modified {
            f.set_modified(t).unwrap();
        }
    }
    // The Auth certificate, valid 2020 to 2024.
    let thumbprint = add_machine_certificate(
        &w,
        "Microsoft Exchange Server Auth Certificate",
        (2020, 2024),
    );

    let (_, checks, _) = preflight(&w, &[]);
    let facts = |id: &str| -> Vec<String> {
        assert_eq!(checks[id]["status"], "found", "{id}: {:#}", checks[id]);
        checks[id]["facts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect()
    };
    // A DBCS 2012 with Exchange 2013 or later: the known issue is Exchange 2010's.
    assert_eq!(
        checks["dbcs-server-2012"]["status"], "clean",
        "{:#}",
        checks["dbcs-server-2012"]
    );
    let cert = facts("oauth-certificate-expired");
    assert_eq!(cert.len(), 1, "{cert:?}");
    assert!(
        cert[0].contains(&format!(
            "CN=Microsoft Exchange Server Auth Certificate ({thumbprint}) expired on 2024-01-01"
        )),
        "{cert:?}"
    );
    assert_eq!(checks["oauth-certificate-expiring"]["status"], "clean");
    let custom = facts("customized-config");
    assert_eq!(custom.len(), 1, "only the page changed since: {custom:?}");
    assert!(
        custom[0].starts_with(&logon) && custom[0].ends_with("after the last update (20250110)"),
        "{custom:?}"
    );

    // Exchange 2010 SP3 as its setup records itself (a server has one version or the other;
    // the v15 key stays here only because the other checks read it).
    let v14 = r"HKLM\SOFTWARE\Microsoft\ExchangeServer\v14\Setup";
    reg_add(&w, v14, "MsiProductMajor", "REG_DWORD", "14");
    reg_add(&w, v14, "MsiProductMinor", "REG_DWORD", "3");
    let (_, checks, findings) = preflight(&w, &[]);
    assert_eq!(
        checks["dbcs-server-2012"]["status"], "found",
        "{:#}",
        checks["dbcs-server-2012"]
    );
    let dbcs: Vec<&str> = checks["dbcs-server-2012"]["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        dbcs.iter()
            .any(|f| f.ends_with(r"Nls\CodePage\ACP = 932 (a double-byte code page)")),
        "{dbcs:?}"
    );
    assert!(
        dbcs.iter().any(|f| f.ends_with(
            r"v14\Setup\MsiProductMajor = 14, MsiProductMinor = 3 (Exchange Server 2010)"
        )),
        "{dbcs:?}"
    );
    for rule_id in [
        "explain.dbcs-system-locale",
        "explain.owa-login-loop-oauth-expired",
        "exchange.setup.customizations-overwritten",
    ] {
        let f = findings
            .get(rule_id)
            .unwrap_or_else(|| panic!("no finding of {rule_id}: {findings:#?}"));
        let rule = catalog.get(rule_id).expect("the rule is in the catalog");
        assert_eq!(f["title"], format!("Will fail with: {}", rule.title));
        assert_eq!(
            f["remediation"]["summary"],
            rule.remediation.summary.as_str()
        );
    }
}

/// `reg add key /v name /t kind /d data /f`.
fn reg_add(w: &Wine, key: &str, name: &str, kind: &str, data: &str) {
    w.run_ok(w.command(
        "reg",
        &["add", key, "/v", name, "/t", kind, "/d", data, "/f"],
    ));
}

/// Adds a self-signed certificate for `cn`, valid from January 1 of the first year to January
/// 1 of the second, to `LocalMachine\My` as the registry certificate store keeps it (value
/// `Blob` of `Certificates\<SHA-1 thumbprint>`, the DER in a serialized-property element);
/// returns the thumbprint.
fn add_machine_certificate(w: &Wine, cn: &str, (from, to): (i32, i32)) -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(to, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let der = params.self_signed(&key).unwrap().der().to_vec();
    let thumbprint = sha1_hex(&der);
    // CERT_CERT_PROP_ID (32), a reserved 1, the length, then the encoded certificate.
    let mut blob = Vec::new();
    for n in [32u32, 1, der.len() as u32] {
        blob.extend_from_slice(&n.to_le_bytes());
    }
    blob.extend_from_slice(&der);
    let hex: String = blob.iter().map(|b| format!("{b:02X}")).collect();
    // The key is named after the thumbprint: the store ignores a blob whose hash differs.
    reg_add(
        w,
        &format!(r"HKLM\SOFTWARE\Microsoft\SystemCertificates\My\Certificates\{thumbprint}"),
        "Blob",
        "REG_BINARY",
        &hex,
    );
    thumbprint
}

/// SHA-1 of `bytes` in upper-case hex, by coreutils' `sha1sum` (no SHA-1 crate for one test).
fn sha1_hex(bytes: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("sha1sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha1sum (coreutils)");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha1sum prints the hash")
        .to_ascii_uppercase()
}

/// `reg add` of the Group Policy ExecutionPolicy, as an admin's GPO would set it.
fn set_execution_policy(w: &Wine, policy: &str) {
    w.run_ok(w.command(
        "reg",
        &[
            "add",
            r"HKLM\SOFTWARE\Policies\Microsoft\Windows\PowerShell",
            "/v",
            "ExecutionPolicy",
            "/d",
            policy,
            "/f",
        ],
    ));
}
