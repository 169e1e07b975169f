//! Alert routing and SIEM forwarding end to end: findings sent over gRPC to a real aggregator
//! reach a real Prometheus Alertmanager (`.ci/setup-alertmanager.sh`, read back through
//! `GET /api/v2/alerts`) and a real rsyslog (`.ci/setup-rsyslog.sh`); maintenance windows
//! created through the HTTP API mute, re-route and tag findings of their hosts; destinations
//! that are down never hold up an ack or another destination; a window that requires a clean
//! preflight alerts on each host in it that is not clean. Restarts and outages are in
//! `forwarding.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use patchwatch_aggregator::Config;
use patchwatch_proto::Finding;
use serde_json::{json, Value};

async fn post_json(http: SocketAddr, path: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{http}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Sends 600 findings (30 batches of 20, ids `<prefix>-<batch>-<i>`) on a new stream and
/// asserts that each batch was accepted and all within 10 s, whatever the destinations do.
async fn send_600_promptly(
    grpc: SocketAddr,
    prefix: &str,
    host: &str,
) -> (CollectorStream, std::collections::BTreeSet<String>) {
    let mut client = client(grpc).await;
    let mut stream = CollectorStream::open(&mut client).await.unwrap();
    let started = Instant::now();
    let mut sent = std::collections::BTreeSet::new();
    for seq in 1..=30u64 {
        let findings: Vec<Finding> = (0..20)
            .map(|i| fresh(&format!("{prefix}-{seq}-{i}"), host, "EXCH-0001", 5))
            .collect();
        sent.extend(findings.iter().map(|f| f.id.clone()));
        let ack = stream.roundtrip(batch_of(seq, findings)).await;
        assert_eq!(ack.accepted, 20);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "acks took {:?}",
        started.elapsed()
    );
    (stream, sent)
}

async fn sqlite_config(extra_toml: &str) -> (Config, tempfile::TempDir) {
    let (base, dir) = config(Backend::Sqlite).await.unwrap();
    let mut config = Config::parse(extra_toml, "test.toml").unwrap();
    config.data_dir = base.data_dir;
    config.grpc = base.grpc;
    config.http = base.http;
    (config, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_reach_alertmanager_and_windows_mute_reroute_and_tag() {
    let Some(am) = env_or_skip("PATCHWATCH_ALERTMANAGER_URL", "setup-alertmanager.sh") else {
        return;
    };
    let token = run_token();
    let rule = format!("EXCH-{token}");
    let dir = tempfile::tempdir().unwrap();
    let maint_log = dir.path().join("maintenance.jsonl");
    let (config, _data) = sqlite_config(&format!(
        r#"
[routing]
dashboard_url = "http://dashboard.test/"

[[routing.route]]
name = "maintenance-mute"
in_window = true
hosts = ["MUTE*"]
action = "mute"

[[routing.route]]
name = "maintenance-reroute"
in_window = true
receivers = ["maintenance-log"]
group_wait = "100ms"
group_by = ["maintenance_window"]

[[routing.route]]
name = "pager"
min_severity = "high"
rule_ids = ["EXCH-*"]
receivers = ["am"]
group_by = ["rule_id", "host"]
group_wait = "200ms"
group_interval = "200ms"
resolve_after = "1h"

[routing.receivers.am]
type = "alertmanager"
url = "{am}"

[routing.receivers.maintenance-log]
type = "jsonl"
path = {maint_log:?}
[routing.receivers.maintenance-log.batch]
timeout_ms = 50
"#
    ))
    .await;
    let (agg, shutdown) = start(config).await;
    let http = agg.http_addr();

    // Two windows created through the HTTP API: one muted, one re-routed by the routes above.
    for (name, hosts) in [("mute wave", "MUTE*"), ("maint wave", "MAINT01,MAINT02")] {
        let (status, body) = post_json(
            http,
            "/api/v1/windows",
            json!({ "name": name, "hosts": hosts, "duration": "1h" }),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let windows = get_json(http, "/api/v1/windows").await;
    let maint_id = windows["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "maint wave")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut client = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut client).await.unwrap();
    let ack = stream
        .roundtrip(batch_of(
            1,
            vec![
                fresh(&format!("mute-{token}"), "MUTE01", &rule, 5),
                fresh(&format!("maint-{token}"), "MAINT01", &rule, 5),
                fresh(&format!("exch-{token}"), "EXCH01", &rule, 4),
                // Below the pager's minimum severity and in no window: no route, no alert.
                fresh(&format!("low-{token}"), "EXCH02", &rule, 2),
            ],
        ))
        .await;
    assert_eq!(ack.accepted, 4);

    // The pager route delivered EXCH01 to Alertmanager, with a link to the finding.
    let got = eventually(Duration::from_secs(15), "the EXCH01 alert", || async {
        let a = am_alerts(&am, &rule).await;
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(hosts_of(&got), ["EXCH01"]);
    assert_eq!(got[0]["labels"]["severity"], "high");
    assert_eq!(
        got[0]["generatorURL"],
        format!("http://dashboard.test/findings/exch-{token}")
    );
    // The window's finding went to the maintenance receiver instead, tagged with the window.
    let rerouted = eventually(Duration::from_secs(10), "the re-routed finding", || async {
        let l = lines_with(&maint_log, &format!("maint-{token}"));
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert!(rerouted[0].contains(&maint_id), "{}", rerouted[0]);
    assert!(lines_with(&maint_log, &format!("mute-{token}")).is_empty());
    // The stored findings carry the window label too; the muted one is stored, just not sent.
    let stored = get_json(http, &format!("/api/v1/findings/maint-{token}")).await;
    assert_eq!(stored["labels"]["maintenance_window"], maint_id.as_str());
    let muted = get_json(http, &format!("/api/v1/findings/mute-{token}")).await;
    assert!(muted["labels"]["maintenance_window"].is_string());
    let outside = get_json(http, &format!("/api/v1/findings/exch-{token}")).await;
    assert!(outside["labels"]["maintenance_window"].is_null());
    // The dashboard's fleet view shows the active windows.
    let page = reqwest::get(format!("http://{http}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Maintenance in progress") && page.contains("maint wave"));

    // Ending the window puts MAINT01 back on the normal route.
    let (status, body) =
        post_json(http, &format!("/api/v1/windows/{maint_id}/end"), json!({})).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("ended")),
        "{body}"
    );
    stream
        .roundtrip(batch_of(
            2,
            vec![fresh(&format!("maint2-{token}"), "MAINT01", &rule, 5)],
        ))
        .await;
    let got = eventually(Duration::from_secs(15), "the MAINT01 alert", || async {
        let a = am_alerts(&am, &rule).await;
        (a.len() == 2).then_some(a)
    })
    .await;
    assert_eq!(hosts_of(&got), ["EXCH01", "MAINT01"]);
    let m = got
        .iter()
        .find(|a| a["labels"]["host"] == "MAINT01")
        .unwrap();
    assert_eq!(
        m["generatorURL"],
        format!("http://dashboard.test/findings/maint2-{token}")
    );
    // Nothing from the muted host or the low finding ever reached Alertmanager.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hosts_of(&am_alerts(&am, &rule).await),
        ["EXCH01", "MAINT01"]
    );

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_forwards_newly_stored_findings_to_rsyslog_once() {
    let Some(tcp) = env_or_skip("PATCHWATCH_RSYSLOG_TCP", "setup-rsyslog.sh") else {
        return;
    };
    let out = std::path::PathBuf::from(std::env::var("PATCHWATCH_RSYSLOG_OUTPUT").unwrap());
    let token = run_token();
    let (config, _data) = sqlite_config(&format!(
        "[sinks.siem]\ntype = \"syslog\"\naddress = {tcp:?}\ntransport = \"tcp\"\n\
         [sinks.siem.batch]\ntimeout_ms = 50\n"
    ))
    .await;
    let (agg, shutdown) = start(config).await;
    let mut client = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut client).await.unwrap();
    let findings: Vec<Finding> = (0..20)
        .map(|i| fresh(&format!("fwd-{token}-{i}"), "EXCH07", "EXCH-0042", 4))
        .collect();
    stream.roundtrip(batch_of(1, findings.clone())).await;
    // A replay (the collector did not see the ack) stores nothing new and forwards nothing.
    stream.roundtrip(batch_of(2, findings)).await;

    let needle = format!("fwd-{token}-");
    let lines = eventually(Duration::from_secs(10), "20 lines in rsyslog", || async {
        let l = lines_with(&out, &needle);
        (l.len() >= 20).then_some(l)
    })
    .await;
    assert!(
        lines[0].contains(" EXCH07 patchwatch - EXCH-0042 "),
        "{}",
        lines[0]
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        lines_with(&out, &needle).len(),
        20,
        "each finding exactly once"
    );

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
}

/// No external server needed: every destination but a JSON Lines file is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_that_are_down_never_hold_up_acks_or_other_destinations() {
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("up.jsonl");
    let (config, _data) = sqlite_config(&format!(
        r#"
[forwarding]
max_inflight = 100
batch_size = 50

[routing]
queue_capacity = 5
[[routing.route]]
name = "all"
receivers = ["am", "hook"]
group_wait = "10ms"
[routing.receivers.am]
type = "alertmanager"
url = "http://{dead}"
[routing.receivers.hook]
type = "webhook"
url = "http://{dead}/hook"

[sinks.dead]
type = "syslog"
address = "{dead}"
transport = "tcp"
[sinks.dead.batch]
queue_capacity = 5

[sinks.up]
type = "jsonl"
path = {file:?}
[sinks.up.batch]
timeout_ms = 20
"#
    ))
    .await;
    let (agg, shutdown) = start(config).await;
    let http = agg.http_addr();
    let (stream, _) = send_600_promptly(agg.grpc_addr(), "down", "EXCH09").await;
    // 600 findings, tiny queues and a small in-flight window: everything was acked promptly
    // and stored, and the live destination got all of it while the others are down.
    assert_eq!(all_finding_ids(http).await.len(), 600);
    eventually(
        Duration::from_secs(10),
        "600 lines in the live sink",
        || async { (lines_with(&file, "down-").len() == 600).then_some(()) },
    )
    .await;
    // The dead destinations are behind by everything, and say so; nothing was dropped.
    let lag = |metrics: &str, dest: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("patchwatch_aggregator_forward_lag")
                    && l.contains(&format!("destination=\"{dest}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    let metrics = eventually(Duration::from_secs(10), "lag gauges", || async {
        let m = reqwest::get(format!("http://{http}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (lag(&m, "sink:up") == 0.0).then_some(m)
    })
    .await;
    // The gauge is process-wide (other tests' routers share the `router` label); the sink
    // names are this test's own.
    assert_eq!(lag(&metrics, "sink:dead"), 600.0, "{metrics}");
    assert!(!metrics.contains("forward_dropped"), "{metrics}");
    let health = get_json(http, "/healthz").await;
    assert_eq!(health["status"], "ok", "{health}");
    let status = |dest: &str| {
        health["forwarding"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["destination"] == dest)
            .unwrap()
            .clone()
    };
    for dest in ["router", "sink:dead"] {
        let s = status(dest);
        assert_eq!(s["lag"], 600, "{health}");
        assert_eq!(s["cursor_seq"], 0, "{health}");
        assert!(s["inflight"].as_u64().unwrap() <= 100, "{health}");
    }
    assert_eq!(status("sink:up")["cursor_seq"], 600, "{health}");

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
}

/// A destination that answers, but only when the test lets it (a webhook whose every request
/// hangs on a gate), falls behind alone: acks and the other destination go on at full pace,
/// and once it answers it receives every finding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_destination_delays_only_itself_and_loses_nothing() {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};
    use tokio::sync::watch;

    let (open_tx, open_rx) = watch::channel(false);
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let started_requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = {
        let received = received.clone();
        let started_requests = started_requests.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let received = received.clone();
                let started_requests = started_requests.clone();
                let mut open = open_rx.clone();
                async move {
                    started_requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // Hold the request until the test opens the gate.
                    let _ = open.wait_for(|o| *o).await;
                    let ids = body["findings"].as_array().cloned().unwrap_or_default();
                    received.lock().unwrap().extend(
                        ids.iter()
                            .filter_map(|f| f["id"].as_str().map(str::to_string)),
                    );
                    axum::http::StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fast.jsonl");
    let (config, _data) = sqlite_config(&format!(
        r#"
[forwarding]
max_inflight = 100
batch_size = 50

[sinks.slow]
type = "webhook"
url = "http://{slow}/hook"
[sinks.slow.batch]
timeout_ms = 20
queue_capacity = 5
[sinks.slow.retry]
request_timeout_ms = 60000

[sinks.fast]
type = "jsonl"
path = {file:?}
[sinks.fast.batch]
timeout_ms = 20
"#
    ))
    .await;
    let (agg, shutdown) = start(config).await;
    let http = agg.http_addr();
    let (stream, sent) = send_600_promptly(agg.grpc_addr(), "slow", "EXCH10").await;
    assert_eq!(all_finding_ids(http).await.len(), 600);
    eventually(
        Duration::from_secs(10),
        "600 lines in the fast sink",
        || async { (lines_with(&file, "slow-").len() == 600).then_some(()) },
    )
    .await;
    // The slow destination was asked (its request hangs) and has confirmed nothing yet.
    assert!(started_requests.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(received.lock().unwrap().is_empty());

    open_tx.send(true).unwrap();
    let got = eventually(
        Duration::from_secs(20),
        "600 findings at the slow sink",
        || {
            let received = received.clone();
            async move {
                let got: BTreeSet<String> = received.lock().unwrap().iter().cloned().collect();
                (got.len() >= 600).then_some(got)
            }
        },
    )
    .await;
    assert_eq!(got, sent, "the slow destination got exactly what was sent");

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
    server.abort();
}

/// A preflight run update of `host`: failed (a high finding `primary`) or clean.
fn preflight(host: &str, outcome: i32, primary: &str) -> patchwatch_proto::RunUpdate {
    patchwatch_proto::RunUpdate {
        run_id: format!("preflight-{host}-1"),
        host: host.into(),
        source_path: "preflight".into(),
        log_kind: 4,
        outcome,
        mode: "preflight".into(),
        primary_finding_id: primary.into(),
        updated_unix_nano: now_ns(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_requiring_a_clean_preflight_alerts_on_hosts_not_clean() {
    let Some(am) = env_or_skip("PATCHWATCH_ALERTMANAGER_URL", "setup-alertmanager.sh") else {
        return;
    };
    let token = run_token();
    let (fails, clean, none) = (
        format!("PF{token}A"),
        format!("PF{token}B"),
        format!("PF{token}C"),
    );
    let (config, _data) = sqlite_config(&format!(
        r#"
[routing]
dashboard_url = "http://dashboard.test/"

[[routing.route]]
name = "preflight-gate"
rule_ids = ["{rule}"]
receivers = ["am"]
group_by = ["rule_id", "host"]
group_wait = "100ms"
group_interval = "200ms"

[routing.receivers.am]
type = "alertmanager"
url = "{am}"
"#,
        rule = patchwatch_aggregator::gate::GATE_RULE
    ))
    .await;
    let (agg, shutdown) = start(config).await;
    let http = agg.http_addr();
    let mut client = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut client).await.unwrap();
    let mut will_fail = fresh(
        &format!("pf-{token}"),
        &fails,
        "exchange.su.servicecontrol-execution-policy",
        4,
    );
    will_fail.title = "Will fail with: ExecutionPolicy defined by Group Policy".into();
    will_fail.run_id = format!("preflight-{fails}-1");
    will_fail.category = "preflight".into();
    let batch = patchwatch_proto::Batch {
        collector_id: format!("pf-{token}"),
        sequence: 1,
        host: None,
        findings: vec![will_fail],
        run_updates: vec![
            preflight(&fails, 3, &format!("pf-{token}")),
            preflight(&clean, 2, ""),
            // A host known only from a setup run: it never reported a preflight.
            patchwatch_proto::RunUpdate {
                source_path: r"C:\ExchangeSetupLogs\ExchangeSetup.log".into(),
                ..preflight(&none, 1, "")
            },
        ],
    };
    let ack = stream.roundtrip(batch).await;
    assert!(ack.rejected.is_empty(), "{ack:?}");

    // A window without the requirement raises nothing; one with it, created through the API,
    // alerts on the failing host and the one without a preflight at once. The gated one
    // started earlier, so the other comes first among the windows over these hosts.
    let started = (time::OffsetDateTime::now_utc() - time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, body) = post_json(
        http,
        "/api/v1/windows",
        json!({ "name": "ungated", "hosts": format!("PF{token}*"), "duration": "1h" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post_json(
        http,
        "/api/v1/windows",
        json!({ "id": format!("gate-{token}"), "name": "CU16 wave 1", "hosts": format!("PF{token}*"),
                "starts_at": started, "duration": "1h", "require_clean_preflight": true }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let mine = || async {
        am_alerts(&am, patchwatch_aggregator::gate::GATE_RULE)
            .await
            .into_iter()
            .filter(|a| {
                a["labels"]["host"]
                    .as_str()
                    .is_some_and(|h| h.starts_with(&format!("PF{token}")))
            })
            .collect::<Vec<_>>()
    };
    let got = eventually(
        Duration::from_secs(15),
        "two preflight gate alerts",
        || async {
            let a = mine().await;
            (a.len() == 2).then_some(a)
        },
    )
    .await;
    assert_eq!(hosts_of(&got), [fails.clone(), none.clone()]);
    let f = got
        .iter()
        .find(|a| a["labels"]["host"] == fails.as_str())
        .unwrap();
    assert_eq!(f["labels"]["severity"], "high");
    assert_eq!(f["labels"]["category"], "preflight");
    assert_eq!(
        f["labels"]["maintenance_window"],
        format!("gate-{token}"),
        "labelled with the window that requires it, not the other one over the host: {f}"
    );
    assert_eq!(
        f["generatorURL"],
        format!("http://dashboard.test/findings/pf-{token}"),
        "the alert links to the finding that predicts the failure"
    );
    let summary = f["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("CU16 wave 1")
            && summary.contains("ExecutionPolicy defined by Group Policy"),
        "{summary}"
    );
    // The clean host never alerts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hosts_of(&mine().await), [fails, none]);
    // How many hosts gated windows wait on is a gauge (its value is process-wide, and other
    // tests here open gated windows too, so only its presence is checked).
    let metrics = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("# TYPE patchwatch_aggregator_preflight_gate_hosts gauge"),
        "{metrics}"
    );

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_window_alerts_within_its_lead_time_before_it_starts() {
    let Some(am) = env_or_skip("PATCHWATCH_ALERTMANAGER_URL", "setup-alertmanager.sh") else {
        return;
    };
    let token = run_token();
    // Both will fail; SOON's window starts in 30 min (within the 1 h lead), LATER's in 3 h.
    let (soon, later) = (format!("PL{token}S"), format!("PL{token}L"));
    let (config, _data) = sqlite_config(&format!(
        r#"
[routing]
dashboard_url = "http://dashboard.test/"
preflight_gate_lead = "1h"

[[routing.route]]
name = "preflight-gate"
rule_ids = ["{rule}"]
receivers = ["am"]
group_by = ["rule_id", "host"]
group_wait = "100ms"
group_interval = "200ms"

[routing.receivers.am]
type = "alertmanager"
url = "{am}"
"#,
        rule = patchwatch_aggregator::gate::GATE_RULE
    ))
    .await;
    let (agg, shutdown) = start(config).await;
    let http = agg.http_addr();
    let mut client = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut client).await.unwrap();
    let mut findings = Vec::new();
    let mut runs = Vec::new();
    for host in [&soon, &later] {
        let mut f = fresh(
            &format!("pl-{host}"),
            host,
            "exchange.readiness.reboot-pending",
            4,
        );
        f.title = "Will fail with: A restart is pending".into();
        f.run_id = format!("preflight-{host}-1");
        f.category = "preflight".into();
        findings.push(f);
        runs.push(preflight(host, 3, &format!("pl-{host}")));
    }
    let batch = patchwatch_proto::Batch {
        collector_id: format!("pl-{token}"),
        sequence: 1,
        host: None,
        findings,
        run_updates: runs,
    };
    let ack = stream.roundtrip(batch).await;
    assert!(ack.rejected.is_empty(), "{ack:?}");

    let in_ = |minutes: i64| {
        (time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    for (id, host, starts) in [("soon", &soon, in_(30)), ("later", &later, in_(180))] {
        let (status, body) = post_json(
            http,
            "/api/v1/windows",
            json!({ "id": format!("{id}-{token}"), "name": format!("CU16 {id}"), "hosts": host,
                    "starts_at": starts, "duration": "2h", "require_clean_preflight": true }),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["state"], "scheduled", "{body}");
    }
    let mine = || async {
        am_alerts(&am, patchwatch_aggregator::gate::GATE_RULE)
            .await
            .into_iter()
            .filter(|a| {
                a["labels"]["host"]
                    .as_str()
                    .is_some_and(|h| h.starts_with(&format!("PL{token}")))
            })
            .collect::<Vec<_>>()
    };
    let got = eventually(
        Duration::from_secs(15),
        "a preflight gate alert before the window starts",
        || async {
            let a = mine().await;
            (!a.is_empty()).then_some(a)
        },
    )
    .await;
    let a = &got[0];
    assert_eq!(a["labels"]["host"], soon.as_str());
    assert_eq!(a["labels"]["maintenance_window"], format!("soon-{token}"));
    assert_eq!(a["labels"]["severity"], "high");
    let summary = a["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("CU16 soon")
            && summary.contains("starts in 30 min")
            && summary.contains("A restart is pending"),
        "{summary}"
    );
    // The window three hours out raises nothing yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hosts_of(&mine().await), [soon]);

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
}

#[tokio::test]
async fn a_preflight_gate_lead_over_a_week_is_refused_by_name() {
    let config =
        patchwatch_aggregator::routing::RoutingConfig::from_toml("preflight_gate_lead = \"8d\"\n")
            .unwrap();
    let err = patchwatch_aggregator::routing::Router::new(config).unwrap_err();
    assert!(err.to_string().contains("preflight_gate_lead"), "{err}");
}
