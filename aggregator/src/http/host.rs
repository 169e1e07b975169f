//! The host page (`/hosts/{host}`: the host's current runs worst first with their causes, its
//! preflight, a timeline of its runs' phases with their durations and where each stopped, then
//! its earlier attempts) and the run page (`/runs/{run_id}`: the run's phases, then every
//! finding of the run, primary first, with its evidence and fix).

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::dashboard::esc;
use super::dashboard::{
    evidence_block, fix_summary, full_time_cell, inline_code, outcome_badge, page, severity_badge,
    unavailable,
};
use super::fleet::{board_hosts, file_name};
use super::{percent_encode, AppState};
use crate::model::{FindingFilter, FindingRecord, PhaseRecord, RunFilter, RunRecord};
use crate::store::PREFLIGHT_SOURCE;

/// Runs and findings a host or run page reads at most.
const PAGE_ROWS: u32 = 1000;

fn not_found(what: &str, id: &str) -> Response {
    let body = format!(
        r#"<section class="card"><h1>No such {what}</h1><p>Nothing has reported a {what} <span class="mono">{}</span>.</p><p><a href="/">Back to the fleet</a></p></section>"#,
        esc(id)
    );
    (StatusCode::NOT_FOUND, page("Not found", &body)).into_response()
}

fn parse(t: Option<&str>) -> Option<OffsetDateTime> {
    t.and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
}

/// The span from `from` to `to` ("1h 05m", "42s"); `None` when either is unknown or the span
/// is negative.
fn span(from: Option<&str>, to: Option<&str>) -> Option<String> {
    let s = (parse(to)? - parse(from)?).whole_seconds();
    if s < 0 {
        return None;
    }
    Some(match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    })
}

/// How long a run ran, from its start to its last log line ("1h 05m", "42s").
pub(crate) fn duration(r: &RunRecord) -> Option<String> {
    span(r.started_time.as_deref(), r.last_line_time.as_deref())
}

/// Runs the host page's timeline shows at most: the current ones, then the latest earlier.
const TIMELINE_RUNS: usize = 20;

/// One run's phases in order with how long each lasted (until the next, the last until the
/// run's last log line) and where the run stopped.
fn run_timeline(r: &RunRecord, phases: &[&PhaseRecord], open: bool) -> String {
    let mut items = String::new();
    if let Some(first) = phases.first().filter(|p| p.ordinal > 1) {
        let _ = write!(
            items,
            r#"<li class="muted">{} earlier phase{} not kept</li>"#,
            first.ordinal - 1,
            if first.ordinal == 2 { "" } else { "s" }
        );
    }
    for (i, p) in phases.iter().enumerate() {
        let next = phases.get(i + 1);
        let last = next.is_none();
        let end = next.map_or(r.last_line_time.as_deref(), |n| n.started_time.as_deref());
        let (class, mark) = match (last, r.outcome.as_str()) {
            (true, "failed") => ("stopped", " · stopped here"),
            (true, "stalled") => ("stalled", " · stalled here"),
            (true, "in_progress") => ("current", " · running"),
            _ => ("", ""),
        };
        let _ = write!(
            items,
            r#"<li value="{ordinal}" class="{class}" data-phase="{name}">{name} <small class="muted">{start}</small><span class="dur">{dur}{mark}</span></li>"#,
            ordinal = p.ordinal,
            name = esc(&p.phase),
            start = full_time_cell(p.started_time.as_deref()),
            dur = span(p.started_time.as_deref(), end).unwrap_or_else(|| "—".into()),
        );
    }
    let body = if items.is_empty() {
        r#"<p class="muted">No phases reported.</p>"#.to_owned()
    } else {
        format!(r#"<ol class="phases">{items}</ol>"#)
    };
    format!(
        r#"<details data-timeline="{id}"{open}><summary>{outcome} <span class="mono">{file}</span> <small class="muted">{kind}{index} · started {started} · ran for {dur}</small></summary>{body}</details>"#,
        id = esc(&r.run_id),
        open = if open { " open" } else { "" },
        outcome = outcome_badge(&r.outcome),
        file = esc(file_name(&r.source_path)),
        kind = esc(&r.log_kind.replace('_', " ")),
        index = if r.run_index > 0 {
            format!(" · attempt {}", r.run_index + 1)
        } else {
            String::new()
        },
        started = full_time_cell(r.started_time.as_deref()),
        dur = duration(r).unwrap_or_else(|| "—".into()),
    )
}

/// The host's preflight: its verdict and the findings of its latest preflight run.
fn preflight_card(host: &crate::model::HostRecord, findings: &[FindingRecord]) -> String {
    let mut items = String::new();
    for f in findings {
        let _ = write!(
            items,
            r#"<li data-finding="{id}">{sev} <a href="/findings/{href}">{title}</a>{fix}</li>"#,
            id = esc(&f.id),
            sev = severity_badge(&f.severity),
            href = esc(&percent_encode(&f.id)),
            title = esc(title_of(f)),
            fix = fix_summary(&f.detail.remediation.summary),
        );
    }
    let list = if items.is_empty() {
        if host.preflight.is_some() {
            r#"<p class="muted">The latest preflight found nothing.</p>"#.to_owned()
        } else {
            String::new()
        }
    } else {
        format!(r#"<ul class="why">{items}</ul>"#)
    };
    format!(
        r#"<section class="card" id="preflight"><h2>Preflight</h2><p>{}</p>{list}</section>"#,
        super::fleet::preflight_cell(host)
    )
}

fn title_of(f: &FindingRecord) -> &str {
    if f.title.is_empty() {
        &f.rule_id
    } else {
        &f.title
    }
}

/// One row of a run table.
fn run_row(
    r: &RunRecord,
    findings: &HashMap<&str, &FindingRecord>,
    counts: &HashMap<&str, usize>,
) -> String {
    let cause = findings
        .get(r.primary_finding_id.as_str())
        .map(|f| {
            format!(
                r#"{} <a class="cause" href="/findings/{}">{}</a>"#,
                severity_badge(&f.severity),
                esc(&percent_encode(&f.id)),
                esc(title_of(f))
            )
        })
        .unwrap_or_else(|| r#"<span class="muted">—</span>"#.to_owned());
    let stopped = match (r.outcome.as_str(), r.phase.is_empty()) {
        (_, true) => r#"<span class="muted">—</span>"#.to_owned(),
        ("failed", _) => format!("stopped at {}", esc(&r.phase)),
        ("stalled", _) => format!("stalled at {}", esc(&r.phase)),
        _ => esc(&r.phase),
    };
    format!(
        r#"<tr data-run="{id}"><td><a class="mono" href="/runs/{href}">{file}</a><small class="sub">{kind}{index}</small></td><td>{outcome}{exit}</td><td>{what}</td><td>{stopped}</td><td>{started}</td><td>{duration}</td><td>{cause}</td><td>{n}</td></tr>"#,
        id = esc(&r.run_id),
        href = esc(&percent_encode(&r.run_id)),
        file = esc(file_name(&r.source_path)),
        kind = esc(&r.log_kind.replace('_', " ")),
        index = if r.run_index > 0 {
            format!(" · attempt {}", r.run_index + 1)
        } else {
            String::new()
        },
        outcome = outcome_badge(&r.outcome),
        exit = r
            .exit_code
            .map(|c| format!(r#"<small class="sub">exit {c}</small>"#))
            .unwrap_or_default(),
        what = esc(
            &[r.mode.as_str(), r.product.as_str(), r.target_build.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" · ")
        ),
        started = full_time_cell(r.started_time.as_deref()),
        duration = duration(r).unwrap_or_else(|| "—".into()),
        n = counts.get(r.run_id.as_str()).copied().unwrap_or(0),
    )
}

fn run_table(
    runs: &[&RunRecord],
    findings: &HashMap<&str, &FindingRecord>,
    counts: &HashMap<&str, usize>,
    id: &str,
) -> String {
    let rows: String = runs.iter().map(|r| run_row(r, findings, counts)).collect();
    format!(
        r#"<table id="{id}" class="grid runs"><thead><tr><th scope="col">Log</th><th scope="col">Outcome</th><th scope="col">Setup</th><th scope="col">Where it stopped</th><th scope="col">Started</th><th scope="col">Ran for</th><th scope="col">Primary cause</th><th scope="col">Findings</th></tr></thead><tbody>{rows}</tbody></table>"#
    )
}

/// `/hosts/{host}`.
pub(crate) async fn host(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    let host = match board_hosts(&st, Some(vec![name.clone()])).await {
        Ok(mut h) if !h.is_empty() => h.remove(0),
        Ok(_) => return not_found("host", &name),
        Err(e) => return unavailable(e),
    };
    let runs = match st
        .store
        .runs(RunFilter {
            host: Some(name.clone()),
            limit: PAGE_ROWS,
            ..RunFilter::default()
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return unavailable(e),
    };
    let findings = match st
        .store
        .findings(FindingFilter {
            host: Some(name.clone()),
            limit: PAGE_ROWS,
            ..FindingFilter::default()
        })
        .await
    {
        Ok(p) => p.items,
        Err(e) => return unavailable(e),
    };
    let by_id: HashMap<&str, &FindingRecord> =
        findings.iter().map(|f| (f.id.as_str(), f)).collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for f in &findings {
        *counts.entry(f.run_id.as_str()).or_default() += 1;
    }
    let current: Vec<&RunRecord> = host.current_runs.iter().collect();
    // Preflight snapshots are not setup runs: they have a card of their own.
    let mut earlier: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.source_path != PREFLIGHT_SOURCE)
        .filter(|r| !host.current_runs.iter().any(|c| c.run_id == r.run_id))
        .collect();
    earlier.sort_by(|a, b| b.started_time.cmp(&a.started_time));
    let shown: Vec<&RunRecord> = current
        .iter()
        .chain(&earlier)
        .take(TIMELINE_RUNS)
        .copied()
        .collect();
    let phases = match st
        .store
        .run_phases(shown.iter().map(|r| r.run_id.clone()).collect())
        .await
    {
        Ok(p) => p,
        Err(e) => return unavailable(e),
    };
    let timeline: String = shown
        .iter()
        .map(|r| {
            let mine: Vec<&PhaseRecord> = phases.iter().filter(|p| p.run_id == r.run_id).collect();
            let is_current = host.current_runs.iter().any(|c| c.run_id == r.run_id);
            run_timeline(r, &mine, is_current)
        })
        .collect();
    let hidden = (current.len() + earlier.len()).saturating_sub(shown.len());
    let timeline = format!(
        r#"<section class="card timeline" id="timeline"><h2>Timeline</h2><p class="muted">Each run's phases in order, how long each lasted and where the run stopped.</p>{}{}</section>"#,
        if timeline.is_empty() {
            r#"<p class="muted">No runs yet.</p>"#.to_owned()
        } else {
            timeline
        },
        if hidden > 0 {
            format!(r#"<p class="muted">{hidden} older runs not shown.</p>"#)
        } else {
            String::new()
        }
    );
    let preflight_findings = match &host.preflight {
        Some(p) => match st
            .store
            .findings(FindingFilter {
                run: Some(p.run_id.clone()),
                limit: PAGE_ROWS,
                ..FindingFilter::default()
            })
            .await
        {
            Ok(mut page) => {
                sort_run_findings(&mut page.items);
                page.items
            }
            Err(e) => return unavailable(e),
        },
        None => Vec::new(),
    };
    let preflight = preflight_card(&host, &preflight_findings);

    let mut why = String::new();
    for c in &host.causes {
        let Some(f) = by_id.get(c.finding_id.as_str()) else {
            continue;
        };
        let _ = write!(
            why,
            r#"<li>{sev} <a class="cause" href="/findings/{href}">{title}</a> <small class="muted">{file} line {line}</small>{fix}</li>"#,
            sev = severity_badge(&f.severity),
            href = esc(&percent_encode(&f.id)),
            title = esc(title_of(f)),
            file = esc(file_name(&f.source_path)),
            line = f.line_number,
            fix = fix_summary(&f.detail.remediation.summary),
        );
    }
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(
            r#"<section class="card" id="why"><h2>Why</h2><ul class="why">{why}</ul></section>"#
        )
    };
    let windows = host
        .windows
        .iter()
        .map(|w| {
            format!(
                r#"<a href="/windows/{}">{}</a>"#,
                esc(&percent_encode(&w.id)),
                esc(&w.name)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let earlier = if earlier.is_empty() {
        r#"<p class="muted">None.</p>"#.to_owned()
    } else {
        run_table(&earlier, &by_id, &counts, "earlier")
    };
    let body = format!(
        r#"<p class="crumbs"><a href="/">Fleet</a> / host</p>
<section class="card">
  <div class="title-row">{state}<h1>{name}</h1></div>
  <dl class="meta"><dt>Name</dt><dd>{fqdn}</dd><dt>System</dt><dd>{os}</dd><dt>Agent</dt><dd>{agent} <span class="muted">via {collector}</span></dd><dt>Last report</dt><dd>{seen}</dd><dt>Window</dt><dd>{windows}</dd></dl>
</section>
{why}
{preflight}
<section class="card"><h2>Runs now</h2><p class="muted">The latest run of each log, worst first.</p>{current}</section>
{timeline}
<section class="card"><h2>Earlier attempts</h2>{earlier}</section>
<p><a href="/findings?host={qhost}">All findings of {name}</a></p>"#,
        state = outcome_badge(&host.state),
        name = esc(&host.hostname),
        qhost = esc(&percent_encode(&host.hostname)),
        fqdn = esc(&host.fqdn),
        os = esc(&host.os),
        agent = esc(&host.agent_version),
        collector = esc(&host.collector_id),
        seen = full_time_cell(host.last_seen.as_deref()),
        windows = if windows.is_empty() {
            "—".into()
        } else {
            windows
        },
        current = run_table(&current, &by_id, &counts, "current"),
    );
    page(&host.hostname, &body).into_response()
}

/// Findings of a run in reading order: the primary cause, then by severity, then by line.
pub(crate) fn sort_run_findings(findings: &mut [FindingRecord]) {
    findings.sort_by(|a, b| {
        b.primary
            .cmp(&a.primary)
            .then(b.severity_num.cmp(&a.severity_num))
            .then(a.line_number.cmp(&b.line_number))
    });
}

/// `/runs/{run_id}`.
pub(crate) async fn run(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let run = match st
        .store
        .runs(RunFilter {
            run: Some(id.clone()),
            limit: 1,
            ..RunFilter::default()
        })
        .await
    {
        Ok(mut r) if !r.is_empty() => r.remove(0),
        Ok(_) => return not_found("run", &id),
        Err(e) => return unavailable(e),
    };
    let mut findings = match st
        .store
        .findings(FindingFilter {
            run: Some(id.clone()),
            limit: PAGE_ROWS,
            ..FindingFilter::default()
        })
        .await
    {
        Ok(p) => p.items,
        Err(e) => return unavailable(e),
    };
    sort_run_findings(&mut findings);
    let notes = match st
        .store
        .annotations("run".into(), vec![run.run_id.clone()])
        .await
    {
        Ok(n) => n,
        Err(e) => return unavailable(e),
    };
    let phases = match st.store.run_phases(vec![run.run_id.clone()]).await {
        Ok(p) => p,
        Err(e) => return unavailable(e),
    };
    let phases = if phases.is_empty() {
        String::new()
    } else {
        let mine: Vec<&PhaseRecord> = phases.iter().collect();
        format!(
            r#"<section class="card timeline" id="timeline"><h2>Phases</h2>{}</section>"#,
            run_timeline(&run, &mine, true)
        )
    };
    let mut cards = String::new();
    for f in &findings {
        let r = &f.detail.remediation;
        let steps: String = r
            .steps
            .iter()
            .map(|s| format!("<li>{}</li>", inline_code(s)))
            .collect();
        let _ = write!(
            cards,
            r#"<section class="card finding{primary_class}" data-finding="{id}">
  <div class="title-row">{sev}<h2><a href="/findings/{href}">{title}</a></h2>{primary}</div>
  <p class="muted"><span class="mono">{rule}</span> · {file} line {line}</p>
  <div class="two-col"><div>{evidence}</div><div class="fix">{summary}{steps}</div></div>
</section>"#,
            primary_class = if f.primary { " is-primary" } else { "" },
            id = esc(&f.id),
            sev = severity_badge(&f.severity),
            href = esc(&percent_encode(&f.id)),
            title = esc(title_of(f)),
            primary = if f.primary {
                r#"<span class="badge primary">primary cause</span>"#
            } else {
                ""
            },
            rule = esc(&f.rule_id),
            file = esc(file_name(&f.source_path)),
            line = f.line_number,
            evidence = evidence_block(f),
            summary = fix_summary(&r.summary),
            steps = if steps.is_empty() {
                String::new()
            } else {
                format!(r#"<ol class="steps">{steps}</ol>"#)
            },
        );
    }
    if cards.is_empty() {
        cards.push_str(
            r#"<section class="card"><p class="muted">This run has no findings.</p></section>"#,
        );
    }
    let mut meta = String::new();
    let mut row = |k: &str, v: String| {
        let _ = write!(meta, "<dt>{k}</dt><dd>{v}</dd>");
    };
    row(
        "Host",
        format!(
            r#"<a href="/hosts/{}">{}</a>"#,
            esc(&percent_encode(&run.host)),
            esc(&run.host)
        ),
    );
    row(
        "Log",
        format!(
            r#"<span class="mono">{}</span> <span class="muted">({}, run {})</span>"#,
            esc(&run.source_path),
            esc(&run.log_kind.replace('_', " ")),
            run.run_index + 1
        ),
    );
    for (k, v) in [
        ("Mode", &run.mode),
        ("Product", &run.product),
        ("Target build", &run.target_build),
        ("Installed build", &run.installed_build),
        ("Last phase", &run.phase),
    ] {
        if !v.is_empty() {
            row(k, esc(v));
        }
    }
    if let Some(c) = run.exit_code {
        row("Exit code", c.to_string());
    }
    row("Started", full_time_cell(run.started_time.as_deref()));
    row(
        "Last log line",
        full_time_cell(run.last_line_time.as_deref()),
    );
    row(
        "Ran for",
        esc(&duration(&run).unwrap_or_else(|| "—".into())),
    );
    let body = format!(
        r#"<p class="crumbs"><a href="/">Fleet</a> / <a href="/hosts/{host_href}">{host}</a> / run</p>
<section class="card">
  <div class="title-row">{outcome}<h1>{file}</h1></div>
  <p class="mono muted">{id}</p>
  <dl class="meta">{meta}</dl>
</section>
{phases}
{triage}
<h2 class="section">Findings ({n})</h2>
{cards}"#,
        triage = super::annotations::card("run", &run.run_id, &notes),
        host_href = esc(&percent_encode(&run.host)),
        host = esc(&run.host),
        outcome = outcome_badge(&run.outcome),
        file = esc(file_name(&run.source_path)),
        id = esc(&run.run_id),
        n = findings.len(),
    );
    page(&format!("{} run", run.host), &body).into_response()
}
