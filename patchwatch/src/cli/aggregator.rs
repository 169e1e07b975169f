//! `patchwatch aggregator`: the central aggregator.

use std::path::PathBuf;

use std::io::Write;

use anyhow::Result;

use super::check::Checks;
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
    /// Validate the configuration and every file and address it names, then exit (2 on any
    /// problem).
    #[arg(long)]
    pub check: bool,
    /// With `--check`: also ask the database (server version, schema version, nothing
    /// created) and each sink whether they answer.
    #[arg(long, requires = "check")]
    pub connect: bool,
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
    if args.check {
        return check(&path, args.connect);
    }
    let config = patchwatch_aggregator::Config::load(&path)?;
    patchwatch_aggregator::telemetry::set_build_info(
        env!("CARGO_PKG_VERSION"),
        env!("PATCHWATCH_COMMIT"),
    );
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

/// `--check`: the configuration, its files (TLS, token files, secrets), the data directory and
/// the listen addresses, without starting.
fn check(path: &std::path::Path, connect: bool) -> Result<i32> {
    let mut checks = Checks::default();
    let mut out = std::io::stdout().lock();
    let config = match patchwatch_aggregator::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            checks.problem("--config", e.to_string());
            return Ok(checks.finish(&mut out)?);
        }
    };
    for (table, listen, tls, tokens) in [
        (
            "grpc",
            config.grpc.listen,
            &config.grpc.tls,
            &config.grpc.tokens,
        ),
        (
            "http",
            config.http.listen,
            &config.http.tls,
            &config.http.tokens,
        ),
    ] {
        if let Some(t) = tls {
            checks.server_tls(&format!("{table}.tls"), t);
        }
        for (i, t) in tokens.iter().enumerate() {
            checks.secret(&format!("{table}.tokens[{i}].token"), &t.token);
        }
        checks.bindable(&format!("{table}.listen"), listen);
    }
    if let Some(url) = &config.store.postgres.url {
        checks.secret("store.postgres.url", url);
    }
    checks.sinks("sinks", &config.sinks);
    checks.writable_dir("data_dir", &config.data_dir);
    if connect {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                patchwatch_aggregator::store::probe(&config),
            )
            .await
            {
                Ok(Ok(what)) => writeln!(out, "connect: store: {what}")?,
                Ok(Err(e)) => checks.problem("store", format!("{e:#}")),
                Err(_) => checks.problem("store", "no answer within 10s".to_owned()),
            }
            super::connect::sinks(&config.sinks, &mut checks, &mut out).await
        })?;
    }
    Ok(checks.finish(&mut out)?)
}
