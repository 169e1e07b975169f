//! The aggregator's integration tests, one binary: a module per area, against real servers
//! over loopback where a test needs one (PostgreSQL, rsyslog, Alertmanager, Chromium; started by
//! `.ci/setup-*.sh`, skipped with a `skipped:` line when their variables are unset).

#[macro_use]
mod common;

mod alertmanager;
mod board;
mod config_vocabulary;
mod crash;
mod dashboard_browser;
mod deploy_examples;
mod fleet_paging;
mod forwarding;
mod fuzz;
mod hardening;
mod http_api;
mod ingest;
mod routing;
mod silences_api;
mod windows_api;
