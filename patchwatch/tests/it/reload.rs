//! SIGHUP on a running agent (the real binary): a broken configuration is refused with a log
//! line and the agent goes on as it was; a good one is applied (new sources are watched).

use std::process::Command;
use std::time::Duration;

use patchwatch_testkit::eventually_blocking;
use serde_json::Value;

use crate::common;
use crate::metrics::{get, start_pair};

fn hangup(pid: u32) {
    let ok = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP {pid}");
}

/// The paths `/status` lists, once it answers.
fn watched(pair: &crate::metrics::Pair) -> Option<Vec<String>> {
    let v: Value = serde_json::from_str(&get(pair.agent_addr, "/status")?).ok()?;
    Some(
        v["files"]
            .as_array()?
            .iter()
            .filter_map(|f| f["path"].as_str().map(str::to_owned))
            .collect(),
    )
}

#[cfg(unix)]
#[test]
fn sighup_refuses_a_bad_config_and_applies_a_good_one() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = start_pair(tmp.path());
    common::append(
        &pair.logs.join("ExchangeSetup.log"),
        &common::exchange_sample(common::SAMPLES[0]),
    );
    eventually_blocking(Duration::from_secs(30), "the first file watched", || {
        (watched(&pair)?.len() == 1).then_some(())
    });
    let good = std::fs::read_to_string(&pair.agent_config).unwrap();

    // Broken: refused, logged, and the agent keeps serving what it watched.
    std::fs::write(&pair.agent_config, format!("{good}\nno_such_key = 1\n")).unwrap();
    hangup(pair.agent_pid());
    eventually_blocking(Duration::from_secs(15), "the refusal in the log", || {
        let log = std::fs::read_to_string(&pair.agent_log).ok()?;
        log.contains("Reload refused").then_some(())
    });
    let log = std::fs::read_to_string(&pair.agent_log).unwrap();
    assert!(log.contains("no_such_key"), "{log}");
    assert_eq!(
        watched(&pair).map(|w| w.len()),
        Some(1),
        "{}",
        common::log_tail(&pair.agent_log)
    );

    // Good: a second folder is watched after the reload.
    let more = common::watched_dir(tmp.path(), "more");
    common::append(
        &more.join("ExchangeSetup2.log"),
        &common::exchange_sample(common::SAMPLES[1]),
    );
    let include = format!(
        "include = [{:?}, {:?}]",
        pair.logs.join("*.log").display().to_string(),
        more.join("*.log").display().to_string()
    );
    let updated = good
        .lines()
        .map(|l| {
            if l.starts_with("include = ") {
                include.clone()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(updated, good);
    std::fs::write(&pair.agent_config, updated).unwrap();
    hangup(pair.agent_pid());
    let files = eventually_blocking(Duration::from_secs(30), "both folders watched", || {
        let w = watched(&pair)?;
        (w.len() == 2).then_some(w)
    });
    assert!(
        files.iter().any(|f| f.ends_with("ExchangeSetup2.log")),
        "{files:?}"
    );
    let log = std::fs::read_to_string(&pair.agent_log).unwrap();
    assert!(log.contains("Configuration and rules reloaded"), "{log}");
}
