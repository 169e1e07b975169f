//! Errors of sink configuration, construction and delivery.

use std::path::PathBuf;

/// Error building, configuring or health-checking a sink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The TOML text does not parse or does not match the schema (the message names the field).
    #[error("invalid sink configuration: {0}")]
    ConfigToml(String),
    /// A field has a value that parses but cannot be used.
    #[error("sink `{sink}`: invalid `{field}`: {reason}")]
    InvalidField {
        /// Name of the sink (the key under `[sinks]`).
        sink: String,
        /// Field name as written in TOML.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A secret could not be read from its environment variable or file.
    #[error("sink `{sink}`: secret `{field}`: {reason}")]
    Secret {
        /// Name of the sink.
        sink: String,
        /// Field that configures the secret (`token_env`, `token_file`, ...).
        field: String,
        /// Why it could not be read (never contains the secret).
        reason: String,
    },
    /// A file (certificate, output file) could not be read or opened.
    #[error("sink `{sink}`: {path}: {source}")]
    Io {
        /// Name of the sink.
        sink: String,
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The destination failed its healthcheck.
    #[error("sink `{sink}`: healthcheck of {destination} failed: {reason}")]
    Unhealthy {
        /// Name of the sink.
        sink: String,
        /// Address or URL of the destination.
        destination: String,
        /// What went wrong.
        reason: String,
    },
}

impl SinkError {
    /// Wraps a TOML deserialization error (its message names the offending key and line).
    pub fn config_toml(e: toml::de::Error) -> Self {
        SinkError::ConfigToml(e.to_string())
    }
}

/// Failure of one delivery attempt, as seen by the retry loop.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{destination}: {message}")]
pub struct SendError {
    /// True when trying the same request again may succeed (connection refused, timeout,
    /// HTTP 429/5xx, gRPC UNAVAILABLE, ...).
    pub retryable: bool,
    /// Low-cardinality reason used as a metric label, e.g. `connect`, `http_503`, `grpc_unavailable`.
    pub code: String,
    /// Address or URL of the destination.
    pub destination: String,
    /// Human-readable detail.
    pub message: String,
}

impl SendError {
    /// A failure worth retrying.
    pub fn retryable(destination: &str, code: impl Into<String>, message: impl ToString) -> Self {
        SendError {
            retryable: true,
            code: code.into(),
            destination: destination.to_string(),
            message: message.to_string(),
        }
    }

    /// A failure that will not go away by retrying (bad request, authentication).
    pub fn fatal(destination: &str, code: impl Into<String>, message: impl ToString) -> Self {
        SendError {
            retryable: false,
            code: code.into(),
            destination: destination.to_string(),
            message: message.to_string(),
        }
    }

    /// Classifies an HTTP status: 408, 429 and 5xx are retryable, everything else is not.
    pub fn from_http_status(destination: &str, status: u16, body: &str) -> Self {
        let retry = status == 408 || status == 429 || status >= 500;
        let mut snippet: String = body.chars().take(300).collect();
        if snippet.len() < body.len() {
            snippet.push('…');
        }
        SendError {
            retryable: retry,
            code: format!("http_{status}"),
            destination: destination.to_string(),
            message: format!("HTTP {status}: {snippet}"),
        }
    }

    /// Classifies a reqwest transport error; they are all retryable except building errors.
    pub fn from_reqwest(destination: &str, e: &reqwest::Error) -> Self {
        let code = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect"
        } else {
            "transport"
        };
        SendError {
            retryable: !e.is_builder(),
            code: code.into(),
            destination: destination.to_string(),
            message: e.to_string(),
        }
    }
}
