use patchwatch_proto::Severity;

use super::*;
use crate::encoding::sample_finding;
use crate::testutil::{fast_retry, quick_batch, MockHttp};

fn config(url: &str) -> WebhookConfig {
    WebhookConfig {
        url: url.to_string(),
        headers: [("X-Team".to_string(), "exchange".to_string())].into(),
        token: Some(crate::Secret::inline("s3cret")),
        template: None,
        template_field: "text".into(),
        tls: None,
        batch: quick_batch(10),
        retry: fast_retry(),
    }
}

#[tokio::test]
async fn posts_json_batch_with_auth_and_retries_503() {
    let mock = MockHttp::start().await;
    mock.push(503, "busy");
    let (sink, _) = build("hook", &config(&format!("{}/hook", mock.url))).unwrap();
    let report = sink
        .send(vec![
            sample_finding("a", "EXCH-1", Severity::High, "EXCH01"),
            sample_finding("b", "EXCH-2", Severity::Low, "EXCH02"),
        ])
        .await
        .wait()
        .await;
    assert_eq!(report.delivered, 2);
    let reqs = mock.requests_to("/hook");
    assert_eq!(reqs.len(), 2, "one 503 then one success");
    let last = &reqs[1];
    assert_eq!(last.headers["authorization"], "Bearer s3cret");
    assert_eq!(last.headers["x-team"], "exchange");
    let v: serde_json::Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(v["findings"].as_array().unwrap().len(), 2);
    assert_eq!(v["findings"][1]["host"], "EXCH02");
}

#[tokio::test]
async fn template_renders_one_message_per_finding() {
    let mock = MockHttp::start().await;
    let mut cfg = config(&mock.url);
    cfg.template = Some("{{severity}}: {{title}} on {{host}} [{{labels.env}}]".into());
    let (sink, _) = build("chat", &cfg).unwrap();
    let mut f = sample_finding("a", "EXCH-1", Severity::Critical, "EXCH01");
    f.title = "Setup \"failed\"\nagain".into();
    let report = sink.send(vec![f]).await.wait().await;
    assert_eq!(report.delivered, 1);
    let v: serde_json::Value = serde_json::from_slice(&mock.requests()[0].body).unwrap();
    assert_eq!(
        v["text"],
        "critical: Setup \"failed\"\nagain on EXCH01 [prod]"
    );
}

#[tokio::test]
async fn client_error_is_not_retried() {
    let mock = MockHttp::start().await;
    mock.push(400, "bad");
    let (sink, _) = build("hook", &config(&mock.url)).unwrap();
    let report = sink
        .send(vec![sample_finding("a", "R", Severity::High, "H")])
        .await
        .wait()
        .await;
    assert_eq!(report.failed, 1);
    assert_eq!(mock.requests().len(), 1);
    assert!(sink.health().last_error.unwrap().contains("HTTP 400"));
}

#[test]
fn bad_template_and_url_are_named() {
    let mut cfg = config("http://127.0.0.1:1/");
    cfg.template = Some("{{titel}}".into());
    let err = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { build("chat", &cfg).map(|_| ()).unwrap_err().to_string() });
    assert!(err.contains("template") && err.contains("titel"), "{err}");
    cfg.template = None;
    cfg.url = "ftp://x".into();
    let err = build("chat", &cfg).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("`url`") && err.contains("ftp"), "{err}");
}

#[test]
fn debug_never_shows_token() {
    let cfg = config("http://x/");
    assert!(!format!("{cfg:?}").contains("s3cret"));
}
