//! The `[forwarding]` table.

use serde::Deserialize;

use crate::config::ConfigError;

/// Where a destination without a stored cursor starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// Only findings stored from now on (default): adding a receiver does not replay history.
    #[default]
    Now,
    /// Every stored finding (to backfill a new SIEM).
    Beginning,
}

/// How stored findings are forwarded; see [`crate::forward`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardingConfig {
    /// Where a destination with no cursor yet starts (default `now`).
    pub new_destination_start: StartFrom,
    /// Findings read from the store per batch (default 500).
    pub batch_size: u32,
    /// Findings handed to one destination and not yet confirmed (default 5000).
    pub max_inflight: usize,
    /// Milliseconds between store checks without a wake-up (default 1000).
    pub poll_interval_ms: u64,
    /// Least milliseconds between two cursor writes of one destination (default 250); a
    /// destination that has caught up writes at once.
    pub cursor_write_interval_ms: u64,
    /// First backoff after an unconfirmed batch, in milliseconds (default 500).
    pub initial_backoff_ms: u64,
    /// Cap on that backoff, in milliseconds (default 30000).
    pub max_backoff_ms: u64,
}

impl Default for ForwardingConfig {
    fn default() -> Self {
        Self {
            new_destination_start: StartFrom::Now,
            batch_size: 500,
            max_inflight: 5000,
            poll_interval_ms: 1000,
            cursor_write_interval_ms: 250,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
        }
    }
}

impl ForwardingConfig {
    /// Checks the limits are usable.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("forwarding.batch_size", u64::from(self.batch_size)),
            ("forwarding.max_inflight", self.max_inflight as u64),
            ("forwarding.poll_interval_ms", self.poll_interval_ms),
            ("forwarding.initial_backoff_ms", self.initial_backoff_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(field, "must be at least 1"));
            }
        }
        if self.max_backoff_ms < self.initial_backoff_ms {
            return Err(ConfigError::invalid(
                "forwarding.max_backoff_ms",
                "must be at least forwarding.initial_backoff_ms",
            ));
        }
        Ok(())
    }

    /// Backoff before retry `attempt` (0-based): doubling, capped, with jitter in [0.5, 1).
    pub(crate) fn backoff(&self, attempt: u32) -> std::time::Duration {
        let base = self
            .initial_backoff_ms
            .saturating_mul(1u64 << attempt.min(20))
            .min(self.max_backoff_ms);
        let jitter: f64 = rand::random_range(0.5..1.0);
        std::time::Duration::from_millis((base as f64 * jitter) as u64)
    }
}
