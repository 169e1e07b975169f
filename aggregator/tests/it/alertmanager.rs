//! Alert routing into a real Prometheus Alertmanager (Debian package) started by
//! `.ci/setup-alertmanager.sh`; alerts are read back through `GET /api/v2/alerts`.

use std::time::Duration;

use patchwatch_aggregator::routing::{MaintenanceWindow, Router, RoutingConfig, RoutingError};
use patchwatch_proto::Severity;
use patchwatch_sinks::encoding::{now_nanos, sample_finding};
use patchwatch_testkit::alertmanager::alerts;
use patchwatch_testkit::{env_or_skip, eventually, run_token};
use serde_json::Value;

/// Waits (15 s at most) until Alertmanager lists exactly `n` alerts of `rule`, and returns them.
async fn alerts_settle(am: &str, rule: &str, n: usize, what: &str) -> Vec<Value> {
    eventually(Duration::from_secs(15), what, async || {
        let a = alerts(am, rule).await;
        (a.len() == n).then_some(a)
    })
    .await
}

/// Runs `router` on a task until the returned sender fires (or is dropped).
fn drive(
    router: &Router,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), RoutingError>>,
) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let r = router.clone();
    let driver = tokio::spawn(async move {
        r.run(async {
            let _ = stop_rx.await;
        })
        .await
    });
    (stop_tx, driver)
}

/// Window `id` over `host`, from a minute ago to an hour from now.
fn active_window(id: &str, host: &str) -> MaintenanceWindow {
    let now = time::OffsetDateTime::now_utc();
    MaintenanceWindow {
        id: id.to_owned(),
        name: "CU15".into(),
        hosts: vec![host.into()],
        starts_at: now - time::Duration::minutes(1),
        ends_at: now + time::Duration::hours(1),
        require_clean_preflight: false,
    }
}

fn finding(id: &str, rule: &str, host: &str) -> patchwatch_proto::Finding {
    let mut f = sample_finding(id, rule, Severity::High, host);
    f.observed_time_unix_nano = now_nanos();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_alerts_reach_alertmanager_and_resolve() {
    let Some(am) = env_or_skip("PATCHWATCH_ALERTMANAGER_URL", "setup-alertmanager.sh") else {
        return;
    };
    let token = run_token();
    let rule = format!("EXCH-{token}");
    let maint_rule = format!("MAINT-{token}");
    let cfg = RoutingConfig::from_toml(&format!(
        r#"
dashboard_url = "https://patchwatch.example/"

[[route]]
name = "maintenance"
in_window = true
rule_ids = ["MAINT-*"]
receivers = ["am"]
group_by = ["rule_id", "maintenance_window"]
group_wait = "100ms"
resolve_after = "30s"

[[route]]
name = "exchange"
min_severity = "high"
rule_ids = ["EXCH-*"]
hosts = ["exch*"]
receivers = ["am"]
group_by = ["rule_id"]
group_wait = "300ms"
group_interval = "300ms"
repeat_interval = "1h"
resolve_after = "3s"

[receivers.am]
type = "alertmanager"
url = "{am}"
"#
    ))
    .unwrap();
    let router = Router::new(cfg).unwrap();
    let (stop_tx, driver) = drive(&router);

    // Two findings of one rule on EXCH01 (one alert, two ids), one on EXCH02 (second alert of the
    // same group), one on a host no route matches.
    router
        .submit(finding(&format!("a-{token}"), &rule, "EXCH01"))
        .unwrap();
    router
        .submit(finding(&format!("b-{token}"), &rule, "EXCH01"))
        .unwrap();
    router
        .submit(finding(&format!("c-{token}"), &rule, "EXCH02"))
        .unwrap();
    router
        .submit(finding(&format!("d-{token}"), &rule, "DC01"))
        .unwrap();

    let got = alerts_settle(&am, &rule, 2, "two alerts in Alertmanager").await;
    let ex1 = got
        .iter()
        .find(|a| a["labels"]["host"] == "EXCH01")
        .expect("EXCH01 alert");
    let labels = ex1["labels"].as_object().unwrap();
    let mut keys: Vec<_> = labels.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["alertname", "category", "host", "rule_id", "severity"],
        "low-cardinality labels only"
    );
    assert_eq!(labels["alertname"], "PatchwatchFinding");
    assert_eq!(labels["severity"], "high");
    assert_eq!(
        ex1["annotations"]["finding_ids"],
        format!("a-{token},b-{token}")
    );
    assert_eq!(ex1["annotations"]["finding_count"], "2");
    assert_eq!(
        ex1["generatorURL"],
        format!("https://patchwatch.example/findings/b-{token}")
    );
    assert_eq!(ex1["status"]["state"], "active");
    assert!(got.iter().all(|a| a["labels"]["host"] != "DC01"));

    // Maintenance window: findings from EXCH03 inside it carry the label and take the other route.
    router
        .windows()
        .replace(vec![active_window(&format!("w-{token}"), "exch03")])
        .unwrap();
    router
        .submit(finding(&format!("m-{token}"), &maint_rule, "EXCH03"))
        .unwrap();
    let m = alerts_settle(&am, &maint_rule, 1, "the maintenance alert").await;
    assert_eq!(m[0]["labels"]["maintenance_window"], format!("w-{token}"));

    // Resolution: no new findings for `resolve_after` (3 s) sends endsAt = now; the API stops
    // listing resolved alerts.
    eventually(
        Duration::from_secs(20),
        "the exchange alerts to resolve",
        async || alerts(&am, &rule).await.is_empty().then_some(()),
    )
    .await;
    assert_eq!(
        alerts(&am, &maint_rule).await.len(),
        1,
        "the 30 s alert still fires"
    );

    stop_tx.send(()).unwrap();
    driver.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalated_findings_reach_alertmanager_with_the_raised_severity() {
    let Some(am) = env_or_skip("PATCHWATCH_ALERTMANAGER_URL", "setup-alertmanager.sh") else {
        return;
    };
    let token = run_token();
    let rule = format!("ESC-{token}");
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("chat.jsonl");
    let cfg = RoutingConfig::from_toml(&format!(
        r#"
[[route]]
name = "maintenance-page"
in_window = true
min_severity = "medium"
action = "escalate"
escalate_to = "critical"
receivers = ["am", "chat"]
group_by = ["rule_id", "host"]
group_wait = "100ms"
resolve_after = "1h"

[[route]]
name = "normal"
receivers = ["am", "chat"]
group_by = ["rule_id", "host"]
group_wait = "100ms"
resolve_after = "1h"

[receivers.am]
type = "alertmanager"
url = "{am}"

[receivers.chat]
type = "jsonl"
path = {jsonl:?}
[receivers.chat.batch]
timeout_ms = 20
"#
    ))
    .unwrap();
    let router = Router::new(cfg).unwrap();
    router
        .windows()
        .replace(vec![active_window(&format!("w-{token}"), "EXCH1*")])
        .unwrap();
    let (stop_tx, driver) = drive(&router);
    // EXCH10 is in the window, EXCH20 is not; both findings are `high`.
    let receipt = router
        .send(vec![
            finding(&format!("in-{token}"), &rule, "EXCH10"),
            finding(&format!("out-{token}"), &rule, "EXCH20"),
        ])
        .await;
    let report = tokio::time::timeout(Duration::from_secs(15), receipt.wait())
        .await
        .expect("Alertmanager and the file confirmed");
    assert_eq!((report.delivered, report.failed), (2, 0));

    let got = alerts_settle(&am, &rule, 2, "both alerts in Alertmanager").await;
    let by_host = |h: &str| got.iter().find(|a| a["labels"]["host"] == h).unwrap();
    let inside = by_host("EXCH10");
    assert_eq!(inside["labels"]["severity"], "critical", "{inside}");
    assert_eq!(inside["labels"]["maintenance_window"], format!("w-{token}"));
    assert_eq!(inside["annotations"]["escalated_from"], "high");
    let outside = by_host("EXCH20");
    assert_eq!(outside["labels"]["severity"], "high", "{outside}");
    assert!(outside["annotations"].get("escalated_from").is_none());

    // The other receiver gets the same raised severity, and the original as a label.
    let lines: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let line = |id: &str| lines.iter().find(|l| l["id"] == id).unwrap();
    let inside = line(&format!("in-{token}"));
    assert_eq!(inside["severity"], "critical");
    assert_eq!(inside["labels"]["escalated_from"], "high");
    assert_eq!(line(&format!("out-{token}"))["severity"], "high");

    stop_tx.send(()).unwrap();
    driver.await.unwrap().unwrap();
}
