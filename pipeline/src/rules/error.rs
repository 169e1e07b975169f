//! Errors in rule files.

use std::path::PathBuf;

/// A rule file could not be loaded. Every variant names the file, and the rule and field when
/// they are known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// The file could not be read.
    #[error("{path}: cannot read rule file: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML did not parse or has an unknown/missing field.
    #[error("{path}: {message}")]
    Syntax {
        /// File.
        path: PathBuf,
        /// Parser message, with line and column.
        message: String,
    },
    /// A field has an invalid value.
    #[error("{path}: rule `{rule}`: field `{field}`: {message}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// Rule id.
        rule: String,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}
