//! The fleet's rows: one row per host rolling up all its logs, with the cause of each failure
//! one click from its finding, for the fleet view (`fleet_page.rs`) and a window's page; the
//! live view swaps in the same rows, so they have one renderer.
//!
//! A row is a list of [`COLUMNS`]: a new per-host status is one more entry there. The preflight
//! column reads `HostRecord::preflight`, which the rollup keeps out of the state: a prediction
//! is shown beside the host's state, never as it.

use std::fmt::Write as _;

use time::OffsetDateTime;

use super::dashboard::{counts_cell, esc, outcome_badge, time_cell};
use super::AppState;
use crate::model::{state_rank, HostRecord, RunRecord, WindowRef};
use crate::routing::MaintenanceWindow;

/// One column of the fleet table: its header and how a host fills its cell.
struct Column {
    header: &'static str,
    cell: fn(&HostRecord) -> String,
}

/// The fleet table's columns, in order.
const COLUMNS: &[Column] = &[
    Column {
        header: "Host",
        cell: host_cell,
    },
    Column {
        header: "State",
        cell: state_cell,
    },
    Column {
        header: "Why",
        cell: cause_cell,
    },
    Column {
        header: "Where",
        cell: progress_cell,
    },
    Column {
        header: "Last log line",
        cell: last_line_cell,
    },
    Column {
        header: "Preflight",
        cell: preflight_cell,
    },
    Column {
        header: "Window",
        cell: window_cell,
    },
    Column {
        header: "Findings",
        cell: |h| counts_cell(&h.findings),
    },
];

const DASH: &str = r#"<span class="muted">—</span>"#;

/// The file name of a log path (Windows or Unix separators).
pub(crate) fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

fn host_cell(h: &HostRecord) -> String {
    format!(
        r#"<a class="hostlink" href="/hosts/{href}"><strong>{host}</strong></a><small>{fqdn}</small>"#,
        href = esc(&super::percent_encode(&h.hostname)),
        host = esc(&h.hostname),
        fqdn = if h.fqdn.is_empty() || h.fqdn == h.hostname {
            String::new()
        } else {
            esc(&h.fqdn)
        },
    )
}

fn state_cell(h: &HostRecord) -> String {
    let n = h.current_runs.len();
    let failed = h
        .current_runs
        .iter()
        .filter(|r| r.outcome == "failed")
        .count();
    let detail = match (n, failed) {
        (0, _) => String::new(),
        (1, _) => "1 log".to_owned(),
        (n, 0) => format!("{n} logs"),
        (n, f) => format!("{f} of {n} logs failed"),
    };
    format!(
        r#"{}<small class="sub">{}</small>"#,
        outcome_badge(&h.state),
        esc(&detail)
    )
}

/// The run a cause belongs to.
fn run_of<'a>(h: &'a HostRecord, run_id: &str) -> Option<&'a RunRecord> {
    h.current_runs.iter().find(|r| r.run_id == run_id)
}

fn cause_cell(h: &HostRecord) -> String {
    if h.causes.is_empty() {
        return match h.state.as_str() {
            "failed" | "stalled" => format!(
                r#"<a href="/hosts/{}">no finding names the cause yet</a>"#,
                esc(&super::percent_encode(&h.hostname))
            ),
            _ => DASH.to_owned(),
        };
    }
    let mut out = String::from(r#"<ul class="causes">"#);
    for c in &h.causes {
        let file = run_of(h, &c.run_id).map_or("", |r| file_name(&r.source_path));
        let _ = write!(
            out,
            r#"<li><span class="sev sev-{sev}">{sev}</span> <a class="cause" href="/findings/{href}">{title}</a> <small class="muted">{file}</small></li>"#,
            sev = esc(&c.severity),
            href = esc(&super::percent_encode(&c.finding_id)),
            title = esc(if c.title.is_empty() {
                &c.rule_id
            } else {
                &c.title
            }),
            file = esc(file),
        );
    }
    out.push_str("</ul>");
    out
}

/// The run the row's "where" and "last line" describe: the first active run (a running setup
/// is what people watch), else the run of the leading cause, else the worst.
fn focus(h: &HostRecord) -> Option<&RunRecord> {
    h.current_runs
        .iter()
        .find(|r| matches!(r.outcome.as_str(), "in_progress" | "stalled"))
        .or_else(|| h.causes.first().and_then(|c| run_of(h, &c.run_id)))
        .or_else(|| h.current_runs.first())
}

fn progress_cell(h: &HostRecord) -> String {
    let Some(r) = focus(h) else {
        return DASH.to_owned();
    };
    let what = [r.product.as_str(), r.target_build.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| esc(s))
        .collect::<Vec<_>>()
        .join(" ");
    let phase = if r.phase.is_empty() {
        String::new()
    } else {
        let verb = match r.outcome.as_str() {
            "failed" => "stopped at ",
            "stalled" => "stalled at ",
            _ => "",
        };
        format!(r#"<span class="phase">{verb}{}</span>"#, esc(&r.phase))
    };
    format!(
        r#"{phase}<small class="sub">{what}{sep}<span class="mono">{file}</span></small>"#,
        sep = if what.is_empty() { "" } else { " · " },
        file = esc(file_name(&r.source_path)),
    )
}

fn last_line_cell(h: &HostRecord) -> String {
    let run = focus(h);
    let cell = time_cell(
        run.and_then(|r| r.last_line_time.as_deref().or(r.updated_time.as_deref()))
            .or(h.last_seen.as_deref()),
    );
    // A log whose own clock is far behind when the agent read it (an old log read late, a
    // server clock off) would read as "2000d ago" alone: say when it was read as well.
    let parse = |t: Option<&str>| {
        t.and_then(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
    };
    match run.map(|r| {
        (
            parse(r.last_line_time.as_deref()),
            r.updated_time.as_deref(),
        )
    }) {
        Some((Some(line), Some(read)))
            if parse(Some(read)).is_some_and(|t| t - line > time::Duration::DAY) =>
        {
            format!(
                r#"{cell}<small class="sub">read {}</small>"#,
                time_cell(Some(read))
            )
        }
        _ => cell,
    }
}

/// The host's latest preflight: what it will fail with (linked to the finding that says so),
/// "clean", or "no preflight yet"; and when it was taken.
pub(crate) fn preflight_cell(h: &HostRecord) -> String {
    use crate::gate::Preflight;
    let verdict = Preflight::of(h);
    let main = match &verdict {
        Preflight::Missing => {
            return r#"<span class="muted preflight" data-preflight="missing">no preflight yet</span>"#
                .to_owned()
        }
        Preflight::Clean => {
            r#"<span class="badge outcome-succeeded preflight" data-preflight="clean">clean</span>"#
                .to_owned()
        }
        // Clean once, but too long ago to vouch for the server now.
        Preflight::Stale { .. } => format!(
            r#"<span class="badge outcome-stalled preflight stale" data-preflight="stale" title="clean, but older than {} h">stale</span>"#,
            crate::gate::STALE_AFTER.whole_hours()
        ),
        Preflight::WillFail { finding_id, .. } => {
            let text = format!("{} {}", h.hostname, verdict.reason());
            match finding_id {
                Some(id) => format!(
                    r#"<a class="preflight will-fail" data-preflight="will-fail" href="/findings/{}">{}</a>"#,
                    esc(&super::percent_encode(id)),
                    esc(&text)
                ),
                None => format!(
                    r#"<span class="preflight will-fail" data-preflight="will-fail">{}</span>"#,
                    esc(&text)
                ),
            }
        }
    };
    let when = h
        .preflight
        .as_ref()
        .and_then(|r| r.updated_time.as_deref().or(r.started_time.as_deref()));
    format!(
        r#"{main}<small class="sub">checked {}</small>"#,
        time_cell(when)
    )
}

fn window_cell(h: &HostRecord) -> String {
    if h.windows.is_empty() {
        return DASH.to_owned();
    }
    let links = h
        .windows
        .iter()
        .map(|w| {
            format!(
                r#"<a href="/windows/{}">{}</a>"#,
                esc(&super::percent_encode(&w.id)),
                esc(&w.name)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    // A window that requires a clean preflight marks the hosts it is waiting on.
    let gated = h.windows.iter().any(|w| w.require_clean_preflight);
    if gated && !crate::gate::Preflight::of(h).is_clean() {
        format!(
            r#"{links}<small class="sub gate-blocked" data-gate="blocked">needs a clean preflight</small>"#
        )
    } else {
        links
    }
}

/// FNV-1a of a row's markup: the script replaces (and highlights) a row only when it changed.
fn revision(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One fleet row.
pub(crate) fn row(h: &HostRecord) -> String {
    let cells: String = COLUMNS
        .iter()
        .map(|c| format!("<td>{}</td>", (c.cell)(h)))
        .collect();
    format!(
        r#"<tr data-host="{host}" data-state="{state}" data-rank="{rank}" data-rev="{rev:x}">{cells}</tr>"#,
        host = esc(&h.hostname),
        state = esc(&h.state),
        rank = state_rank(&h.state),
        rev = revision(&cells),
    )
}

/// Hosts worst first (failed, stalled, in progress, succeeded), then by name.
pub(crate) fn sort_hosts(hosts: &mut [HostRecord]) {
    hosts.sort_by(|a, b| {
        state_rank(&a.state)
            .cmp(&state_rank(&b.state))
            .then_with(|| a.hostname.cmp(&b.hostname))
    });
}

/// Fills in each host's active windows.
pub(crate) fn add_windows(hosts: &mut [HostRecord], active: &[MaintenanceWindow]) {
    let globs: Vec<(&MaintenanceWindow, Vec<globset::GlobMatcher>)> = active
        .iter()
        .map(|w| {
            let g = w
                .hosts
                .iter()
                .filter_map(|p| crate::routing::host_glob(p).ok())
                .collect();
            (w, g)
        })
        .collect();
    for h in hosts {
        h.windows = globs
            .iter()
            .filter(|(_, g)| {
                g.iter()
                    .any(|m| m.is_match(&h.hostname) || (!h.fqdn.is_empty() && m.is_match(&h.fqdn)))
            })
            .map(|(w, _)| WindowRef {
                id: w.id.clone(),
                name: w.name.clone(),
                require_clean_preflight: w.require_clean_preflight,
                ends_at: crate::model::rfc3339(
                    i64::try_from(w.ends_at.unix_timestamp_nanos()).unwrap_or(i64::MAX),
                ),
            })
            .collect();
    }
}

/// Every host (or `only`), with windows, worst first.
pub(crate) async fn board_hosts(
    st: &AppState,
    only: Option<Vec<String>>,
) -> Result<Vec<HostRecord>, crate::store::StoreError> {
    let mut hosts = st.store.hosts(only).await?;
    add_windows(
        &mut hosts,
        &st.routing.windows().active(OffsetDateTime::now_utc()),
    );
    sort_hosts(&mut hosts);
    Ok(hosts)
}

/// A time shown in UTC on the server and in the reader's local time by `dashboard.js`.
pub(crate) fn local_time(t: OffsetDateTime) -> String {
    let utc = t.to_offset(time::UtcOffset::UTC);
    let iso = utc
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let shown = utc
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_default();
    format!(r#"<time class="local" datetime="{iso}">{shown}</time>"#)
}

/// The table of hosts, for the fleet page and a window's page.
pub(crate) fn table(hosts: &[HostRecord], id: &str) -> String {
    let head: String = COLUMNS
        .iter()
        .map(|c| format!(r#"<th scope="col">{}</th>"#, c.header))
        .collect();
    let rows: String = hosts.iter().map(row).collect();
    format!(
        r#"<table id="{id}" class="grid fleet"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_of_both_path_styles() {
        assert_eq!(
            file_name(r"C:\ExchangeSetupLogs\ExchangeSetup.log"),
            "ExchangeSetup.log"
        );
        assert_eq!(file_name("/tmp/x/MSI1.LOG"), "MSI1.LOG");
        assert_eq!(file_name("plain"), "plain");
    }

    #[test]
    fn a_local_time_is_readable_not_nanoseconds() {
        let t = OffsetDateTime::from_unix_timestamp(1_764_918_000).unwrap();
        let html = local_time(t);
        assert!(html.contains("2025-12-05 07:00 UTC"), "{html}");
        assert!(
            html.contains(r#"datetime="2025-12-05T07:00:00Z""#),
            "{html}"
        );
    }
}
