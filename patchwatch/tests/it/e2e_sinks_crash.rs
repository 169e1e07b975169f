//! `kill -9` of the real `patchwatch agent` binary at random moments while a writer appends,
//! with direct sinks besides the aggregator: a JSON Lines file, a loopback webhook that is
//! down for part of the run, and (when `.ci/setup-rsyslog.sh` ran) a real rsyslog over TCP.
//! The aggregator is down for another part. After the last restart every destination must
//! hold exactly the findings of a full scan of the final file: none missing, none unexpected
//! (a sink may see a finding twice: delivery is at least once). The agent's own `/metrics`
//! shows the lag of a sink that is down and of one that is not.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use patchwatch_testkit::rsyslog::{ids_since as rsyslog_ids, shared as rsyslog};
use patchwatch_testkit::webhook::*;
use rand::Rng;

const KILLS: usize = 20;
const HOST: &str = "E2E-SIEMCRASH";

/// The agent process, killed when dropped (also when an assertion fails).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Appends whole CRLF lines of the Exchange samples until `stop` (each repeat at new offsets,
/// so with new ids).
fn writer(exchange: PathBuf, stop: Arc<AtomicBool>) {
    let runs = all_samples();
    let lines: Vec<&[u8]> = runs.split_inclusive(|b| *b == b'\n').collect();
    let mut i = 0;
    while !stop.load(Ordering::Acquire) {
        append(&exchange, lines[i % lines.len()]);
        i += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    // End on a whole sample, so the last run is complete.
    while i % lines.len() != 0 {
        append(&exchange, lines[i % lines.len()]);
        i += 1;
    }
}

/// The value of `patchwatch_agent_sink_lag_records{sink="<sink>"}` on the agent's `/metrics`.
async fn sink_lag(metrics: &str, sink: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let key = format!("patchwatch_agent_sink_lag_records{{sink=\"{sink}\"}}");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls the lag gauge of `sink` until `ok` holds, for at most `timeout`.
async fn lag_until(metrics: &str, sink: &str, timeout: Duration, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + timeout;
    loop {
        let lag = sink_lag(metrics, sink).await;
        if let Some(l) = lag.filter(|l| ok(*l)) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "lag of sink {sink} is {lag:?}, not as expected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_direct_sinks_loses_nothing_at_any_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let watched = watched_dir(tmp.path(), "ExchangeSetupLogs");
    let mut agg = TestAggregator::start(&tmp.path().join("aggregator")).await;
    let hook = Webhook::start(true).await;
    let out = tmp.path().join("siem.jsonl");
    let syslog = rsyslog();
    let syslog_from = syslog.as_ref().map_or(0, |(_, file)| {
        std::fs::metadata(file).map_or(0, |m| m.len())
    });
    let cfg = agent_config(
        &[&watched],
        &tmp.path().join("agent"),
        &agg.endpoint(),
        HOST,
    );
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut toml_text = format!(
        "metrics_listen = {metrics:?}\n{}\n{}{}",
        agent_toml(&cfg),
        hook.sink_toml("hook"),
        jsonl_toml("local", &out)
    );
    if let Some((tcp, _)) = &syslog {
        toml_text.push_str(&format!(
            "[sinks.rsyslog]\ntype = \"syslog\"\naddress = {tcp:?}\ntransport = \"tcp\"\n\
             [sinks.rsyslog.batch]\ntimeout_ms = 50\n[sinks.rsyslog.retry]\n\
             initial_backoff_ms = 50\nmax_backoff_ms = 300\n"
        ));
    }
    let config = tmp.path().join("agent.toml");
    std::fs::write(&config, &toml_text).unwrap();
    let agent_log = tmp.path().join("agent.stderr");

    let exchange = watched.join("ExchangeSetup.log");
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let (e, s) = (exchange.clone(), Arc::clone(&stop));
        std::thread::spawn(move || writer(e, s))
    };

    let mut rng = patchwatch_testkit::rng::seeded("kill -9 with direct sinks");
    for i in 0..KILLS {
        // The webhook is down for the second quarter, the aggregator for the third.
        hook.set_up(!(KILLS / 4..KILLS / 2).contains(&i));
        if i == KILLS / 2 {
            agg.stop().await;
        }
        if i == 3 * KILLS / 4 {
            agg.restart().await;
        }
        let mut child = spawn_agent(&config, &agent_log);
        let ms = if i % 4 == 0 {
            rng.random_range(0..40)
        } else {
            rng.random_range(40..450)
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        child.kill().expect("SIGKILL");
        assert!(!child.wait().unwrap().success(), "agent {i} was killed");
    }
    stop.store(true, Ordering::Release);
    w.join().unwrap();
    let expected: BTreeMap<String, String> = expected_files(HOST, &[exchange]);
    assert!(expected.len() >= 20, "inputs should produce many findings");

    // Last start with the webhook down: the others complete, the webhook's lag shows.
    hook.set_up(false);
    let last = Running(spawn_agent(&config, &agent_log));
    let check = async {
        agg.assert_settles(HOST, &expected, Duration::from_secs(40))
            .await;
        let local = assert_ids_settle(
            "jsonl",
            || jsonl_ids(&out),
            &expected,
            Duration::from_secs(40),
        )
        .await;
        if let Some((_, file)) = &syslog {
            let got = assert_ids_settle(
                "rsyslog",
                || rsyslog_ids(file, syslog_from, HOST),
                &expected,
                Duration::from_secs(40),
            )
            .await;
            eprintln!(
                "rsyslog: {} lines for {} findings",
                got.len(),
                expected.len()
            );
        }
        lag_until(&metrics, "local", Duration::from_secs(10), |l| l == 0.0).await;
        let behind = lag_until(&metrics, "hook", Duration::from_secs(10), |l| l > 0.0).await;
        eprintln!(
            "jsonl: {} lines for {} findings; webhook behind by {behind} records",
            local.len(),
            expected.len()
        );
        // Webhook back: it gets everything, and its lag drops to zero.
        hook.set_up(true);
        let got =
            assert_ids_settle("webhook", || hook.ids(), &expected, Duration::from_secs(40)).await;
        eprintln!(
            "webhook: {} findings received for {} expected",
            got.len(),
            expected.len()
        );
        lag_until(&metrics, "hook", Duration::from_secs(10), |l| l == 0.0).await;
    };
    let outcome = tokio::time::timeout(Duration::from_secs(150), check).await;
    drop(last);
    if outcome.is_err() {
        panic!(
            "destinations did not settle; agent log:\n{}",
            log_tail(&agent_log)
        );
    }
    agg.stop().await;
}
