use patchwatch_proto::Severity;

use super::*;
use crate::encoding::sample_finding;

#[tokio::test]
async fn appends_one_line_per_finding_and_acks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let cfg: JsonlConfig =
        toml::from_str(&format!("path = {:?}\n", path.display().to_string())).unwrap();
    let (sink, hc) = build("file", &cfg).unwrap();
    hc.await.unwrap();
    let findings: Vec<_> = (0..3)
        .map(|i| sample_finding(&format!("f{i}"), "EXCH-0042", Severity::High, "EXCH01"))
        .collect();
    let report = sink.send(findings).await.wait().await;
    assert_eq!(report.delivered, 3);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["id"], "f2");
    assert_eq!(lines[0]["severity"], "high");
}

#[tokio::test]
async fn missing_directory_fails_healthcheck_and_retries_until_created() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("later");
    let path = sub.join("out.jsonl");
    let cfg = JsonlConfig {
        path: Some(path.clone()),
        fsync: true,
        batch: crate::BatchConfig {
            timeout: patchwatch_config::Duration::from_millis(10),
            ..Default::default()
        },
        retry: crate::RetryConfig {
            initial_backoff: patchwatch_config::Duration::from_millis(10),
            max_backoff: patchwatch_config::Duration::from_millis(20),
            ..Default::default()
        },
    };
    let (sink, hc) = build("file", &cfg).unwrap();
    let err = hc.await.unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    let receipt = sink
        .send(vec![sample_finding("a", "R", Severity::Low, "H")])
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(sink.health().consecutive_failures > 0);
    std::fs::create_dir(&sub).unwrap();
    let report = tokio::time::timeout(std::time::Duration::from_secs(5), receipt.wait())
        .await
        .unwrap();
    assert_eq!(report.delivered, 1);
    assert_eq!(sink.health().consecutive_failures, 0);
}

#[test]
fn unknown_field_is_named() {
    let err = toml::from_str::<JsonlConfig>("pth = \"/tmp/x\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("pth"), "{err}");
}
