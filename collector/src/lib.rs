//! patchwatch-collector library.
pub mod checkpoint;
pub mod config;
pub mod delivery;
pub mod discovery;
pub mod spool;
pub mod tail;
pub mod telemetry;
