//! patchwatch-collector: discovery, tailing, checkpoints, spool and delivery, and the agent
//! that wires them to the pipeline.

pub mod agent;
pub mod checkpoint;
pub mod config;
pub mod convert;
pub mod delivery;
pub mod discovery;
pub mod endpoint;
pub mod faults;
pub mod health;
mod matcher;
pub mod memory;
pub mod preflight;
pub mod siem;
pub mod spool;
pub mod status;
pub mod tail;
pub mod telemetry;

/// This machine's host name.
pub fn local_host() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// This machine's current offset from UTC, in seconds (0 when unknown).
pub fn local_utc_offset_seconds() -> i32 {
    time::UtcOffset::current_local_offset().map_or(0, |o| o.whole_seconds())
}
