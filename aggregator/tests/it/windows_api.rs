//! `/api/v1/windows` over loopback on SQLite and PostgreSQL: create, list, end, validation
//! errors naming the field, conflicts, persistence across a restart, tagging of stored
//! findings, and the write rules (token when configured; refused beyond loopback without one).

use std::net::SocketAddr;

use crate::common::*;
use patchwatch_aggregator::config::TokenConfig;
use serde_json::{json, Value};

backend_tests! {
    windows_are_created_listed_ended_and_persisted => lifecycle;
    bad_window_requests_name_the_field => validation;
    window_writes_follow_the_token_rules => auth;
}

async fn post(http: SocketAddr, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{http}{path}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn rfc3339(offset: time::Duration) -> String {
    (time::OffsetDateTime::now_utc() + offset)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn lifecycle(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config.clone()).await;
    let http = agg.http_addr();

    let (status, w) = post(
        http,
        "/api/v1/windows",
        &json!({"name": "CU15 wave 2", "hosts": ["EX0*", "MBX1"], "duration": "2h"}).to_string(),
        None,
    )
    .await;
    assert_eq!(status, 201, "{w}");
    let id = w["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cu15-wave-2-"), "{id}");
    assert_eq!(w["state"], "active");
    assert_eq!(w["hosts"], json!(["EX0*", "MBX1"]));
    let (status, later) = post(
        http,
        "/api/v1/windows",
        &json!({"id": "later", "name": "Later", "hosts": "DC*, EX09",
                "starts_at": rfc3339(time::Duration::hours(1)),
                "ends_at": rfc3339(time::Duration::hours(3))})
        .to_string(),
        None,
    )
    .await;
    assert_eq!(status, 201, "{later}");
    assert_eq!(later["state"], "scheduled");
    assert_eq!(later["hosts"], json!(["DC*", "EX09"]));
    // The same id again is a conflict.
    let (status, body) = post(
        http,
        "/api/v1/windows",
        &json!({"id": "later", "name": "Again", "hosts": "X", "duration": "1h"}).to_string(),
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("id:"), "{body}");

    // Findings of covered hosts are stored with the window's label; others are not.
    let mut grpc = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut grpc).await.unwrap();
    let mut b = batch("c1", 1, "EX01", "in", 1);
    b.findings[0].observed_time_unix_nano = now_ns();
    let mut other = finding("out-0", "EX10", "EXCH-001", 3, "EX10-run-1");
    other.observed_time_unix_nano = now_ns();
    b.findings.push(other);
    stream.roundtrip(b).await;
    let f = get_json(http, "/api/v1/findings/in-0").await;
    assert_eq!(f["labels"]["maintenance_window"], id.as_str());
    assert_eq!(f["labels"]["site"], "dc1", "collector labels are kept");
    let f = get_json(http, "/api/v1/findings/out-0").await;
    assert!(f["labels"]["maintenance_window"].is_null(), "{f}");
    drop(stream);

    // The dashboard shows the active window, not the scheduled one.
    let page = reqwest::get(format!("http://{http}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("CU15 wave 2") && !page.contains("Later"));

    // Windows survive a restart, and are loaded into the tagger at start.
    shutdown.cancel();
    agg.wait().await.unwrap();
    let (agg, shutdown) = start(config).await;
    let http = agg.http_addr();
    let list = get_json(http, "/api/v1/windows").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    assert_eq!(items[0]["id"], "later", "latest start first");
    assert_eq!(items[1]["id"], id.as_str());
    assert_eq!(items[1]["source"], "api");
    let mut grpc = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut grpc).await.unwrap();
    let mut b = batch("c1", 2, "MBX1", "again", 1);
    b.findings[0].observed_time_unix_nano = now_ns();
    stream.roundtrip(b).await;
    let f = get_json(http, "/api/v1/findings/again-0").await;
    assert_eq!(f["labels"]["maintenance_window"], id.as_str());

    // Ending: ends_at becomes now; a scheduled window ends before it starts; unknown is 404.
    let (status, ended) = post(http, &format!("/api/v1/windows/{id}/end"), "", None).await;
    assert_eq!(
        (status, ended["state"].as_str()),
        (200, Some("ended")),
        "{ended}"
    );
    let (status, ended_later) = post(http, "/api/v1/windows/later/end", "", None).await;
    assert_eq!(status, 200);
    assert_eq!(ended_later["state"], "ended");
    assert_eq!(ended_later["starts_at"], ended_later["ends_at"]);
    let (status, _) = post(http, "/api/v1/windows/nope/end", "", None).await;
    assert_eq!(status, 404);
    // After the end, new findings of the host are no longer tagged.
    let mut b = batch("c1", 3, "EX01", "after", 1);
    b.findings[0].observed_time_unix_nano = now_ns();
    stream.roundtrip(b).await;
    let f = get_json(http, "/api/v1/findings/after-0").await;
    assert!(f["labels"]["maintenance_window"].is_null(), "{f}");
    let list = get_json(http, "/api/v1/windows").await;
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["state"] == "ended"));

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
    let past = rfc3339(-time::Duration::hours(1));
    for (body, field) in [
        ("not json".to_owned(), "body"),
        (
            json!({"name": "x", "hosts": "h", "duration": "1h", "colour": 1}).to_string(),
            "body",
        ),
        (json!({"hosts": "h", "duration": "1h"}).to_string(), "name"),
        (json!({"name": "x", "duration": "1h"}).to_string(), "hosts"),
        (
            json!({"name": "x", "hosts": " , ", "duration": "1h"}).to_string(),
            "hosts",
        ),
        (
            json!({"name": "x", "hosts": ["EX[0"], "duration": "1h"}).to_string(),
            "hosts",
        ),
        (json!({"name": "x", "hosts": "h"}).to_string(), "ends_at"),
        (
            json!({"name": "x", "hosts": "h", "duration": "1h", "ends_at": past}).to_string(),
            "ends_at",
        ),
        (
            json!({"name": "x", "hosts": "h", "duration": "soon"}).to_string(),
            "duration",
        ),
        (
            json!({"name": "x", "hosts": "h", "starts_at": "tomorrow", "duration": "1h"})
                .to_string(),
            "starts_at",
        ),
        (
            json!({"name": "x", "hosts": "h", "ends_at": past}).to_string(),
            "ends_at",
        ),
        (
            json!({"id": "bad id!", "name": "x", "hosts": "h", "duration": "1h"}).to_string(),
            "id",
        ),
    ] {
        let (status, resp) = post(http, "/api/v1/windows", &body, None).await;
        assert_eq!(status, 400, "{body}: {resp}");
        let msg = resp["error"].as_str().unwrap();
        assert!(msg.starts_with(&format!("{field}:")), "{body}: {msg}");
    }
    assert_eq!(
        get_json(http, "/api/v1/windows").await["items"],
        json!([]),
        "nothing stored"
    );
    shutdown.cancel();
    agg.wait().await.unwrap();
}

async fn auth(backend: Backend) {
    let Some((mut config, _dir)) = config(backend).await else {
        return;
    };
    let body = json!({"name": "x", "hosts": "h", "duration": "1h"}).to_string();
    config.http.tokens = vec![TokenConfig::new(
        "ops",
        patchwatch_config::Secret::inline("s3cret"),
    )];
    let (agg, shutdown) = start(config.clone()).await;
    let http = agg.http_addr();
    assert_eq!(post(http, "/api/v1/windows", &body, None).await.0, 401);
    assert_eq!(
        post(http, "/api/v1/windows", &body, Some("wrong")).await.0,
        401
    );
    assert_eq!(
        post(http, "/api/v1/windows", &body, Some("s3cret")).await.0,
        201
    );
    shutdown.cancel();
    agg.wait().await.unwrap();

    // A listener configured beyond loopback without tokens serves reads but refuses writes.
    // (The test binds loopback itself; the configured address drives the security rules.)
    config.http.tokens.clear();
    config.http.listen = "0.0.0.0:0".parse().unwrap();
    config.http.allow_plaintext = true;
    config.http.allow_unauthenticated = true;
    let (agg, shutdown) = start(config).await;
    let http = agg.http_addr();
    let (status, resp) = post(http, "/api/v1/windows", &body, None).await;
    assert_eq!(status, 403, "{resp}");
    assert!(resp["error"].as_str().unwrap().contains("token"), "{resp}");
    assert_eq!(post(http, "/api/v1/windows/x/end", "", None).await.0, 403);
    let list = get_json(http, "/api/v1/windows").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    shutdown.cancel();
    agg.wait().await.unwrap();
}
