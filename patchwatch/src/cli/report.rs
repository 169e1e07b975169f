//! Rendering of scan results: the human report and JSON Lines.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::Result;
use owo_colors::OwoColorize;
use patchwatch_pipeline::{Finding, Outcome, RunSummary, ScanOutput, Severity};
use serde_json::json;

/// A progress bar on stderr for long scans (over 64 MiB), hidden otherwise.
pub(crate) fn progress_bar(total: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if total < (64 << 20) || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} {bytes_per_sec} {wide_bar} {eta}",
        )
        .expect("valid template"),
    );
    bar
}

fn severity_label(s: Severity) -> String {
    let t = format!("{:>8}", s.as_str().to_uppercase());
    match s {
        Severity::Critical => t.red().bold().to_string(),
        Severity::High => t.red().to_string(),
        Severity::Medium => t.yellow().to_string(),
        Severity::Low => t.cyan().to_string(),
        Severity::Info => t.dimmed().to_string(),
    }
}

fn outcome_label(r: &RunSummary) -> String {
    match r.outcome {
        Outcome::Succeeded => "SUCCEEDED".green().bold().to_string(),
        Outcome::Failed => "FAILED".red().bold().to_string(),
        Outcome::InProgress => "IN PROGRESS".yellow().bold().to_string(),
    }
}

/// `items` grouped by `key`, in their order, in one pass: an ExchangeSetup.log keeps every
/// setup run a server ever had, and filtering all findings once per run was quadratic.
fn group_by_run<'a, T>(
    items: &'a [T],
    key: impl Fn(&'a T) -> &'a str,
) -> HashMap<&'a str, Vec<&'a T>> {
    let mut map: HashMap<&str, Vec<&T>> = HashMap::new();
    for item in items {
        map.entry(key(item)).or_default().push(item);
    }
    map
}

/// Writes the human report for one file.
pub(crate) fn human(out: &mut dyn Write, path: &Path, o: &ScanOutput, all: bool) -> Result<()> {
    let kind = o.kind.map_or("unknown", |k| k.as_str());
    writeln!(
        out,
        "{} ({kind}, {} lines)",
        path.display().bold(),
        o.stats.lines
    )?;
    for d in &o.diagnostics {
        writeln!(out, "  {} line {}: {}", "note:".yellow(), d.line, d.message)?;
    }
    if o.runs.is_empty() {
        writeln!(out, "  no setup run found")?;
    }
    let by_run = group_by_run(&o.findings, |f| f.run_id.as_str());
    for r in &o.runs {
        let mut head = format!(
            "  Run {} (line {}): {}",
            r.index + 1,
            r.start_line,
            outcome_label(r)
        );
        for (label, v) in [
            ("product", r.product.as_deref()),
            ("mode", r.mode.as_deref()),
            ("build", r.target_build.as_deref()),
            ("installed", r.installed_build.as_deref()),
            ("started", r.started.as_deref()),
        ] {
            if let Some(v) = v {
                head.push_str(&format!(", {label} {v}"));
            }
        }
        if let Some(c) = r.exit_code {
            head.push_str(&format!(", exit code {c}"));
        }
        if let Some(d) = r.duration_seconds {
            head.push_str(&format!(", {}m{:02}s", d / 60, d % 60));
        }
        writeln!(out, "{head}")?;
        let findings: &[&Finding] = by_run.get(r.run_id.as_str()).map_or(&[], Vec::as_slice);
        let primary = r
            .primary_finding_id
            .as_ref()
            .and_then(|id| findings.iter().find(|f| &f.id == id));
        if let Some(p) = primary {
            writeln!(out, "    {} {}", "Primary cause:".bold(), p.title.bold())?;
            finding_detail(out, p, "      ")?;
        }
        let others: Vec<&&Finding> = findings
            .iter()
            .filter(|f| Some(&f.id) != r.primary_finding_id.as_ref())
            .filter(|f| all || f.severity > Severity::Info)
            .collect();
        if !others.is_empty() {
            writeln!(
                out,
                "    {}",
                if primary.is_some() {
                    "Also found:"
                } else {
                    "Found:"
                }
            )?;
            for f in others {
                writeln!(
                    out,
                    "    {} {} (line {}, {})",
                    severity_label(f.severity),
                    f.title,
                    f.line,
                    f.rule_id.dimmed()
                )?;
                writeln!(
                    out,
                    "             {} {}",
                    "fix:".dimmed(),
                    f.remediation.summary
                )?;
            }
        }
        let hidden = findings
            .iter()
            .filter(|f| f.severity == Severity::Info && !all)
            .count();
        if hidden > 0 {
            writeln!(
                out,
                "    {}",
                format!("({hidden} context finding(s) hidden; --all shows them)").dimmed()
            )?;
        }
    }
    writeln!(out)?;
    Ok(())
}

fn finding_detail(out: &mut dyn Write, f: &Finding, pad: &str) -> Result<()> {
    writeln!(
        out,
        "{pad}{} {} at line {}",
        severity_label(f.severity),
        f.rule_id.dimmed(),
        f.line
    )?;
    for e in &f.evidence {
        let marker = if e.line == f.line { ">" } else { " " };
        writeln!(out, "{pad}{marker} {:>6} | {}", e.line, e.text)?;
    }
    writeln!(
        out,
        "{pad}{} {}",
        "Fix:".green().bold(),
        f.remediation.summary
    )?;
    for (i, s) in f.remediation.steps.iter().enumerate() {
        writeln!(out, "{pad}  {}. {s}", i + 1)?;
    }
    for l in &f.remediation.links {
        writeln!(out, "{pad}  see {}", l.underline())?;
    }
    Ok(())
}

/// A naive log time (`2015-03-22T16:50:49.000`) as RFC 3339 with the zone the log was read in.
fn rfc3339_local(naive: Option<&str>, offset_seconds: i32) -> Option<String> {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    let t = time::PrimitiveDateTime::parse(naive?, fmt).ok()?;
    let offset = time::UtcOffset::from_whole_seconds(offset_seconds).ok()?;
    t.assume_offset(offset)
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// A run as a JSON line; times carry the offset they were read in (`--utc-offset`).
///
/// Serialized straight from borrowed fields: building a `serde_json::Value` per line (a map,
/// a string per key and value) was a tenth of a JSON scan of a failure-dense log.
#[derive(serde::Serialize)]
pub(crate) struct RunJson<'a> {
    r#type: &'static str,
    host: &'a str,
    path: &'a str,
    run: u32,
    run_id: &'a str,
    log_kind: &'static str,
    outcome: &'static str,
    exit_code: Option<i64>,
    mode: &'a Option<String>,
    product: &'a Option<String>,
    target_build: &'a Option<String>,
    installed_build: &'a Option<String>,
    phase: &'a Option<String>,
    started: Option<String>,
    last_time: Option<String>,
    duration_seconds: Option<i64>,
    primary_finding_id: Option<&'a str>,
}

/// The JSON line of a run in the file at `path`.
pub(crate) fn run_json<'a>(path: &'a str, r: &'a RunSummary, offset_seconds: i32) -> RunJson<'a> {
    RunJson {
        r#type: "run",
        host: &r.host,
        path,
        run: r.index,
        run_id: &r.run_id,
        log_kind: r.log_kind.as_str(),
        outcome: r.outcome.as_str(),
        exit_code: r.exit_code,
        mode: &r.mode,
        product: &r.product,
        target_build: &r.target_build,
        installed_build: &r.installed_build,
        phase: &r.phase,
        started: rfc3339_local(r.started.as_deref(), offset_seconds),
        last_time: rfc3339_local(r.last_time.as_deref(), offset_seconds),
        duration_seconds: r.duration_seconds,
        primary_finding_id: r.primary_finding_id.as_deref(),
    }
}

/// A finding as a JSON line; its time carries the offset it was read in (`--utc-offset`).
#[derive(serde::Serialize)]
pub(crate) struct FindingJson<'a> {
    r#type: &'static str,
    id: &'a str,
    host: &'a str,
    path: &'a str,
    run: u32,
    run_id: &'a str,
    rule_id: &'a str,
    rule_version: u32,
    severity: &'static str,
    category: &'a str,
    title: &'a str,
    primary: bool,
    line: u64,
    byte_offset: u64,
    event_time: Option<String>,
    evidence: &'a [patchwatch_pipeline::EvidenceLine],
    fields: &'a std::collections::BTreeMap<String, String>,
    remediation: &'a patchwatch_pipeline::Remediation,
}

/// The JSON line of a finding in the file at `path`.
pub(crate) fn finding_json<'a>(
    path: &'a str,
    f: &'a Finding,
    primary: bool,
    offset_seconds: i32,
) -> FindingJson<'a> {
    FindingJson {
        r#type: "finding",
        id: &f.id,
        host: &f.host,
        path,
        run: f.run_index,
        run_id: &f.run_id,
        rule_id: &f.rule_id,
        rule_version: f.rule_version,
        severity: f.severity.as_str(),
        category: &f.category,
        title: &f.title,
        primary,
        line: f.line,
        byte_offset: f.byte_offset,
        event_time: rfc3339_local(f.event_time.as_deref(), offset_seconds),
        evidence: &f.evidence,
        fields: &f.fields,
        remediation: &f.remediation,
    }
}

/// Writes one value as a JSON line.
pub(crate) fn write_json_line(out: &mut dyn Write, value: &impl serde::Serialize) -> Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes JSON Lines for one file.
pub(crate) fn json_lines(
    out: &mut dyn Write,
    path: &Path,
    o: &ScanOutput,
    offset_seconds: i32,
) -> Result<()> {
    let shown = path.display().to_string();
    let by_run = group_by_run(&o.findings, |f| f.run_id.as_str());
    for r in &o.runs {
        write_json_line(out, &run_json(&shown, r, offset_seconds))?;
        for f in by_run.get(r.run_id.as_str()).into_iter().flatten() {
            let primary = r.primary_finding_id.as_deref() == Some(f.id.as_str());
            write_json_line(out, &finding_json(&shown, f, primary, offset_seconds))?;
        }
    }
    for d in &o.diagnostics {
        writeln!(
            out,
            "{}",
            json!({"type": "diagnostic", "path": shown, "line": d.line, "message": d.message})
        )?;
    }
    Ok(())
}

/// Totals of a scan of several files.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    files: usize,
    runs: usize,
    failed_runs: usize,
    findings: usize,
    by_severity: std::collections::BTreeMap<&'static str, usize>,
    /// Paths that could not be read.
    pub(crate) errors: usize,
}

impl Summary {
    /// Counts one scanned file.
    pub(crate) fn add(&mut self, o: &ScanOutput) {
        self.files += 1;
        self.runs += o.runs.len();
        self.failed_runs += o
            .runs
            .iter()
            .filter(|r| r.outcome == Outcome::Failed)
            .count();
        self.findings += o.findings.len();
        for f in &o.findings {
            *self.by_severity.entry(f.severity.as_str()).or_default() += 1;
        }
    }

    /// The closing line of the human report.
    pub(crate) fn human(&self, out: &mut dyn Write) -> Result<()> {
        let severities: Vec<String> = self
            .by_severity
            .iter()
            .rev()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        writeln!(
            out,
            "{} {} file(s), {} run(s) ({} failed), {} finding(s){}{}",
            "Scanned".bold(),
            self.files,
            self.runs,
            self.failed_runs,
            self.findings,
            if severities.is_empty() {
                String::new()
            } else {
                format!(" ({})", severities.join(", "))
            },
            if self.errors > 0 {
                format!("; {} path(s) could not be read", self.errors)
            } else {
                String::new()
            }
        )?;
        Ok(())
    }

    /// The closing JSON Lines object.
    pub(crate) fn json(&self) -> serde_json::Value {
        json!({
            "type": "summary",
            "files": self.files,
            "runs": self.runs,
            "failed_runs": self.failed_runs,
            "findings": self.findings,
            "by_severity": self.by_severity,
            "errors": self.errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::{group_by_run, rfc3339_local};

    #[test]
    fn log_times_carry_the_offset_they_were_read_in() {
        let t = Some("2015-03-22T16:50:49.000");
        assert_eq!(
            rfc3339_local(t, 3600).as_deref(),
            Some("2015-03-22T16:50:49+01:00")
        );
        assert_eq!(
            rfc3339_local(t, -300 * 60).as_deref(),
            Some("2015-03-22T16:50:49-05:00")
        );
        assert_eq!(rfc3339_local(Some("not a time"), 0), None);
    }

    /// Work grows with the findings, not with findings × runs: the key is read once per item.
    #[test]
    fn grouping_reads_each_key_once() {
        let items: Vec<String> = (0..5_000).map(|i| format!("run-{}", i % 2_500)).collect();
        let reads = Cell::new(0usize);
        let map = group_by_run(&items, |s| {
            reads.set(reads.get() + 1);
            s.as_str()
        });
        assert_eq!(reads.get(), items.len());
        assert_eq!(map.len(), 2_500);
        assert!(map.values().all(|v| v.len() == 2));
        assert_eq!(map["run-7"], vec![&items[7], &items[2_507]], "order kept");
    }
}
