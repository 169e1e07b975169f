//! `patchwatch`: scan, tail and stream Exchange and Windows Installer setup logs.

mod agent_loop;
mod cli;
mod logging;
#[cfg(windows)]
mod winsvc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// The version and the commit it was built from, for every `--version`.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PATCHWATCH_COMMIT"),
    ")"
);

/// Watches Exchange Server and Windows Installer update logs and says what went wrong, why, and
/// how to fix it.
#[derive(Debug, Parser)]
#[command(name = "patchwatch", version = VERSION, about, propagate_version = true)]
struct Cli {
    /// Log filter for patchwatch's own diagnostics, e.g. `info`, `patchwatch=debug`.
    #[arg(long, global = true, default_value = "warn", env = "PATCHWATCH_LOG")]
    log: String,
    /// Shape of patchwatch's own diagnostics on stderr: `text` for people, `json` (one object
    /// per line) for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text, env = "PATCHWATCH_LOG_FORMAT")]
    log_format: logging::LogFormat,
    /// Also write diagnostics to this file, cut at 10 MiB with 5 older files kept. The Windows
    /// service always writes `logs\patchwatch.log` under its data directory.
    #[arg(long, global = true, value_name = "FILE", env = "PATCHWATCH_LOG_FILE")]
    log_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[cfg(feature = "aggregator")]
    /// Replay real setup logs of several simulated servers through the full path and serve the dashboard.
    Demo(cli::demo::DemoArgs),
    #[cfg(feature = "aggregator")]
    /// Watch folders with an agent and an embedded aggregator in one process.
    Up(cli::up::UpArgs),
    /// Scan log files, folders or globs and report findings per file and run.
    Scan(cli::scan::ScanArgs),
    /// Explain a pasted error message: which known issues it matches and how to fix them.
    Explain(cli::explain::ExplainArgs),
    /// Check this server now for conditions that make the next update fail (Windows).
    Preflight(cli::preflight::PreflightArgs),
    /// List, show or check rules.
    #[command(subcommand)]
    Rules(cli::rules::RulesCommand),
    /// Run the collector agent: tail logs, spool findings, deliver them to the aggregator.
    Agent(cli::agent::AgentArgs),
    #[cfg(feature = "aggregator")]
    /// Run the central aggregator: gRPC ingest, store, HTTP API and dashboard.
    Aggregator(cli::aggregator::AggregatorArgs),
    /// Write shell completions (bash, zsh, fish, powershell, elvish) to stdout.
    Completions(cli::completions::CompletionsArgs),
    /// Write the man page (roff) to stdout: `patchwatch man > patchwatch.1`.
    Man,
    /// Create, list or end maintenance windows on an aggregator.
    #[command(subcommand)]
    Window(cli::window::WindowCommand),
    /// Install, remove, start, stop or query the agent's Windows service.
    #[command(subcommand)]
    Service(cli::service::ServiceCommand),
}

fn main() -> std::process::ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        // A subcommand's `--version` would name itself `patchwatch-agent`: one answer for all.
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayVersion => {
            println!("patchwatch {VERSION}");
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => e.exit(),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    logging::init(logging::Options {
        filter: &cli.log,
        format: cli.log_format,
        file: cli.log_file.clone(),
    });
    let result = match cli.command {
        #[cfg(feature = "aggregator")]
        Command::Demo(a) => cli::demo::run(a),
        #[cfg(feature = "aggregator")]
        Command::Up(a) => cli::up::run(a),
        Command::Scan(a) => a.common.validate().and_then(|_| cli::scan::run(a)),
        Command::Explain(a) => a.common.validate().and_then(|_| cli::explain::run(a)),
        Command::Preflight(a) => cli::preflight::run(a),
        Command::Rules(c) => cli::rules::run(c),
        Command::Agent(a) => cli::agent::run(a),
        #[cfg(feature = "aggregator")]
        Command::Aggregator(a) => cli::aggregator::run(a),
        Command::Window(c) => cli::window::run(c),
        Command::Service(c) => cli::service::run(c),
        Command::Completions(a) => cli::completions::completions(a, Cli::command()),
        Command::Man => cli::completions::man(Cli::command()),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(2)),
        // A closed pipe (`patchwatch rules list | head`) is the reader's choice, not an error.
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("patchwatch: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// True when `e` comes from writing to a pipe whose reader has gone.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| {
            // Windows (and Wine) may say ERROR_PIPE_NOT_CONNECTED (233), which std does not
            // map to BrokenPipe.
            io.kind() == std::io::ErrorKind::BrokenPipe
                || (cfg!(windows) && matches!(io.raw_os_error(), Some(109 | 232 | 233)))
        })
    })
}
