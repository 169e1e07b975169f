//! `patchwatch explain TEXT`: which known issues a pasted error message matches, with the fix.
//! The matching is `patchwatch_pipeline::rules::explain::explain`; this prints it.

use std::io::{Read, Write};

use anyhow::{Context, Result};
use owo_colors::OwoColorize;
use patchwatch_pipeline::rules::explain::{explain, Explanation};

use super::scan::Format;

/// Options of `explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The error text (a fragment is fine); read from standard input when absent.
    pub text: Vec<String>,
    /// Output format: a report, or JSON Lines (`{"type":"match",...}`, `{"type":"guess",...}`).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Same as `--format json`.
    #[arg(long, hide = true)]
    pub json: bool,
    #[command(flatten)]
    pub common: super::CommonScanArgs,
}

/// Runs `explain`; exit code 0 when something matched, 1 otherwise (guesses are not matches).
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
    let catalog = args.common.catalog()?;
    let found = explain(&catalog, &text);
    let mut out = anstream::AutoStream::auto(std::io::stdout().lock());
    if args.json || args.format == Format::Json {
        write_json(&mut out, &found)?;
    } else {
        write_text(&mut out, &found)?;
    }
    Ok(if found.matches.is_empty() { 1 } else { 0 })
}

fn write_json(out: &mut impl Write, found: &Explanation) -> Result<()> {
    for m in &found.matches {
        let v = serde_json::json!({
            "type": "match",
            "rule_id": m.rule_id,
            "title": m.title,
            "severity": m.severity.as_str(),
            "exact": m.exact,
            "matched": m.matched,
            "fields": m.fields,
            "remediation": {
                "summary": m.remediation.summary,
                "steps": m.remediation.steps,
                "links": m.remediation.links,
            },
        });
        writeln!(out, "{v}")?;
    }
    for g in &found.guesses {
        let v = serde_json::json!({
            "type": "guess",
            "rule_id": g.rule_id,
            "title": g.title,
            "shared_words": g.shared,
            "score": (g.score * 100.0).round() / 100.0,
        });
        writeln!(out, "{v}")?;
    }
    Ok(())
}

fn write_text(out: &mut impl Write, found: &Explanation) -> Result<()> {
    if found.matches.is_empty() {
        writeln!(out, "No known issue matches this text.")?;
        if found.guesses.is_empty() {
            writeln!(out, "Scan the whole log with `patchwatch scan`.")?;
            return Ok(());
        }
        writeln!(
            out,
            "{}",
            "Closest known issues (guesses, by shared rare words; not matches):".yellow()
        )?;
        for g in &found.guesses {
            writeln!(
                out,
                "  ? {} ({}) — shares: {}",
                g.title,
                g.rule_id.dimmed(),
                g.shared.join(", ")
            )?;
        }
        writeln!(
            out,
            "Show them with `patchwatch rules show ID`, or scan the whole log."
        )?;
        return Ok(());
    }
    for m in &found.matches {
        let partial = if m.exact {
            ""
        } else {
            " [partial: anchor only]"
        };
        writeln!(
            out,
            "{} {} ({}){partial}",
            m.severity.as_str().to_uppercase().bold(),
            m.title.bold(),
            m.rule_id.dimmed()
        )?;
        writeln!(out, "  matched: {}", m.matched)?;
        writeln!(out, "  {} {}", "Fix:".green().bold(), m.remediation.summary)?;
        for (i, s) in m.remediation.steps.iter().enumerate() {
            writeln!(out, "    {}. {s}", i + 1)?;
        }
        for l in &m.remediation.links {
            writeln!(out, "    see {l}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}
