//! Secrets (tokens, passwords): the shared [`patchwatch_config::Secret`], written
//! `token = "inline"`, `token = { env = "VAR" }` or `token = { file = "/path" }`, and the value
//! it resolves to. Neither ever appears in `Debug` output or logs (`[redacted]`).

pub use patchwatch_config::{Secret, SecretValue};
