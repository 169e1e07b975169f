//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

/// Reads a variable set by a `.ci/setup-*.sh` script. Unset: panics under `CI=true`, otherwise
/// prints `skipped: <why>` and returns `None`.
pub fn env_or_skip(var: &str, script: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{var} is not set: run `eval \"$(bash .ci/{script})\"` before the tests");
            }
            println!("skipped: {var} is not set (run `eval \"$(bash .ci/{script})\"`)");
            None
        }
    }
}

/// Polls `f` every 100 ms until it returns `Some`, or panics after `limit` with `what`.
pub async fn eventually<T>(
    limit: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A unique token per test run, so reruns against a long-lived server do not see old data.
pub fn run_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}
