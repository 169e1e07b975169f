use std::time::Duration;

use patchwatch_proto::Severity;
use time::OffsetDateTime;

use super::*;
use patchwatch_sinks::encoding::{now_nanos, sample_finding};
use patchwatch_testkit::http::MockHttp;

fn f(id: &str, rule: &str, sev: Severity, host: &str) -> patchwatch_proto::Finding {
    let mut f = sample_finding(id, rule, sev, host);
    f.observed_time_unix_nano = now_nanos();
    f
}

fn config(am_url: &str, jsonl: &str) -> RoutingConfig {
    RoutingConfig::from_toml(&format!(
        r#"
default_receivers = ["file"]

[[route]]
name = "maint-mute"
in_window = true
action = "mute"

[[route]]
name = "critical"
min_severity = "critical"
receivers = ["am"]
continue = true
group_wait = "50ms"

[[route]]
name = "exchange"
rule_ids = ["EXCH-*"]
hosts = ["EXCH*"]
categories = ["package"]
labels = {{ env = "prod" }}
receivers = ["file"]
group_wait = "50ms"

[[silences]]
id = "noisy"
rule_ids = ["NOISY-*"]

[receivers.am]
type = "alertmanager"
url = "{am_url}"

[receivers.file]
type = "jsonl"
path = "{jsonl}"
[receivers.file.batch]
timeout_ms = 10
"#
    ))
    .unwrap()
}

#[tokio::test]
async fn decisions_follow_routes_silences_windows_and_continue() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("r.jsonl");
    let router = Router::new(config("http://127.0.0.1:9", jsonl.to_str().unwrap())).unwrap();
    let d = |mut x: patchwatch_proto::Finding| router.decide(&mut x);
    assert_eq!(
        d(f("1", "EXCH-1", Severity::Critical, "EXCH01")),
        Decision::Routed(vec![
            ("critical".into(), "am".into()),
            ("exchange".into(), "file".into())
        ])
    );
    assert_eq!(
        d(f("2", "EXCH-1", Severity::Low, "exch02")),
        Decision::Routed(vec![("exchange".into(), "file".into())]),
        "host globs are case-insensitive"
    );
    assert_eq!(
        d(f("3", "MSI-1", Severity::Low, "DC01")),
        Decision::Routed(vec![("default".into(), "file".into())])
    );
    assert_eq!(
        d(f("4", "NOISY-1", Severity::Critical, "EXCH01")),
        Decision::Silenced("noisy".into())
    );
    let now = OffsetDateTime::now_utc();
    router
        .windows()
        .replace(vec![MaintenanceWindow {
            id: "w1".into(),
            name: "patching".into(),
            hosts: vec!["EXCH0*".into()],
            starts_at: now - time::Duration::minutes(5),
            ends_at: now + time::Duration::minutes(5),
            require_clean_preflight: false,
        }])
        .unwrap();
    let mut x = f("5", "EXCH-1", Severity::Critical, "EXCH01");
    assert_eq!(router.decide(&mut x), Decision::Muted("maint-mute".into()));
    assert_eq!(x.labels[MAINTENANCE_WINDOW_LABEL], "w1");
    let bad = MaintenanceWindow {
        id: "w2".into(),
        name: "x".into(),
        hosts: vec![],
        starts_at: now,
        ends_at: now,
        require_clean_preflight: false,
    };
    assert!(router.windows().replace(vec![bad]).is_err());
    assert_eq!(
        router.windows().all().len(),
        1,
        "a rejected set keeps the previous windows"
    );
}

#[tokio::test]
async fn config_errors_name_route_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("r.jsonl");
    let mut c = config("http://127.0.0.1:9", jsonl.to_str().unwrap());
    c.route[1].receivers = vec!["pager".into()];
    let e = Router::new(c).unwrap_err().to_string();
    assert!(e.contains("route `critical`") && e.contains("pager"), "{e}");
    // Durations are checked when parsed: the error names the key, the line and the forms.
    let e = RoutingConfig::from_toml("[[route]]\nname = \"x\"\n\ngroup_wait = \"soon\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("group_wait") && e.contains("line 4") && e.contains("\"30s\""),
        "{e}"
    );
    let mut c = config("http://127.0.0.1:9", jsonl.to_str().unwrap());
    c.route[1].min_severity = Some("urgent".into());
    assert!(Router::new(c)
        .unwrap_err()
        .to_string()
        .contains("`min_severity`"));
    let e = RoutingConfig::from_toml("[[route]]\nname = \"x\"\nrecievers = []\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("recievers"), "{e}");
}

#[tokio::test]
async fn groups_wait_then_post_to_alertmanager_and_sinks() {
    let am = MockHttp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("r.jsonl");
    let router = Router::new(config(&am.url, jsonl.to_str().unwrap())).unwrap();
    let r = router.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let driver = tokio::spawn(async move {
        r.run(async {
            let _ = stopped.await;
        })
        .await
    });
    for i in 0..3 {
        router
            .submit(f(&format!("c{i}"), "EXCH-9", Severity::Critical, "EXCH01"))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        am.requests().is_empty(),
        "group_wait holds the first notification"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let posts = am.requests_to("/api/v2/alerts");
    assert_eq!(posts.len(), 1, "three findings, one grouped post");
    let alerts: Vec<PostableAlert> = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].annotations["finding_ids"], "c0,c1,c2");
    assert_eq!(alerts[0].labels["rule_id"], "EXCH-9");
    assert!(!alerts[0].labels.contains_key("finding_id"));
    let lines = std::fs::read_to_string(&jsonl).unwrap();
    assert_eq!(
        lines.lines().count(),
        3,
        "the file receiver got each finding once"
    );
    stop.send(()).unwrap();
    driver.await.unwrap().unwrap();
    assert!(matches!(
        router.run(async {}).await,
        Err(RoutingError::NotRunning)
    ));
}

/// A finding sent again to keep its alert firing (the preflight gate does so) is one finding:
/// listed and counted once in the alert, and written once to a sink receiver.
#[tokio::test]
async fn a_finding_sent_again_is_listed_and_delivered_once() {
    let am = MockHttp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("r.jsonl");
    let router = Router::new(config(&am.url, jsonl.to_str().unwrap())).unwrap();
    let r = router.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let driver = tokio::spawn(async move {
        r.run(async {
            let _ = stopped.await;
        })
        .await
    });
    for _ in 0..3 {
        router
            .submit(f("k1", "EXCH-9", Severity::Critical, "EXCH01"))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let posts = am.requests_to("/api/v2/alerts");
    assert_eq!(posts.len(), 1);
    let alerts: Vec<PostableAlert> = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(alerts[0].annotations["finding_ids"], "k1");
    assert_eq!(alerts[0].annotations["finding_count"], "1");
    let lines = std::fs::read_to_string(&jsonl).unwrap();
    assert_eq!(lines.lines().count(), 1, "{lines}");
    stop.send(()).unwrap();
    driver.await.unwrap().unwrap();
}

#[test]
fn new_outside_runtime_is_an_error() {
    assert!(matches!(
        Router::new(RoutingConfig::default()),
        Err(RoutingError::NoRuntime)
    ));
}

#[tokio::test]
async fn send_settles_each_finding_once_its_receivers_confirmed_or_a_rule_suppressed_it() {
    let am = MockHttp::start().await;
    // Alertmanager refuses the first post for good (400), then accepts.
    am.push(400, "bad alert");
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("r.jsonl");
    let mut cfg = config(&am.url, jsonl.to_str().unwrap());
    if let Some(ReceiverConfig::Alertmanager(a)) = cfg.receivers.get_mut("am") {
        a.retry.max_retries = Some(0);
    }
    // A failed group is posted again no sooner than its group_interval.
    cfg.route[1].group_interval = patchwatch_config::Duration::from_millis(50);
    cfg.route[2].group_interval = patchwatch_config::Duration::from_millis(50);
    let router = Router::new(cfg).unwrap();
    let r = router.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let driver = tokio::spawn(async move {
        r.run(async {
            let _ = stopped.await;
        })
        .await
    });
    let wait = |receipt: patchwatch_sinks::Receipt| async move {
        tokio::time::timeout(Duration::from_secs(5), receipt.wait())
            .await
            .expect("settled")
    };

    // Silenced (no receiver owes anything) and routed to the file (confirmed by it).
    let report = wait(
        router
            .send(vec![
                f("s1", "NOISY-1", Severity::Critical, "EXCH01"),
                f("d1", "EXCH-1", Severity::Low, "EXCH02"),
            ])
            .await,
    )
    .await;
    assert_eq!((report.delivered, report.failed), (2, 0));
    assert!(std::fs::read_to_string(&jsonl).unwrap().contains("d1"));

    // Critical goes to Alertmanager and (continue) the file: the refused post fails it,
    // even though the file confirmed it.
    let report = wait(
        router
            .send(vec![f("c1", "EXCH-1", Severity::Critical, "EXCH01")])
            .await,
    )
    .await;
    assert_eq!((report.delivered, report.failed), (0, 1));
    // Sent again (as a forwarding cursor would), it is confirmed by both.
    let report = wait(
        router
            .send(vec![f("c1", "EXCH-1", Severity::Critical, "EXCH01")])
            .await,
    )
    .await;
    assert_eq!((report.delivered, report.failed), (1, 0));
    assert_eq!(am.requests_to("/api/v2/alerts").len(), 2);

    stop.send(()).unwrap();
    driver.await.unwrap().unwrap();
}

fn escalation_config(am_url: &str, jsonl: &str) -> RoutingConfig {
    RoutingConfig::from_toml(&format!(
        r#"
default_receivers = ["file"]

[[route]]
name = "early"
rule_ids = ["EARLY-*"]
receivers = ["file"]
continue = true
group_wait = "20ms"

[[route]]
name = "maint-escalate"
in_window = true
action = "escalate"
escalate_to = "+1"
continue = true

[[route]]
name = "pager"
min_severity = "critical"
receivers = ["am"]
group_wait = "20ms"

[[route]]
name = "rest"
rule_ids = ["EXCH-*", "EARLY-*"]
receivers = ["file"]
group_wait = "20ms"

[receivers.am]
type = "alertmanager"
url = "{am_url}"

[receivers.file]
type = "jsonl"
path = "{jsonl}"
[receivers.file.batch]
timeout_ms = 10
"#
    ))
    .unwrap()
}

fn window_over(hosts: &[&str]) -> MaintenanceWindow {
    let now = OffsetDateTime::now_utc();
    MaintenanceWindow {
        id: "w1".into(),
        name: "patching".into(),
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        starts_at: now - time::Duration::minutes(5),
        ends_at: now + time::Duration::minutes(5),
        require_clean_preflight: false,
    }
}

#[tokio::test]
async fn escalation_raises_severity_for_its_route_and_later_ones_only() {
    let am = MockHttp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("r.jsonl");
    let router = Router::new(escalation_config(&am.url, jsonl.to_str().unwrap())).unwrap();
    router
        .windows()
        .replace(vec![window_over(&["EXCH0*"])])
        .unwrap();

    // In the window: high + 1 = critical, which the pager route then matches.
    let mut x = f("e1", "EXCH-1", Severity::High, "EXCH01");
    assert_eq!(
        router.decide(&mut x),
        Decision::Routed(vec![("pager".into(), "am".into())])
    );
    assert_eq!(x.severity(), Severity::Critical);
    assert_eq!(x.labels[ESCALATED_FROM_LABEL], "high");
    // Outside the window the severity stays, and so does the route.
    let mut y = f("e2", "EXCH-1", Severity::High, "DC01");
    assert_eq!(
        router.decide(&mut y),
        Decision::Routed(vec![("rest".into(), "file".into())])
    );
    assert_eq!(y.severity(), Severity::High);
    assert!(!y.labels.contains_key(ESCALATED_FROM_LABEL));
    // A rule no delivering route matches falls back to the default receivers, escalated.
    let mut z = f("e3", "MSI-1", Severity::Low, "EXCH02");
    assert_eq!(
        router.decide(&mut z),
        Decision::Routed(vec![("default".into(), "file".into())])
    );
    assert_eq!(z.severity(), Severity::Medium);

    // End to end: the early route's receiver gets the original severity, Alertmanager the
    // raised one with the original as an annotation.
    let r = router.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let driver = tokio::spawn(async move {
        r.run(async {
            let _ = stopped.await;
        })
        .await
    });
    let receipt = router
        .send(vec![f("early1", "EARLY-1", Severity::High, "EXCH01")])
        .await;
    let report = tokio::time::timeout(Duration::from_secs(5), receipt.wait())
        .await
        .expect("settled");
    assert_eq!(report.delivered, 1);
    let posts = am.requests_to("/api/v2/alerts");
    assert_eq!(posts.len(), 1);
    let alerts: Vec<PostableAlert> = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(alerts[0].labels["severity"], "critical");
    assert_eq!(alerts[0].annotations[ESCALATED_FROM_LABEL], "high");
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&jsonl).unwrap().trim()).unwrap();
    assert_eq!(line["severity"], "high", "{line}");
    assert!(line["labels"].get(ESCALATED_FROM_LABEL).is_none(), "{line}");
    stop.send(()).unwrap();
    driver.await.unwrap().unwrap();
}

#[tokio::test]
async fn escalation_config_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("r.jsonl");
    let base = || escalation_config("http://127.0.0.1:9", jsonl.to_str().unwrap());
    let mut c = base();
    c.route[1].escalate_to = None;
    let e = Router::new(c).unwrap_err().to_string();
    assert!(
        e.contains("route `maint-escalate`") && e.contains("`escalate_to`"),
        "{e}"
    );
    let mut c = base();
    c.route[1].escalate_to = Some("urgent".into());
    let e = Router::new(c).unwrap_err().to_string();
    assert!(e.contains("`escalate_to`") && e.contains("urgent"), "{e}");
    let mut c = base();
    c.route[2].escalate_to = Some("critical".into());
    let e = Router::new(c).unwrap_err().to_string();
    assert!(
        e.contains("route `pager`") && e.contains("`escalate_to`"),
        "{e}"
    );
    let mut c = base();
    c.route[1].continue_ = false;
    let e = Router::new(c).unwrap_err().to_string();
    assert!(e.contains("`receivers`"), "{e}");
}

#[tokio::test]
async fn stored_silences_sit_beside_configured_ones() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("r.jsonl");
    let router = Router::new(config("http://127.0.0.1:9", jsonl.to_str().unwrap())).unwrap();
    let now = OffsetDateTime::now_utc();
    let silence = SilenceConfig {
        id: "s1".into(),
        comment: "CHG-1".into(),
        created_by: "alice".into(),
        rule_ids: vec!["EXCH-*".into()],
        severities: vec!["low".into(), "medium".into()],
        hosts: vec!["exch0*".into()],
        labels: [("env".to_owned(), "prod".to_owned())].into(),
        starts_at: Some(now - time::Duration::minutes(1)),
        ends_at: Some(now + time::Duration::minutes(5)),
    };
    router.set_stored_silences(vec![silence.clone()]).unwrap();
    let d = |mut x: patchwatch_proto::Finding| router.decide(&mut x);
    assert_eq!(
        d(f("1", "EXCH-1", Severity::Low, "EXCH01")),
        Decision::Silenced("s1".into())
    );
    assert!(
        matches!(
            d(f("2", "EXCH-1", Severity::High, "EXCH01")),
            Decision::Routed(_)
        ),
        "severity not listed"
    );
    assert!(matches!(
        d(f("3", "EXCH-1", Severity::Low, "DC01")),
        Decision::Routed(_)
    ));
    assert_eq!(
        d(f("4", "NOISY-1", Severity::Low, "DC01")),
        Decision::Silenced("noisy".into()),
        "configured silences stay"
    );
    assert_eq!(router.silences().len(), 1);

    // Invalid sets are refused whole, naming the field.
    for (edit, field) in [
        (
            (|s: &mut SilenceConfig| s.hosts = vec!["EX[0".into()]) as fn(&mut SilenceConfig),
            "`hosts`",
        ),
        (|s| s.severities = vec!["urgent".into()], "`severities`"),
        (|s| s.ends_at = s.starts_at, "`ends_at`"),
        (|s| s.id = "bad id".into(), "`id`"),
    ] {
        let mut bad = silence.clone();
        edit(&mut bad);
        let e = router
            .set_stored_silences(vec![bad])
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{e}");
    }
    let e = router
        .set_stored_silences(vec![silence.clone(), silence.clone()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("duplicate"), "{e}");
    assert_eq!(
        d(f("5", "EXCH-1", Severity::Low, "EXCH01")),
        Decision::Silenced("s1".into()),
        "a refused set keeps the previous one"
    );
    // Expired: routed again.
    let mut expired = silence;
    expired.ends_at = Some(now - time::Duration::seconds(1));
    expired.starts_at = Some(now - time::Duration::minutes(2));
    router.set_stored_silences(vec![expired]).unwrap();
    assert!(matches!(
        d(f("6", "EXCH-1", Severity::Low, "EXCH01")),
        Decision::Routed(_)
    ));
}
