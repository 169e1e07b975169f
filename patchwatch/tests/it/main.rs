//! End-to-end tests of the `patchwatch` command and of agent and aggregator together: one
//! test binary (each costs hundreds of MB of disk), one module per area.

mod agent_sinks;
mod chaos;
mod check;
mod cli;
mod common;
mod e2e_aggregator;
mod e2e_crash;
mod e2e_files;
mod e2e_sinks_crash;
mod e2e_stall;
mod metrics;
mod preflight;
// SIGHUP: Unix only (the Windows service reloads through its own control).
#[cfg(unix)]
mod reload;
mod status;
mod window_cli;
mod wine;
mod wine_preflight;
