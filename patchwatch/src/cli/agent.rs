//! `patchwatch agent`: the collector agent in console mode, or as a Windows service when the
//! Service Control Manager started it.

use std::path::PathBuf;
use std::sync::Arc;

use std::io::Write;

use anyhow::Result;
use patchwatch_collector::config::AgentConfig;
use patchwatch_collector::discovery::Discovery;

/// Options of `agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Validate the configuration, print what would be watched, and exit.
    #[arg(long)]
    pub check: bool,
    /// Extra rule file (TOML); repeatable.
    #[arg(long = "rules", value_name = "FILE")]
    pub rule_files: Vec<PathBuf>,
}

/// Runs `agent`.
pub fn run(args: AgentArgs) -> Result<i32> {
    let config = match &args.config {
        Some(p) => AgentConfig::load(p)?,
        None => AgentConfig::default_for_platform(),
    };
    config.validate()?;
    let catalog = Arc::new(super::load_catalog(true, &args.rule_files)?);
    if args.check {
        return check(&config, &catalog);
    }
    // Before any thread starts: the agent's threads share two malloc arenas instead of one
    // each (glibc only; see `memory`).
    patchwatch_collector::memory::limit_malloc_arenas(2);
    #[cfg(windows)]
    if crate::winsvc::may_be_service() {
        if let Some(code) = crate::winsvc::run(config.clone(), Arc::clone(&catalog))? {
            return Ok(code);
        }
    }
    crate::agent_loop::run_until(&config, catalog, crate::agent_loop::shutdown_signal())?;
    Ok(0)
}

/// `--check`: what would be watched, without starting.
fn check(config: &AgentConfig, catalog: &patchwatch_pipeline::Catalog) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    let d = Discovery::new(
        &config.sources.include,
        &config.sources.exclude,
        config.sources.case_insensitive,
    )?;
    writeln!(out, "configuration OK; {} rules", catalog.rules().len())?;
    writeln!(out, "aggregator: {}", config.aggregator.endpoint)?;
    writeln!(out, "data directory: {}", config.data_dir.display())?;
    for root in d.roots() {
        let state = if root.exists() {
            "exists"
        } else {
            "missing: watched until it appears"
        };
        writeln!(out, "watching folder {} ({state})", root.display())?;
    }
    let files = d.scan();
    writeln!(out, "{} file(s) match now:", files.len())?;
    for f in files {
        writeln!(out, "  {}", f.display())?;
    }
    Ok(0)
}
