//! The maintenance window pages (`/windows`, `/windows/{id}`) and the silence page
//! (`/silences`): lists, forms that create, and buttons that end or expire.
//!
//! The forms post JSON to the API (`/api/v1/windows`, `/api/v1/silences`) from
//! `dashboard.js`, so they pass through the same validation and the same cross-site write
//! checks (`guard.rs`) as any other client; the pages hold no inline script.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use super::dashboard::{esc, page, unavailable};
use super::fleet::{board_hosts, local_time, table};
use super::{percent_encode, AppState};
use crate::routing::MaintenanceWindow;

fn span_state(
    now: OffsetDateTime,
    starts: Option<OffsetDateTime>,
    ends: Option<OffsetDateTime>,
    names: [&'static str; 3],
) -> &'static str {
    if starts.is_some_and(|s| now < s) {
        names[0]
    } else if ends.is_none_or(|e| now < e) {
        names[1]
    } else {
        names[2]
    }
}

fn state_badge(state: &str) -> String {
    let class = match state {
        "active" => "outcome-in_progress",
        "scheduled" | "pending" => "outcome-stalled",
        _ => "",
    };
    format!(r#"<span class="badge {class}">{}</span>"#, esc(state))
}

fn field(name: &str, label: &str, kind: &str, hint: &str, required: bool) -> String {
    format!(
        r#"<div><label for="{name}">{label}</label><input id="{name}" name="{name}" type="{kind}" placeholder="{hint}"{req}></div>"#,
        req = if required { " required" } else { "" },
    )
}

/// Every window: configured ones first, then stored ones (latest start first).
async fn all_windows(
    st: &AppState,
) -> Result<Vec<(MaintenanceWindow, &'static str)>, crate::store::StoreError> {
    let stored = st.store.windows().await?;
    Ok(st
        .routing
        .windows()
        .static_windows()
        .into_iter()
        .map(|w| (w, "config"))
        .chain(stored.into_iter().map(|w| (w, "api")))
        .collect())
}

/// `/windows`.
pub(crate) async fn windows(State(st): State<AppState>) -> Response {
    let now = OffsetDateTime::now_utc();
    let windows = match all_windows(&st).await {
        Ok(w) => w,
        Err(e) => return unavailable(e),
    };
    let mut rows = String::new();
    for (w, source) in &windows {
        let state = span_state(
            now,
            Some(w.starts_at),
            Some(w.ends_at),
            ["scheduled", "active", "ended"],
        );
        let action = if *source == "config" {
            r#"<span class="muted">configuration file</span>"#.to_owned()
        } else if state == "ended" {
            String::new()
        } else {
            format!(
                r#"<button type="button" class="secondary" data-post="/api/v1/windows/{}/end">End now</button>"#,
                esc(&percent_encode(&w.id))
            )
        };
        let _ = write!(
            rows,
            r#"<tr data-window="{id}"><td><a href="/windows/{href}"><strong>{name}</strong></a><small class="sub mono">{id}</small>{gate}</td><td class="mono">{hosts}</td><td>{starts}</td><td>{ends}</td><td>{state}</td><td>{action}</td></tr>"#,
            id = esc(&w.id),
            href = esc(&percent_encode(&w.id)),
            name = esc(&w.name),
            gate = if w.require_clean_preflight {
                r#"<small class="sub" data-gate="required">requires a clean preflight</small>"#
            } else {
                ""
            },
            hosts = esc(&w.hosts.join(", ")),
            starts = local_time(w.starts_at),
            ends = local_time(w.ends_at),
            state = state_badge(state),
        );
    }
    let body = format!(
        r#"<section class="card"><h1>Maintenance windows</h1>
<p class="muted">Findings from hosts in an active window are labelled with it and routed as maintenance.</p>
<table id="windows" class="grid"><thead><tr><th scope="col">Window</th><th scope="col">Hosts</th><th scope="col">Starts</th><th scope="col">Ends</th><th scope="col">State</th><th scope="col"></th></tr></thead><tbody>{rows}</tbody></table>
{empty}
</section>
<section class="card"><h2>New window</h2>
<form class="board" id="window-form" data-api="/api/v1/windows">
{name}{hosts}{starts}{duration}{ends}
<div class="check"><input id="require_clean_preflight" name="require_clean_preflight" type="checkbox"><label for="require_clean_preflight">Require a clean preflight</label></div>
<div><button type="submit">Create window</button></div>
<p class="form-error" role="alert" hidden></p>
</form>
<p class="muted small">Give a duration or an end. Start and end are in your local time; an empty start means now. A window that requires a clean preflight marks and alerts on each host in it whose latest preflight predicts a failure or that has none.</p>
</section>"#,
        empty = if windows.is_empty() {
            r#"<p class="empty">No maintenance windows yet.</p>"#
        } else {
            ""
        },
        name = field("name", "Name", "text", "CU15 wave 1", true),
        hosts = field(
            "hosts",
            "Hosts (globs, comma-separated)",
            "text",
            "EX0*, MBX-*.corp.example",
            true
        ),
        starts = field("starts_at", "Starts", "datetime-local", "", false),
        duration = field("duration", "Duration", "text", "2h, 90m, 1h30m", false),
        ends = field("ends_at", "Or ends", "datetime-local", "", false),
    );
    page("Maintenance windows", &body).into_response()
}

/// `/windows/{id}`: the window, its hosts and their state.
pub(crate) async fn window(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let now = OffsetDateTime::now_utc();
    let windows = match all_windows(&st).await {
        Ok(w) => w,
        Err(e) => return unavailable(e),
    };
    let Some((w, source)) = windows.into_iter().find(|(w, _)| w.id == id) else {
        let body = format!(
            r#"<section class="card"><h1>No such window</h1><p>No window has the id <span class="mono">{}</span>.</p><p><a href="/windows">All windows</a></p></section>"#,
            esc(&id)
        );
        return (StatusCode::NOT_FOUND, page("Not found", &body)).into_response();
    };
    let globs: Vec<globset::GlobMatcher> = w
        .hosts
        .iter()
        .filter_map(|g| crate::routing::host_glob(g).ok())
        .collect();
    let hosts = match board_hosts(&st, None).await {
        Ok(h) => h,
        Err(e) => return unavailable(e),
    };
    let hosts: Vec<_> = hosts
        .into_iter()
        .filter(|h| {
            globs
                .iter()
                .any(|g| g.is_match(&h.hostname) || (!h.fqdn.is_empty() && g.is_match(&h.fqdn)))
        })
        .collect();
    let count = |s: &str| hosts.iter().filter(|h| h.state == s).count();
    let gate = gate_card(&w, &hosts);
    let state = span_state(
        now,
        Some(w.starts_at),
        Some(w.ends_at),
        ["scheduled", "active", "ended"],
    );
    let body = format!(
        r#"<p class="crumbs"><a href="/windows">Windows</a> / window</p>
<section class="card">
  <div class="title-row">{badge}<h1>{name}</h1></div>
  <dl class="meta"><dt>Id</dt><dd class="mono">{id}</dd><dt>Hosts</dt><dd class="mono">{globs}</dd><dt>From</dt><dd>{starts}</dd><dt>Until</dt><dd>{ends}</dd><dt>Source</dt><dd>{source}</dd><dt>Preflight</dt><dd>{requires}</dd></dl>
</section>
<section class="summary">
  <div class="stat"><span class="label">Hosts in scope</span><span class="value" id="stat-hosts">{n}</span></div>
  <div class="stat" data-state="failed"><span class="label">Failed</span><span class="value">{failed}</span></div>
  <div class="stat" data-state="stalled"><span class="label">Stalled</span><span class="value">{stalled}</span></div>
  <div class="stat" data-state="in_progress"><span class="label">In progress</span><span class="value">{running}</span></div>
  <div class="stat" data-state="succeeded"><span class="label">Succeeded</span><span class="value">{ok}</span></div>
</section>
{gate}
<section class="card"><h2>Hosts</h2>{table}{empty}
<p><a href="/findings?window={qid}">Findings in this window</a></p></section>"#,
        badge = state_badge(state),
        name = esc(&w.name),
        id = esc(&w.id),
        qid = esc(&percent_encode(&w.id)),
        globs = esc(&w.hosts.join(", ")),
        starts = local_time(w.starts_at),
        ends = local_time(w.ends_at),
        source = if source == "config" {
            "configuration file"
        } else {
            "created here or with the API"
        },
        requires = if w.require_clean_preflight {
            "required clean"
        } else {
            "not required"
        },
        n = hosts.len(),
        failed = count("failed"),
        stalled = count("stalled"),
        running = count("in_progress"),
        ok = count("succeeded"),
        table = table(&hosts, "window-hosts"),
        empty = if hosts.is_empty() {
            r#"<p class="empty">No reporting host matches these globs.</p>"#
        } else {
            ""
        },
    );
    page(&w.name, &body).into_response()
}

/// For a window that requires a clean preflight: the hosts in scope that are not clean, each
/// with why (see [`crate::gate`]), or a line saying all are clean.
fn gate_card(w: &MaintenanceWindow, hosts: &[crate::model::HostRecord]) -> String {
    if !w.require_clean_preflight {
        return String::new();
    }
    let blocked = crate::gate::blocked(w, hosts);
    if blocked.is_empty() {
        return r#"<section class="card" id="gate"><h2>Preflight gate</h2><p data-gate="clean">Every host in scope has a clean preflight.</p></section>"#.to_owned();
    }
    let items: String = blocked
        .iter()
        .map(|(h, verdict)| {
            let reason = esc(&verdict.reason());
            let reason = match verdict {
                crate::gate::Preflight::WillFail {
                    finding_id: Some(id),
                    ..
                } => format!(
                    r#"<a class="preflight will-fail" href="/findings/{}">{reason}</a>"#,
                    esc(&percent_encode(id))
                ),
                crate::gate::Preflight::WillFail { .. } => {
                    format!(r#"<span class="preflight will-fail">{reason}</span>"#)
                }
                _ => format!(r#"<span class="muted">{reason}</span>"#),
            };
            format!(
                r#"<li data-host="{host}" data-gate="blocked"><a href="/hosts/{href}"><strong>{host}</strong></a> {reason}</li>"#,
                host = esc(&h.hostname),
                href = esc(&percent_encode(&h.hostname)),
            )
        })
        .collect();
    format!(
        r#"<section class="card gate" id="gate"><h2>Preflight gate: {n} host{s} not clean</h2><p class="muted">This window requires a clean preflight; from shortly before it starts (<code>[routing] preflight_gate_lead</code>, default 1 h) until it ends each host below is alerted on.</p><ul class="causes">{items}</ul></section>"#,
        n = blocked.len(),
        s = if blocked.len() == 1 { "" } else { "s" },
    )
}

/// `/silences`.
pub(crate) async fn silences(State(st): State<AppState>) -> Response {
    let now = OffsetDateTime::now_utc();
    let stored = match st.store.silences().await {
        Ok(s) => s,
        Err(e) => return unavailable(e),
    };
    let all: Vec<(crate::routing::SilenceConfig, &str)> = st
        .routing
        .config_silences()
        .into_iter()
        .map(|s| (s, "config"))
        .chain(stored.into_iter().map(|s| (s.silence, "api")))
        .collect();
    let mut rows = String::new();
    for (s, source) in &all {
        let state = span_state(
            now,
            s.starts_at,
            s.ends_at,
            ["pending", "active", "expired"],
        );
        let mut matchers = Vec::new();
        for (k, v) in [
            ("rules", &s.rule_ids),
            ("severities", &s.severities),
            ("hosts", &s.hosts),
        ] {
            if !v.is_empty() {
                matchers.push(format!("{k}: {}", v.join(", ")));
            }
        }
        for (k, v) in &s.labels {
            matchers.push(format!("{k}={v}"));
        }
        let action = if *source == "config" {
            r#"<span class="muted">configuration file</span>"#.to_owned()
        } else if state == "expired" {
            String::new()
        } else {
            format!(
                r#"<button type="button" class="secondary" data-post="/api/v1/silences/{}/expire">Expire now</button>"#,
                esc(&percent_encode(&s.id))
            )
        };
        let _ = write!(
            rows,
            r#"<tr data-silence="{id}"><td><strong>{comment}</strong><small class="sub">by {by} · <span class="mono">{id}</span></small></td><td class="mono">{matchers}</td><td>{starts}</td><td>{ends}</td><td>{state}</td><td>{action}</td></tr>"#,
            id = esc(&s.id),
            comment = esc(&s.comment),
            by = esc(&s.created_by),
            matchers = esc(&matchers.join("; ")),
            starts = s.starts_at.map_or_else(|| "—".to_owned(), local_time),
            ends = s
                .ends_at
                .map_or_else(|| "until removed".to_owned(), local_time),
            state = state_badge(state),
        );
    }
    let body = format!(
        r#"<section class="card"><h1>Silences</h1>
<p class="muted">A silence stops notifications for the findings it matches; they are still stored and shown.</p>
<table id="silences" class="grid"><thead><tr><th scope="col">Why</th><th scope="col">Matches</th><th scope="col">Starts</th><th scope="col">Ends</th><th scope="col">State</th><th scope="col"></th></tr></thead><tbody>{rows}</tbody></table>
{empty}
</section>
<section class="card"><h2>New silence</h2>
<form class="board" id="silence-form" data-api="/api/v1/silences">
{comment}{by}{rules}{sevs}{hosts}{starts}{duration}{ends}
<div><button type="submit">Create silence</button></div>
<p class="form-error" role="alert" hidden></p>
</form>
<p class="muted small">Give at least one of rules, severities or hosts, and a duration or an end.</p>
</section>"#,
        empty = if all.is_empty() {
            r#"<p class="empty">No silences.</p>"#
        } else {
            ""
        },
        comment = field(
            "comment",
            "Why (ticket, change)",
            "text",
            "CHG-1234 known 1603 on EX02",
            true
        ),
        by = field("created_by", "Who", "text", "your name", false),
        rules = field("rule_ids", "Rules (ids or globs)", "text", "msi.*", false),
        sevs = field("severities", "Severities", "text", "low, medium", false),
        hosts = field("hosts", "Hosts (globs)", "text", "EX02", false),
        starts = field("starts_at", "Starts", "datetime-local", "", false),
        duration = field("duration", "Duration", "text", "2h", false),
        ends = field("ends_at", "Or ends", "datetime-local", "", false),
    );
    page("Silences", &body).into_response()
}
