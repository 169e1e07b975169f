//! The maintenance-window board over real HTTP on loopback, on SQLite and PostgreSQL: fleet
//! rows roll up every log of a host (worst first, each failure's cause linked), a stall ends
//! when its run writes again, the window banner shows readable times, and the host and run
//! pages are pages (not JSON errors) with the primary cause first. The host page's timeline
//! shows each run's phases from the stored history (bounded per run); the preflight column
//! and a window that requires a clean preflight mark hosts that are not clean (a clean
//! preflight older than 12 h is stale, not clean); exports carry the triage notes.

use std::net::SocketAddr;

use crate::common::*;
use patchwatch_proto::{Batch, RunUpdate};

backend_tests! {
    a_fleet_row_rolls_up_every_log_of_its_host => rollup;
    a_stall_ends_when_the_run_writes_again => stall_ends;
    the_host_page_shows_each_runs_phases_and_where_it_stopped => phase_timeline;
    the_board_shows_preflight_and_a_gated_window_marks_hosts_not_clean => preflight_board;
    a_clean_preflight_older_than_12h_is_stale_and_does_not_pass_a_gate => stale_preflight;
}

const HOUR: i64 = 3_600_000_000_000;

/// A run of `file` on `host`, updated `updated` ns.
fn run_of(host: &str, run: &str, file: &str, outcome: i32, updated: i64) -> RunUpdate {
    RunUpdate {
        source_path: format!(r"C:\ExchangeSetupLogs\{file}"),
        run_index: 0,
        ..run_update(
            run,
            host,
            outcome,
            "Mailbox role: Transport service",
            updated,
        )
    }
}

fn batch_with(
    seq: u64,
    host_name: &str,
    findings: Vec<patchwatch_proto::Finding>,
    runs: Vec<RunUpdate>,
) -> Batch {
    Batch {
        collector_id: format!("{host_name}-collector"),
        sequence: seq,
        host: Some(host(host_name)),
        findings,
        run_updates: runs,
    }
}

async fn get_text(http: SocketAddr, path: &str) -> (u16, String, String) {
    let r = reqwest::get(format!("http://{http}{path}")).await.unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ctype, r.text().await.unwrap())
}

/// The `<tr>` of `host` in a page.
fn fleet_row<'a>(page: &'a str, host: &str) -> &'a str {
    let start = page
        .find(&format!(r#"<tr data-host="{host}""#))
        .unwrap_or_else(|| panic!("no row for {host}"));
    let end = page[start..].find("</tr>").unwrap() + start;
    &page[start..end]
}

async fn rollup(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let mut grpc = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut grpc).await.unwrap();
    let now = now_ns();

    // EX01: setup failed (its cause named by the run), then ServiceControl.ps1 started later
    // and succeeded; an MSI log of an earlier maintenance failed weeks before.
    let mut cause = finding(
        "ex01-cause",
        "EX01",
        "exchange.error.service-disabled",
        5,
        "ex01-setup",
    );
    cause.title = "Exchange services are disabled and cannot be started".into();
    cause.evidence = vec![
        "76: [ERROR] before".into(),
        "77: [ERROR] The service cannot be started: it is disabled.".into(),
        "78: after".into(),
    ];
    cause.remediation.as_mut().unwrap().summary =
        "Set the services back to Automatic with `Set-Service MSExchangeIS -StartupType Automatic`.".into();
    let noise = finding(
        "ex01-noise",
        "EX01",
        "exchange.setup.same-build",
        3,
        "ex01-setup",
    );
    let old = finding("ex01-old", "EX01", "msi.install-failed", 4, "ex01-old-msi");
    let info = finding("ex01-info", "EX01", "msi.outcome-line", 1, "ex01-setup");
    let mut setup = run_of("EX01", "ex01-setup", "ExchangeSetup.log", 3, now - 2 * HOUR);
    setup.primary_finding_id = "ex01-cause".into();
    setup.started_unix_nano = now - 3 * HOUR;
    let mut svc = run_of("EX01", "ex01-svc", "ServiceControl.log", 2, now - HOUR);
    svc.started_unix_nano = now - HOUR;
    // A preflight prediction is not a setup run: it does not make the host failed.
    let preflight = RunUpdate {
        source_path: "preflight".into(),
        ..run_of("EX03", "preflight-EX03-1", "x", 3, now)
    };
    let mut old_run = run_of(
        "EX01",
        "ex01-old-msi",
        "MSI1a2b.LOG",
        3,
        now - 40 * 24 * HOUR,
    );
    old_run.primary_finding_id = "ex01-old".into();
    let ack = stream
        .roundtrip(batch_with(
            1,
            "EX01",
            vec![cause, noise, old, info],
            vec![old_run, setup, svc],
        ))
        .await;
    assert!(ack.rejected.is_empty(), "{ack:?}");
    // EX02 runs; EX03 succeeded.
    stream
        .roundtrip(batch_with(
            2,
            "EX02",
            vec![],
            vec![RunUpdate {
                // A log from a server whose clock is a month behind.
                last_line_unix_nano: now - 30 * 24 * HOUR,
                ..run_of("EX02", "ex02", "ExchangeSetup.log", 1, now)
            }],
        ))
        .await;
    stream
        .roundtrip(batch_with(
            3,
            "EX03",
            vec![],
            vec![
                run_of("EX03", "ex03", "ExchangeSetup.log", 2, now),
                preflight,
            ],
        ))
        .await;

    let hosts = get_json(agg.http_addr(), "/api/v1/hosts").await;
    let ex01 = &hosts["items"][0];
    assert_eq!(ex01["hostname"], "EX01", "{hosts}");
    assert_eq!(
        ex01["state"], "failed",
        "the failed setup outranks the later run: {ex01}"
    );
    assert_eq!(
        ex01["latest_run"]["run_id"], "ex01-svc",
        "latest_run keeps its meaning"
    );
    let current: Vec<&str> = ex01["current_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        current,
        ["ex01-setup", "ex01-svc"],
        "the earlier maintenance's MSI log no longer counts"
    );
    assert_eq!(ex01["causes"][0]["finding_id"], "ex01-cause", "{ex01}");
    assert_eq!(ex01["causes"][0]["primary"], true);
    assert_eq!(ex01["findings_total"], 4, "each finding counted once");
    let ex03 = &hosts["items"][2];
    assert_eq!(ex03["state"], "succeeded", "{ex03}");
    assert_eq!(ex03["preflight"]["run_id"], "preflight-EX03-1");

    // The fleet page: worst first, the cause's title linked to its finding.
    let (status, _, page) = get_text(agg.http_addr(), "/").await;
    assert_eq!(status, 200);
    let order: Vec<usize> = ["EX01", "EX02", "EX03"]
        .iter()
        .map(|h| page.find(&format!(r#"<tr data-host="{h}""#)).unwrap())
        .collect();
    assert!(
        order[0] < order[1] && order[1] < order[2],
        "failed, in progress, succeeded: {order:?}"
    );
    let row = fleet_row(&page, "EX01");
    assert!(
        row.contains(r#"<a class="cause" href="/findings/ex01-cause">Exchange services are disabled and cannot be started</a>"#),
        "{row}"
    );
    assert!(row.contains(r#"href="/hosts/EX01""#), "{row}");
    assert!(!row.contains("msi.install-failed"), "{row}");
    assert!(!row.contains(r#"read <time"#), "{row}");
    let ex02 = fleet_row(&page, "EX02");
    assert!(
        ex02.contains(r#"<small class="sub">read <time"#),
        "when it was read: {ex02}"
    );
    // The row fragment the live view swaps in is the same row.
    let (_, _, fragment) = get_text(agg.http_addr(), "/fleet/rows?host=EX01").await;
    assert_eq!(fragment, row.to_owned() + "</tr>");

    // The host page: a page, its failed run and cause first, the old run under earlier attempts.
    let (status, ctype, page) = get_text(agg.http_addr(), "/hosts/EX01").await;
    assert_eq!(status, 200, "{page}");
    assert!(ctype.starts_with("text/html"), "{ctype}");
    let why = page.find(r#"id="why""#).expect("a why section");
    let cause_at = page[why..]
        .find("/findings/ex01-cause")
        .expect("the cause in it");
    assert!(cause_at < page[why..].find(r#"id="current""#).unwrap());
    let current_at = page.find(r#"id="current""#).unwrap();
    let earlier_at = page.find(r#"id="earlier""#).expect("earlier attempts");
    let setup_at = page.find(r#"data-run="ex01-setup""#).unwrap();
    let old_at = page.find(r#"data-run="ex01-old-msi""#).unwrap();
    assert!(current_at < setup_at && setup_at < earlier_at && earlier_at < old_at);
    assert!(page.contains("<code>Set-Service MSExchangeIS -StartupType Automatic</code>"));

    // Unknown hosts and paths answer pages; the API still answers JSON.
    let (status, ctype, _) = get_text(agg.http_addr(), "/hosts/NOPE").await;
    assert_eq!((status, ctype.starts_with("text/html")), (404, true));
    let (status, ctype, _) = get_text(agg.http_addr(), "/no/such/page").await;
    assert_eq!((status, ctype.starts_with("text/html")), (404, true));
    let (status, ctype, _) = get_text(agg.http_addr(), "/api/v1/nope").await;
    assert_eq!((status, ctype.starts_with("application/json")), (404, true));

    // The run page: primary first, the matched line highlighted, the fix's code as code.
    let (status, _, page) = get_text(agg.http_addr(), "/runs/ex01-setup").await;
    assert_eq!(status, 200);
    let primary = page.find(r#"data-finding="ex01-cause""#).unwrap();
    let other = page.find(r#"data-finding="ex01-noise""#).unwrap();
    assert!(primary < other, "primary cause first");
    assert!(page.contains(
        r#"<span class="line hit"><span class="ln">77</span>[ERROR] The service cannot be started: it is disabled.</span>"#
    ));
    assert!(
        page.contains(r#"<span class="line"><span class="ln">76</span>"#),
        "lines around it"
    );
    assert!(page.contains("<code>Set-Service MSExchangeIS -StartupType Automatic</code>"));
    let (status, _, _) = get_text(agg.http_addr(), "/runs/nope").await;
    assert_eq!(status, 404);

    // The window banner and the row's window: local-time elements, no raw nanoseconds.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/v1/windows", agg.http_addr()))
        .header("content-type", "application/json")
        .body(r#"{"id":"cu15","name":"CU15 wave 1","hosts":"EX0*","duration":"2h"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let (_, _, page) = get_text(agg.http_addr(), "/").await;
    let banner_at = page.find(r#"id="maintenance""#).expect("banner");
    let banner = &page[banner_at..banner_at + page[banner_at..].find("</section>").unwrap()];
    assert!(
        banner.contains(r#"<time class="local" datetime=""#),
        "{banner}"
    );
    assert!(banner.contains(" UTC</time>"), "{banner}");
    assert!(
        !banner
            .split(|c: char| !c.is_ascii_digit())
            .any(|d| d.len() >= 12),
        "no raw timestamps: {banner}"
    );
    assert!(fleet_row(&page, "EX02").contains(r#"<a href="/windows/cu15">CU15 wave 1</a>"#));
    let hosts = get_json(agg.http_addr(), "/api/v1/hosts").await;
    assert_eq!(hosts["items"][1]["windows"][0]["id"], "cu15", "{hosts}");

    triage(agg.http_addr()).await;
    notes_and_pages(agg.http_addr()).await;

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
}

/// The ids listed by a triage view.
async fn listed(http: SocketAddr, query: &str) -> Vec<String> {
    let (status, _, page) = get_text(http, &format!("/findings?{query}")).await;
    assert_eq!(status, 200, "{query}: {page}");
    let mut ids: Vec<String> = page
        .split(r#"<tr data-finding=""#)
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Triage over the rollup test's findings (EX01: a critical cause, a medium, a high of an old
/// run, an info; the window `cu15` spans now, after they were observed).
async fn triage(http: SocketAddr) {
    assert_eq!(
        listed(http, "").await,
        ["ex01-cause", "ex01-noise", "ex01-old"],
        "info hidden by default"
    );
    assert_eq!(listed(http, "min_severity=info").await.len(), 4);
    assert_eq!(
        listed(http, "min_severity=high").await,
        ["ex01-cause", "ex01-old"]
    );
    assert_eq!(
        listed(http, "host=ex0%3F").await.len(),
        3,
        "globs ignore case"
    );
    assert!(listed(http, "host=EX9*").await.is_empty());
    assert_eq!(
        listed(http, "q=DISABLED").await,
        ["ex01-cause"],
        "text search"
    );
    assert_eq!(listed(http, "rule=msi.install-failed").await, ["ex01-old"]);
    assert!(listed(http, "outcome=succeeded").await.is_empty());
    assert_eq!(listed(http, "outcome=failed").await.len(), 3);
    assert!(
        listed(http, "window=cu15").await.is_empty(),
        "observed before the window"
    );
    assert!(listed(http, "until=2025-11-21T05:00").await.len() == 3);
    assert!(listed(http, "since=2025-11-21T05:00").await.is_empty());
    let (_, _, page) = get_text(http, "/findings?min_severity=urgent").await;
    assert!(page.contains("min_severity: &quot;urgent&quot;"), "{page}");

    // Exports of the current view.
    let (status, ctype, body) = get_text(http, "/findings?min_severity=high&format=csv").await;
    assert_eq!((status, ctype.as_str()), (200, "text/csv; charset=utf-8"));
    let lines: Vec<&str> = body.lines().collect();
    assert!(lines[0].starts_with("observed_time,severity,host,rule_id,title"));
    assert_eq!(lines.len(), 3, "{body}");
    assert!(body.contains("exchange.error.service-disabled"));
    let json = get_json(http, "/findings?q=disabled&format=json").await;
    assert_eq!(json["items"].as_array().unwrap().len(), 1);
    assert_eq!(json["items"][0]["id"], "ex01-cause");
    let (_, _, page) = get_text(http, "/findings?min_severity=high&host=EX*").await;
    assert!(
        page.contains(r#"href="/findings?min_severity=high&amp;host=EX%2A&amp;format=csv""#),
        "{page}"
    );
}

async fn post(
    http: SocketAddr,
    path: &str,
    body: &str,
    origin: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{http}{path}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// Triage notes through the API (who and when, errors naming the field, the write guard) and
/// the window and silence pages.
async fn notes_and_pages(http: SocketAddr) {
    let origin = format!("http://{http}");
    let (status, body) = post(
        http,
        "/api/v1/annotations",
        r#"{"target":"finding","id":"ex01-cause","action":"ack","by":"alice"}"#,
        Some(&origin),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["by"], "alice");
    assert!(
        body["at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );
    let (status, _) = post(
        http,
        "/api/v1/annotations",
        r#"{"target":"run","id":"ex01-setup","action":"assign","value":"bob","by":"alice"}"#,
        None,
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = post(
        http,
        "/api/v1/annotations",
        r#"{"target":"finding","id":"ex01-cause","action":"note"}"#,
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("value:"),
        "{body}"
    );
    let (status, body) = post(
        http,
        "/api/v1/annotations",
        r#"{"target":"finding","id":"nope","action":"ack","by":"a"}"#,
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = post(
        http,
        "/api/v1/annotations",
        r#"{"target":"finding","id":"ex01-cause","action":"ack","by":"mallory"}"#,
        Some("http://evil.example"),
    )
    .await;
    assert_eq!(status, 403, "a cross-site note is refused");
    let form = reqwest::Client::new()
        .post(format!("http://{http}/api/v1/annotations"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("target=finding&id=ex01-cause&action=ack&by=mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 415, "only JSON writes");

    let notes = get_json(http, "/api/v1/annotations?target=finding&id=ex01-cause").await;
    assert_eq!(notes["items"].as_array().unwrap().len(), 1, "{notes}");
    let (_, _, page) = get_text(http, "/findings/ex01-cause").await;
    assert!(
        page.contains("<strong>alice</strong> acknowledged"),
        "{page}"
    );
    let (_, _, page) = get_text(http, "/runs/ex01-setup").await;
    assert!(page.contains("assigned to <strong>bob</strong>"));
    let (_, _, page) = get_text(http, "/findings").await;
    assert!(page.contains("ack · alice"));

    // Exports carry each finding's triage: acknowledged, assigned, noted, with who and when.
    for body in [
        r#"{"target":"finding","id":"ex01-cause","action":"assign","value":"bob","by":"carol"}"#,
        r#"{"target":"finding","id":"ex01-cause","action":"note","value":"waiting on CHG-7, then rerun","by":"bob"}"#,
    ] {
        let (status, _) = post(http, "/api/v1/annotations", body, None).await;
        assert_eq!(status, 201);
    }
    let json = get_json(http, "/findings?q=disabled&format=json").await;
    let t = &json["items"][0]["triage"];
    assert_eq!(t["acknowledged"]["by"], "alice", "{json}");
    assert!(t["acknowledged"]["at"]
        .as_str()
        .is_some_and(|a| a.ends_with('Z')));
    assert_eq!(t["assigned"]["value"], "bob");
    assert_eq!(t["assigned"]["by"], "carol");
    assert_eq!(t["notes"][0]["value"], "waiting on CHG-7, then rerun");
    assert_eq!(t["notes"][0]["by"], "bob");
    let json = get_json(http, "/findings?rule=msi.install-failed&format=json").await;
    assert!(
        json["items"][0]["triage"]["acknowledged"].is_null(),
        "{json}"
    );
    let (_, _, body) = get_text(http, "/findings?q=disabled&format=csv").await;
    let lines: Vec<&str> = body.lines().collect();
    assert!(
        lines[0]
            .ends_with(",acknowledged_by,acknowledged_at,assignee,assigned_by,assigned_at,notes"),
        "{body}"
    );
    assert!(lines[1].contains(",alice,"), "{body}");
    assert!(lines[1].contains(",bob,carol,"), "{body}");
    assert!(
        lines[1].ends_with(r#" bob: waiting on CHG-7, then rerun""#),
        "a note with a comma is quoted: {body}"
    );

    // Window pages: the list with its end button, the window with its hosts.
    let (status, _, page) = get_text(http, "/windows").await;
    assert_eq!(status, 200);
    assert!(
        page.contains(r#"data-post="/api/v1/windows/cu15/end""#),
        "{page}"
    );
    assert!(page.contains(r#"data-api="/api/v1/windows""#));
    let (status, _, page) = get_text(http, "/windows/cu15").await;
    assert_eq!(status, 200);
    for h in ["EX01", "EX02", "EX03"] {
        assert!(page.contains(&format!(r#"<tr data-host="{h}""#)), "{h}");
    }
    let (status, _, _) = get_text(http, "/windows/nope").await;
    assert_eq!(status, 404);
    let (status, body) = post(
        http,
        "/api/v1/silences",
        r#"{"comment":"CHG-1 known","created_by":"alice","hosts":"EX02","duration":"1h"}"#,
        Some(&origin),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _, page) = get_text(http, "/silences").await;
    assert_eq!(status, 200);
    assert!(page.contains("CHG-1 known"));
    assert!(page.contains(r#"/expire">Expire now"#));
}

async fn stall_ends(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let mut grpc = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut grpc).await.unwrap();
    let now = now_ns();
    let mut stalled = run_of("EX04", "ex04", "ExchangeSetup.log", 4, now - HOUR);
    stalled.last_line_unix_nano = now - 2 * HOUR;
    stream
        .roundtrip(batch_with(1, "EX04", vec![], vec![stalled]))
        .await;
    let hosts = get_json(agg.http_addr(), "/api/v1/hosts").await;
    assert_eq!(hosts["items"][0]["state"], "stalled");

    // The run writes again: an update that knows only its new last line.
    let moved = RunUpdate {
        run_id: "ex04".into(),
        host: "EX04".into(),
        updated_unix_nano: now,
        last_line_unix_nano: now,
        ..RunUpdate::default()
    };
    stream
        .roundtrip(batch_with(2, "EX04", vec![], vec![moved]))
        .await;
    let hosts = get_json(agg.http_addr(), "/api/v1/hosts").await;
    assert_eq!(hosts["items"][0]["state"], "in_progress", "{hosts}");
    let (_, _, page) = get_text(agg.http_addr(), "/").await;
    assert!(fleet_row(&page, "EX04").contains(r#"data-state="in_progress""#));
    assert!(!page.contains("badge outcome-stalled"));

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
}

/// The `<li>` phases of run `run` in the host page's timeline: (name, duration text).
fn timeline_phases(page: &str, run: &str) -> Vec<(String, String)> {
    let start = page
        .find(&format!(r#"<details data-timeline="{run}""#))
        .unwrap_or_else(|| panic!("no timeline for {run}"));
    let end = page[start..].find("</details>").unwrap() + start;
    page[start..end]
        .split(r#"data-phase=""#)
        .skip(1)
        .map(|li| {
            let name = li.split('"').next().unwrap().to_owned();
            let dur = li
                .split(r#"<span class="dur">"#)
                .nth(1)
                .and_then(|d| d.split("</span>").next())
                .unwrap()
                .to_owned();
            (name, dur)
        })
        .collect()
}

async fn phase_timeline(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let mut grpc = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut grpc).await.unwrap();
    let now = now_ns();
    let minute = 60_000_000_000;
    let t0 = now - HOUR;
    // Phases arrive one value per update, as the agent sends them: each change with the time
    // of its log line. A repeat, a delta without a phase, and an older update change nothing.
    let update = |phase: &str, at: i64, outcome: i32| RunUpdate {
        started_unix_nano: t0,
        phase: phase.into(),
        ..run_of("EX05", "ex05-setup", "ExchangeSetup.log", outcome, at)
    };
    let runs = vec![
        update("Language Files", t0, 1),
        update("Mailbox role: Transport service", t0 + 2 * minute, 1),
        update("Mailbox role: Transport service", t0 + 3 * minute, 1),
        RunUpdate {
            run_id: "ex05-setup".into(),
            host: "EX05".into(),
            updated_unix_nano: t0 + 4 * minute,
            last_line_unix_nano: t0 + 4 * minute,
            ..RunUpdate::default()
        },
        update("Mailbox role: Client Access service", t0 + 5 * minute, 1),
    ];
    let ack = stream.roundtrip(batch_with(1, "EX05", vec![], runs)).await;
    assert!(ack.rejected.is_empty(), "{ack:?}");
    let stale = update("Stale phase", t0 + minute, 1);
    let mut failed = update("Mailbox role: Client Access service", t0 + 35 * minute, 3);
    failed.exit_code = Some(1);
    stream
        .roundtrip(batch_with(2, "EX05", vec![], vec![stale, failed]))
        .await;

    let (status, _, page) = get_text(agg.http_addr(), "/hosts/EX05").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"id="timeline""#), "{page}");
    assert_eq!(
        timeline_phases(&page, "ex05-setup"),
        [
            ("Language Files".to_owned(), "2m 00s".to_owned()),
            (
                "Mailbox role: Transport service".to_owned(),
                "3m 00s".to_owned()
            ),
            (
                "Mailbox role: Client Access service".to_owned(),
                "30m 00s · stopped here".to_owned()
            ),
        ],
        "phases in order, each until the next, the last until the run's last line"
    );

    // The API lists the same history, each phase with its start.
    let api = get_json(agg.http_addr(), "/api/v1/runs/ex05-setup/phases").await;
    let listed: Vec<(i64, &str)> = api["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["ordinal"].as_i64().unwrap(), p["phase"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            (1, "Language Files"),
            (2, "Mailbox role: Transport service"),
            (3, "Mailbox role: Client Access service")
        ]
    );
    assert!(api["items"][0]["started_time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    // The run page shows the same phases.
    let (_, _, page) = get_text(agg.http_addr(), "/runs/ex05-setup").await;
    assert_eq!(timeline_phases(&page, "ex05-setup").len(), 3, "{page}");

    // A run that reports more phases than the store keeps: the latest stay, and the page
    // says how many earlier ones were dropped.
    let n = 256 + 5;
    let many: Vec<RunUpdate> = (0..n)
        .map(|i| RunUpdate {
            source_path: r"C:\Windows\Temp\MSI5a.LOG".into(),
            started_unix_nano: t0,
            ..run_of(
                "EX05",
                "ex05-msi",
                "MSI5a.LOG",
                1,
                t0 + i64::from(i) * 1_000_000_000,
            )
        })
        .enumerate()
        .map(|(i, mut u)| {
            u.phase = format!("Action{i:03}");
            u
        })
        .collect();
    stream.roundtrip(batch_with(3, "EX05", vec![], many)).await;
    let (_, _, page) = get_text(agg.http_addr(), "/hosts/EX05").await;
    let phases = timeline_phases(&page, "ex05-msi");
    assert_eq!(phases.len(), 256, "bounded per run");
    assert_eq!(phases[0].0, "Action005");
    assert_eq!(phases[255].0, format!("Action{:03}", n - 1));
    assert!(phases[255].1.ends_with("running"), "{:?}", phases[255]);
    assert!(page.contains("5 earlier phases not kept"));

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
}

/// A preflight run of `host` (the agent's `preflight` source), its primary finding `primary`.
fn preflight_run(host: &str, run: &str, outcome: i32, primary: &str, at: i64) -> RunUpdate {
    RunUpdate {
        run_id: run.into(),
        host: host.into(),
        source_path: "preflight".into(),
        log_kind: 4,
        outcome,
        mode: "preflight".into(),
        primary_finding_id: primary.into(),
        updated_unix_nano: at,
        ..RunUpdate::default()
    }
}

async fn preflight_board(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let http = agg.http_addr();
    let mut grpc = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut grpc).await.unwrap();
    let now = now_ns();
    // EX06 will fail (a high preflight finding), EX07 is clean (a medium one only), EX08 has
    // no preflight; each also has a running setup.
    let mut will_fail = finding(
        "ex06-pf",
        "EX06",
        "exchange.su.servicecontrol-execution-policy",
        4,
        "preflight-EX06-1",
    );
    will_fail.title = "Will fail with: ExecutionPolicy defined by Group Policy".into();
    will_fail.category = "preflight".into();
    will_fail.source_path = "preflight".into();
    let mut medium = finding(
        "ex07-pf",
        "EX07",
        "exchange.setup.low-disk",
        3,
        "preflight-EX07-1",
    );
    medium.category = "preflight".into();
    medium.source_path = "preflight".into();
    for (seq, host, findings, pre) in [
        (
            1,
            "EX06",
            vec![will_fail],
            Some(preflight_run("EX06", "preflight-EX06-1", 3, "ex06-pf", now)),
        ),
        (
            2,
            "EX07",
            vec![medium],
            Some(preflight_run("EX07", "preflight-EX07-1", 2, "", now)),
        ),
        (3, "EX08", vec![], None),
    ] {
        let mut runs = vec![run_of(
            host,
            &format!("{host}-setup"),
            "ExchangeSetup.log",
            1,
            now,
        )];
        runs.extend(pre);
        let ack = stream
            .roundtrip(batch_with(seq, host, findings, runs))
            .await;
        assert!(ack.rejected.is_empty(), "{ack:?}");
    }

    // The fleet column: what it will fail with, linked; clean; none yet.
    let (_, _, page) = get_text(http, "/").await;
    assert!(page.contains(r#"<th scope="col">Preflight</th>"#));
    let row = fleet_row(&page, "EX06");
    assert!(
        row.contains(r#"href="/findings/ex06-pf">EX06 will fail: ExecutionPolicy defined by Group Policy</a>"#),
        "{row}"
    );
    assert!(
        row.contains(r#"data-state="in_progress""#),
        "a prediction is not the host's state: {row}"
    );
    assert!(fleet_row(&page, "EX07").contains(r#"data-preflight="clean""#));
    assert!(fleet_row(&page, "EX08").contains("no preflight yet"));
    // The host page lists the preflight findings.
    let (_, _, page) = get_text(http, "/hosts/EX07").await;
    let card = &page[page.find(r#"id="preflight""#).expect("a preflight card")..];
    assert!(card.contains(r#"data-finding="ex07-pf""#), "{card}");
    assert!(
        !page.contains(r#"data-run="preflight-EX07-1""#),
        "a preflight snapshot is not an earlier attempt"
    );

    // A window that requires a clean preflight: the same validation as any other field.
    let (status, body) = post(
        http,
        "/api/v1/windows",
        r#"{"id":"gated","name":"CU16","hosts":"EX0*","duration":"2h","require_clean_preflight":"yes"}"#,
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("require_clean_preflight"),
        "{body}"
    );
    let (status, body) = post(
        http,
        "/api/v1/windows",
        r#"{"id":"gated","name":"CU16","hosts":"EX0*","duration":"2h","require_clean_preflight":true}"#,
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["require_clean_preflight"], true);
    let listed = get_json(http, "/api/v1/windows").await;
    assert_eq!(
        listed["items"][0]["require_clean_preflight"], true,
        "{listed}"
    );
    let (_, _, page) = get_text(http, "/windows/gated").await;
    let gate = &page[page.find(r#"id="gate""#).expect("a gate card")..];
    let gate = &gate[..gate.find("</section>").unwrap()];
    let blocked: Vec<&str> = gate
        .split(r#"<li data-host=""#)
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert_eq!(blocked, ["EX06", "EX08"], "{gate}");
    let (_, _, page) = get_text(http, "/windows").await;
    assert!(page.contains(r#"data-gate="required""#));
    // The fleet marks the hosts the active window is waiting on, in its window column.
    let (_, _, page) = get_text(http, "/").await;
    for (host, blocked) in [("EX06", true), ("EX07", false), ("EX08", true)] {
        assert_eq!(
            fleet_row(&page, host).contains("needs a clean preflight"),
            blocked,
            "{host}"
        );
    }

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
}

async fn stale_preflight(backend: Backend) {
    let Some((config, _dir)) = config(backend).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let http = agg.http_addr();
    let mut grpc = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut grpc).await.unwrap();
    let now = now_ns();
    // Both clean; EX11's snapshot is 13 h old (its agent stopped taking them), EX12's 11 h.
    for (seq, host, age) in [(1, "EX11", 13 * HOUR), (2, "EX12", 11 * HOUR)] {
        let run = preflight_run(host, &format!("preflight-{host}-1"), 2, "", now - age);
        let ack = stream
            .roundtrip(batch_with(seq, host, vec![], vec![run]))
            .await;
        assert!(ack.rejected.is_empty(), "{ack:?}");
    }
    let (status, body) = post(
        http,
        "/api/v1/windows",
        r#"{"id":"gated","name":"CU16","hosts":"EX1*","duration":"2h","require_clean_preflight":true}"#,
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let (_, _, page) = get_text(http, "/").await;
    let stale = fleet_row(&page, "EX11");
    assert!(stale.contains(r#"data-preflight="stale""#), "{stale}");
    assert!(stale.contains("needs a clean preflight"), "{stale}");
    let fresh = fleet_row(&page, "EX12");
    assert!(fresh.contains(r#"data-preflight="clean""#), "{fresh}");
    assert!(!fresh.contains("needs a clean preflight"), "{fresh}");
    // The window's page lists the stale host, saying why.
    let (_, _, page) = get_text(http, "/windows/gated").await;
    let gate = &page[page.find(r#"id="gate""#).expect("a gate card")..];
    let gate = &gate[..gate.find("</section>").unwrap()];
    assert!(gate.contains(r#"<li data-host="EX11""#), "{gate}");
    assert!(gate.contains("preflight stale"), "{gate}");
    assert!(!gate.contains(r#"data-host="EX12""#), "{gate}");

    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
}
