//! The HTTP API over loopback: filters and paging, finding detail, hosts and runs, the event
//! stream, read tokens, `/metrics` and `/healthz`; on SQLite and PostgreSQL.

use std::time::Duration;

use crate::common::*;
use patchwatch_aggregator::config::TokenConfig;

backend_tests! {
    filters_and_pages_findings => filters_and_pages_findings;
    events_stream_new_findings_and_host_rows => events_stream_new_findings_and_host_rows;
}

async fn filters_and_pages_findings(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let http = agg.http_addr();
    let mut client = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut client).await.unwrap();
    stream.roundtrip(batch("c1", 1, "EXCH01", "a", 10)).await;
    stream.roundtrip(batch("c1", 2, "EXCH02", "b", 5)).await;
    let mut failed = batch("c1", 3, "EXCH02", "c", 0);
    failed.run_updates = vec![run_update(
        "EXCH02-run-1",
        "EXCH02",
        3,
        "Mailbox role: Transport service",
        1_763_800_000_000_000_000,
    )];
    stream.roundtrip(failed).await;

    let count = |v: &serde_json::Value| v["items"].as_array().unwrap().len();
    assert_eq!(
        count(&get_json(http, "/api/v1/findings?host=EXCH02").await),
        5
    );
    assert_eq!(
        count(&get_json(http, "/api/v1/findings?rule=EXCH-000").await),
        3
    );
    assert_eq!(
        count(&get_json(http, "/api/v1/findings?severity=critical").await),
        3
    );
    assert_eq!(
        count(&get_json(http, "/api/v1/findings?min_severity=high").await),
        6
    );
    assert_eq!(
        count(&get_json(http, "/api/v1/findings?run=EXCH01-run-1").await),
        10
    );
    assert_eq!(
        count(&get_json(http, "/api/v1/findings?since=2025-11-21T04:40:01Z").await),
        15
    );
    assert_eq!(
        count(&get_json(http, "/api/v1/findings?since=2025-11-21T04:40:02Z").await),
        0
    );

    // Paging: newest first, the cursor continues where the page ended, nothing twice.
    let p1 = get_json(http, "/api/v1/findings?limit=6").await;
    assert_eq!(count(&p1), 6);
    assert_eq!(p1["items"][0]["id"], "b-4");
    let cursor = p1["next_cursor"].as_i64().unwrap();
    let p2 = get_json(http, &format!("/api/v1/findings?limit=6&cursor={cursor}")).await;
    let p3 = get_json(
        http,
        &format!("/api/v1/findings?limit=6&cursor={}", p2["next_cursor"]),
    )
    .await;
    assert_eq!(count(&p2) + count(&p3), 9);
    assert!(p3["next_cursor"].is_null());

    // One finding, with everything the collector sent.
    let f = get_json(http, "/api/v1/findings/a-4").await;
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["severity_num"], 5);
    assert_eq!(f["evidence"].as_array().unwrap().len(), 2);
    assert_eq!(
        f["remediation"]["steps"][1],
        "Rerun Setup.exe /mode:Upgrade."
    );
    assert_eq!(f["fields"]["error_code"], "0x80070005");
    assert_eq!(f["labels"]["site"], "dc1");
    assert_eq!(f["host_info"]["time_zone"], "W. Europe Standard Time");
    assert_eq!(f["log_kind"], "exchange_setup");

    // Hosts: one row each, with the latest run's state.
    let hosts = get_json(http, "/api/v1/hosts").await;
    assert_eq!(hosts["items"][1]["hostname"], "EXCH02");
    assert_eq!(hosts["items"][1]["latest_run"]["outcome"], "failed");
    assert_eq!(
        hosts["items"][1]["latest_run"]["product"],
        "Microsoft Exchange Server 2019"
    );
    assert_eq!(
        hosts["items"][1]["latest_run"]["phase"],
        "Mailbox role: Transport service"
    );
    let runs = get_json(http, "/api/v1/runs?outcome=failed").await;
    assert_eq!(count(&runs), 1);
    assert_eq!(runs["items"][0]["run_id"], "EXCH02-run-1");
    assert_eq!(count(&get_json(http, "/api/v1/runs?host=EXCH01").await), 1);

    // Bad input: a clear 4xx naming the parameter.
    for (path, status, needle) in [
        ("/api/v1/findings?severity=urgent", 400, "severity"),
        ("/api/v1/findings?since=yesterday", 400, "since"),
        ("/api/v1/findings?limit=100000", 400, "limit"),
        ("/api/v1/findings?colour=red", 400, "colour"),
        ("/api/v1/runs?outcome=exploded", 400, "outcome"),
        ("/api/v1/findings/nope", 404, "nope"),
    ] {
        let resp = reqwest::get(format!("http://{http}{path}")).await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains(needle),
            "{path}: {body}"
        );
    }

    // The finding page shows evidence and the fix, escaped.
    let page = reqwest::get(format!("http://{http}/findings/a-4"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Access to the path is denied."));
    assert!(page.contains("&quot;$error.Clear();&quot;"));
    assert!(page.contains("Grant the setup account write access"));
    let health = get_json(http, "/healthz").await;
    assert_eq!(health["status"], "ok");
    let metrics = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("patchwatch_aggregator_batches_received_total"),
        "{metrics}"
    );

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
}

/// Reads SSE frames until one named `event` arrives; returns its data.
async fn next_event(
    body: &mut reqwest::Response,
    buf: &mut String,
    event: &str,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let name = frame
                .lines()
                .find_map(|l| l.strip_prefix("event: ").or(l.strip_prefix("event:")));
            let data = frame
                .lines()
                .find_map(|l| l.strip_prefix("data: ").or(l.strip_prefix("data:")));
            if name == Some(event) {
                return serde_json::from_str(data.unwrap_or("null")).unwrap();
            }
        }
        let chunk = tokio::time::timeout_at(deadline, body.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {event} event in time"))
            .unwrap()
            .expect("stream open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

async fn events_stream_new_findings_and_host_rows(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let resp = reqwest::get(format!("http://{}/api/v1/events", agg.http_addr()))
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp;
    let mut buf = String::new();
    next_event(&mut body, &mut buf, "ready").await;

    let mut client = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut client).await.unwrap();
    stream.roundtrip(batch("c1", 1, "EXCH07", "e", 2)).await;
    let f = next_event(&mut body, &mut buf, "finding").await;
    assert_eq!(f["host"], "EXCH07");
    assert!(f["id"].as_str().unwrap().starts_with("e-"));
    let run = next_event(&mut body, &mut buf, "run").await;
    assert_eq!(run["run_id"], "EXCH07-run-1");
    let host = next_event(&mut body, &mut buf, "host").await;
    assert_eq!(host["hostname"], "EXCH07");
    assert_eq!(host["findings_total"], 2);
    assert_eq!(host["latest_run"]["phase"], "phase 1");

    // A replay publishes no finding again.
    stream.roundtrip(batch("c1", 1, "EXCH07", "e", 2)).await;
    stream.roundtrip(batch("c1", 2, "EXCH07", "g", 1)).await;
    let f = next_event(&mut body, &mut buf, "finding").await;
    assert_eq!(f["id"], "g-0");

    // Shutdown ends the event stream instead of hanging the server.
    drop(stream);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), agg.wait())
        .await
        .expect("stops in time")
        .unwrap();
}

#[tokio::test]
async fn read_tokens_guard_everything_but_healthz() {
    let Some((mut config, _dir)) = config(Backend::Sqlite).await else {
        return;
    };
    config.http.tokens = vec![TokenConfig::new(
        "ops",
        patchwatch_config::Secret::inline("read-me"),
    )];
    let (agg, shutdown) = start(config).await;
    let base = format!("http://{}", agg.http_addr());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for path in [
        "/api/v1/findings",
        "/api/v1/hosts",
        "/api/v1/events",
        "/metrics",
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = http
        .get(format!("{base}/api/v1/hosts"))
        .bearer_auth("read-me")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Browsers: the dashboard redirects to the sign-in page, which sets a cookie.
    let r = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=/");
    // Without the form's CSRF value (a cross-site form): refused.
    let r = http
        .post(format!("{base}/login"))
        .form(&[("token", "read-me"), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (csrf_cookie, csrf) = sign_in_form(&http, &base).await;
    let r = http
        .post(format!("{base}/login"))
        .header("cookie", csrf_cookie.as_str())
        .form(&[("token", "wrong"), ("next", "/"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{base}/login"))
        .header("cookie", csrf_cookie.as_str())
        .form(&[("token", "read-me"), ("next", "/"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && !cookie.contains("read-me"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let r = http
        .get(format!("{base}/"))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Fleet"));

    shutdown.cancel();
    agg.wait().await.unwrap();
}

#[tokio::test]
async fn default_config_text_is_the_default() {
    let parsed = patchwatch_aggregator::Config::parse(
        patchwatch_aggregator::DEFAULT_CONFIG,
        "DEFAULT_CONFIG",
    )
    .unwrap();
    assert_eq!(parsed, patchwatch_aggregator::Config::default());
    let err = patchwatch_aggregator::Config::load("/nonexistent/aggregator.toml").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/aggregator.toml: cannot read"),
        "{err}"
    );
}
