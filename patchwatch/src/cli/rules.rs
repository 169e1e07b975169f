//! `patchwatch rules list|show ID|check FILE`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use owo_colors::OwoColorize;
use patchwatch_pipeline::{scan_bytes, Catalog, CatalogBuilder, Rule, ScanContext};

/// `rules` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// List the rules of the catalog.
    List {
        /// Also load these rule files.
        #[arg(long = "rules", value_name = "FILE")]
        rule_files: Vec<PathBuf>,
    },
    /// Show one rule in full.
    Show {
        /// Rule id.
        id: String,
        /// Also load these rule files.
        #[arg(long = "rules", value_name = "FILE")]
        rule_files: Vec<PathBuf>,
    },
    /// Validate a rule file and run its examples.
    Check {
        /// Rule file (TOML).
        file: PathBuf,
    },
}

fn catalog(files: &[PathBuf]) -> Result<Catalog> {
    super::load_catalog(true, files)
}

/// Runs a `rules` subcommand.
pub fn run(cmd: RulesCommand) -> Result<i32> {
    let mut out = anstream::AutoStream::auto(std::io::stdout().lock());
    match cmd {
        RulesCommand::List { rule_files } => {
            let c = catalog(&rule_files)?;
            for r in c.rules() {
                let kinds: Vec<&str> = r.kinds.iter().map(|k| k.as_str()).collect();
                let kinds = if kinds.is_empty() {
                    "any".to_string()
                } else {
                    kinds.join(",")
                };
                writeln!(
                    out,
                    "{:<55} {:<8} {:<28} {}",
                    r.id,
                    r.severity.as_str(),
                    kinds,
                    r.title
                )?;
            }
            writeln!(out, "{} rules", c.rules().len())?;
        }
        RulesCommand::Show { id, rule_files } => {
            let c = catalog(&rule_files)?;
            let Some(r) = c.get(&id) else {
                bail!("no rule with id `{id}` (see `patchwatch rules list`)")
            };
            show(&mut out, r)?;
        }
        RulesCommand::Check { file } => {
            // Built-in rules are loaded too, so that `requires` may name them and ids must not clash.
            let mut b = CatalogBuilder::new().with_builtin();
            b.add_file(&file);
            let c = Arc::new(b.build()?);
            let mine: Vec<&Rule> = c
                .rules()
                .iter()
                .filter(|r| r.source == file.display().to_string())
                .collect();
            let mut failed = 0;
            for r in &mine {
                for (text, want) in r
                    .examples_match
                    .iter()
                    .map(|t| (t, true))
                    .chain(r.examples_no_match.iter().map(|t| (t, false)))
                {
                    let mut ctx = ScanContext::new("check", "example.log");
                    ctx.kind = Some(r.example_kind);
                    let got = scan_bytes(Arc::clone(&c), ctx, text.as_bytes())
                        .findings
                        .iter()
                        .any(|f| f.rule_id == r.id);
                    if got != want {
                        failed += 1;
                        let what = if want {
                            "does not match its example"
                        } else {
                            "matches its no_match example"
                        };
                        writeln!(out, "{} {}: {what}: {text}", "FAIL".red().bold(), r.id)?;
                    }
                }
                if r.examples_match.is_empty() && !r.derived {
                    writeln!(
                        out,
                        "{} {}: no `examples.match`: add one so the rule is tested",
                        "warn".yellow(),
                        r.id
                    )?;
                }
            }
            writeln!(
                out,
                "{}: {} rule(s), {} example failure(s)",
                file.display(),
                mine.len(),
                failed
            )?;
            return Ok(i32::from(failed > 0));
        }
    }
    Ok(0)
}

fn show(out: &mut dyn Write, r: &Rule) -> Result<()> {
    writeln!(
        out,
        "{} (version {}) from {}",
        r.id.bold(),
        r.version,
        r.source
    )?;
    writeln!(out, "  title:     {}", r.title)?;
    writeln!(out, "  severity:  {}", r.severity.as_str())?;
    writeln!(out, "  category:  {}", r.category)?;
    writeln!(
        out,
        "  kinds:     {:?}",
        r.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>()
    )?;
    if r.derived {
        writeln!(out, "  raised by: the log model (needs a whole run)")?;
    }
    for a in &r.anchors {
        writeln!(out, "  anchor:    {a}")?;
    }
    if let Some(re) = &r.regex {
        writeln!(out, "  regex:     {}", re.as_str())?;
    }
    if let Some(p) = r.priority {
        writeln!(
            out,
            "  priority:  {p}{}",
            if r.fallback { " (fallback)" } else { "" }
        )?;
    }
    writeln!(out, "  fix:       {}", r.remediation.summary)?;
    for s in &r.remediation.steps {
        writeln!(out, "             - {s}")?;
    }
    for l in &r.remediation.links {
        writeln!(out, "             see {l}")?;
    }
    Ok(())
}
