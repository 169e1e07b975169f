//! `/findings`: triage. Filters (minimum severity, host glob, rule, run outcome, maintenance
//! window), text search over titles and evidence, a time range, and the same view exported as
//! CSV or JSON (`format=csv|json`) with each finding's triage: its acknowledgement, assignee
//! and notes, each with who and when. Info findings are hidden unless asked for.
//!
//! Filters come from a GET form, so a filtered view is a link that can be shared.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::dashboard::{esc, page, severity_badge, time_cell, unavailable};
use super::fleet::file_name;
use super::{percent_encode, AppState};
use crate::model::{
    outcome_number, severity_number, AnnotationRecord, FindingFilter, FindingRecord,
};

/// Rows shown on the page; exports take up to `http.max_page_size`.
const SHOWN: u32 = 200;

/// The triage view's query. Every field is optional; empty fields are ignored.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TriageQuery {
    /// `info` .. `critical`; default `low` (info hidden).
    min_severity: Option<String>,
    /// Host glob.
    host: Option<String>,
    /// Rule id.
    rule: Option<String>,
    /// Run outcome.
    outcome: Option<String>,
    /// Maintenance window id: its hosts and its span.
    window: Option<String>,
    /// Text in the title or evidence.
    q: Option<String>,
    /// From (RFC 3339, or a form's `YYYY-MM-DDTHH:MM`, read as UTC).
    since: Option<String>,
    /// Until, likewise.
    until: Option<String>,
    /// `csv` or `json` to export the view.
    format: Option<String>,
}

fn given(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Parses a time: RFC 3339, or `YYYY-MM-DDTHH:MM[:SS]` (a browser's datetime-local) as UTC.
fn parse_time(field: &str, s: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| {
            let full = if s.len() == 16 {
                format!("{s}:00Z")
            } else {
                format!("{s}Z")
            };
            OffsetDateTime::parse(&full, &Rfc3339)
        })
        .map_err(|_| format!("{field}: {s:?} is not a time like 2026-12-05T07:00"))?;
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| format!("{field}: out of range"))
}

/// The store filter of a query and the host globs its results must also match, or what is
/// wrong with it.
fn filter(
    st: &AppState,
    q: &TriageQuery,
    limit: u32,
) -> Result<(FindingFilter, Vec<String>), String> {
    let min = given(&q.min_severity).unwrap_or("low");
    let mut f = FindingFilter {
        min_severity: Some(severity_number(min).ok_or_else(|| {
            format!("min_severity: {min:?} is not one of info, low, medium, high, critical")
        })?),
        rule: given(&q.rule).map(str::to_owned),
        text: given(&q.q).map(str::to_owned),
        limit,
        ..FindingFilter::default()
    };
    if let Some(h) = given(&q.host) {
        f.host_globs.push(h.to_owned());
    }
    if let Some(o) = given(&q.outcome) {
        f.run_outcome = Some(outcome_number(o).ok_or_else(|| {
            format!("outcome: {o:?} is not one of in_progress, succeeded, failed, stalled")
        })?);
    }
    if let Some(s) = given(&q.since) {
        f.since_ns = Some(parse_time("since", s)?);
    }
    if let Some(s) = given(&q.until) {
        f.until_ns = Some(parse_time("until", s)?);
    }
    if let Some(id) = given(&q.window) {
        let w = st
            .routing
            .windows()
            .all()
            .into_iter()
            .find(|w| w.id == id)
            .ok_or_else(|| format!("window: no window has the id {id:?}"))?;
        let ns = |t: OffsetDateTime| i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX);
        f.since_ns = Some(f.since_ns.unwrap_or(i64::MIN).max(ns(w.starts_at)));
        f.until_ns = Some(f.until_ns.unwrap_or(i64::MAX).min(ns(w.ends_at)));
        if f.host_globs.is_empty() {
            f.host_globs = w.hosts;
        } else {
            // Both the host filter and the window must match: the store takes the host glob,
            // the window's globs are checked on the results.
            return Ok((f, w.hosts));
        }
    }
    Ok((f, Vec::new()))
}

/// The query string of the current view, without `format`.
fn view_query(q: &TriageQuery) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("min_severity", &q.min_severity),
        ("host", &q.host),
        ("rule", &q.rule),
        ("outcome", &q.outcome),
        ("window", &q.window),
        ("q", &q.q),
        ("since", &q.since),
        ("until", &q.until),
    ] {
        if let Some(v) = given(v) {
            parts.push(format!("{k}={}", percent_encode(v)));
        }
    }
    parts.join("&")
}

/// CSV field quoting (RFC 4180), with formula-looking cells defused for spreadsheets.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// One triage action as an export shows it.
#[derive(Debug, Serialize)]
struct Mark {
    /// Assignee, note text, or the remark of an acknowledgement.
    value: String,
    by: String,
    at: Option<String>,
}

/// A finding's triage state in an export: the current acknowledgement and assignment (the
/// latest of each) and every note, oldest first.
#[derive(Debug, Default, Serialize)]
struct Triage {
    acknowledged: Option<Mark>,
    assigned: Option<Mark>,
    notes: Vec<Mark>,
}

impl Triage {
    /// From a finding's notes, oldest first.
    fn of(notes: &[&AnnotationRecord]) -> Self {
        let mark = |n: &AnnotationRecord| Mark {
            value: n.value.clone(),
            by: n.by.clone(),
            at: n.at.clone(),
        };
        let mut t = Triage::default();
        for n in notes {
            match n.action.as_str() {
                "ack" => t.acknowledged = Some(mark(n)),
                "assign" => t.assigned = Some(mark(n)),
                _ => t.notes.push(mark(n)),
            }
        }
        t
    }
}

/// Each finding's triage, by finding id.
fn triage_by_id(notes: &[AnnotationRecord]) -> HashMap<&str, Triage> {
    let mut by: HashMap<&str, Vec<&AnnotationRecord>> = HashMap::new();
    for n in notes {
        by.entry(n.id.as_str()).or_default().push(n);
    }
    by.into_iter().map(|(k, v)| (k, Triage::of(&v))).collect()
}

fn csv(items: &[FindingRecord], notes: &[AnnotationRecord]) -> String {
    let triage = triage_by_id(notes);
    let none = Triage::default();
    let mut out = String::from(
        "observed_time,severity,host,rule_id,title,primary,run_id,source_path,line_number,id,\
         acknowledged_by,acknowledged_at,assignee,assigned_by,assigned_at,notes\r\n",
    );
    for f in items {
        let line_number = f.line_number.to_string();
        let t = triage.get(f.id.as_str()).unwrap_or(&none);
        let part = |m: &Option<Mark>, which: fn(&Mark) -> &str| -> String {
            m.as_ref().map(which).unwrap_or("").to_owned()
        };
        // One cell for all notes: "<time> <who>: <text>", oldest first.
        let notes = t
            .notes
            .iter()
            .map(|n| format!("{} {}: {}", n.at.as_deref().unwrap_or(""), n.by, n.value))
            .collect::<Vec<_>>()
            .join(" | ");
        let ack_by = part(&t.acknowledged, |m| &m.by);
        let ack_at = part(&t.acknowledged, |m| m.at.as_deref().unwrap_or(""));
        let assignee = part(&t.assigned, |m| &m.value);
        let assigned_by = part(&t.assigned, |m| &m.by);
        let assigned_at = part(&t.assigned, |m| m.at.as_deref().unwrap_or(""));
        let fields = [
            f.observed_time.as_deref().unwrap_or(""),
            f.severity.as_str(),
            f.host.as_str(),
            f.rule_id.as_str(),
            f.title.as_str(),
            if f.primary { "true" } else { "false" },
            f.run_id.as_str(),
            f.source_path.as_str(),
            line_number.as_str(),
            f.id.as_str(),
            ack_by.as_str(),
            ack_at.as_str(),
            assignee.as_str(),
            assigned_by.as_str(),
            assigned_at.as_str(),
            notes.as_str(),
        ];
        let row: Vec<String> = fields.iter().map(|s| csv_field(s)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

fn select(name: &str, label: &str, options: &[(&str, &str)], current: Option<&str>) -> String {
    let opts: String = options
        .iter()
        .map(|(v, l)| {
            format!(
                r#"<option value="{v}"{sel}>{l}</option>"#,
                sel = if current == Some(*v) { " selected" } else { "" }
            )
        })
        .collect();
    format!(
        r#"<div><label for="f-{name}">{label}</label><select id="f-{name}" name="{name}">{opts}</select></div>"#
    )
}

fn input(name: &str, label: &str, kind: &str, value: Option<&str>, hint: &str) -> String {
    format!(
        r#"<div><label for="f-{name}">{label}</label><input id="f-{name}" name="{name}" type="{kind}" value="{v}" placeholder="{hint}"></div>"#,
        v = esc(value.unwrap_or("")),
    )
}

/// `/findings`.
pub(crate) async fn findings(State(st): State<AppState>, Query(q): Query<TriageQuery>) -> Response {
    let export = given(&q.format).map(str::to_owned);
    let limit = if export.is_some() {
        st.max_page_size
    } else {
        SHOWN
    };
    let (items, error) = match filter(&st, &q, limit) {
        Ok((f, also)) => match st.store.findings(f).await {
            Ok(p) => {
                let globs: Vec<globset::GlobMatcher> = also
                    .iter()
                    .filter_map(|g| crate::routing::host_glob(g).ok())
                    .collect();
                let items = p
                    .items
                    .into_iter()
                    .filter(|f| globs.is_empty() || globs.iter().any(|g| g.is_match(&f.host)))
                    .collect();
                (items, None)
            }
            Err(e) => return unavailable(e),
        },
        Err(e) => (Vec::new(), Some(e)),
    };
    let ids: Vec<String> = items.iter().map(|f| f.id.clone()).collect();
    let notes = match st.store.annotations("finding".into(), ids).await {
        Ok(n) => n,
        Err(e) => return unavailable(e),
    };
    match (export.as_deref(), &error) {
        (Some(_), Some(e)) => return super::api::error(StatusCode::BAD_REQUEST, e.clone()),
        (Some("json"), None) => {
            let mut triage = triage_by_id(&notes);
            let items: Vec<serde_json::Value> = items
                .iter()
                .map(|f| {
                    let mut v = serde_json::to_value(f).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        let t = triage.remove(f.id.as_str()).unwrap_or_default();
                        o.insert("triage".into(), serde_json::to_value(t).unwrap_or_default());
                    }
                    v
                })
                .collect();
            return Json(serde_json::json!({ "items": items })).into_response();
        }
        (Some("csv"), None) => {
            return (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"patchwatch-findings.csv\"",
                    ),
                ],
                csv(&items, &notes),
            )
                .into_response();
        }
        (Some(other), None) => {
            return super::api::error(
                StatusCode::BAD_REQUEST,
                format!("format: {other:?} is not one of csv, json"),
            );
        }
        (None, _) => {}
    }
    let windows: Vec<(String, String)> = st
        .routing
        .windows()
        .all()
        .into_iter()
        .map(|w| (w.id, w.name))
        .collect();
    let mut window_opts: Vec<(&str, &str)> = vec![("", "any")];
    window_opts.extend(windows.iter().map(|(i, n)| (i.as_str(), n.as_str())));
    let form = format!(
        r#"<form class="filters" method="get" action="/findings" id="filters">{sev}{host}{rule}{outcome}{window}{text}{since}{until}<div><button type="submit">Apply</button></div></form>"#,
        sev = select(
            "min_severity",
            "Minimum severity",
            &[
                ("info", "info (all)"),
                ("low", "low"),
                ("medium", "medium"),
                ("high", "high"),
                ("critical", "critical"),
            ],
            Some(given(&q.min_severity).unwrap_or("low")),
        ),
        host = input("host", "Host", "text", given(&q.host), "EX0*"),
        rule = input("rule", "Rule", "text", given(&q.rule), "msi.install-failed"),
        outcome = select(
            "outcome",
            "Run outcome",
            &[
                ("", "any"),
                ("failed", "failed"),
                ("stalled", "stalled"),
                ("in_progress", "in progress"),
                ("succeeded", "succeeded"),
            ],
            given(&q.outcome),
        ),
        window = select("window", "Window", &window_opts, given(&q.window)),
        text = input("q", "Text", "search", given(&q.q), "title or evidence"),
        since = input("since", "From (UTC)", "datetime-local", given(&q.since), ""),
        until = input(
            "until",
            "Until (UTC)",
            "datetime-local",
            given(&q.until),
            ""
        ),
    );
    let mut rows = String::new();
    for f in &items {
        let mine: Vec<&crate::model::AnnotationRecord> =
            notes.iter().filter(|n| n.id == f.id).collect();
        let _ = write!(
            rows,
            r#"<tr data-finding="{id}"><td>{time}</td><td>{sev}</td><td><a href="/hosts/{hhref}">{host}</a></td><td class="mono">{rule}</td><td><a href="/findings/{href}">{title}</a>{primary}{triage}<small class="sub">{file} line {line}</small></td><td>{run}</td></tr>"#,
            id = esc(&f.id),
            time = time_cell(f.observed_time.as_deref()),
            sev = severity_badge(&f.severity),
            hhref = esc(&percent_encode(&f.host)),
            host = esc(&f.host),
            rule = esc(&f.rule_id),
            href = esc(&percent_encode(&f.id)),
            title = esc(if f.title.is_empty() {
                &f.rule_id
            } else {
                &f.title
            }),
            primary = if f.primary {
                r#" <span class="badge primary">primary cause</span>"#
            } else {
                ""
            },
            file = esc(file_name(&f.source_path)),
            line = f.line_number,
            triage = super::annotations::summary(&mine),
            run = if f.run_id.is_empty() {
                "—".to_owned()
            } else {
                format!(
                    r#"<a href="/runs/{}">run</a>"#,
                    esc(&percent_encode(&f.run_id))
                )
            },
        );
    }
    let vq = view_query(&q);
    let sep = if vq.is_empty() { "" } else { "&amp;" };
    let body = format!(
        r#"<section class="card"><h1>Findings</h1>{form}{error}</section>
<section class="card">
  <p class="muted" id="result-count">{n} finding{s}{more} · export this view: <a id="export-csv" href="/findings?{vq}{sep}format=csv">CSV</a> · <a id="export-json" href="/findings?{vq}{sep}format=json">JSON</a></p>
  <table id="triage" class="grid"><thead><tr><th scope="col">Observed</th><th scope="col">Severity</th><th scope="col">Host</th><th scope="col">Rule</th><th scope="col">Title</th><th scope="col">Run</th></tr></thead><tbody>{rows}</tbody></table>
</section>"#,
        error = error
            .map(|e| format!(r#"<p class="form-error" role="alert">{}</p>"#, esc(&e)))
            .unwrap_or_default(),
        n = items.len(),
        s = if items.len() == 1 { "" } else { "s" },
        more = if items.len() as u32 >= SHOWN {
            " (the newest; narrow the filters for more)"
        } else {
            ""
        },
        vq = esc(&vq),
    );
    page("Findings", &body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }

    #[test]
    fn form_times_read_as_utc() {
        assert_eq!(
            parse_time("since", "1970-01-01T00:01").unwrap(),
            60_000_000_000
        );
        assert_eq!(
            parse_time("since", "1970-01-01T00:00:01Z").unwrap(),
            1_000_000_000
        );
        assert!(parse_time("since", "yesterday")
            .unwrap_err()
            .starts_with("since:"));
    }
}
