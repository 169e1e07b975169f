//! Batching and retry settings, and the backoff schedule.

use std::time::Duration;

use serde::Deserialize;

/// A duration as written in the config (`"500ms"`, `"30s"`).
type ConfigDuration = patchwatch_config::Duration;

/// How findings are grouped into requests.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Most findings per request (default 500).
    pub max_events: usize,
    /// Longest a finding waits for its batch to fill (default `"1s"`; was `timeout_ms`).
    pub timeout: ConfigDuration,
    /// Findings the queue holds before `submit` reports it full (default 10000).
    pub queue_capacity: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 500,
            timeout: ConfigDuration::from_secs(1),
            queue_capacity: 10_000,
        }
    }
}

/// How failed attempts are retried: capped exponential backoff with jitter.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First backoff (default `"200ms"`; was `initial_backoff_ms`).
    pub initial_backoff: ConfigDuration,
    /// Cap on the backoff (default `"30s"`; was `max_backoff_ms`).
    pub max_backoff: ConfigDuration,
    /// Attempts after the first before a batch is given up; absent means retry until the
    /// destination recovers or the sink shuts down (default: absent, nothing is dropped).
    pub max_retries: Option<u32>,
    /// Timeout of one request (default `"10s"`; was `request_timeout_ms`).
    pub request_timeout: ConfigDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: ConfigDuration::from_millis(200),
            max_backoff: ConfigDuration::from_secs(30),
            max_retries: None,
            request_timeout: ConfigDuration::from_secs(10),
        }
    }
}

impl RetryConfig {
    /// Backoff before retry number `attempt` (0-based): `min(cap, initial * 2^attempt)` scaled by
    /// a random factor in [0.5, 1.0), so that many sinks restarting together spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .initial_backoff
            .as_millis_u64()
            .saturating_mul(1u64 << attempt.min(20))
            .min(self.max_backoff.as_millis_u64())
            .max(1);
        let jitter: f64 = rand::random_range(0.5..1.0);
        Duration::from_millis((base as f64 * jitter) as u64)
    }

    /// Request timeout as a `Duration`.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout.get().max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let r = RetryConfig {
            initial_backoff: ConfigDuration::from_millis(100),
            max_backoff: ConfigDuration::from_secs(1),
            ..Default::default()
        };
        for _ in 0..50 {
            let b0 = r.backoff(0).as_millis();
            assert!((50..100).contains(&b0), "{b0}");
            let b3 = r.backoff(3).as_millis();
            assert!((400..800).contains(&b3), "{b3}");
            let b30 = r.backoff(30).as_millis();
            assert!((500..1000).contains(&b30), "{b30}");
        }
    }
}
