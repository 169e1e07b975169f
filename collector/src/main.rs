//! `patchwatch`: scan, tail and stream Exchange and Windows Installer setup logs.

mod cli;

use clap::{Parser, Subcommand};

/// Watches Exchange Server and Windows Installer update logs and says what went wrong, why, and
/// how to fix it.
#[derive(Debug, Parser)]
#[command(name = "patchwatch", version, about, propagate_version = true)]
struct Cli {
    /// Log filter, e.g. `info`, `patchwatch=debug` (also RUST_LOG).
    #[arg(long, global = true, default_value = "warn", env = "PATCHWATCH_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Scan log files, folders or globs and report findings per file and run.
    Scan(cli::scan::ScanArgs),
    /// Explain a pasted error message: which known issues it matches and how to fix them.
    Explain(cli::explain::ExplainArgs),
    /// List, show or check rules.
    #[command(subcommand)]
    Rules(cli::rules::RulesCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Scan(a) => a.common.validate().and_then(|_| cli::scan::run(a)),
        Command::Explain(a) => a.common.validate().and_then(|_| cli::explain::run(a)),
        Command::Rules(c) => cli::rules::run(c),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("patchwatch: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
