//! Helpers for the sinks' unit tests.

pub(crate) use patchwatch_testkit::http::MockHttp;

/// Fast retries for tests.
pub(crate) fn fast_retry() -> crate::RetryConfig {
    crate::RetryConfig {
        initial_backoff_ms: 5,
        max_backoff_ms: 20,
        max_retries: Some(20),
        request_timeout_ms: 5_000,
    }
}

/// Small, quick batches for tests.
pub(crate) fn quick_batch(max_events: usize) -> crate::BatchConfig {
    crate::BatchConfig {
        max_events,
        timeout_ms: 20,
        queue_capacity: 1000,
    }
}
