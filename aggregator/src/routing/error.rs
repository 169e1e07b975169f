//! Errors of alert routing: an invalid route, silence, receiver or maintenance window, and a
//! router that cannot take a finding.

use patchwatch_proto::Finding;
use patchwatch_sinks::SinkError;

/// Errors of router construction and use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoutingError {
    /// A route, silence or receiver field is invalid.
    #[error("{what}: invalid `{field}`: {reason}")]
    Invalid {
        /// Which item, e.g. "route `oncall`".
        what: String,
        /// Field name as written in TOML.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A maintenance window is invalid.
    #[error(transparent)]
    Window(#[from] WindowError),
    /// A sink receiver could not be built.
    #[error("receiver: {0}")]
    Sink(#[from] SinkError),
    /// The TOML does not parse or match the schema.
    #[error("invalid routing configuration: {0}")]
    Toml(String),
    /// `Router::new` was called outside a tokio runtime (receivers run as tasks).
    #[error("Router::new must be called inside a tokio runtime")]
    NoRuntime,
    /// The router queue is full; the finding is handed back.
    #[error("router queue is full")]
    QueueFull(Box<Finding>),
    /// `run` was called twice, or the driver has stopped.
    #[error("router driver is not running or already started")]
    NotRunning,
}

/// Why a maintenance window is invalid. Each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WindowError {
    /// `id` is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("window `{0}`: `id` must be 1 to 64 characters of letters, digits, '-', '_', '.'")]
    BadId(String),
    /// `hosts` is empty.
    #[error("window `{0}`: `hosts` must list at least one host glob")]
    NoHosts(String),
    /// A host glob does not parse.
    #[error("window `{id}`: `hosts` entry `{glob}`: {reason}")]
    BadGlob {
        /// Window id.
        id: String,
        /// The glob.
        glob: String,
        /// Parser message.
        reason: String,
    },
    /// `ends_at` is not after `starts_at`.
    #[error("window `{0}`: `ends_at` must be after `starts_at`")]
    EndsBeforeStart(String),
    /// Two windows share an id.
    #[error("window `{0}`: duplicate `id`")]
    DuplicateId(String),
}
