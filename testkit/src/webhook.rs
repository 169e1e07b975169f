//! Test destinations: a loopback webhook receiver that can be switched down (HTTP 503) and
//! up, and a JSON Lines reader that tolerates the torn last line a killed writer can leave.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    up: AtomicBool,
    refused: AtomicUsize,
    ids: Mutex<Vec<String>>,
}

/// A webhook receiver on 127.0.0.1:0 that records the `id` of every finding it accepts.
pub struct Webhook {
    /// Where to post findings.
    pub url: String,
    seen: Arc<Seen>,
    stop: CancellationToken,
}

impl Webhook {
    /// Starts it, up (answering 200) or down (answering 503 without reading the findings).
    pub async fn start(up: bool) -> Self {
        let seen = Arc::new(Seen::default());
        seen.up.store(up, Ordering::SeqCst);
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(Arc::clone(&seen));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await
                .unwrap();
        });
        Self { url, seen, stop }
    }

    /// Switches between answering 200 and 503.
    pub fn set_up(&self, up: bool) {
        self.seen.up.store(up, Ordering::SeqCst);
    }

    /// Requests refused while down.
    pub fn refused(&self) -> usize {
        self.seen.refused.load(Ordering::SeqCst)
    }

    /// Every accepted finding id, in arrival order (duplicates kept).
    pub fn ids(&self) -> Vec<String> {
        self.seen.ids.lock().unwrap().clone()
    }

    /// `[sinks.<name>]` TOML for this receiver with fast batching and retries.
    pub fn sink_toml(&self, name: &str) -> String {
        format!(
            "[sinks.{name}]\ntype = \"webhook\"\nurl = {url:?}\n[sinks.{name}.batch]\ntimeout = \"50ms\"\n\
             [sinks.{name}.retry]\ninitial_backoff = \"50ms\"\nmax_backoff = \"300ms\"\n\
             request_timeout = \"2s\"\n",
            url = self.url
        )
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn receive(State(seen): State<Arc<Seen>>, Json(body): Json<serde_json::Value>) -> StatusCode {
    if !seen.up.load(Ordering::SeqCst) {
        seen.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let ids = body["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["id"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    seen.ids.lock().unwrap().extend(ids);
    StatusCode::OK
}

/// `[sinks.<name>]` TOML for a JSON Lines file with fast batching.
pub fn jsonl_toml(name: &str, path: &Path) -> String {
    format!(
        "[sinks.{name}]\ntype = \"jsonl\"\npath = {path:?}\n[sinks.{name}.batch]\ntimeout = \"50ms\"\n"
    )
}

/// Finding ids in a JSON Lines file, in order (duplicates kept). A line that does not parse
/// is the torn end of a batch a killed agent was writing, followed by the next batch's first
/// record on the same line: the record is recovered from the first `{` where a whole JSON
/// document ends the line.
pub fn jsonl_ids(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let doc = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .or_else(|| {
                line.match_indices('{')
                    .skip(1)
                    .find_map(|(i, _)| serde_json::from_str::<serde_json::Value>(&line[i..]).ok())
            });
        if let Some(id) = doc.as_ref().and_then(|d| d["id"].as_str()) {
            out.push(id.to_owned());
        }
    }
    out
}

/// Polls `got` until its set of ids covers `expected` (or `timeout` passes), then asserts the
/// sets are equal, naming what is missing and what is unexpected.
pub async fn assert_ids_settle<F: Fn() -> Vec<String>>(
    what: &str,
    got: F,
    expected: &BTreeMap<String, String>,
    timeout: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let all = got();
        let set: BTreeSet<&String> = all.iter().collect();
        let done = expected.keys().all(|k| set.contains(k));
        if done || Instant::now() >= deadline {
            let missing: Vec<&String> = expected
                .iter()
                .filter(|(k, _)| !set.contains(k))
                .map(|(_, v)| v)
                .collect();
            let extra: Vec<&&String> = set.iter().filter(|k| !expected.contains_key(**k)).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{what}: {} ids ({} distinct), expected {}\n missing ({}): {missing:#?}\n unexpected ({}): {extra:#?}",
                all.len(),
                set.len(),
                expected.len(),
                missing.len(),
                extra.len()
            );
            return all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
