//! The fleet view (`/`): the whole fleet's counts by state, each a link that filters on it,
//! and one page of hosts ([`PER_PAGE`]) worst first (failed, stalled, in progress, succeeded,
//! then by name), with a host-name search (`q`, a substring of the name or FQDN, any case) and
//! previous/next links that keep the filters. `/fleet/rows` serves the view's live parts
//! (counts, range, rows, pager) for the same query as an HTML fragment, which `dashboard.js`
//! fetches again when the event stream says a host changed: the rows have one renderer.
//!
//! The store does the work (`Store::fleet`): counts and the page come from SQL over each
//! host's kept state, so a page costs the same at 10 hosts and at 10,000.
//!
//! Query values that make no sense are refused with 400 naming the parameter and saying why,
//! as `/findings` words them (an unknown `state`, a `page` that is not a number or is 0, a
//! search longer than a host name); a page past the last shows the last, since hosts come
//! and go between two loads of the same link.

use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::dashboard::{esc, page, unavailable};
use super::fleet::{add_windows, board_hosts, local_time, row, table};
use super::{percent_encode, AppState};
use crate::model::{state_rank, FleetPage, FleetQuery, StateCounts};
use crate::routing::MaintenanceWindow;

/// Hosts on one page of the fleet view.
pub(crate) const PER_PAGE: u32 = 100;

/// The longest host-name search taken: a DNS name is at most 253 characters.
const MAX_SEARCH: usize = 253;

/// The states the view filters on, in board order, with their labels.
const STATES: [(&str, &str); 4] = [
    ("failed", "Failed"),
    ("stalled", "Stalled"),
    ("in_progress", "In progress"),
    ("succeeded", "Succeeded"),
];

/// The fleet view's query as typed. Every field is optional; empty fields are ignored.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct FleetParams {
    /// 1-based page number.
    page: Option<String>,
    /// One of [`STATES`].
    state: Option<String>,
    /// Text in the host name or FQDN.
    q: Option<String>,
    /// `/fleet/rows` only: this host's row alone (for scripts; the view does not use it).
    host: Option<String>,
}

/// A valid fleet view: which page of which hosts.
#[derive(Debug, Clone, PartialEq)]
struct View {
    page: u64,
    state: Option<&'static str>,
    q: Option<String>,
}

impl View {
    /// The view a query asks for, or what is wrong with it (`parameter: why`).
    fn parse(p: &FleetParams) -> Result<Self, String> {
        let given = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let page = match given(&p.page) {
            None => 1,
            // Digits too many for a number are a page past the last, which shows the last.
            Some(s) if s.bytes().all(|b| b.is_ascii_digit()) && s.bytes().any(|b| b != b'0') => {
                s.parse().unwrap_or(u64::MAX)
            }
            Some(s) => return Err(format!("page: {s:?} is not a page number (1, 2, 3, …)")),
        };
        let state = match given(&p.state) {
            None => None,
            Some(s) => Some(
                STATES
                    .iter()
                    .map(|(name, _)| *name)
                    .find(|name| name.eq_ignore_ascii_case(&s))
                    .ok_or_else(|| {
                        format!(
                            "state: {s:?} is not one of failed, stalled, in_progress, succeeded"
                        )
                    })?,
            ),
        };
        let q = given(&p.q);
        if q.as_ref().is_some_and(|q| q.chars().count() > MAX_SEARCH) {
            return Err(format!(
                "q: a host name is at most {MAX_SEARCH} characters; this search is longer"
            ));
        }
        Ok(Self { page, state, q })
    }

    /// The store query of this view.
    fn query(&self) -> FleetQuery {
        FleetQuery {
            state: self.state.map(state_rank),
            text: self.q.clone(),
            page: self.page,
            per_page: PER_PAGE,
        }
    }

    /// The link to page `page` of this view (not HTML-escaped).
    fn href(&self, page: u64) -> String {
        let mut parts = Vec::new();
        if let Some(s) = self.state {
            parts.push(format!("state={s}"));
        }
        if let Some(q) = &self.q {
            parts.push(format!("q={}", percent_encode(q)));
        }
        if page > 1 {
            parts.push(format!("page={page}"));
        }
        if parts.is_empty() {
            "/".to_owned()
        } else {
            format!("/?{}", parts.join("&"))
        }
    }

    /// The filters in words ("failed, name contains “ex01”"), empty when there are none.
    fn filters(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = self.state {
            parts.push(label(s).to_lowercase());
        }
        if let Some(q) = &self.q {
            parts.push(format!("name contains “{}”", esc(q)));
        }
        parts.join(", ")
    }
}

/// The store query for a fleet filter as typed (`state`, `q`, `page`; also read by
/// `/api/v1/hosts`) with `per_page` hosts a page, or what is wrong (`parameter: why`).
pub(crate) fn fleet_query(
    state: Option<String>,
    q: Option<String>,
    page: Option<String>,
    per_page: u32,
) -> Result<FleetQuery, String> {
    let view = View::parse(&FleetParams {
        page,
        state,
        q,
        host: None,
    })?;
    Ok(FleetQuery {
        per_page,
        ..view.query()
    })
}

fn label(state: &str) -> &'static str {
    STATES
        .iter()
        .find(|(name, _)| *name == state)
        .map_or("Other", |(_, label)| label)
}

/// `10000` as `10,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The summary: the whole fleet's counts, each a link to the hosts in that state.
fn summary(view: &View, counts: &StateCounts) -> String {
    let stat = |state: Option<&'static str>, id: &str, text: &str, n: u64| {
        let to = View {
            page: 1,
            state,
            q: None,
        };
        format!(
            r#"<a class="stat" href="{href}" data-state="{data}"{current}><span class="label">{text}</span><span class="value" id="stat-{id}">{n}</span></a>"#,
            href = esc(&to.href(1)),
            data = state.unwrap_or(""),
            current = if view.state == state {
                r#" aria-current="page""#
            } else {
                ""
            },
            n = thousands(n),
        )
    };
    let mut out = String::from(r#"<section class="summary" id="fleet-summary">"#);
    out.push_str(&stat(None, "hosts", "Hosts", counts.total()));
    for (state, n) in [
        ("failed", counts.failed),
        ("stalled", counts.stalled),
        ("in_progress", counts.in_progress),
        ("succeeded", counts.succeeded),
    ] {
        out.push_str(&stat(Some(state), state, label(state), n));
    }
    out.push_str("</section>");
    out
}

/// The view's live parts below the summary: the range, the table, the empty-result note and
/// the pager. Each has an id; the script replaces each with its fresh copy.
fn listing(view: &View, fleet: &FleetPage) -> String {
    let per = u64::from(PER_PAGE);
    let pages = fleet.matched.div_ceil(per).max(1);
    let shown = fleet.hosts.len() as u64;
    let first = (fleet.page - 1) * per + 1;
    let filters = view.filters();
    let range = if shown == 0 {
        String::new()
    } else if filters.is_empty() {
        format!(
            "Hosts {}–{} of {}",
            thousands(first),
            thousands(first + shown - 1),
            thousands(fleet.matched)
        )
    } else {
        format!(
            r#"Hosts {}–{} of {} ({filters}) · <a href="/">all hosts</a>"#,
            thousands(first),
            thousands(first + shown - 1),
            thousands(fleet.matched)
        )
    };
    let empty = if fleet.counts.total() == 0 {
        "No hosts have reported yet. Rows appear here as collectors send batches.".to_owned()
    } else {
        format!(
            r#"No host matches these filters ({filters}). <a href="/">Show all {} hosts</a>"#,
            thousands(fleet.counts.total())
        )
    };
    let link = |id: &str, rel: &str, text: &str, to: Option<u64>| match to {
        Some(p) => format!(
            r#"<a id="{id}" rel="{rel}" href="{}">{text}</a>"#,
            esc(&view.href(p))
        ),
        None => format!(r#"<span class="muted">{text}</span>"#),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<p id="fleet-range" class="muted">{range}</p>{table}<p id="fleet-empty" class="empty"{empty_hidden}>{empty}</p><nav id="fleet-pager" class="pager" aria-label="Fleet pages"{pager_hidden}>{prev} <span>Page {page} of {pages}</span> {next}</nav>"#,
        table = table(&fleet.hosts, "fleet"),
        empty_hidden = if shown == 0 { "" } else { " hidden" },
        pager_hidden = if pages > 1 { "" } else { " hidden" },
        prev = link(
            "fleet-prev",
            "prev",
            "← Previous",
            (fleet.page > 1).then(|| fleet.page - 1)
        ),
        next = link(
            "fleet-next",
            "next",
            "Next →",
            (fleet.page < pages).then(|| fleet.page + 1)
        ),
        page = thousands(fleet.page),
        pages = thousands(pages),
    );
    out
}

/// The page of `view`, its hosts with their windows.
async fn read(st: &AppState, view: &View) -> Result<FleetPage, crate::store::StoreError> {
    let mut fleet = st.store.fleet(view.query()).await?;
    add_windows(
        &mut fleet.hosts,
        &st.routing.windows().active(OffsetDateTime::now_utc()),
    );
    Ok(fleet)
}

/// A page saying which parameter is wrong, with status 400.
fn bad_query(error: &str) -> Response {
    let body = format!(
        r#"<section class="card"><h1>Fleet</h1><p class="form-error" role="alert">{}</p><p><a href="/">The whole fleet</a></p></section>"#,
        esc(error)
    );
    (StatusCode::BAD_REQUEST, page("Fleet", &body)).into_response()
}

/// `/`: the fleet view.
pub(crate) async fn fleet(State(st): State<AppState>, Query(p): Query<FleetParams>) -> Response {
    let view = match View::parse(&p) {
        Ok(v) => v,
        Err(e) => return bad_query(&e),
    };
    let fleet = match read(&st, &view).await {
        Ok(f) => f,
        Err(e) => return unavailable(e),
    };
    let windows = maintenance_banner(&st.routing.windows().active(OffsetDateTime::now_utc()));
    let state_field = view.state.map_or(String::new(), |s| {
        format!(r#"<input type="hidden" name="state" value="{s}">"#)
    });
    let body = format!(
        r#"{windows}<div id="fleet-view">{summary}<section class="card" id="fleet-card">
  <div class="title-row"><h1>Fleet</h1><form id="fleet-search" class="filters fleet-search" method="get" action="/" role="search"><div><label for="f-q">Host name contains</label><input id="f-q" name="q" type="search" value="{q}" placeholder="EX01"></div>{state_field}<div><button type="submit">Search</button></div></form></div>
  {listing}
  <p class="muted small">Each row rolls up the latest run of every log the host wrote (setup, ServiceControl, Windows Installer), worst first. <a href="/findings">All findings</a></p>
</section></div>"#,
        summary = summary(&view, &fleet.counts),
        q = esc(view.q.as_deref().unwrap_or("")),
        listing = listing(&view, &fleet),
    );
    page("Fleet", &body).into_response()
}

/// `/fleet/rows[?page=N&state=S&q=T]`: the fleet view's live parts for that query (summary,
/// range, table, empty-result note, pager) as an HTML fragment; with `?host=H`, that host's
/// row alone.
pub(crate) async fn rows(State(st): State<AppState>, Query(p): Query<FleetParams>) -> Response {
    let html = |body: String| {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response()
    };
    if let Some(h) = p.host.as_deref().filter(|h| !h.is_empty()) {
        return match board_hosts(&st, Some(vec![h.to_owned()])).await {
            Ok(hosts) => html(hosts.iter().map(row).collect()),
            Err(e) => unavailable(e),
        };
    }
    let view = match View::parse(&p) {
        Ok(v) => v,
        Err(e) => return super::api::error(StatusCode::BAD_REQUEST, e),
    };
    match read(&st, &view).await {
        Ok(fleet) => html(summary(&view, &fleet.counts) + &listing(&view, &fleet)),
        Err(e) => unavailable(e),
    }
}

/// A banner listing the maintenance windows active now (empty when there are none).
fn maintenance_banner(active: &[MaintenanceWindow]) -> String {
    if active.is_empty() {
        return String::new();
    }
    let items: String = active
        .iter()
        .map(|w| {
            format!(
                r#"<li data-window="{id}"><a href="/windows/{href}"><strong>{name}</strong></a> <code>{hosts}</code> from {starts} until {ends}</li>"#,
                id = esc(&w.id),
                href = esc(&percent_encode(&w.id)),
                name = esc(&w.name),
                hosts = esc(&w.hosts.join(", ")),
                starts = local_time(w.starts_at),
                ends = local_time(w.ends_at),
            )
        })
        .collect();
    format!(
        r#"<section class="card maintenance" id="maintenance"><h2>Maintenance in progress</h2><ul>{items}</ul></section>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(page: &str, state: &str, q: &str) -> FleetParams {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        FleetParams {
            page: some(page),
            state: some(state),
            q: some(q),
            host: None,
        }
    }

    #[test]
    fn a_query_is_read_or_refused_naming_its_parameter() {
        let v = View::parse(&params("3", "Failed", " ex01 ")).unwrap();
        assert_eq!(
            v,
            View {
                page: 3,
                state: Some("failed"),
                q: Some("ex01".into())
            }
        );
        assert_eq!(View::parse(&params("", "", "")).unwrap().page, 1);
        // Past any last page: the last page.
        assert_eq!(
            View::parse(&params("99999999999999999999999", "", ""))
                .unwrap()
                .page,
            u64::MAX
        );
        for (p, s, q, starts) in [
            ("two", "", "", "page: \"two\""),
            ("0", "", "", "page: \"0\""),
            ("-1", "", "", "page: \"-1\""),
            ("", "broken", "", "state: \"broken\""),
        ] {
            let e = View::parse(&params(p, s, q)).unwrap_err();
            assert!(e.starts_with(starts), "{e}");
        }
        let long = "x".repeat(MAX_SEARCH + 1);
        assert!(View::parse(&params("", "", &long))
            .unwrap_err()
            .starts_with("q: "));
    }

    #[test]
    fn links_keep_the_filters() {
        let v = View {
            page: 2,
            state: Some("stalled"),
            q: Some("ex 01&".into()),
        };
        assert_eq!(v.href(3), "/?state=stalled&q=ex%2001%26&page=3");
        assert_eq!(v.href(1), "/?state=stalled&q=ex%2001%26");
        let all = View {
            page: 1,
            state: None,
            q: None,
        };
        assert_eq!(all.href(1), "/");
    }

    #[test]
    fn counts_read_with_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
