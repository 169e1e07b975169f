//! The `[forwarding]` table.

use patchwatch_config::Duration;
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
    /// Time between store checks without a wake-up (default `"1s"`; was `poll_interval_ms`).
    pub poll_interval: Duration,
    /// Least time between two cursor writes of one destination (default `"250ms"`; was
    /// `cursor_write_interval_ms`); a destination that has caught up writes at once.
    pub cursor_write_interval: Duration,
    /// First backoff after an unconfirmed batch (default `"500ms"`; was `initial_backoff_ms`).
    pub initial_backoff: Duration,
    /// Cap on that backoff (default `"30s"`; was `max_backoff_ms`).
    pub max_backoff: Duration,
}

impl Default for ForwardingConfig {
    fn default() -> Self {
        Self {
            new_destination_start: StartFrom::Now,
            batch_size: 500,
            max_inflight: 5000,
            poll_interval: Duration::from_secs(1),
            cursor_write_interval: Duration::from_millis(250),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
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
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(field, "must be at least 1"));
            }
        }
        for (field, value) in [
            ("forwarding.poll_interval", self.poll_interval),
            ("forwarding.initial_backoff", self.initial_backoff),
        ] {
            if value.as_millis_u64() == 0 {
                return Err(ConfigError::invalid(field, "must be at least 1ms"));
            }
        }
        if self.max_backoff < self.initial_backoff {
            return Err(ConfigError::invalid(
                "forwarding.max_backoff",
                "must be at least forwarding.initial_backoff",
            ));
        }
        Ok(())
    }

    /// Backoff before retry `attempt` (0-based): doubling, capped, with jitter in [0.5, 1).
    pub(crate) fn backoff(&self, attempt: u32) -> std::time::Duration {
        let base = self
            .initial_backoff
            .as_millis_u64()
            .saturating_mul(1u64 << attempt.min(20))
            .min(self.max_backoff.as_millis_u64());
        let jitter: f64 = rand::random_range(0.5..1.0);
        std::time::Duration::from_millis((base as f64 * jitter) as u64)
    }
}
