//! `patchwatch window create|list|end` and `patchwatch window silence add|list|expire` (the real
//! binary) against a real aggregator on loopback.

use std::process::Command;

use patchwatch_aggregator::{serve, Config, RunningAggregator};
use tokio_util::sync::CancellationToken;

/// The API token of the aggregator [`start_aggregator`] starts.
const TOKEN: &str = "cli-s3cret";

/// An aggregator on loopback port 0 (SQLite in the returned temp dir) that requires [`TOKEN`].
async fn start_aggregator() -> (RunningAggregator, CancellationToken, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::parse(
        &format!("[[http.tokens]]\nid = \"ops\"\ntoken = \"{TOKEN}\"\n"),
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
    (agg, shutdown, dir)
}

/// What `patchwatch window` returned: success, stdout, stderr.
type Outcome = (bool, String, String);

/// `patchwatch window <prefix>` against one aggregator.
struct Cli {
    server: String,
    prefix: &'static [&'static str],
}

impl Cli {
    fn new(agg: &RunningAggregator, prefix: &'static [&'static str]) -> Self {
        let server = format!("http://{}", agg.http_addr());
        Self { server, prefix }
    }

    /// Runs `patchwatch window <prefix> <args>`, `args` split into [`words`] so that each call
    /// reads like the command line. The CLI blocks, so it runs off the runtime's worker threads.
    async fn run(&self, args: &str, token: Option<&'static str>) -> Outcome {
        let mut all: Vec<String> = self.prefix.iter().map(|a| a.to_string()).collect();
        all.extend(words(args));
        let server = self.server.clone();
        tokio::task::spawn_blocking(move || {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            patchwatch(&all, &server, token)
        })
        .await
        .unwrap()
    }
}

/// `args` split at white space outside single quotes; the quotes are dropped (`'CU15 wave 2'`
/// is one word).
fn words(args: &str) -> Vec<String> {
    args.split('\'')
        .enumerate()
        .flat_map(|(i, part)| {
            if i % 2 == 1 {
                vec![part.to_owned()]
            } else {
                part.split_whitespace().map(str::to_owned).collect()
            }
        })
        .collect()
}

fn patchwatch(args: &[&str], server: &str, token: Option<&str>) -> Outcome {
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
    let (agg, shutdown, _dir) = start_aggregator().await;
    let cli = Cli::new(&agg, &[]);
    let token = Some(TOKEN);

    let (ok, out, err) = cli
        .run(
            "create --name 'CU15 wave 2' --hosts EX0*,MBX1 --duration 2h --id cu15-w2",
            token,
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("created window cu15-w2"), "{out}");
    assert!(out.contains("active") && out.contains("EX0*,MBX1"), "{out}");

    let (ok, out, err) = cli
        .run(
            "create --name later --hosts DC1 --start 2099-01-01T00:00:00Z \
             --end 2099-01-01T04:00:00Z",
            token,
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("scheduled"), "{out}");

    // A gated window: the flag reaches the stored window; without it a window is not gated.
    let (ok, out, err) = cli
        .run(
            "create --name gated --hosts EX1* --duration 2h --id gated --require-clean-preflight",
            token,
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("required"), "{out}");
    let stored = agg.store().windows().await.unwrap();
    let gated = |id: &str| {
        stored
            .iter()
            .find(|w| w.id == id)
            .unwrap_or_else(|| panic!("{id} stored"))
            .require_clean_preflight
    };
    assert!(gated("gated"));
    assert!(!gated("cu15-w2"));

    // Refusals carry the aggregator's message naming the field, and exit non-zero.
    let (ok, _, err) = cli
        .run("create --name x --hosts h --duration soon", token)
        .await;
    assert!(!ok);
    assert!(err.contains("duration:"), "{err}");
    let (ok, _, err) = cli
        .run("create --name x --hosts h --duration 1h", None)
        .await;
    assert!(!ok);
    assert!(err.contains("401"), "{err}");

    let (ok, out, err) = cli.run("list", token).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("ID"), "{out}");
    assert!(
        out.contains("cu15-w2") && out.contains("CU15 wave 2"),
        "{out}"
    );

    let (ok, out, err) = cli.run("end cu15-w2", token).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("ended window cu15-w2") && out.contains("ended"),
        "{out}"
    );
    let (ok, _, err) = cli.run("end no-such", token).await;
    assert!(!ok);
    assert!(err.contains("404"), "{err}");

    // The change is in the store, as the API shows it.
    let list = agg.store().windows().await.unwrap();
    let w = list.iter().find(|w| w.id == "cu15-w2").unwrap();
    assert!(w.ends_at <= time::OffsetDateTime::now_utc());
    let (ok, out, _) = cli.run("list --json", token).await;
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 3);

    shutdown.cancel();
    agg.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_add_list_expire_through_the_http_api() {
    let (agg, shutdown, _dir) = start_aggregator().await;
    let cli = Cli::new(&agg, &["silence"]);
    let token = Some(TOKEN);

    let (ok, out, err) = cli
        .run(
            "add --comment 'CHG-7 reboot' --rule EXCH-* --severities low,medium --hosts EX0* \
             --label env=prod --duration 2h --id chg-7 --created-by alice",
            token,
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("added silence chg-7"), "{out}");
    assert!(
        out.contains("active") && out.contains("host=EX0*") && out.contains("env=prod"),
        "{out}"
    );
    // Without --created-by and $USER the token's id is recorded.
    let (ok, out, err) = cli
        .run(
            "add --comment later --hosts DC1 --start 2099-01-01T00:00:00Z \
             --end 2099-01-01T04:00:00Z",
            token,
        )
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("pending"), "{out}");

    // Refusals name the field and exit non-zero; no token is a 401.
    let (ok, _, err) = cli
        .run("add --comment x --hosts EX[0 --duration 1h", token)
        .await;
    assert!(!ok);
    assert!(err.contains("hosts:"), "{err}");
    let (ok, _, err) = cli
        .run(
            "add --comment x --hosts h --duration 1h --created-by bob",
            None,
        )
        .await;
    assert!(!ok);
    assert!(err.contains("401"), "{err}");
    // No token, no $USER, no --created-by: the CLI asks for the flag instead of sending a
    // request the aggregator can only refuse with "created_by: required".
    let (ok, _, err) = cli
        .run("add --comment x --hosts h --duration 1h", None)
        .await;
    assert!(!ok);
    assert!(err.contains("--created-by"), "{err}");

    let (ok, out, err) = cli.run("list", token).await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().next().unwrap().starts_with("ID"), "{out}");

    let (ok, out, err) = cli.run("expire chg-7", token).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("expired silence chg-7") && out.contains("expired"),
        "{out}"
    );
    let (ok, _, err) = cli.run("expire no-such", token).await;
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
    let (ok, out, _) = cli.run("list --json", token).await;
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 2);

    shutdown.cancel();
    agg.wait().await.unwrap();
}
