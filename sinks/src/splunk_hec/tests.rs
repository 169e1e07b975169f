use patchwatch_proto::Severity;

use super::*;
use crate::encoding::sample_finding;
use crate::testutil::{fast_retry, quick_batch, MockHttp};

fn config(url: &str, ack: bool) -> SplunkHecConfig {
    let text = format!(
        "endpoint = {url:?}\ntoken = \"00000000-0000-0000-0000-000000000001\"\nindex = \"exchange\"\n\
         indexer_ack = {ack}\nack_poll_interval = \"10ms\"\nack_timeout = \"2s\"\n"
    );
    let mut c: SplunkHecConfig = toml::from_str(&text).unwrap();
    c.batch = quick_batch(10);
    c.retry = fast_retry();
    c
}

/// Splits concatenated JSON envelopes.
fn envelopes(body: &[u8]) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<serde_json::Value>()
        .map(|v| v.unwrap())
        .collect()
}

#[tokio::test]
async fn batch_is_concatenated_envelopes_with_documented_keys() {
    let mock = MockHttp::start().await;
    mock.push(200, r#"{"text":"Success","code":0}"#);
    let (sink, _) = build("hec", &config(&mock.url, false)).unwrap();
    let report = sink
        .send(vec![
            sample_finding("f1", "EXCH-0042", Severity::High, "EXCH01"),
            sample_finding("f2", "MSI-1603", Severity::Critical, "EXCH02"),
        ])
        .await
        .wait()
        .await;
    assert_eq!(report.delivered, 2);
    let reqs = mock.requests_to("/services/collector/event");
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].headers["authorization"],
        "Splunk 00000000-0000-0000-0000-000000000001"
    );
    assert!(uuid::Uuid::parse_str(
        reqs[0].headers["x-splunk-request-channel"]
            .to_str()
            .unwrap()
    )
    .is_ok());
    let evs = envelopes(&reqs[0].body);
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0]["time"].as_f64().unwrap(), 1763702881.123);
    assert_eq!(evs[0]["host"], "EXCH01");
    assert_eq!(evs[0]["source"], "patchwatch");
    assert_eq!(evs[0]["sourcetype"], "patchwatch:finding");
    assert_eq!(evs[0]["index"], "exchange");
    assert_eq!(evs[0]["event"]["rule_id"], "EXCH-0042");
    assert_eq!(evs[1]["fields"]["severity"], "critical");
    assert_eq!(evs[1]["fields"]["finding_id"], "f2");
    assert!(evs[1]["fields"]
        .as_object()
        .unwrap()
        .values()
        .all(|v| v.is_string()));
}

#[tokio::test]
async fn busy_server_is_retried_and_invalid_data_rejected() {
    let mock = MockHttp::start().await;
    mock.push(503, r#"{"text":"Server is busy","code":9}"#);
    mock.push(200, r#"{"text":"Success","code":0}"#);
    let (sink, _) = build("hec", &config(&mock.url, false)).unwrap();
    let r = sink
        .send(vec![sample_finding("f1", "R", Severity::High, "H")])
        .await
        .wait()
        .await;
    assert_eq!(r.delivered, 1);
    assert_eq!(mock.requests().len(), 2);

    mock.push(
        400,
        r#"{"text":"Invalid data format","code":6,"invalid-event-number":0}"#,
    );
    let r = sink
        .send(vec![sample_finding("f2", "R", Severity::High, "H")])
        .await
        .wait()
        .await;
    assert_eq!(r.rejected, 1);
    assert_eq!(mock.requests().len(), 3, "invalid data is not retried");

    mock.push(403, r#"{"text":"Invalid token","code":4}"#);
    let r = sink
        .send(vec![sample_finding("f3", "R", Severity::High, "H")])
        .await
        .wait()
        .await;
    assert_eq!(r.failed, 1);
}

#[tokio::test]
async fn indexer_ack_is_polled_until_true() {
    let mock = MockHttp::start().await;
    let polls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let p = polls.clone();
    mock.respond_with(move |req| {
        if req.path == "/services/collector/event" {
            return Some((200, r#"{"text":"Success","code":0,"ackId":7}"#.into()));
        }
        if req.path == "/services/collector/ack" {
            let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(v["acks"][0], 7);
            let n = p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let done = n >= 2;
            return Some((200, format!(r#"{{"acks":{{"7":{done}}}}}"#)));
        }
        None
    });
    let (sink, _) = build("hec", &config(&mock.url, true)).unwrap();
    let r = sink
        .send(vec![sample_finding("f1", "R", Severity::High, "H")])
        .await
        .wait()
        .await;
    assert_eq!(r.delivered, 1);
    assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 3);
    let acks = mock.requests_to("/services/collector/ack");
    let chan = mock.requests_to("/services/collector/event")[0].headers["x-splunk-request-channel"]
        .clone();
    assert!(acks
        .iter()
        .all(|a| a.headers["x-splunk-request-channel"] == chan));
}

#[tokio::test]
async fn ack_timeout_resends() {
    let mock = MockHttp::start().await;
    let events = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let e = events.clone();
    mock.respond_with(move |req| {
        if req.path == "/services/collector/event" {
            let n = e.fetch_add(1, std::sync::atomic::Ordering::SeqCst) as u64;
            return Some((200, format!(r#"{{"text":"Success","code":0,"ackId":{n}}}"#)));
        }
        // Only the second post's ack (id 1) ever becomes true.
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let id = v["acks"][0].as_u64().unwrap();
        Some((200, format!(r#"{{"acks":{{"{id}":{}}}}}"#, id == 1)))
    });
    let mut cfg = config(&mock.url, true);
    cfg.ack_timeout = patchwatch_config::Duration::from_millis(100);
    let (sink, _) = build("hec", &cfg).unwrap();
    let r = sink
        .send(vec![sample_finding("f1", "R", Severity::High, "H")])
        .await
        .wait()
        .await;
    assert_eq!(r.delivered, 1);
    assert_eq!(events.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[test]
fn missing_token_and_bad_channel_are_named() {
    let mut cfg = config("http://127.0.0.1:1", false);
    cfg.token = None;
    let err = build("hec", &cfg).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("`token`") && err.contains("required"), "{err}");
    cfg.token = Some(crate::Secret::from_env("PATCHWATCH_TEST_HEC_TOKEN_UNSET"));
    let err = build("hec", &cfg).map(|_| ()).unwrap_err().to_string();
    assert_eq!(
        err,
        "sink `hec`: secret `token`: environment variable `PATCHWATCH_TEST_HEC_TOKEN_UNSET` is not set"
    );
    let mut cfg = config("http://127.0.0.1:1", false);
    cfg.channel = Some("not-a-guid".into());
    let err = build("hec", &cfg).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("channel"), "{err}");
}
