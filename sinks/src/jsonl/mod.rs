//! JSON Lines to a file or stdout: one finding per line, as [`crate::encoding::finding_json`].

mod config;
mod service;
#[cfg(test)]
mod tests;

pub use config::{build, JsonlConfig};
