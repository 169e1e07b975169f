//! Reading a real Alertmanager (`.ci/setup-alertmanager.sh`, `PATCHWATCH_ALERTMANAGER_URL`).

/// The alerts of `rule` in the Alertmanager at `base` (`GET /api/v2/alerts`).
pub async fn alerts(base: &str, rule: &str) -> Vec<serde_json::Value> {
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/v2/alerts"))
        .query(&[("filter", format!("rule_id=\"{rule}\""))])
        .send()
        .await
        .expect("Alertmanager answers");
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.expect("Alertmanager's alerts are JSON")
}

/// The `host` labels of `alerts`, sorted.
pub fn hosts_of(alerts: &[serde_json::Value]) -> Vec<String> {
    let mut h: Vec<String> = alerts
        .iter()
        .map(|a| a["labels"]["host"].as_str().unwrap_or("").to_owned())
        .collect();
    h.sort();
    h
}
