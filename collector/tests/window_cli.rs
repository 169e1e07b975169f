//! `patchwatch window create|list|end` and `patchwatch window silence add|list|expire` (the real
//! binary) against a real aggregator on loopback.

use std::process::Command;

use patchwatch_aggregator::{serve, Config};
use tokio_util::sync::CancellationToken;

fn patchwatch(args: &[&str], server: &str, token: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_patchwatch"));
    cmd.arg("window").args(args).arg("--server").arg(server);
    cmd.env_remove("PATCHWATCH_TOKEN")
        .env_remove("PATCHWATCH_SERVER")
        .env_remove("USER")
        .env_remove("USERNAME");
    if let Some(t) = token {
        cmd.env("PATCHWATCH_TOKEN", t);
    }
    let out = cmd.output().expect("run patchwatch");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_create_list_end_through_the_http_api() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::parse(
        "[[http.tokens]]\nid = \"ops\"\ntoken = \"cli-s3cret\"\n",
        "test.toml",
    )
    .unwrap();
    config.data_dir = dir.path().to_path_buf();
    config.grpc.listen = "127.0.0.1:0".parse().unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = CancellationToken::new();
    let agg = serve(config, grpc, http, shutdown.clone()).await.unwrap();
    let server = format!("http://{}", agg.http_addr());
    let token = Some("cli-s3cret");

    // The CLI blocks; run it off the runtime's worker threads.
    let run = |args: Vec<&'static str>, token: Option<&'static str>| {
        let server = server.clone();
        tokio::task::spawn_blocking(move || patchwatch(&args, &server, token))
    };

    let (ok, out, err) = run(
        vec![
            "create",
            "--name",
            "CU15 wave 2",
            "--hosts",
            "EX0*,MBX1",
            "--duration",
            "2h",
            "--id",
            "cu15-w2",
        ],
        token,
    )
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("created window cu15-w2"), "{out}");
    assert!(out.contains("active") && out.contains("EX0*,MBX1"), "{out}");

    let (ok, out, err) = run(
        vec![
            "create",
            "--name",
            "later",
            "--hosts",
            "DC1",
            "--start",
            "2099-01-01T00:00:00Z",
            "--end",
            "2099-01-01T04:00:00Z",
        ],
        token,
    )
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("scheduled"), "{out}");

    // Refusals carry the aggregator's message naming the field, and exit non-zero.
    let (ok, _, err) = run(
        vec![
            "create",
            "--name",
            "x",
            "--hosts",
            "h",
            "--duration",
            "soon",
        ],
        token,
    )
    .await
    .unwrap();
    assert!(!ok);
    assert!(err.contains("duration:"), "{err}");
    let (ok, _, err) = run(
        vec!["create", "--name", "x", "--hosts", "h", "--duration", "1h"],
        None,
    )
    .await
    .unwrap();
    assert!(!ok);
    assert!(err.contains("401"), "{err}");

    let (ok, out, err) = run(vec!["list"], token).await.unwrap();
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("ID"), "{out}");
    assert!(
        out.contains("cu15-w2") && out.contains("CU15 wave 2"),
        "{out}"
    );

    let (ok, out, err) = run(vec!["end", "cu15-w2"], token).await.unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("ended window cu15-w2") && out.contains("ended"),
        "{out}"
    );
    let (ok, _, err) = run(vec!["end", "no-such"], token).await.unwrap();
    assert!(!ok);
    assert!(err.contains("404"), "{err}");

    // The change is in the store, as the API shows it.
    let list = agg.store().windows().await.unwrap();
    let w = list.iter().find(|w| w.id == "cu15-w2").unwrap();
    assert!(w.ends_at <= time::OffsetDateTime::now_utc());
    let (ok, out, _) = run(vec!["list", "--json"], token).await.unwrap();
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 2);

    shutdown.cancel();
    agg.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_add_list_expire_through_the_http_api() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::parse(
        "[[http.tokens]]\nid = \"ops\"\ntoken = \"cli-s3cret\"\n",
        "test.toml",
    )
    .unwrap();
    config.data_dir = dir.path().to_path_buf();
    config.grpc.listen = "127.0.0.1:0".parse().unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = CancellationToken::new();
    let agg = serve(config, grpc, http, shutdown.clone()).await.unwrap();
    let server = format!("http://{}", agg.http_addr());
    let run = |args: Vec<&'static str>, token: Option<&'static str>| {
        let server = server.clone();
        tokio::task::spawn_blocking(move || {
            let mut all = vec!["silence"];
            all.extend(args);
            patchwatch(&all, &server, token)
        })
    };
    let token = Some("cli-s3cret");

    let (ok, out, err) = run(
        vec![
            "add",
            "--comment",
            "CHG-7 reboot",
            "--rule",
            "EXCH-*",
            "--severities",
            "low,medium",
            "--hosts",
            "EX0*",
            "--label",
            "env=prod",
            "--duration",
            "2h",
            "--id",
            "chg-7",
            "--created-by",
            "alice",
        ],
        token,
    )
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("added silence chg-7"), "{out}");
    assert!(
        out.contains("active") && out.contains("host=EX0*") && out.contains("env=prod"),
        "{out}"
    );
    // Without --created-by and $USER the token's id is recorded.
    let (ok, out, err) = run(
        vec![
            "add",
            "--comment",
            "later",
            "--hosts",
            "DC1",
            "--start",
            "2099-01-01T00:00:00Z",
            "--end",
            "2099-01-01T04:00:00Z",
        ],
        token,
    )
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("pending"), "{out}");

    // Refusals name the field and exit non-zero; no token is a 401.
    let (ok, _, err) = run(
        vec![
            "add",
            "--comment",
            "x",
            "--hosts",
            "EX[0",
            "--duration",
            "1h",
        ],
        token,
    )
    .await
    .unwrap();
    assert!(!ok);
    assert!(err.contains("hosts:"), "{err}");
    let (ok, _, err) = run(
        vec!["add", "--comment", "x", "--hosts", "h", "--duration", "1h"],
        None,
    )
    .await
    .unwrap();
    assert!(!ok);
    assert!(err.contains("401"), "{err}");

    let (ok, out, err) = run(vec!["list"], token).await.unwrap();
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().next().unwrap().starts_with("ID"), "{out}");

    let (ok, out, err) = run(vec!["expire", "chg-7"], token).await.unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains("expired silence chg-7") && out.contains("expired"),
        "{out}"
    );
    let (ok, _, err) = run(vec!["expire", "no-such"], token).await.unwrap();
    assert!(!ok);
    assert!(err.contains("404"), "{err}");

    // What the CLI did is in the store.
    let stored = agg.store().silences().await.unwrap();
    assert_eq!(stored.len(), 2);
    let s = stored.iter().find(|s| s.silence.id == "chg-7").unwrap();
    assert_eq!(s.silence.created_by, "alice");
    assert_eq!(s.silence.severities, ["low", "medium"]);
    assert_eq!(s.silence.labels["env"], "prod");
    assert!(s.silence.ends_at.unwrap() <= time::OffsetDateTime::now_utc());
    let (ok, out, _) = run(vec!["list", "--json"], token).await.unwrap();
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 2);

    shutdown.cancel();
    agg.wait().await.unwrap();
}
