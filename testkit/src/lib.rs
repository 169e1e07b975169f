//! Helpers shared by patchwatch's integration tests, so that each crate's tests wait, skip,
//! build messages and talk to real servers the same way.
//!
//! Servers (PostgreSQL, rsyslog, Alertmanager, Chromium) are started by `.ci/setup-*.sh`, which
//! print the variables these helpers read. A test whose server is missing is skipped with a
//! `skipped:` line, or fails under `CI=true` ([`env_or_skip`]).

#![deny(missing_docs)]

pub mod alertmanager;
pub mod build;
pub mod http;
pub mod postgres;
pub mod rng;
pub mod rsyslog;
pub mod webhook;

use std::path::Path;
use std::time::{Duration, Instant};

/// Upper bound for a single wait on a real server or process.
pub const WAIT: Duration = Duration::from_secs(20);

/// True when running under CI (`CI=true`), where a missing server is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The variable's value, set by `.ci/<script>`. Unset or empty: panics under CI, otherwise
/// prints `skipped: <why>` and returns `None`.
pub fn env_or_skip(var: &str, script: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if in_ci() => {
            panic!("{var} is not set: CI must run `eval \"$(bash .ci/{script})\"` before the tests")
        }
        _ => {
            println!("skipped: {var} is not set (run `eval \"$(bash .ci/{script})\"`)");
            None
        }
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `limit` naming `what`.
pub async fn eventually<T>(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`eventually`] for tests without a runtime: polls `check` every 50 ms.
pub fn eventually_blocking<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A token unique to this test run, so alerts and log lines of earlier runs against a
/// long-lived server do not count.
pub fn run_token() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// The current time in Unix nanoseconds.
pub fn now_ns() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// User + system CPU seconds of process `pid` so far, from `/proc/<pid>/stat` (Linux; 0 where
/// it cannot be read), for benches that report what the client and the server cost.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name, utime and stime are the 12th and 13th fields (USER_HZ = 100).
    (ticks(11) + ticks(12)) / 100.0
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// The lines of the file at `path` that contain `needle` (none when it cannot be read).
pub fn lines_with(path: &Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Waits until the file at `path` has at least `n` lines containing `needle`; returns them.
pub async fn lines_settle(path: &Path, needle: &str, n: usize, what: &str) -> Vec<String> {
    eventually(WAIT, what, async || {
        let l = lines_with(path, needle);
        (l.len() >= n).then_some(l)
    })
    .await
}
