//! `/api/v1/silences` over loopback on SQLite and PostgreSQL: a silence created through the
//! API keeps matching findings from a real Prometheus Alertmanager (`.ci/setup-alertmanager.sh`,
//! read back through `GET /api/v2/alerts`) while non-matching ones alert; silenced findings
//! are still stored and forwarded to `[sinks]`; the silence survives a restart; expiring it
//! restores notifications. Bad requests get a 400 naming the field.

use std::net::SocketAddr;
use std::path::Path;

use crate::common::*;
use patchwatch_aggregator::Config;
use serde_json::{json, Value};

backend_tests! {
    silences_stop_alerts_persist_and_expire => lifecycle;
    bad_silence_requests_name_the_field => validation;
}

async fn post(http: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{http}{path}"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn am_hosts(am: &str, rule: &str) -> Vec<String> {
    hosts_of(&am_alerts(am, rule).await)
}

/// `backend`'s config with routing to Alertmanager and a JSON Lines SIEM sink.
async fn routed_config(
    backend: Backend,
    am: &str,
    archive: &Path,
) -> Option<(Config, tempfile::TempDir)> {
    let (mut config, dir) = config(backend).await?;
    let extra = Config::parse(
        &format!(
            r#"
[routing]
[[routing.route]]
name = "pager"
rule_ids = ["SIL-*"]
receivers = ["am"]
group_by = ["rule_id", "host"]
group_wait = "100ms"
group_interval = "100ms"
resolve_after = "1h"

[[routing.silences]]
id = "from-config"
comment = "read-only"
hosts = ["NEVER*"]

[routing.receivers.am]
type = "alertmanager"
url = "{am}"

[sinks.archive]
type = "jsonl"
path = {archive:?}
[sinks.archive.batch]
timeout_ms = 20
"#
        ),
        "test.toml",
    )
    .unwrap();
    config.routing = extra.routing;
    config.sinks = extra.sinks;
    Some((config, dir))
}

async fn lifecycle(backend: Backend) {
    let Some(am) = env_or_skip("PATCHWATCH_ALERTMANAGER_URL", "setup-alertmanager.sh") else {
        return;
    };
    let token = format!("{:08x}", rand::random::<u32>());
    let rule = format!("SIL-{token}");
    let files = tempfile::tempdir().unwrap();
    let archive = files.path().join("archive.jsonl");
    let Some((config, _dir)) = routed_config(backend, &am, &archive).await else {
        return;
    };
    let (agg, shutdown) = start(config.clone()).await;
    let http = agg.http_addr();

    let (status, s) = post(
        http,
        "/api/v1/silences",
        &json!({"id": format!("s-{token}"), "comment": "CHG-42 reboot", "created_by": "alice",
                "rule_ids": [rule], "hosts": "MUTED*", "duration": "1h"})
        .to_string(),
    )
    .await;
    assert_eq!(status, 201, "{s}");
    assert_eq!(s["state"], "active");
    assert_eq!(s["source"], "api");
    assert_eq!(s["created_by"], "alice");
    assert_eq!(s["hosts"], json!(["MUTED*"]));
    let (status, body) = post(
        http,
        "/api/v1/silences",
        &json!({"id": format!("s-{token}"), "comment": "again", "created_by": "bob",
                "hosts": "X", "duration": "1h"})
        .to_string(),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = post(http, "/api/v1/silences/from-config/expire", "").await;
    assert_eq!(status, 409, "configured silences are read-only");

    // A matching and a non-matching finding in one batch: only the second alerts; both are
    // stored and both reach the SIEM sink.
    let mut grpc = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut grpc).await.unwrap();
    stream
        .roundtrip(batch_of(
            1,
            vec![
                fresh(&format!("m1-{token}"), "MUTED01", &rule, 4),
                fresh(&format!("o1-{token}"), "OPEN01", &rule, 4),
            ],
        ))
        .await;
    eventually(WAIT, "the OPEN01 alert", async || {
        (am_hosts(&am, &rule).await == ["OPEN01"]).then_some(())
    })
    .await;
    eventually(WAIT, "both findings in the SIEM sink", async || {
        (lines_with(&archive, &format!("m1-{token}")).len() == 1
            && lines_with(&archive, &format!("o1-{token}")).len() == 1)
            .then_some(())
    })
    .await;
    let f = get_json(http, &format!("/api/v1/findings/m1-{token}")).await;
    assert_eq!(f["host"], "MUTED01", "a silenced finding is stored");
    drop(stream);

    // The silence is stored: after a restart it still applies.
    shutdown.cancel();
    agg.wait().await.unwrap();
    let (agg, shutdown) = start(config).await;
    let http = agg.http_addr();
    let list = get_json(http, "/api/v1/silences").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    assert_eq!(items[0]["id"], "from-config");
    assert_eq!(items[0]["source"], "config");
    assert_eq!(items[1]["id"], format!("s-{token}"));
    assert_eq!(items[1]["state"], "active");
    assert_eq!(items[1]["comment"], "CHG-42 reboot");
    let mut grpc = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut grpc).await.unwrap();
    stream
        .roundtrip(batch_of(
            2,
            vec![
                fresh(&format!("m2-{token}"), "MUTED01", &rule, 4),
                fresh(&format!("o2-{token}"), "OPEN02", &rule, 4),
            ],
        ))
        .await;
    eventually(WAIT, "the OPEN02 alert", async || {
        (am_hosts(&am, &rule).await == ["OPEN01", "OPEN02"]).then_some(())
    })
    .await;

    // Expired: the next matching finding alerts.
    let (status, s) = post(http, &format!("/api/v1/silences/s-{token}/expire"), "").await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["state"], "expired");
    let (status, _) = post(http, "/api/v1/silences/nope/expire", "").await;
    assert_eq!(status, 404);
    stream
        .roundtrip(batch_of(
            3,
            vec![fresh(&format!("m3-{token}"), "MUTED01", &rule, 4)],
        ))
        .await;
    eventually(WAIT, "the MUTED01 alert after the expiry", async || {
        (am_hosts(&am, &rule).await == ["MUTED01", "OPEN01", "OPEN02"]).then_some(())
    })
    .await;
    let list = get_json(http, "/api/v1/silences").await;
    assert_eq!(list["items"][1]["state"], "expired", "{list}");

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
}

async fn validation(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let http = agg.http_addr();
    let later = |h: i64| {
        (time::OffsetDateTime::now_utc() + time::Duration::hours(h))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let ok = || json!({"comment": "c", "created_by": "me", "hosts": "h", "duration": "1h"});
    let with = |key: &str, v: Value| {
        let mut b = ok();
        b[key] = v;
        b
    };
    let without = |key: &str| {
        let mut b = ok();
        b.as_object_mut().unwrap().remove(key);
        b
    };
    for (body, field, mention) in [
        ("{".to_owned(), "body", ""),
        (with("colour", json!(1)).to_string(), "body", "colour"),
        (without("comment").to_string(), "comment", ""),
        (without("created_by").to_string(), "created_by", ""),
        (without("hosts").to_string(), "matchers", ""),
        (with("hosts", json!(["EX[0"])).to_string(), "hosts", "EX[0"),
        (
            with("rule_ids", json!("EXCH-{")).to_string(),
            "rule_ids",
            "",
        ),
        (
            with("severities", json!(["urgent"])).to_string(),
            "severities",
            "urgent",
        ),
        (
            with("starts_at", json!(later(3)))
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.remove("duration");
                    o.insert("ends_at".into(), json!(later(2)));
                    Value::Object(o).to_string()
                })
                .unwrap(),
            "ends_at",
            "after starts_at",
        ),
        (with("duration", json!("soon")).to_string(), "duration", ""),
        (
            with("starts_at", json!("tomorrow")).to_string(),
            "starts_at",
            "",
        ),
        (with("id", json!("bad id!")).to_string(), "id", ""),
        (
            with("ends_at", json!(later(1))).to_string(),
            "ends_at",
            "exactly one",
        ),
    ] {
        let (status, resp) = post(http, "/api/v1/silences", &body).await;
        assert_eq!(status, 400, "{body}: {resp}");
        let msg = resp["error"].as_str().unwrap();
        assert!(msg.starts_with(&format!("{field}:")), "{body}: {msg}");
        assert!(msg.contains(mention), "{body}: {msg}");
    }
    assert_eq!(
        get_json(http, "/api/v1/silences").await["items"],
        json!([]),
        "nothing stored"
    );
    shutdown.cancel();
    agg.wait().await.unwrap();
}
