//! Durable forwarding end to end, on SQLite and on PostgreSQL (`PATCHWATCH_PG_URL`): a private
//! rsyslogd (the Debian package's binary, `PATCHWATCH_RSYSLOGD` from `.ci/setup-rsyslog.sh`)
//! stopped mid-stream and restarted receives every finding exactly once while a JSON Lines
//! sink keeps receiving; an aggregator restarted while its destination is down delivers
//! everything once the destination is back; the router re-sends to a real Alertmanager after
//! a restart; new destinations start where `forwarding.new_destination_start` says.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use patchwatch_testkit::rsyslog::Rsyslogd;
use patchwatch_testkit::webhook::jsonl_toml;

use crate::common::*;
use patchwatch_aggregator::Config;
use patchwatch_proto::Batch;
use serde_json::Value;

/// Batch `seq` of `n` findings `{prefix}-{seq}-{i}` observed now.
fn batch_now(prefix: &str, seq: u64, n: usize) -> Batch {
    let findings = (0..n)
        .map(|i| fresh(&format!("{prefix}-{seq}-{i}"), "EXCH07", "EXCH-0042", 5))
        .collect();
    batch_of(seq, findings)
}

/// A configuration for `backend` (None: skipped) with `extra` TOML merged in.
async fn config_with(backend: Backend, extra: &str) -> Option<(Config, tempfile::TempDir)> {
    let (base, dir) = config(backend).await?;
    let mut c = Config::parse(extra, "test.toml").unwrap();
    c.data_dir = base.data_dir;
    c.grpc = base.grpc;
    c.http = base.http;
    c.store = base.store;
    Some((c, dir))
}

/// Finding ids with `needle` in a file (syslog `id="..."` or JSON `"id":"..."`), counted.
fn ids_in(path: &Path, needle: &str) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let Some(at) = line.find(needle) else {
            continue;
        };
        let id: String = line[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        *ids.entry(id).or_default() += 1;
    }
    ids
}

/// The `/healthz` forwarding entry of `destination`.
async fn forwarding_status(http: std::net::SocketAddr, destination: &str) -> Value {
    let h = get_json(http, "/healthz").await;
    h["forwarding"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["destination"] == destination).cloned())
        .unwrap_or_else(|| panic!("no forwarding entry for {destination}: {h}"))
}

/// A sink section: syslog over TCP to `port` with quick retries.
fn syslog_sink(name: &str, port: u16) -> String {
    format!(
        "[sinks.{name}]\ntype = \"syslog\"\naddress = \"127.0.0.1:{port}\"\ntransport = \"tcp\"\n\
         [sinks.{name}.batch]\ntimeout_ms = 20\n\
         [sinks.{name}.retry]\ninitial_backoff_ms = 50\nmax_backoff_ms = 300\n"
    )
}

const QUICK: &str =
    "[forwarding]\npoll_interval_ms = 200\ninitial_backoff_ms = 50\nmax_backoff_ms = 500\n";

async fn rsyslog_stopped_mid_stream(backend: Backend) {
    let Some(bin) = env_or_skip("PATCHWATCH_RSYSLOGD", "setup-rsyslog.sh") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rsyslog.log");
    let file = dir.path().join("findings.jsonl");
    let port = free_port();
    let mut rsyslogd = Rsyslogd::new(bin, dir.path(), port, &out);
    rsyslogd.start().await;
    let extra = format!(
        "{QUICK}{}{}",
        syslog_sink("siem", port),
        jsonl_toml("file", &file)
    );
    let Some((config, _data)) = config_with(backend, &extra).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let http = agg.http_addr();
    let mut client = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut client).await.unwrap();
    let t = run_token();
    let prefix = format!("mid-{t}");

    // Batches 1..=5 while rsyslog is up, all written before it is stopped: plain TCP syslog
    // has no application-level ack, so a message still in rsyslogd's socket buffer when it
    // exits would be lost by the receiver, not by us.
    for seq in 1..=5 {
        assert_eq!(
            stream.roundtrip(batch_now(&prefix, seq, 20)).await.accepted,
            20
        );
    }
    eventually(WAIT, "the first 100 in rsyslog", || async {
        (ids_in(&out, &prefix).len() == 100).then_some(())
    })
    .await;
    rsyslogd.stop();

    // Batches 6..=15 while it is down: acks stay prompt, the file sink keeps receiving, the
    // syslog destination falls behind and says so.
    let started = Instant::now();
    for seq in 6..=15 {
        assert_eq!(
            stream.roundtrip(batch_now(&prefix, seq, 20)).await.accepted,
            20
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "acks took {:?}",
        started.elapsed()
    );
    eventually(
        WAIT,
        "the file sink to get all 300 while syslog is down",
        || async { (ids_in(&file, &prefix).len() == 300).then_some(()) },
    )
    .await;
    let behind = eventually(WAIT, "syslog to report lag", || async {
        let s = forwarding_status(http, "sink:siem").await;
        (s["lag"].as_i64().unwrap_or(0) >= 200).then_some(s)
    })
    .await;
    assert!(
        behind["consecutive_failures"].as_u64().is_some(),
        "{behind}"
    );
    // (The process-wide lag gauge is checked in routing.rs, where the sink name is unique.)
    assert_eq!(forwarding_status(http, "sink:file").await["lag"], 0);

    // Back up: everything arrives, each finding exactly once; more keeps flowing.
    rsyslogd.start().await;
    for seq in 16..=20 {
        stream.roundtrip(batch_now(&prefix, seq, 20)).await;
    }
    let ids = eventually(Duration::from_secs(30), "all 400 in rsyslog", || async {
        let ids = ids_in(&out, &prefix);
        (ids.len() == 400).then_some(ids)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids_again = ids_in(&out, &prefix);
    assert_eq!(ids_again.len(), 400);
    let twice: Vec<_> = ids_again.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(ids.len(), 400);
    eventually(WAIT, "syslog lag back to 0", || async {
        (forwarding_status(http, "sink:siem").await["lag"] == 0).then_some(())
    })
    .await;

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
    rsyslogd.stop();
}

async fn restart_while_destination_down(backend: Backend) {
    let Some(bin) = env_or_skip("PATCHWATCH_RSYSLOGD", "setup-rsyslog.sh") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rsyslog.log");
    let port = free_port();
    let mut rsyslogd = Rsyslogd::new(bin, dir.path(), port, &out);
    let extra = format!("{QUICK}{}", syslog_sink("siem", port));
    let Some((config, _data)) = config_with(backend, &extra).await else {
        return;
    };
    let t = run_token();
    let prefix = format!("rst-{t}");

    // First life: rsyslog is down the whole time.
    let (agg, shutdown) = start(config.clone()).await;
    let mut client1 = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut client1).await.unwrap();
    for seq in 1..=5 {
        stream.roundtrip(batch_now(&prefix, seq, 20)).await;
    }
    let http = agg.http_addr();
    eventually(WAIT, "the sink to be behind by 100", || async {
        (forwarding_status(http, "sink:siem").await["lag"] == 100).then_some(())
    })
    .await;
    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
    assert!(ids_in(&out, &prefix).is_empty());

    // Second life: the destination comes back; everything from before and after arrives.
    rsyslogd.start().await;
    let (agg, shutdown) = start(config).await;
    let mut client2 = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut client2).await.unwrap();
    for seq in 6..=7 {
        stream.roundtrip(batch_now(&prefix, seq, 20)).await;
    }
    let ids = eventually(
        Duration::from_secs(30),
        "all 140 after the restart",
        || async {
            let ids = ids_in(&out, &prefix);
            (ids.len() == 140).then_some(ids)
        },
    )
    .await;
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
    rsyslogd.stop();
}

async fn new_destinations_start_now_or_from_the_beginning(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let late = dir.path().join("late.jsonl");
    let backfill = dir.path().join("backfill.jsonl");
    let Some((mut config, _data)) = config_with(backend, QUICK).await else {
        return;
    };
    let t = run_token();
    let prefix = format!("new-{t}");

    // Stored before any destination existed.
    let (agg, shutdown) = start(config.clone()).await;
    let mut c = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut c).await.unwrap();
    stream.roundtrip(batch_now(&prefix, 1, 10)).await;
    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();

    // `late` is added with the default (now), `backfill` with `beginning`.
    for (sink, path, start_from, seq) in [
        ("late", &late, "now", 2),
        ("backfill", &backfill, "beginning", 3),
    ] {
        let extra = Config::parse(
            &format!(
                "{QUICK}new_destination_start = {start_from:?}\n{}",
                jsonl_toml(sink, path)
            ),
            "test.toml",
        )
        .unwrap();
        config.sinks = extra.sinks;
        config.forwarding = extra.forwarding;
        let (agg, shutdown) = start(config.clone()).await;
        let mut c = client(agg.grpc_addr()).await;
        let mut stream = CollectorStream::open(&mut c).await.unwrap();
        stream.roundtrip(batch_now(&prefix, seq, 10)).await;
        let want = if start_from == "now" { 10 } else { 30 };
        eventually(WAIT, &format!("{want} findings in {sink}"), || async {
            let ids = ids_in(path, &prefix);
            let new = ids
                .keys()
                .filter(|id| id.contains(&format!("-{seq}-")))
                .count();
            (new == 10 && ids.len() >= want).then_some(())
        })
        .await;
        drop(stream);
        shutdown.cancel();
        agg.wait().await.unwrap();
    }
    let late_ids = ids_in(&late, &prefix);
    assert_eq!(ids_in(&backfill, &prefix).len(), 30);
    // On PostgreSQL "now" is the oldest running transaction anywhere on the server: when
    // another test's write was still open as batch 1 committed, batch 1 counts as new.
    // Never fewer findings, possibly a few more; SQLite's "now" is exact.
    if backend == Backend::Sqlite {
        assert!(late_ids.keys().all(|id| id.contains("-2-")), "{late_ids:?}");
    }
}

async fn router_resends_after_restart(backend: Backend) {
    let Some(am) = env_or_skip("PATCHWATCH_ALERTMANAGER_URL", "setup-alertmanager.sh") else {
        return;
    };
    let t = run_token();
    let rule = format!("DUR-{t}");
    let dead = free_port();
    let routing = |url: &str| {
        format!(
            "{QUICK}[routing]\n[[routing.route]]\nname = \"pager\"\nreceivers = [\"am\"]\n\
             group_wait = \"50ms\"\ngroup_interval = \"50ms\"\nresolve_after = \"1h\"\n\
             [routing.receivers.am]\ntype = \"alertmanager\"\nurl = \"{url}\"\n\
             [routing.receivers.am.retry]\ninitial_backoff_ms = 50\nmax_backoff_ms = 200\nmax_retries = 2\n"
        )
    };
    let Some((mut config, _data)) =
        config_with(backend, &routing(&format!("http://127.0.0.1:{dead}"))).await
    else {
        return;
    };
    // First life: Alertmanager unreachable; the router cannot confirm, its cursor stays put.
    let (agg, shutdown) = start(config.clone()).await;
    let mut c = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut c).await.unwrap();
    let mut b = batch_now(&format!("am-{t}"), 1, 3);
    for f in &mut b.findings {
        f.rule_id.clone_from(&rule);
    }
    stream.roundtrip(b).await;
    let http = agg.http_addr();
    let s = eventually(WAIT, "the router to fail a post", || async {
        let s = forwarding_status(http, "router").await;
        (s["consecutive_failures"].as_u64().unwrap_or(0) >= 1).then_some(s)
    })
    .await;
    assert_eq!(s["lag"], 3, "{s}");
    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();

    // Second life: Alertmanager reachable; the stored findings are routed again and arrive.
    config.routing = Config::parse(&routing(&am), "test.toml").unwrap().routing;
    let (agg, shutdown) = start(config).await;
    let alerts = eventually(
        Duration::from_secs(30),
        "the alert after the restart",
        || async {
            let resp = reqwest::Client::new()
                .get(format!("{am}/api/v2/alerts"))
                .query(&[("filter", format!("rule_id=\"{rule}\""))])
                .send()
                .await
                .ok()?;
            let a: Vec<Value> = resp.json().await.ok()?;
            (!a.is_empty()).then_some(a)
        },
    )
    .await;
    assert_eq!(alerts[0]["labels"]["host"], "EXCH07");
    let http = agg.http_addr();
    eventually(WAIT, "the router cursor to catch up", || async {
        (forwarding_status(http, "router").await["lag"] == 0).then_some(())
    })
    .await;
    shutdown.cancel();
    agg.wait().await.unwrap();
}

backend_tests! {
    rsyslog_stopped_mid_stream_gets_every_finding_exactly_once => rsyslog_stopped_mid_stream;
    aggregator_restarted_while_destination_down_delivers_everything => restart_while_destination_down;
    new_destinations_start_now_or_from_the_beginning => new_destinations_start_now_or_from_the_beginning;
    router_resends_to_alertmanager_after_restart => router_resends_after_restart;
}
