//! `patchwatch agent`: the collector agent in console mode, or as a Windows service when the
//! Service Control Manager started it.

use std::path::PathBuf;
use std::sync::Arc;

use std::io::Write;

use anyhow::Result;
use patchwatch_collector::config::AgentConfig;

use super::check::Checks;
use patchwatch_collector::discovery::Discovery;

/// Options of `agent`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    /// `status`: ask a running agent what it is doing. Without one: run the agent.
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Validate the configuration, print what would be watched, and exit.
    #[arg(long)]
    pub check: bool,
    /// With `--check`: also ask the aggregator (gRPC health, with the configured TLS and
    /// token) and each direct sink whether they answer.
    #[arg(long, requires = "check")]
    pub connect: bool,
    /// Extra rule file (TOML); repeatable.
    #[arg(long = "rules", value_name = "FILE")]
    pub rule_files: Vec<PathBuf>,
}

/// Subcommands of `agent`.
#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Show what a running agent is doing (its `/status` on `metrics_listen`): files with
    /// offset, size, lag, encoding, handle and current run; spool per consumer; aggregator
    /// connection and last ack; direct sinks.
    Status(StatusArgs),
}

/// Options of `agent status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The agent's `metrics_listen` address (`host:port`).
    #[arg(long, value_name = "ADDR", required_unless_present = "config")]
    pub listen: Option<String>,
    /// Read `metrics_listen` from this agent configuration instead.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    pub format: StatusFormat,
}

/// How `agent status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    /// A readable summary.
    Text,
    /// The `/status` JSON document as the agent serves it.
    Json,
}

/// Runs `agent`.
pub fn run(args: AgentArgs) -> Result<i32> {
    if let Some(AgentCommand::Status(s)) = &args.command {
        return super::agent_status::run(s);
    }
    if args.check {
        return check(&args);
    }
    let (path, rules) = (args.config.clone(), args.rule_files.clone());
    // Read again on every reload (SIGHUP, or the service's `paramchange`).
    let load: crate::agent_loop::Reload = Box::new(move || load(path.as_deref(), &rules));
    let first = load();
    patchwatch_collector::telemetry::set_build_info(
        env!("CARGO_PKG_VERSION"),
        env!("PATCHWATCH_COMMIT"),
    );
    // Before any thread starts: the agent's threads share two malloc arenas instead of one
    // each (glibc only; see `memory`).
    patchwatch_collector::memory::limit_malloc_arenas(2);
    // A service reports a bad configuration to the SCM and the Event Log, not to a console.
    #[cfg(windows)]
    let (first, load) = if crate::winsvc::may_be_service() {
        match crate::winsvc::run(first, load)? {
            crate::winsvc::Dispatch::Ran(code) => return Ok(code),
            crate::winsvc::Dispatch::Console(start) => *start,
        }
    } else {
        (first, load)
    };
    let (config, catalog) = first?;
    crate::agent_loop::run_reloading(
        &config,
        catalog,
        crate::agent_loop::shutdown_signal(),
        Some((load, crate::agent_loop::Trigger::Hangup)),
    )?;
    Ok(0)
}

/// The agent's configuration (`config`, or the platform's defaults) and rules, validated: what
/// a start, a reload and `service reload` read.
pub fn load(
    config: Option<&std::path::Path>,
    rules: &[PathBuf],
) -> Result<(AgentConfig, Arc<patchwatch_pipeline::Catalog>)> {
    let config = match config {
        Some(p) => AgentConfig::load(p)?,
        None => AgentConfig::default_for_platform(),
    };
    config.validate()?;
    Ok((config, Arc::new(super::load_catalog(true, rules)?)))
}

/// `--check`: every file and address the configuration names, and what would be watched,
/// without starting. Exit 2 on any problem.
fn check(args: &AgentArgs) -> Result<i32> {
    let mut checks = Checks::default();
    let mut out = std::io::stdout().lock();
    let config = match &args.config {
        Some(p) => AgentConfig::load(p).map_err(|e| e.to_string()),
        None => Ok(AgentConfig::default_for_platform()),
    }
    .and_then(|c| c.validate().map(|()| c).map_err(|e| e.to_string()));
    let catalog = super::load_catalog(true, &args.rule_files);
    if let Err(e) = &catalog {
        checks.problem("--rules", format!("{e:#}"));
    }
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            checks.problem("--config", e);
            return Ok(checks.finish(&mut out)?);
        }
    };
    check_files(&config, &mut checks);
    if args.connect {
        super::connect::agent(&config, &mut checks, &mut out)?;
    }
    if let Ok(catalog) = &catalog {
        writeln!(out, "{} rules", catalog.rules().len())?;
    }
    describe(&config, &mut out)?;
    Ok(checks.finish(&mut out)?)
}

/// The files, directories and addresses `config` names.
fn check_files(config: &AgentConfig, checks: &mut Checks) {
    let a = &config.aggregator;
    if let Some(tls) = &a.tls {
        checks.client_tls("aggregator.tls", tls);
    }
    if let Some(token) = &a.token {
        checks.secret("aggregator.token", token);
    }
    checks.sinks("sinks", &config.sinks);
    checks.writable_dir("data_dir", &config.data_dir);
    if let Some(addr) = config.metrics_listen {
        checks.bindable("metrics_listen", addr);
    }
}

/// What would be watched.
fn describe(config: &AgentConfig, out: &mut impl Write) -> Result<()> {
    let d = Discovery::new(
        &config.sources.include,
        &config.sources.exclude,
        config.sources.case_insensitive,
    )?;
    if config.aggregator_enabled() {
        writeln!(out, "aggregator: {}", config.aggregator.endpoint)?;
    }
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
    Ok(())
}
