//! Integration tests of the agent library: tailing real files, the spool on disk, delivery
//! over real gRPC on loopback. One test binary, one module per area.

mod delivery;
mod fuzz;
mod handles;
mod hardening;
mod spool;
mod tail;
mod walk;
