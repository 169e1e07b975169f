//! The `patchwatch` command line: one module per subcommand.

pub mod agent;
mod agent_status;
#[cfg(feature = "aggregator")]
pub mod aggregator;
mod api;
pub mod check;
pub mod completions;
mod connect;
#[cfg(feature = "aggregator")]
pub mod demo;
pub mod explain;
pub mod preflight;
pub mod report;
pub mod rules;
pub mod scan;
pub mod service;
pub mod silence;
#[cfg(feature = "aggregator")]
pub mod up;
pub mod window;

use std::path::PathBuf;

use anyhow::{Context, Result};
use patchwatch_pipeline::{Catalog, CatalogBuilder, ScanContext};

/// Options shared by the commands that scan.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonScanArgs {
    /// Extra rule file (TOML) added to the built-in catalog; repeatable.
    #[arg(long = "rules", value_name = "FILE")]
    pub rule_files: Vec<PathBuf>,
    /// Use only the rule files given with --rules, not the built-in catalog.
    #[arg(long)]
    pub no_builtin_rules: bool,
    /// Host name recorded in findings (default: this machine's).
    #[arg(long)]
    pub host: Option<String>,
    /// Code page for lines that are not valid UTF-8 (WHATWG label: windows-1252, shift_jis, gbk...).
    #[arg(long, default_value = "windows-1252", value_name = "LABEL")]
    pub encoding: String,
    /// Offset from UTC, in minutes, of the zone log timestamps are in (default: this machine's).
    #[arg(long, value_name = "MINUTES", allow_hyphen_values = true)]
    pub utc_offset: Option<i32>,
    /// Lines longer than this many bytes are truncated and counted.
    #[arg(long, default_value_t = patchwatch_pipeline::DEFAULT_MAX_LINE_BYTES)]
    pub max_line_bytes: usize,
}

/// Builds a catalog from the built-in rules (unless `builtin` is false) and rule files.
pub fn load_catalog(builtin: bool, files: &[PathBuf]) -> Result<Catalog> {
    let mut b = if builtin {
        CatalogBuilder::new().with_builtin()
    } else {
        CatalogBuilder::new()
    };
    for f in files {
        b.add_file(f);
    }
    Ok(b.build()?)
}

impl CommonScanArgs {
    /// Builds the catalog: built-in rules plus the files given.
    pub fn catalog(&self) -> Result<Catalog> {
        load_catalog(!self.no_builtin_rules, &self.rule_files)
    }

    /// A scan context for `path`.
    pub fn context(&self, path: &str) -> ScanContext {
        let mut ctx = ScanContext::new(self.host.clone().unwrap_or_else(local_host), path);
        ctx.fallback_encoding = patchwatch_pipeline::decode::code_page(&self.encoding)
            .unwrap_or(encoding_rs::WINDOWS_1252);
        ctx.utc_offset_seconds = self.utc_offset_seconds();
        ctx.max_line_bytes = self.max_line_bytes;
        ctx
    }

    /// The offset from UTC, in seconds, that log timestamps are read in.
    pub fn utc_offset_seconds(&self) -> i32 {
        self.utc_offset
            .map_or_else(local_utc_offset_seconds, |m| m * 60)
    }

    /// Checks options that clap cannot.
    pub fn validate(&self) -> Result<()> {
        patchwatch_pipeline::decode::code_page(&self.encoding)
            .with_context(|| format!("--encoding: `{}` is not a known code page label (try windows-1252, shift_jis, gbk)", self.encoding))?;
        Ok(())
    }
}

pub use patchwatch_collector::{local_host, local_utc_offset_seconds};
