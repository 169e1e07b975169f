//! `patchwatch agent --check` and `patchwatch aggregator --check` against the real binary: a
//! clean configuration passes with exit 0; each class of broken configuration (missing file,
//! bad PEM, key of another certificate, unwritable data_dir, port in use, unset variable) is
//! reported with the setting that names it and exit 2.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A folder with a certificate, its key, a second key, a token file and a log folder.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let p = dir.path();
        std::fs::write(p.join("ca.pem"), a.cert.pem()).unwrap();
        std::fs::write(p.join("cert.pem"), a.cert.pem()).unwrap();
        std::fs::write(p.join("key.pem"), a.signing_key.serialize_pem()).unwrap();
        std::fs::write(p.join("other-key.pem"), b.signing_key.serialize_pem()).unwrap();
        std::fs::write(p.join("garbage.pem"), "not a certificate\n").unwrap();
        std::fs::write(p.join("token"), "s3cret\n").unwrap();
        std::fs::write(p.join("a-file"), "").unwrap();
        std::fs::create_dir(p.join("logs")).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An agent config with TLS, a token file and a metrics port; `edit` changes the text.
    fn agent_config(&self, edit: impl FnOnce(String) -> String) -> PathBuf {
        let p = |n: &str| self.path(n).display().to_string().replace('\\', "/");
        let text = format!(
            r#"data_dir = "{data}"
metrics_listen = "127.0.0.1:0"
[sources]
include = ["{logs}/*.log"]
[aggregator]
endpoint = "https://localhost:4790"
token = {{ file = "{token}" }}
[aggregator.tls]
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"
"#,
            data = p("data"),
            logs = p("logs"),
            token = p("token"),
            ca = p("ca.pem"),
            cert = p("cert.pem"),
            key = p("key.pem"),
        );
        let file = self.path("agent.toml");
        std::fs::write(&file, edit(text)).unwrap();
        file
    }

    fn aggregator_config(&self, edit: impl FnOnce(String) -> String) -> PathBuf {
        let p = |n: &str| self.path(n).display().to_string().replace('\\', "/");
        let text = format!(
            r#"data_dir = "{data}"
[grpc]
listen = "127.0.0.1:0"
[grpc.tls]
cert_file = "{cert}"
key_file = "{key}"
client_ca_file = "{ca}"
[[grpc.tokens]]
id = "host-1"
token = {{ file = "{token}" }}
[http]
listen = "127.0.0.1:0"
"#,
            data = p("agg-data"),
            cert = p("cert.pem"),
            key = p("key.pem"),
            ca = p("ca.pem"),
            token = p("token"),
        );
        let file = self.path("aggregator.toml");
        std::fs::write(&file, edit(text)).unwrap();
        file
    }
}

/// Runs `patchwatch <command> --config FILE --check`; returns exit code and stdout+stderr.
fn run_check(command: &str, config: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_patchwatch"))
        .args([command, "--config"])
        .arg(config)
        .arg("--check")
        .env_remove("PATCHWATCH_CHECK_UNSET_TOKEN")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn assert_problem(command: &str, config: &Path, setting: &str, words: &str) {
    let (code, text) = run_check(command, config);
    assert_eq!(code, 2, "{text}");
    // The problem's line and its indented continuation lines.
    let start = text
        .find(&format!("problem: {setting}: "))
        .unwrap_or_else(|| panic!("no problem for {setting} in:\n{text}"));
    let line: String = text[start..]
        .lines()
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with("    "))
        .map(|(_, l)| l)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(line.contains(words), "{line:?} should say {words:?}");
}

#[test]
fn clean_agent_config_passes_and_leaves_no_trace() {
    let f = Fixture::new();
    let config = f.agent_config(|t| t);
    let (code, text) = run_check("agent", &config);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("configuration OK"), "{text}");
    assert!(
        !f.path("data").exists(),
        "the probe created data_dir and left it"
    );
}

#[test]
fn agent_missing_files_are_named() {
    let f = Fixture::new();
    let config = f.agent_config(|t| t.replace("ca.pem", "missing-ca.pem"));
    assert_problem("agent", &config, "aggregator.tls.ca_file", "missing-ca.pem");
    let config = f.agent_config(|t| t.replace("/token\"", "/missing-token\""));
    let (code, text) = run_check("agent", &config);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("problem: aggregator.token: ") && text.contains("missing-token"),
        "{text}"
    );
}

#[test]
fn agent_bad_pem_and_mismatched_key_are_named() {
    let f = Fixture::new();
    let config = f.agent_config(|t| t.replace("cert.pem", "garbage.pem"));
    assert_problem("agent", &config, "aggregator.tls.cert_file", "PEM");
    let config = f.agent_config(|t| t.replace("/key.pem\"", "/other-key.pem\""));
    let config_text = std::fs::read_to_string(&config).unwrap();
    assert!(config_text.contains("other-key.pem"), "{config_text}");
    assert_problem(
        "agent",
        &config,
        "aggregator.tls.key_file",
        "does not belong to the certificate",
    );
}

#[test]
fn agent_unwritable_data_dir_busy_port_and_unset_env_are_named() {
    let f = Fixture::new();
    // Below a regular file nothing can be created, whoever runs the test (root included).
    let under_file = f.path("a-file").join("data");
    let config = f.agent_config(|t| {
        t.replace(
            &format!("\"{}\"", f.path("data").display()),
            &format!("\"{}\"", under_file.display()),
        )
    });
    assert_problem("agent", &config, "data_dir", "cannot be created");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let config = f.agent_config(|t| t.replace("127.0.0.1:0", &addr.to_string()));
    assert_problem("agent", &config, "metrics_listen", &addr.to_string());
    drop(busy);

    let token = format!("{{ file = \"{}\" }}", f.path("token").display());
    let config =
        f.agent_config(|t| t.replace(&token, "{ env = \"PATCHWATCH_CHECK_UNSET_TOKEN\" }"));
    assert_problem(
        "agent",
        &config,
        "aggregator.token",
        "PATCHWATCH_CHECK_UNSET_TOKEN",
    );
}

#[test]
fn agent_reports_every_problem_not_only_the_first() {
    let f = Fixture::new();
    let config = f.agent_config(|t| {
        t.replace("ca.pem", "missing-ca.pem")
            .replace("/token\"", "/missing-token\"")
    });
    let (code, text) = run_check("agent", &config);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("2 problem(s) found"), "{text}");
}

#[test]
fn agent_unparsable_config_exits_2() {
    let f = Fixture::new();
    let config = f.agent_config(|t| t.replace("[sources]", "[sources]\nno_such_key = 1"));
    assert_problem("agent", &config, "--config", "no_such_key");
}

#[test]
fn aggregator_check_clean_and_broken() {
    let f = Fixture::new();
    let config = f.aggregator_config(|t| t);
    let (code, text) = run_check("aggregator", &config);
    assert_eq!(code, 0, "{text}");
    assert!(
        !f.path("agg-data").exists(),
        "the probe left data_dir behind"
    );

    let config = f.aggregator_config(|t| t.replace("/key.pem\"", "/other-key.pem\""));
    assert_problem(
        "aggregator",
        &config,
        "grpc.tls.key_file",
        "does not belong to the certificate",
    );
    let config = f.aggregator_config(|t| t.replace("ca.pem", "garbage.pem"));
    assert_problem("aggregator", &config, "grpc.tls.client_ca_file", "PEM");
    let config = f.aggregator_config(|t| t.replace("/token\"", "/gone\""));
    assert_problem("aggregator", &config, "grpc.tokens[0].token", "gone");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let config = f.aggregator_config(|t| {
        t.replacen(
            "listen = \"127.0.0.1:0\"\n[grpc.tls]",
            &format!("listen = \"{addr}\"\n[grpc.tls]"),
            1,
        )
    });
    assert_problem("aggregator", &config, "grpc.listen", &addr.to_string());
}

#[test]
fn agent_connect_asks_the_aggregator() {
    let tmp = tempfile::tempdir().unwrap();
    let grpc = patchwatch_testkit::free_port();
    let agg_config = tmp.path().join("aggregator.toml");
    std::fs::write(
        &agg_config,
        format!(
            "data_dir = {:?}\n[grpc]\nlisten = \"127.0.0.1:{grpc}\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            tmp.path().join("agg").display().to_string()
        ),
    )
    .unwrap();
    let agent_config = tmp.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "data_dir = {:?}\n[sources]\ninclude = [\"{}/*.log\"]\n[aggregator]\nendpoint = \"http://127.0.0.1:{grpc}\"\n",
            tmp.path().join("data").display().to_string(),
            tmp.path().display()
        ),
    )
    .unwrap();
    let connect = || {
        let out = Command::new(env!("CARGO_BIN_EXE_patchwatch"))
            .args(["agent", "--check", "--connect", "--config"])
            .arg(&agent_config)
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    // Nobody listens yet.
    let (code, text) = connect();
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("problem: aggregator.endpoint: "), "{text}");

    let mut aggregator = Command::new(env!("CARGO_BIN_EXE_patchwatch"))
        .args(["aggregator", "--config"])
        .arg(&agg_config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let text = patchwatch_testkit::eventually_blocking(
        std::time::Duration::from_secs(20),
        "the aggregator answering",
        || {
            let (code, text) = connect();
            (code == Some(0)).then_some(text)
        },
    );
    let _ = aggregator.kill();
    let _ = aggregator.wait();
    assert!(
        text.contains("answered (serving: true") && text.contains("using plaintext"),
        "{text}"
    );
}

#[test]
fn deprecated_keys_warn_on_stderr_as_text_and_as_json() {
    let f = Fixture::new();
    let config =
        f.agent_config(|t| t.replace("[sources]", "stall_threshold_secs = 600\n[sources]"));
    let run = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_patchwatch"))
            .args(["--log-format", format, "agent", "--check", "--config"])
            .arg(&config)
            .env_remove("NO_COLOR")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        stderr
    };
    let text = run("text");
    let warning = text
        .lines()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning in:\n{text}"));
    assert!(
        warning.contains("`stall_threshold_secs` is deprecated; use `stall_threshold = \"600s\"`"),
        "{warning}"
    );
    // stderr is a pipe here, not a terminal: no colour escapes.
    assert!(!text.contains('\u{1b}'), "{text:?}");

    // --log-file: the same warning in a file (its folder created), with no colour either.
    let file = f.path("logs-out").join("patchwatch.log");
    let out = Command::new(env!("CARGO_BIN_EXE_patchwatch"))
        .args(["agent", "--check", "--config"])
        .arg(&config)
        .arg("--log-file")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let logged = std::fs::read_to_string(&file).unwrap();
    assert!(
        logged.contains("`stall_threshold_secs` is deprecated") && !logged.contains('\u{1b}'),
        "{logged:?}"
    );

    let json = run("json");
    let line = json
        .lines()
        .find(|l| l.contains("deprecated"))
        .unwrap_or_else(|| panic!("no warning in:\n{json}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["level"], "WARN", "{line}");
    assert_eq!(v["fields"]["key"], "stall_threshold_secs", "{line}");
    assert_eq!(v["fields"]["line"], 3, "{line}");
}

/// `aggregator --check --connect`: the database is asked, nothing created; an unreachable one
/// is a problem naming `store`.
#[test]
fn aggregator_connect_asks_the_database() {
    let f = Fixture::new();
    let connect = |config: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_patchwatch"))
            .args(["aggregator", "--check", "--connect", "--config"])
            .arg(config)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    };
    let config = f.aggregator_config(|t| t);
    let (code, text) = connect(&config);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("connect: store: SQLite") && text.contains("will be created"),
        "{text}"
    );
    assert!(!f.path("agg-data").exists(), "--connect created the store");

    // Nothing listens on this port: the check says so instead of starting.
    let port = patchwatch_testkit::free_port();
    let unreachable = format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"postgres://nobody@127.0.0.1:{port}/none\"\n"
    );
    let config = f.aggregator_config(|t| t + &unreachable);
    let (code, text) = connect(&config);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("problem: store: ") && text.contains("connecting to PostgreSQL"),
        "{text}"
    );
    assert!(!text.contains("nobody@"), "the URL is a secret: {text}");

    let Some(url) = patchwatch_testkit::env_or_skip("PATCHWATCH_PG_URL", "setup-postgres") else {
        return;
    };
    let config = f.aggregator_config(|t| {
        t + "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = { env = \"PATCHWATCH_PG_URL\" }\n"
    });
    let out = Command::new(env!("CARGO_BIN_EXE_patchwatch"))
        .args(["aggregator", "--check", "--connect", "--config"])
        .arg(&config)
        .env("PATCHWATCH_PG_URL", &url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("connect: store: PostgreSQL ") && text.contains("schema version"),
        "{text}"
    );
}
