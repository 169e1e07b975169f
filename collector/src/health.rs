//! The agent's own health: [`Health`], shared by its threads, and [`HealthReport`], what
//! `/healthz` shows.
//!
//! Each part of the agent (the tail reader and matcher threads, the checkpoint writer, the
//! spool, delivery to each consumer) reports its state under a fixed name. A part that cannot
//! make progress but may recover (a full disk, a full spool, an unreachable aggregator) is
//! *degraded*, with a reason; the agent keeps trying. A hot-path thread that ended while the
//! agent was running is *failed*: that is never silent, [`Health::failed`] wakes whoever runs
//! the agent so that the process stops (and a service manager restarts it) instead of staying
//! up without reading.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::spool::Spool;

/// A consumer with records waiting and no acknowledgement for this long is degraded. Longer
/// than the default reconnect backoff cap, so one failed connection does not count.
const DELIVERY_STALL: Duration = Duration::from_secs(60);
/// Spool use at or above this share of its maximum is reported before reading pauses.
const SPOOL_HIGH: f64 = 0.9;

/// State of one part of the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartState {
    /// Working.
    Ok,
    /// Not making progress for a reason that may go away; retried.
    Degraded(String),
    /// Stopped for good; the agent must be restarted.
    Failed(String),
}

#[derive(Debug, Default)]
struct Inner {
    parts: BTreeMap<&'static str, PartState>,
}

/// Shared health state of one agent; cheap to clone.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Mutex<Inner>>,
    fatal: Arc<tokio::sync::watch::Sender<Option<String>>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// A health state with every part ok.
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            fatal: Arc::new(tokio::sync::watch::channel(None).0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets `part`'s state; returns true when it changed (so callers log transitions only).
    pub fn set(&self, part: &'static str, state: PartState) -> bool {
        if let PartState::Failed(reason) = &state {
            let msg = format!("{part}: {reason}");
            self.fatal.send_if_modified(|f| {
                let first = f.is_none();
                if first {
                    *f = Some(msg);
                }
                first
            });
        }
        let mut inner = self.lock();
        if state == PartState::Ok {
            return inner.parts.remove(part).is_some();
        }
        inner.parts.insert(part, state.clone()) != Some(state)
    }

    /// [`set`](Self::set) `part` to ok.
    pub fn ok(&self, part: &'static str) -> bool {
        self.set(part, PartState::Ok)
    }

    /// [`set`](Self::set) `part` to degraded with `reason`.
    pub fn degraded(&self, part: &'static str, reason: impl Into<String>) -> bool {
        self.set(part, PartState::Degraded(reason.into()))
    }

    /// The current state of every part that is not ok.
    pub fn report(&self) -> HealthReport {
        let inner = self.lock();
        HealthReport {
            problems: inner
                .parts
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect(),
        }
    }

    /// Completes when a part failed for good, with `part: reason`.
    pub async fn failed(&self) -> String {
        let mut rx = self.fatal.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The agent's health as `/healthz` shows it: the parts its threads report ([`Health`]) and
/// what the spool shows: its fill level, and for each consumer (aggregator delivery, direct
/// sinks) whether acknowledgements still come while records wait. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AgentHealth {
    parts: Health,
    spool: Spool,
    consumers: Vec<String>,
    /// Per consumer: its position when last seen moving, and when.
    progress: Arc<Mutex<BTreeMap<String, (u64, Instant)>>>,
    stall_after: Duration,
    /// What the reader and the matcher publish for `/status`.
    board: crate::status::StatusBoard,
}

impl AgentHealth {
    /// Health of an agent whose threads report to `parts` and whose `spool` is read by
    /// `consumers`.
    pub fn new(parts: Health, spool: Spool, consumers: Vec<String>) -> Self {
        Self {
            parts,
            spool,
            consumers,
            progress: Arc::default(),
            stall_after: DELIVERY_STALL,
            board: crate::status::StatusBoard::new(),
        }
    }

    /// The same health, showing `board` on `/status`.
    pub fn with_board(mut self, board: crate::status::StatusBoard) -> Self {
        self.board = board;
        self
    }

    /// The files the reader and the matcher published.
    pub fn board(&self) -> &crate::status::StatusBoard {
        &self.board
    }

    /// Spool bytes on disk and its limit.
    pub fn spool_bytes(&self) -> (u64, u64) {
        (self.spool.used_bytes(), self.spool.max_bytes())
    }

    /// The parts reported by the agent's threads.
    pub fn parts(&self) -> &Health {
        &self.parts
    }

    /// Records waiting in the spool for each consumer (not yet acknowledged by it).
    pub fn pending(&self) -> Vec<(String, u64)> {
        let next = self.spool.next_id();
        self.consumers
            .iter()
            .filter_map(|c| Some((c.clone(), next.saturating_sub(self.spool.position(c)?))))
            .collect()
    }

    /// A snapshot of everything.
    pub fn report(&self) -> HealthReport {
        let mut report = self.parts.report();
        let next = self.spool.next_id();
        let now = Instant::now();
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        for c in &self.consumers {
            let Some(at) = self.spool.position(c) else {
                continue;
            };
            let seen = progress.entry(c.clone()).or_insert((at, now));
            if seen.0 != at || at >= next {
                *seen = (at, now);
                continue;
            }
            let quiet = now.duration_since(seen.1);
            if quiet >= self.stall_after {
                report.problems.push((
                    format!("delivery:{c}"),
                    PartState::Degraded(format!(
                        "{} records waiting, none acknowledged for {}s",
                        next - at,
                        quiet.as_secs()
                    )),
                ));
            }
        }
        let (used, max) = (self.spool.used_bytes(), self.spool.max_bytes());
        if !report.problems.iter().any(|(p, _)| p == "spool")
            && used as f64 >= max as f64 * SPOOL_HIGH
        {
            report.problems.push((
                "spool".into(),
                PartState::Degraded(format!("spool nearly full: {used} of {max} bytes")),
            ));
        }
        report.problems.sort_by(|a, b| a.0.cmp(&b.0));
        report
    }
}

/// A snapshot of [`Health`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// Parts that are not ok, by name.
    pub problems: Vec<(String, PartState)>,
}

impl HealthReport {
    /// `"ok"`, `"degraded"` or `"failed"` (the worst part).
    pub fn status(&self) -> &'static str {
        if self
            .problems
            .iter()
            .any(|(_, s)| matches!(s, PartState::Failed(_)))
        {
            "failed"
        } else if self.problems.is_empty() {
            "ok"
        } else {
            "degraded"
        }
    }

    /// True when every part is ok.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The reason of `part`, if it is not ok.
    pub fn reason(&self, part: &str) -> Option<&str> {
        self.problems
            .iter()
            .find(|(p, _)| p == part)
            .map(|(_, s)| match s {
                PartState::Ok => "",
                PartState::Degraded(r) | PartState::Failed(r) => r.as_str(),
            })
    }

    /// The JSON body of `/healthz`: `{"status": "...", "problems": {"part": "reason"}}`.
    pub fn to_json(&self) -> String {
        let problems: serde_json::Map<String, serde_json::Value> = self
            .problems
            .iter()
            .map(|(p, s)| {
                let (state, reason) = match s {
                    PartState::Ok => ("ok", ""),
                    PartState::Degraded(r) => ("degraded", r.as_str()),
                    PartState::Failed(r) => ("failed", r.as_str()),
                };
                (
                    p.clone(),
                    serde_json::json!({"state": state, "reason": reason}),
                )
            })
            .collect();
        serde_json::json!({"status": self.status(), "problems": problems}).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_state_wins_and_transitions_are_reported_once() {
        let h = Health::new();
        assert_eq!(h.report().status(), "ok");
        assert!(h.degraded("spool", "disk full"));
        assert!(
            !h.degraded("spool", "disk full"),
            "same state: no transition"
        );
        assert_eq!(h.report().status(), "degraded");
        assert_eq!(h.report().reason("spool"), Some("disk full"));
        h.set("matcher", PartState::Failed("panicked".into()));
        assert_eq!(h.report().status(), "failed");
        assert!(h.report().to_json().contains("\"matcher\""));
        assert!(h.ok("spool"));
        assert_eq!(h.report().reason("spool"), None);
    }

    #[test]
    fn failed_wakes_the_waiter() {
        let h = Health::new();
        let h2 = h.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        std::thread::spawn(move || h2.set("matcher", PartState::Failed("gone".into())));
        let reason = rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), h.failed())
                .await
                .expect("failed() completes")
        });
        assert_eq!(reason, "matcher: gone");
    }
}
