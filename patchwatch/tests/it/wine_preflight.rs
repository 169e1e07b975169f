//! `patchwatch.exe preflight` under Wine, on a real (Wine) registry and SCM: a clean prefix
//! reports nothing at high severity; a Group Policy ExecutionPolicy, a pending file rename and
//! a disabled `MSExchange*` service made with the Windows tools are each reported with the
//! predicted rule and its fix from the catalog.
//!
//! One prefix, five Wine process starts: a clean run, `reg add` twice and `sc create`, a run
//! that reports them. A second prefix runs the agent, whose snapshot at start reaches an
//! in-process aggregator.

use std::collections::BTreeMap;
use std::time::Duration;

use patchwatch_aggregator::model::{FindingFilter, RunFilter};
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_delivers_a_snapshot_at_start() {
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
    let _ = agent.kill();
    let _ = agent.wait();
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
