//! `patchwatch preflight`: checks this server now for conditions that make the next update
//! fail, and says which known failure each predicts and how to fix it.

use std::io::Write;

use anyhow::{bail, Result};
use owo_colors::OwoColorize;
use patchwatch_collector::preflight::{self, Pass};
use patchwatch_pipeline::preflight::Status;
use patchwatch_pipeline::{Catalog, Severity};
use serde_json::json;

use super::report;
use super::scan::{parse_severity, Format};

/// Options of `preflight`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = checks_help())]
pub struct PreflightArgs {
    /// Output format: a report (`text`) or JSON Lines (`json`: one `check` object per check,
    /// one `finding` object per condition found, a `summary`).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit with status 1 when a finding of at least this severity is found.
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    pub fail_on: Option<Severity>,
    /// Host name recorded in findings (default: this machine's).
    #[arg(long)]
    pub host: Option<String>,
}

/// The checks, for `--help`: each condition, its severity and the rule of the failure it
/// predicts, and when the agent runs them.
fn checks_help() -> String {
    let mut text = String::from("Checks (condition [severity] -> predicted rule):\n");
    for c in patchwatch_pipeline::preflight::CHECKS {
        text.push_str(&format!(
            "  {:<28} {} [{}] -> {}\n",
            c.id,
            c.condition,
            c.severity.as_str(),
            c.rule_id
        ));
    }
    text.push_str(
        "\nA check that cannot tell (a read refused, no Exchange install date, no OAuth \
         certificate in LocalMachine\\My) is reported as skipped or not run, never as absent.\n\
         The agent runs the same checks at start, every [preflight] interval (default 6h) and at \
         the start of each maintenance window that covers its host.",
    );
    text
}

/// Runs `preflight`; returns the process exit code (as `scan`: 1 when `--fail-on` is met,
/// 2 when a check could not read what it needs, else 0).
pub fn run(args: PreflightArgs) -> Result<i32> {
    let Some(state) = preflight::local_state() else {
        bail!(
            "preflight reads the Windows registry and file system of the Exchange server; \
             run it there (this system is {})",
            std::env::consts::OS
        );
    };
    let catalog = Catalog::builtin();
    let host = args
        .host
        .clone()
        .unwrap_or_else(patchwatch_collector::local_host);
    let pass = preflight::take(state.as_ref(), &catalog, &host);
    let stdout = std::io::stdout();
    let mut out = anstream::AutoStream::auto(stdout.lock());
    match args.format {
        Format::Json => json_lines(&mut out, &pass)?,
        Format::Text => text(&mut out, &pass)?,
    }
    out.flush()?;
    let worst = pass.findings.iter().map(|f| f.severity).max();
    let unread = pass
        .results
        .iter()
        .any(|r| matches!(r.status, Status::Failed(_)));
    Ok(match (args.fail_on, worst) {
        (Some(t), Some(w)) if w >= t => 1,
        _ if unread => 2,
        _ => 0,
    })
}

fn status_name(s: &Status) -> &'static str {
    match s {
        Status::Clean => "clean",
        Status::Found { .. } => "found",
        Status::Skipped(_) => "skipped",
        Status::Failed(_) => "not_run",
    }
}

fn json_lines(out: &mut dyn Write, pass: &Pass) -> Result<()> {
    for r in &pass.results {
        let (facts, reason) = match &r.status {
            Status::Found { facts, .. } => (facts.clone(), None),
            Status::Skipped(why) => (Vec::new(), Some((*why).to_string())),
            Status::Failed(e) => (Vec::new(), Some(e.to_string())),
            Status::Clean => (Vec::new(), None),
        };
        let line = json!({
            "type": "check",
            "check": r.check.id,
            "rule_id": r.check.rule_id,
            "condition": r.check.condition,
            "severity": r.check.severity.as_str(),
            "status": status_name(&r.status),
            "facts": facts,
            "reason": reason,
        });
        writeln!(out, "{line}")?;
    }
    let primary = pass.run.primary_finding_id.as_deref();
    for f in &pass.findings {
        let is_primary = primary == Some(f.id.as_str());
        report::write_json_line(out, &report::finding_json(&f.path, f, is_primary, 0))?;
    }
    let summary = json!({
        "type": "summary",
        "host": pass.snapshot.host,
        "run_id": pass.snapshot.run_id(),
        "outcome": pass.run.outcome.as_str(),
        "findings": pass.findings.len(),
    });
    writeln!(out, "{summary}")?;
    Ok(())
}

fn text(out: &mut dyn Write, pass: &Pass) -> Result<()> {
    writeln!(out, "Preflight of {}", pass.snapshot.host.bold())?;
    for r in &pass.results {
        let c = r.check;
        match &r.status {
            Status::Clean => writeln!(out, "  {:<8} {}", "absent".green(), c.condition)?,
            Status::Skipped(why) => {
                writeln!(out, "  {:<8} {} ({why})", "skipped".dimmed(), c.condition)?
            }
            Status::Failed(e) => writeln!(out, "  {:<8} {}: {e}", "not run".yellow(), c.condition)?,
            Status::Found { .. } => {
                writeln!(out, "  {:<8} {}", "FOUND".red().bold(), c.condition.bold())?
            }
        }
    }
    for f in &pass.findings {
        writeln!(out)?;
        writeln!(
            out,
            "{} {}  [{}]",
            f.severity.as_str().to_uppercase().red(),
            f.title.bold(),
            f.rule_id
        )?;
        for e in f.evidence.iter().skip(1) {
            writeln!(out, "    {}", e.text)?;
        }
        if !f.remediation.summary.is_empty() {
            writeln!(out, "  Fix: {}", f.remediation.summary)?;
        }
        for (i, s) in f.remediation.steps.iter().enumerate() {
            writeln!(out, "    {}. {s}", i + 1)?;
        }
        for l in &f.remediation.links {
            writeln!(out, "    {l}")?;
        }
    }
    writeln!(out)?;
    let verdict = match pass.findings.iter().map(|f| f.severity).max() {
        Some(s) if s >= Severity::High => "the next update is predicted to fail".red().to_string(),
        Some(_) => "no predicted failure; see the warnings above"
            .yellow()
            .to_string(),
        None => "nothing found".green().to_string(),
    };
    writeln!(out, "{} condition(s) found: {verdict}", pass.findings.len())?;
    Ok(())
}
