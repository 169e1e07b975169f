//! `patchwatch explain TEXT`: which known issues a pasted error message matches, with the fix.

use std::io::{Read, Write};
use std::sync::Arc;

use anyhow::{Context, Result};
use owo_colors::OwoColorize;

/// Options of `explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The error text; read from standard input when absent.
    pub text: Vec<String>,
    /// Print JSON Lines instead of a report.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub common: super::CommonScanArgs,
}

/// Runs `explain`; exit code 0 when something matched, 1 otherwise.
pub fn run(args: ExplainArgs) -> Result<i32> {
    let text = if args.text.is_empty() {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        s
    } else {
        args.text.join(" ")
    };
    let catalog = Arc::new(args.common.catalog()?);
    let found = patchwatch_pipeline::explain(&catalog, &text);
    let mut out = anstream::AutoStream::auto(std::io::stdout().lock());
    if found.is_empty() {
        if !args.json {
            writeln!(
                out,
                "No known issue matches this text. Scan the whole log with `patchwatch scan`."
            )?;
        }
        return Ok(1);
    }
    for f in &found {
        if args.json {
            writeln!(
                out,
                "{}",
                super::report::finding_json(std::path::Path::new("<pasted text>"), f, false, 0)
            )?;
            continue;
        }
        writeln!(
            out,
            "{} {} ({})",
            f.severity.as_str().to_uppercase().bold(),
            f.title.bold(),
            f.rule_id.dimmed()
        )?;
        if let Some(e) = f.evidence.iter().find(|e| e.line == f.line) {
            writeln!(out, "  matched: {}", e.text)?;
        }
        writeln!(out, "  {} {}", "Fix:".green().bold(), f.remediation.summary)?;
        for (i, s) in f.remediation.steps.iter().enumerate() {
            writeln!(out, "    {}. {s}", i + 1)?;
        }
        for l in &f.remediation.links {
            writeln!(out, "    see {l}")?;
        }
        writeln!(out)?;
    }
    Ok(0)
}
