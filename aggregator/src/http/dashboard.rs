//! The dashboard: server-rendered HTML pages, with a small script (embedded in the binary, no
//! CDN: maintenance networks are offline) that keeps the fleet view live from
//! `/api/v1/events`.
//!
//! This module holds the page shell and the pieces every page shares, the finding page
//! (`/findings/{id}`: evidence and fix) and `/login` (only when read tokens are configured);
//! the fleet, host, run, window and silence pages have modules of their own.

use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{hex_encode, AppState, TOKEN_COOKIE};
use crate::model::{FindingRecord, SeverityCounts};

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

/// Escapes text for HTML element content and quoted attributes.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page around `body`.
pub(crate) fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · patchwatch</title>
<link rel="stylesheet" href="/assets/dashboard.css">
</head>
<body>
<header class="topbar">
  <a class="brand" href="/"><span class="logo" aria-hidden="true"></span>patchwatch</a>
  <nav><a href="/">Fleet</a><a href="/findings">Findings</a><a href="/windows">Windows</a><a href="/silences">Silences</a></nav>
  <span id="live" class="live" data-state="connecting" title="Live updates">connecting</span>
</header>
<main>
{body}
</main>
<script src="/assets/dashboard.js"></script>
</body>
</html>"#,
        title = esc(title),
    ))
}

/// A run or host state as a badge.
pub(crate) fn outcome_badge(outcome: &str) -> String {
    let label = match outcome {
        "in_progress" => "In progress",
        "succeeded" => "Succeeded",
        "failed" => "Failed",
        "stalled" => "Stalled",
        _ => "No run",
    };
    format!(
        r#"<span class="badge outcome-{}">{label}</span>"#,
        esc(outcome)
    )
}

/// A severity as a badge.
pub(crate) fn severity_badge(severity: &str) -> String {
    format!(r#"<span class="sev sev-{0}">{0}</span>"#, esc(severity))
}

/// Finding counts by severity.
pub(crate) fn counts_cell(c: &SeverityCounts) -> String {
    let mut out = String::from(r#"<span class="counts">"#);
    for (name, n) in [
        ("critical", c.critical),
        ("high", c.high),
        ("medium", c.medium),
        ("low", c.low),
        ("info", c.info),
    ] {
        let _ = write!(
            out,
            r#"<span class="count sev-{name}{zero}" title="{name}">{n}</span>"#,
            zero = if n == 0 { " zero" } else { "" }
        );
    }
    out.push_str("</span>");
    out
}

/// A time shown as its age ("3m ago"); `dashboard.js` keeps the age current.
pub(crate) fn time_cell(rfc3339: Option<&str>) -> String {
    time_element(rfc3339, "ago")
}

/// A time shown in full with its age, for the finding page.
pub(crate) fn full_time_cell(rfc3339: Option<&str>) -> String {
    time_element(rfc3339, "ago full")
}

fn time_element(rfc3339: Option<&str>, class: &str) -> String {
    match rfc3339 {
        Some(t) => format!(
            r#"<time class="{class}" datetime="{0}" title="{0}">{0}</time>"#,
            esc(t)
        ),
        None => r#"<span class="muted">—</span>"#.to_owned(),
    }
}

/// The page shown when the store does not answer.
pub(crate) fn unavailable(e: impl std::fmt::Display) -> Response {
    let body = format!(
        r#"<section class="card"><h1>Store unavailable</h1><p>{}</p></section>"#,
        esc(&e.to_string())
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        page("Store unavailable", &body),
    )
        .into_response()
}

/// A fix's one-sentence summary as a paragraph, its inline code rendered; nothing when empty.
pub(crate) fn fix_summary(summary: &str) -> String {
    if summary.is_empty() {
        String::new()
    } else {
        format!(r#"<p class="fix-summary">{}</p>"#, inline_code(summary))
    }
}

/// Escapes `s` and renders its `` `backquoted` `` spans as `<code>`, as rule files write
/// commands and paths in a fix.
pub(crate) fn inline_code(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    let parts: Vec<&str> = s.split('`').collect();
    // An odd number of parts means the backquotes pair up.
    let paired = parts.len() % 2 == 1;
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 && paired {
            let _ = write!(out, "<code>{}</code>", esc(part));
        } else {
            if i > 0 && !paired {
                out.push('`');
            }
            out.push_str(&esc(part));
        }
    }
    out
}

fn link(url: &str) -> String {
    if url.starts_with("https://") || url.starts_with("http://") {
        format!(
            r#"<a href="{0}" rel="noreferrer noopener">{0}</a>"#,
            esc(url)
        )
    } else {
        esc(url)
    }
}

/// The finding page's body.
pub(crate) fn render_finding(f: &FindingRecord) -> String {
    let d = &f.detail;
    let mut meta = String::new();
    let mut row = |k: &str, v: String| {
        let _ = write!(meta, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    };
    row(
        "Host",
        format!(
            r#"<a href="/hosts/{}">{}</a>"#,
            esc(&super::percent_encode(&f.host)),
            esc(&f.host)
        ),
    );
    row(
        "Rule",
        format!(
            r#"<span class="mono">{} v{}</span>"#,
            esc(&f.rule_id),
            f.rule_version
        ),
    );
    if !f.category.is_empty() {
        row("Category", esc(&f.category));
    }
    if !f.run_id.is_empty() {
        row(
            "Run",
            format!(
                r#"<a class="mono" href="/runs/{}">{}</a>{}"#,
                esc(&super::percent_encode(&f.run_id)),
                esc(&f.run_id),
                if f.primary {
                    r#" <span class="badge primary">primary cause</span>"#
                } else {
                    ""
                }
            ),
        );
    }
    row(
        "Log file",
        format!(
            r#"<span class="mono">{}</span> line {} <span class="muted">(byte {})</span>"#,
            esc(&f.source_path),
            f.line_number,
            f.byte_offset
        ),
    );
    row("Log kind", esc(&f.log_kind));
    row("Logged at", full_time_cell(f.event_time.as_deref()));
    row("Observed", full_time_cell(f.observed_time.as_deref()));
    row("Received", full_time_cell(f.received_time.as_deref()));
    row("Collector", esc(&f.collector_id));

    let evidence = evidence_block(f);
    let r = &d.remediation;
    let mut fix = String::new();
    if r.summary.is_empty() && r.steps.is_empty() && r.links.is_empty() {
        fix.push_str(r#"<p class="muted">No remediation is known for this rule.</p>"#);
    }
    fix.push_str(&fix_summary(&r.summary));
    if !r.steps.is_empty() {
        fix.push_str("<ol class=\"steps\">");
        for s in &r.steps {
            let _ = write!(fix, "<li>{}</li>", inline_code(s));
        }
        fix.push_str("</ol>");
    }
    if !r.links.is_empty() {
        fix.push_str("<h3>References</h3><ul class=\"links\">");
        for l in &r.links {
            let _ = write!(fix, "<li>{}</li>", link(l));
        }
        fix.push_str("</ul>");
    }
    let kv = |title: &str, map: &std::collections::BTreeMap<String, String>| {
        if map.is_empty() {
            return String::new();
        }
        let mut s = format!(
            r#"<section class="card"><h2>{}</h2><table class="kv">"#,
            esc(title)
        );
        for (k, v) in map {
            let _ = write!(
                s,
                r#"<tr><th>{}</th><td class="mono">{}</td></tr>"#,
                esc(k),
                esc(v)
            );
        }
        s.push_str("</table></section>");
        s
    };
    format!(
        r#"<p class="crumbs"><a href="/">Fleet</a> / <a href="/hosts/{host_href}">{host}</a> / finding</p>
<section class="card finding-head">
  <div class="title-row">{sev}<h1>{title}</h1></div>
  <p class="mono muted">{id}</p>
  <dl class="meta">{meta}</dl>
</section>
<div class="two-col">
<section class="card"><h2>Evidence</h2>{evidence}</section>
<section class="card fix"><h2>Fix</h2>{fix}</section>
</div>
{fields}{labels}"#,
        sev = severity_badge(&f.severity),
        title = esc(if f.title.is_empty() {
            &f.rule_id
        } else {
            &f.title
        }),
        id = esc(&f.id),
        host_href = esc(&super::percent_encode(&f.host)),
        host = esc(&f.host),
        fields = kv("Captured fields", &d.fields),
        labels = kv("Labels", &d.labels),
    )
}

/// A finding's evidence lines with line numbers, the matched line highlighted. The agent sends
/// each line as `N: text`; the matched one is the finding's own line number.
pub(crate) fn evidence_block(f: &FindingRecord) -> String {
    if f.detail.evidence.is_empty() {
        return r#"<p class="muted">No evidence lines were sent.</p>"#.to_owned();
    }
    let lines: String = f
        .detail
        .evidence
        .iter()
        .map(|l| {
            let (n, text) = match l.split_once(": ") {
                Some((n, t)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    (Some(n), t)
                }
                _ => (None, l.as_str()),
            };
            let hit = n.and_then(|n| n.parse::<i64>().ok()) == Some(f.line_number);
            format!(
                r#"<span class="{class}"><span class="ln">{n}</span>{text}</span>"#,
                class = if hit { "line hit" } else { "line" },
                n = n.unwrap_or(""),
                text = esc(text),
            )
        })
        .collect();
    format!(r#"<pre class="evidence">{lines}</pre>"#)
}

/// `/findings/{id}`: one finding with its evidence and fix.
pub(crate) async fn finding(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match st.store.finding(id.clone()).await {
        Ok(Some(f)) => {
            let notes = match st
                .store
                .annotations("finding".into(), vec![f.id.clone()])
                .await
            {
                Ok(n) => n,
                Err(e) => return unavailable(e),
            };
            let body = render_finding(&f) + &super::annotations::card("finding", &f.id, &notes);
            page(
                if f.title.is_empty() {
                    &f.rule_id
                } else {
                    &f.title
                },
                &body,
            )
            .into_response()
        }
        Ok(None) => {
            let body = format!(
                r#"<section class="card"><h1>No such finding</h1><p>No finding has the id <span class="mono">{}</span>.</p><p><a href="/">Back to the fleet</a></p></section>"#,
                esc(&id)
            );
            (StatusCode::NOT_FOUND, page("Not found", &body)).into_response()
        }
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    next: Option<String>,
    /// Must equal the [`CSRF_COOKIE`] the form was served with.
    csrf: Option<String>,
}

/// The sign-in form's CSRF cookie (double submit: the form carries the same value).
const CSRF_COOKIE: &str = "patchwatch_csrf";

/// Only same-origin absolute paths may be redirect targets: printable ASCII without spaces
/// or backslashes (browsers drop tabs and newlines, and read `\\` as `/`, so `/\t/evil.example`
/// would turn into `//evil.example`; a control character cannot go into `Location` at all).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'\\') =>
        {
            n
        }
        _ => "/",
    }
}

fn login_page(next: &str, csrf: &str, failed: bool) -> Html<String> {
    page(
        "Sign in",
        &format!(
            r#"<section class="card login">
<h1>Sign in</h1>
<p>This aggregator needs a read token.</p>
{error}
<form method="post" action="/login">
  <input type="hidden" name="next" value="{next}">
  <input type="hidden" name="csrf" value="{csrf}">
  <label for="token">Read token</label>
  <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
  <button type="submit">Sign in</button>
</form>
</section>"#,
            error = if failed {
                r#"<p class="error">That token is not valid.</p>"#
            } else {
                ""
            },
            next = esc(next),
            csrf = esc(csrf),
        ),
    )
}

/// A sign-in form with a fresh CSRF value, set as a cookie as well.
fn login_response(st: &AppState, status: StatusCode, next: &str, failed: bool) -> Response {
    let csrf: String = (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let cookie = format!(
        "{CSRF_COOKIE}={csrf}; Path=/login; HttpOnly; SameSite=Strict{}",
        if st.tls { "; Secure" } else { "" }
    );
    (
        status,
        [(header::SET_COOKIE, cookie)],
        login_page(next, &csrf, failed),
    )
        .into_response()
}

fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `GET /login`.
pub(crate) async fn login_form(
    State(st): State<AppState>,
    Query(q): Query<LoginQuery>,
) -> Response {
    login_response(&st, StatusCode::OK, safe_next(q.next.as_deref()), false)
}

/// `POST /login`: checks the token and sets it as an HttpOnly cookie.
pub(crate) async fn login(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref()).to_owned();
    let csrf_ok = matches!(
        (cookie(&headers, CSRF_COOKIE), form.csrf.as_deref()),
        (Some(c), Some(f)) if !c.is_empty() && c == f
    );
    if !csrf_ok {
        return login_response(&st, StatusCode::FORBIDDEN, &next, true);
    }
    let token = form.token.trim();
    if st.tokens.is_empty() || st.tokens.lookup(token).is_none() {
        return login_response(&st, StatusCode::UNAUTHORIZED, &next, true);
    }
    let cookie = format!(
        "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{}",
        hex_encode(token),
        if st.tls { "; Secure" } else { "" }
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

pub(crate) async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
        .into_response()
}

pub(crate) async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        JS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn only_local_paths_are_redirect_targets() {
        assert_eq!(safe_next(Some("/findings/x")), "/findings/x");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/");
        assert_eq!(safe_next(Some("/\n/x")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("/ /x")), "/");
        assert_eq!(
            safe_next(Some("/findings/a%20b?x=1")),
            "/findings/a%20b?x=1"
        );
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn backquoted_fix_text_is_code() {
        assert_eq!(
            inline_code("run `.\\setup.exe` <now>"),
            "run <code>.\\setup.exe</code> &lt;now&gt;"
        );
        assert_eq!(inline_code("a ` b"), "a ` b");
        assert_eq!(inline_code("`<x>`"), "<code>&lt;x&gt;</code>");
    }

    #[test]
    fn only_web_links_are_clickable() {
        assert!(link("https://learn.microsoft.com/x").starts_with("<a "));
        assert!(!link("javascript:alert(1)").contains("<a"));
    }
}
