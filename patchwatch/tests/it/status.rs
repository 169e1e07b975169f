//! The agent's `/status` and `patchwatch agent status`, against a running agent (the real
//! binary) that delivers a UTF-8 Exchange log and a UTF-16 MSI log to a running aggregator.

use std::process::Command;
use std::time::Duration;

use patchwatch_testkit::eventually_blocking;
use serde_json::Value;

use crate::common;
use crate::metrics::{get, start_pair};

#[test]
fn status_shows_files_spool_and_aggregator() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = start_pair(tmp.path());
    let exchange = common::exchange_sample(common::SAMPLES[0]);
    let msi = common::msi_log(patchwatch_pipeline::sample::MsiScenario::Success, 2);
    common::append(&pair.logs.join("ExchangeSetup.log"), &exchange);
    common::append(&pair.logs.join("MSI1234.log"), &msi);

    // Both files read to their end, the aggregator connected and acknowledging.
    let status: Value = eventually_blocking(Duration::from_secs(30), "a settled /status", || {
        let v: Value = serde_json::from_str(&get(pair.agent_addr, "/status")?).ok()?;
        let files = v["files"].as_array()?;
        let done = files.len() == 2
            && files
                .iter()
                .all(|f| f["lag_bytes"] == 0 && f["encoding"].is_string());
        let acked = v["aggregator"]["last_ack_age_seconds"].is_number();
        (done && acked).then_some(v)
    });
    let files = status["files"].as_array().unwrap();
    let file = |name: &str| {
        files
            .iter()
            .find(|f| f["path"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name} not in {status:#}"))
    };
    let ex = file("ExchangeSetup.log");
    assert_eq!(ex["size"], exchange.len() as u64, "{status:#}");
    assert_eq!(ex["offset"], exchange.len() as u64, "{status:#}");
    assert_eq!(ex["encoding"], "utf8", "{status:#}");
    assert!(
        ex["handle"] == "open" || ex["handle"] == "closed",
        "{status:#}"
    );
    let m = file("MSI1234.log");
    assert_eq!(m["size"], msi.len() as u64, "{status:#}");
    assert_eq!(m["encoding"], "utf16le", "{status:#}");
    for f in [ex, m] {
        assert!(
            f["run"].is_null() || f["run"]["run_id"].is_string(),
            "{status:#}"
        );
    }
    assert_eq!(status["aggregator"]["connected"], true, "{status:#}");
    assert!(
        status["spool"]["pending_records"]["aggregator"].is_u64(),
        "{status:#}"
    );
    assert!(status["spool"]["max_bytes"].as_u64().unwrap() > 0);
    assert_eq!(status["sinks"], Value::Array(vec![]), "{status:#}");

    // The command prints the same document, and a summary.
    let listen = pair.agent_addr.to_string();
    let run = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_patchwatch"))
            .args(["agent", "status", "--listen", &listen, "--format", format])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let json: Value = serde_json::from_str(&run("json")).unwrap();
    assert_eq!(json["files"].as_array().unwrap().len(), 2, "{json:#}");
    let text = run("text");
    assert!(text.contains("aggregator: connected"), "{text}");
    assert!(text.contains("ExchangeSetup.log"), "{text}");
    assert!(text.contains("utf16le"), "{text}");
    assert!(text.contains("files: 2"), "{text}");
    let _ = common::log_tail(&pair.agent_log);
}

#[test]
fn status_of_no_agent_fails_clearly() {
    let port = patchwatch_testkit::free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_patchwatch"))
        .args(["agent", "status", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}
