use patchwatch_proto::Severity;
use serde_json::json;

use super::*;
use crate::encoding::sample_finding;
use crate::testutil::{fast_retry, quick_batch, MockHttp};

fn config(url: &str) -> ElasticsearchConfig {
    let mut c: ElasticsearchConfig = toml::from_str(&format!(
        "endpoint = {url:?}\nindex = \"findings\"\nusername = \"elastic\"\npassword = \"pw\"\n"
    ))
    .unwrap();
    c.batch = quick_batch(10);
    c.retry = fast_retry();
    c
}

fn lines(body: &[u8]) -> Vec<serde_json::Value> {
    std::str::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn bulk_body_is_ndjson_create_with_ecs_fields() {
    let mock = MockHttp::start().await;
    let (sink, _) = build("es", &config(&mock.url)).unwrap();
    let r = sink
        .send(vec![sample_finding(
            "f1",
            "EXCH-0042",
            Severity::High,
            "EXCH01",
        )])
        .await
        .wait()
        .await;
    assert_eq!(r.delivered, 1);
    let req = &mock.requests_to("/_bulk")[0];
    assert_eq!(req.headers["content-type"], "application/x-ndjson");
    assert!(req.headers["authorization"]
        .to_str()
        .unwrap()
        .starts_with("Basic "));
    assert!(req.text().ends_with('\n'), "bulk bodies end with a newline");
    let l = lines(&req.body);
    assert_eq!(l.len(), 2);
    assert_eq!(l[0], json!({"create": {"_index": "findings", "_id": "f1"}}));
    let d = &l[1];
    assert_eq!(d["@timestamp"], "2025-11-21T05:28:01.123456Z");
    assert_eq!(d["event"]["kind"], "alert");
    assert_eq!(d["event"]["category"], json!(["package"]));
    assert_eq!(d["event"]["code"], "0x80070643");
    assert_eq!(d["rule"]["id"], "EXCH-0042");
    assert_eq!(
        d["log"]["file"]["path"],
        r"C:\ExchangeSetupLogs\ExchangeSetup.log"
    );
    assert_eq!(d["host"]["name"], "EXCH01");
    assert_eq!(d["ecs"]["version"], "9.4.0");
    assert_eq!(d["labels"]["env"], "prod");
}

#[tokio::test]
async fn only_429_and_5xx_items_are_retried() {
    let mock = MockHttp::start().await;
    // Items: 0 created, 1 throttled, 2 mapping error, 3 already exists, 4 unavailable.
    mock.push(
        200,
        json!({"errors": true, "items": [
            {"create": {"status": 201}},
            {"create": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}},
            {"create": {"status": 400, "error": {"type": "mapper_parsing_exception"}}},
            {"create": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}},
            {"create": {"status": 503, "error": {"type": "unavailable_shards_exception"}}},
        ]})
        .to_string(),
    );
    mock.push(200, json!({"errors": false, "items": []}).to_string());
    let (sink, _) = build("es", &config(&mock.url)).unwrap();
    let batch: Vec<_> = (0..5)
        .map(|i| sample_finding(&format!("f{i}"), "R", Severity::High, "H"))
        .collect();
    let r = sink.send(batch).await.wait().await;
    assert_eq!(r.delivered, 4);
    assert_eq!(r.rejected, 1);
    let reqs = mock.requests_to("/_bulk");
    assert_eq!(reqs.len(), 2);
    let ids: Vec<_> = lines(&reqs[1].body)
        .iter()
        .filter_map(|l| {
            l.get("create")
                .map(|c| c["_id"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(ids, ["f1", "f4"]);
}

#[tokio::test]
async fn whole_request_429_is_retried_and_401_fails() {
    let mock = MockHttp::start().await;
    mock.push(429, "{}");
    let (sink, _) = build("es", &config(&mock.url)).unwrap();
    let r = sink
        .send(vec![sample_finding("f1", "R", Severity::High, "H")])
        .await
        .wait()
        .await;
    assert_eq!(r.delivered, 1);
    assert_eq!(mock.requests().len(), 2);
    mock.push(401, "{\"error\":\"unauthorized\"}");
    let r = sink
        .send(vec![sample_finding("f2", "R", Severity::High, "H")])
        .await
        .wait()
        .await;
    assert_eq!(r.failed, 1);
}

#[test]
fn auth_and_index_validation_names_fields() {
    let mut c = config("http://127.0.0.1:1");
    c.index = "Bad Index".into();
    let e = build("es", &c).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("`index`"), "{e}");
    let mut c = config("http://127.0.0.1:1");
    c.username = None;
    let e = build("es", &c).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("`username`"), "{e}");
    assert!(!format!("{c:?}").contains("\"pw\""));
}
