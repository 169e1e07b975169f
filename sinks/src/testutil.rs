//! Helpers for the sinks' unit tests.

pub(crate) use patchwatch_testkit::http::MockHttp;

/// Fast retries for tests.
pub(crate) fn fast_retry() -> crate::RetryConfig {
    crate::RetryConfig {
        initial_backoff: patchwatch_config::Duration::from_millis(5),
        max_backoff: patchwatch_config::Duration::from_millis(20),
        max_retries: Some(20),
        request_timeout: patchwatch_config::Duration::from_secs(5),
    }
}

/// Small, quick batches for tests.
pub(crate) fn quick_batch(max_events: usize) -> crate::BatchConfig {
    crate::BatchConfig {
        max_events,
        timeout: patchwatch_config::Duration::from_millis(20),
        queue_capacity: 1000,
    }
}
