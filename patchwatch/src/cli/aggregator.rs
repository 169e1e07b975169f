//! `patchwatch aggregator`: the central aggregator.

use std::path::PathBuf;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

/// Options of `aggregator`.
#[derive(Debug, clap::Args)]
pub struct AggregatorArgs {
    /// Configuration file (TOML); defaults apply when absent.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "print_default_config"
    )]
    pub config: Option<PathBuf>,
    /// Print the default configuration, with every setting documented, and exit.
    #[arg(long)]
    pub print_default_config: bool,
}

/// Runs `aggregator`.
pub fn run(args: AggregatorArgs) -> Result<i32> {
    if args.print_default_config {
        print!("{}", patchwatch_aggregator::DEFAULT_CONFIG);
        return Ok(0);
    }
    let Some(path) = args.config else {
        anyhow::bail!("--config FILE is required");
    };
    let config = patchwatch_aggregator::Config::load(&path)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            crate::agent_loop::shutdown_signal().await;
            s.cancel();
        });
        patchwatch_aggregator::run(config, shutdown).await
    })?;
    Ok(0)
}
