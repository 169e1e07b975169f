//! Syslog sink against a real rsyslog (Debian package) started by `.ci/setup-rsyslog.sh`:
//! RFC 5424 over TCP and TLS, CEF, and a receiver restart mid-stream that loses nothing and
//! does not hold up another sink.

use std::time::Duration;

use patchwatch_proto::{Finding, Severity};
use patchwatch_sinks::encoding::sample_finding;
use patchwatch_sinks::{build, SinkConfig};
use patchwatch_testkit::rsyslog::Rsyslogd;
use patchwatch_testkit::{env_or_skip, eventually, free_port, lines_settle, lines_with, run_token};

fn syslog_sink(name: &str, toml_text: &str) -> patchwatch_sinks::SinkHandle {
    let cfg: SinkConfig = toml::from_str(toml_text).unwrap();
    build(name, &cfg).unwrap().0
}

fn findings(token: &str, prefix: &str, n: usize) -> Vec<Finding> {
    (0..n)
        .map(|i| {
            let mut f = sample_finding(
                &format!("{prefix}-{token}-{i}"),
                "EXCH-0042",
                Severity::High,
                "EXCH01",
            );
            f.title = format!("Setup failed | \"quoted\" ] {prefix} {i}");
            f
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5424_over_tcp_and_tls_and_cef_reach_rsyslog() {
    let Some(tcp) = env_or_skip("PATCHWATCH_RSYSLOG_TCP", "setup-rsyslog.sh") else {
        return;
    };
    let tls = std::env::var("PATCHWATCH_RSYSLOG_TLS").unwrap();
    let ca = std::env::var("PATCHWATCH_RSYSLOG_CA").unwrap();
    let out = std::path::PathBuf::from(std::env::var("PATCHWATCH_RSYSLOG_OUTPUT").unwrap());
    let token = run_token();

    let tcp_sink = syslog_sink(
        "rsyslog-tcp",
        &format!(
            "type = \"syslog\"\naddress = {tcp:?}\ntransport = \"tcp\"\n[batch]\ntimeout = \"50ms\"\n"
        ),
    );
    let tls_sink = syslog_sink(
        "rsyslog-tls",
        &format!("type = \"syslog\"\naddress = {tls:?}\ntransport = \"tls\"\n[tls]\nca_file = {ca:?}\nserver_name = \"localhost\"\n[batch]\ntimeout = \"50ms\"\n"),
    );
    let cef_sink = syslog_sink("rsyslog-cef", &format!("type = \"syslog\"\naddress = {tcp:?}\ntransport = \"tcp\"\nformat = \"cef\"\n[batch]\ntimeout = \"50ms\"\n"));

    let (a, b, c) = tokio::join!(
        async { tcp_sink.send(findings(&token, "tcp", 5)).await.wait().await },
        async { tls_sink.send(findings(&token, "tls", 5)).await.wait().await },
        async { cef_sink.send(findings(&token, "cef", 3)).await.wait().await },
    );
    assert_eq!(
        (a.delivered, b.delivered, c.delivered),
        (5, 5, 3),
        "{:?}",
        tls_sink.health()
    );

    for prefix in ["tcp", "tls"] {
        let needle = format!("id=\"{prefix}-{token}-");
        let lines = lines_settle(&out, &needle, 5, "rsyslog to write the messages").await;
        assert_eq!(lines.len(), 5, "{lines:#?}");
        // rsyslog parsed our message as RFC 5424: it re-emits header fields and the SD element.
        let l = &lines[0];
        assert!(
            l.contains(" EXCH01 patchwatch - EXCH-0042 [finding@32473 "),
            "{l}"
        );
        assert!(
            l.contains(r#"file="C:\\ExchangeSetupLogs\\ExchangeSetup.log""#),
            "{l}"
        );
        assert!(l.contains(r#"[labels@32473 env="prod"]"#), "{l}");
        assert!(l.starts_with("<162>1 "), "local4.crit: {l}");
        assert!(l.contains("Setup failed | \"quoted\" ]"), "{l}");
    }
    let needle = format!("cs1=cef-{token}-");
    let lines = lines_settle(&out, &needle, 3, "rsyslog to write the CEF messages").await;
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].contains("CEF:0|patchwatch|patchwatch|"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("|EXCH-0042|Setup failed \\| \"quoted\" ] cef 0|8|rt="),
        "{}",
        lines[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_restart_mid_stream_loses_nothing_and_blocks_no_other_sink() {
    let Some(bin) = env_or_skip("PATCHWATCH_RSYSLOGD", "setup-rsyslog.sh") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let port = free_port();
    let mut rsyslogd = Rsyslogd::new(bin, dir.path(), port, &out);
    rsyslogd.start().await;

    let jsonl_path = dir.path().join("findings.jsonl");
    let cfg = patchwatch_sinks::SinksConfig::from_toml(&format!(
        "[sinks.siem]\ntype = \"syslog\"\naddress = \"127.0.0.1:{port}\"\ntransport = \"tcp\"\n\
         [sinks.siem.batch]\ntimeout_ms = 20\n[sinks.siem.retry]\ninitial_backoff_ms = 50\nmax_backoff_ms = 200\n\
         [sinks.file]\ntype = \"jsonl\"\npath = {:?}\n[sinks.file.batch]\ntimeout_ms = 20\n",
        jsonl_path.display().to_string()
    ))
    .unwrap();
    let sinks = patchwatch_sinks::Sinks::build(&cfg).unwrap();
    let token = run_token();
    let all = findings(&token, "restart", 30);

    // First third while rsyslog is up.
    for f in &all[..10] {
        let r = sinks.send(vec![f.clone()]).wait().await;
        assert_eq!(r.delivered, 2);
    }
    // Plain TCP syslog has no application ack: a message still unread in rsyslogd's socket
    // buffer when it exits is lost at the receiver (a documented limit; RELP would close it).
    // So the outage starts once the first third is on disk; what this test checks is that
    // nothing sent during and after the outage is lost.
    let needle = format!("id=\"restart-{token}-");
    eventually(
        Duration::from_secs(10),
        "the first third in rsyslog's file before the stop",
        async || (lines_with(&out, &needle).len() >= 10).then_some(()),
    )
    .await;
    rsyslogd.stop();

    // Second third while it is down: the file sink confirms each one promptly; syslog waits.
    let mut receipts = Vec::new();
    for f in &all[10..20] {
        receipts.push(sinks.send(vec![f.clone()]));
    }
    let file_has = |n: usize| {
        std::fs::read_to_string(&jsonl_path)
            .unwrap_or_default()
            .lines()
            .count()
            == n
    };
    eventually(
        Duration::from_secs(5),
        "the file sink to keep delivering while syslog is down",
        async || file_has(20).then_some(()),
    )
    .await;
    let syslog = sinks
        .handles()
        .iter()
        .find(|h| h.name() == "siem")
        .unwrap()
        .clone();
    assert!(
        syslog.health().consecutive_failures > 0,
        "syslog noticed the outage"
    );

    // Restart on the same port; the rest is sent after.
    rsyslogd.start().await;
    for f in &all[20..] {
        receipts.push(sinks.send(vec![f.clone()]));
    }
    for r in receipts {
        let r = tokio::time::timeout(Duration::from_secs(20), r.wait())
            .await
            .expect("settled after restart");
        assert_eq!((r.delivered, r.failed), (2, 0));
    }
    let ids = eventually(
        Duration::from_secs(10),
        "every finding in rsyslog's file",
        async || {
            let mut ids: Vec<String> = lines_with(&out, &needle)
                .iter()
                .filter_map(|l| {
                    l.split("id=\"")
                        .nth(1)
                        .and_then(|s| s.split('"').next())
                        .map(str::to_string)
                })
                .collect();
            ids.sort();
            ids.dedup();
            (ids.len() == 30).then_some(ids)
        },
    )
    .await;
    assert_eq!(ids.len(), 30);
    rsyslogd.stop();
}
