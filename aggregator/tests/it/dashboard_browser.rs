//! The dashboard in a real headless Chromium (Debian's `chromium` + `chromium-driver`, set up by
//! `.ci/setup-chromium.sh`), one browser and one aggregator for every page and action: the
//! fleet view updates without a reload and highlights only rows that changed, each page
//! renders (host, run, finding, findings, windows, window, silences), a window and a silence
//! are created through their forms and a window is ended, a finding is acknowledged, a filter
//! is applied. The fleet shows each host's preflight, the host page the timeline of a run's
//! phases (`host-timeline.png`), and a window created through its form to require a clean preflight lists the hosts
//! that are not clean. Screenshots of each page go to `target/screenshots/` (CI keeps them), and to
//! `docs/` with `PATCHWATCH_UPDATE_SCREENSHOTS=1`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;
use fantoccini::{ClientBuilder, Locator};
use patchwatch_proto::{Batch, Finding, Remediation};

/// Kills chromedriver when the test ends, however it ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Option<String> {
    match std::env::var("PATCHWATCH_CHROMEDRIVER") {
        Ok(p) => Some(p),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PATCHWATCH_CHROMEDRIVER is not set; CI must run `eval \"$(bash .ci/setup-chromium.sh)\"` first")
        }
        Err(_) => {
            eprintln!("skipped: PATCHWATCH_CHROMEDRIVER is not set (run `eval \"$(bash .ci/setup-chromium.sh)\"`)");
            None
        }
    }
}

async fn start_driver(path: &str) -> (Driver, String) {
    let port = free_port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {path}: {e}"));
    let driver = Driver(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return (driver, format!("http://{addr}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on {addr}");
}

/// A realistic finding for the screenshots (a row of test data: positional reads best).
#[allow(clippy::too_many_arguments)]
fn issue(
    id: &str,
    host: &str,
    run: &str,
    rule: &str,
    sev: i32,
    title: &str,
    evidence: &[&str],
    fix: &str,
    steps: &[&str],
) -> Finding {
    let now = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap();
    Finding {
        title: title.into(),
        category: "setup".into(),
        event_time_unix_nano: now - 200_000_000_000,
        observed_time_unix_nano: now - 190_000_000_000,
        evidence: evidence.iter().map(|s| (*s).to_owned()).collect(),
        remediation: Some(Remediation {
            summary: fix.into(),
            steps: steps.iter().map(|s| (*s).to_owned()).collect(),
            links: vec!["https://learn.microsoft.com/en-us/troubleshoot/exchange/setup/".into()],
        }),
        ..finding(id, host, rule, sev, run)
    }
}

fn fleet_batch(
    seq: u64,
    host: &str,
    outcome: i32,
    phase: &str,
    build: &str,
    findings: Vec<Finding>,
) -> Batch {
    let run = format!("{host}-run-1");
    let mut ru = run_update(
        &run,
        host,
        outcome,
        phase,
        1_763_700_000_000_000_000 + seq as i64,
    );
    ru.target_build = build.into();
    let now = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap();
    ru.last_line_unix_nano = now - (seq as i64) * 47_000_000_000;
    Batch {
        collector_id: format!("{host}-collector"),
        sequence: seq,
        findings,
        run_updates: vec![ru],
        host: Some(host_info(host)),
    }
}

fn host_info(name: &str) -> patchwatch_proto::HostInfo {
    host(name)
}

/// Where screenshots go: `target/screenshots/` (kept by CI), or `docs/` (committed, linked
/// from the README) with `PATCHWATCH_UPDATE_SCREENSHOTS=1`.
fn screenshot_dir() -> PathBuf {
    let dir = if std::env::var("PATCHWATCH_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("docs")
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("the target tmpdir is inside the target dir")
            .join("screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &fantoccini::Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(name), &png).unwrap();
}

/// Runs `script` (a JS expression) in the page and returns its value.
async fn js(browser: &fantoccini::Client, script: &str) -> serde_json::Value {
    browser
        .execute(&format!("return ({script});"), vec![])
        .await
        .unwrap()
}

/// Waits (bounded) until `script` is true in the page.
async fn until(browser: &fantoccini::Client, what: &str, script: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if js(browser, script).await == serde_json::json!(true) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks what every page must have: no resource from another origin (offline networks),
/// readable contrast, and a label for every visible form field (keyboard and screen-reader
/// use).
async fn page_basics(browser: &fantoccini::Client, page: &str) {
    let foreign = js(
        browser,
        "performance.getEntriesByType('resource').map(e => e.name)\
         .filter(n => !n.startsWith(location.origin))",
    )
    .await;
    assert_eq!(
        foreign,
        serde_json::json!([]),
        "{page} loads only its own resources"
    );
    let unlabelled = js(
        browser,
        "[...document.querySelectorAll('input:not([type=hidden]), select')]\
         .filter(e => !e.id || !document.querySelector('label[for=\"' + e.id + '\"]'))\
         .map(e => e.name)",
    )
    .await;
    assert_eq!(
        js(browser, LOW_CONTRAST).await,
        serde_json::json!([]),
        "{page}: readable contrast"
    );
    assert_eq!(
        unlabelled,
        serde_json::json!([]),
        "{page}: every field has a label"
    );
}

/// Text whose contrast with its background is below WCAG AA (4.5:1; 3:1 for large text),
/// as `"text: ratio"`.
const LOW_CONTRAST: &str = r#"(() => {
  const rgb = s => (s.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); })
    .reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
  const bg = el => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor); if (c.length === 3 || c[3] >= 0.5) return c; } return [255, 255, 255]; };
  const bad = [];
  document.querySelectorAll('body *').forEach(el => {
    const text = [...el.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent.trim()).join('');
    if (!text || el.closest('[hidden]') || !el.offsetParent) return;
    const st = getComputedStyle(el);
    const a = lum(rgb(st.color)), b = lum(bg(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(st.fontSize), bold = parseInt(st.fontWeight, 10) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < need) bad.push(text.slice(0, 40) + ': ' + ratio.toFixed(2));
  });
  return bad;
})()"#;

/// Fills a form field by its id.
/// Submits the form `form` (a CSS id selector) with its submit button.
async fn submit(browser: &fantoccini::Client, form: &str) {
    browser
        .find(Locator::Css(&format!("{form} button[type=submit]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The text of the element `css` once it is shown, within [`WAIT`]; `what` names it on failure.
async fn shown_text(browser: &fantoccini::Client, css: &str, what: &str) -> String {
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .expect(what)
        .text()
        .await
        .unwrap()
}

async fn fill(browser: &fantoccini::Client, id: &str, value: &str) {
    let field = browser.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_and_action_in_chromium() {
    let Some(driver_path) = chromedriver() else {
        return;
    };
    let Some((config, dir)) = config(Backend::Sqlite).await else {
        return;
    };
    let (agg, shutdown) = start(config).await;
    let mut grpc = client(agg.grpc_addr()).await;
    let mut stream = CollectorStream::open(&mut grpc).await.unwrap();

    // A fleet before the page loads.
    stream
        .roundtrip(fleet_batch(
            1,
            "EXCH01",
            2,
            "Setup complete",
            "15.2.1544.4",
            vec![],
        ))
        .await;
    stream
        .roundtrip(fleet_batch(
            2,
            "EXCH02",
            1,
            "Mailbox role: Client Access Front End service",
            "15.2.1544.4",
            vec![issue(
                "ex02-reboot",
                "EXCH02",
                "EXCH02-run-1",
                "EXCH-REBOOT-PENDING",
                2,
                "A reboot is pending from an earlier installation",
                &["[ERROR] A restart from a previous installation is pending."],
                "Restart the server, then run setup again.",
                &["Restart the server.", "Run Setup.exe /IAcceptExchangeServerLicenseTerms_DiagnosticDataOFF /mode:Upgrade."],
            )],
        ))
        .await;
    stream
        .roundtrip(fleet_batch(
            3,
            "EXCH03",
            4,
            "Mailbox role: Transport service",
            "15.2.1544.4",
            vec![],
        ))
        .await;

    // Preflights: EXCH02 will fail, EXCH01 is clean, the others have none.
    let now = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap();
    for (seq, host, outcome, findings) in [
        (100, "EXCH01", 2, vec![]),
        (
            101,
            "EXCH02",
            3,
            vec![Finding {
                category: "preflight".into(),
                source_path: "preflight".into(),
                run_id: "preflight-EXCH02-1".into(),
                ..issue(
                    "ex02-preflight",
                    "EXCH02",
                    "preflight-EXCH02-1",
                    "exchange.su.servicecontrol-execution-policy",
                    4,
                    "Will fail with: ExecutionPolicy defined by Group Policy",
                    &["PowerShell ExecutionPolicy defined by Group Policy", "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\PowerShell ExecutionPolicy = AllSigned"],
                    "Remove the ExecutionPolicy setting from Group Policy before the update.",
                    &["Run `gpresult /h gp.html` to find the policy that sets it."],
                )
            }],
        ),
    ] {
        let primary = findings.first().map(|f: &Finding| f.id.clone()).unwrap_or_default();
        stream
            .roundtrip(Batch {
                collector_id: format!("{host}-collector"),
                sequence: seq,
                findings,
                run_updates: vec![patchwatch_proto::RunUpdate {
                    run_id: format!("preflight-{host}-1"),
                    host: host.into(),
                    source_path: "preflight".into(),
                    log_kind: 4,
                    outcome,
                    mode: "preflight".into(),
                    primary_finding_id: primary,
                    updated_unix_nano: now - 3_600_000_000_000,
                    ..Default::default()
                }],
                host: Some(host_info(host)),
            })
            .await;
    }

    let (_driver, webdriver) = start_driver(&driver_path).await;
    let profile = tempfile::tempdir().unwrap();
    let chromium =
        std::env::var("PATCHWATCH_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1400,900",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&webdriver)
        .await
        .expect("webdriver session");

    let base = format!("http://{}", agg.http_addr());
    browser.goto(&format!("{base}/")).await.unwrap();
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(r#"#live[data-state="live"]"#))
        .await
        .expect("the page subscribes to the event stream");
    assert!(browser
        .find(Locator::Css(r#"tr[data-host="EXCH05"]"#))
        .await
        .is_err());
    page_basics(&browser, "/").await;
    // Loading the page (and its catch-up fetch on connecting) highlights nothing.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        js(&browser, "document.querySelectorAll('tr.flash').length").await,
        serde_json::json!(0),
        "no row flashes on page load"
    );
    // Failed and stalled rows come first.
    assert_eq!(
        js(
            &browser,
            "[...document.querySelectorAll('#fleet tbody tr')].map(r => r.dataset.host)"
        )
        .await,
        serde_json::json!(["EXCH03", "EXCH02", "EXCH01"])
    );
    // The preflight column: what EXCH02 will fail with, linked to the finding.
    assert_eq!(
        js(
            &browser,
            "document.querySelector('tr[data-host=\"EXCH02\"] a.will-fail').textContent"
        )
        .await,
        serde_json::json!("EXCH02 will fail: ExecutionPolicy defined by Group Policy")
    );
    assert_eq!(
        js(
            &browser,
            "[...document.querySelectorAll('#fleet tbody tr')].map(r => r.dataset.host + ':' + r.querySelector('[data-preflight]').dataset.preflight)"
        )
        .await,
        serde_json::json!(["EXCH03:missing", "EXCH02:will-fail", "EXCH01:clean"])
    );
    // A marker that a reload would wipe.
    browser
        .execute("window.__noReload = 42; return null;", vec![])
        .await
        .unwrap();

    // New findings and run updates arrive over gRPC while the page is open; the setup went
    // through two phases before the one it stopped at.
    let mut batch = fleet_batch(
            4,
            "EXCH05",
            3,
            "Mailbox role: Transport service",
            "15.2.1544.4",
            vec![
                issue(
                    "ex05-transport",
                    "EXCH05",
                    "EXCH05-run-1",
                    "EXCH-SERVICE-START",
                    5,
                    "Service MSExchangeTransport failed to start",
                    &[
                        "76: [11/21/2025 06:01:12.0456] [2] [ERROR] The following error was generated when \"$error.Clear(); Start-SetupService -ServiceName MSExchangeTransport\" was run:",
                        "77: [11/21/2025 06:01:12.0457] [2] [ERROR] Service 'MSExchangeTransport' failed to reach status 'Running' on this server.",
                    ],
                    "The Transport service did not start; check it with `Get-Service MSExchangeTransport`.",
                    &[
                        "Open services.msc and check that Microsoft Exchange Transport and its dependencies are set to Automatic.",
                        "Start the service by hand and read the System event log for the reason it stops.",
                        "Resume setup with Setup.exe /mode:Upgrade /IAcceptExchangeServerLicenseTerms_DiagnosticDataOFF.",
                    ],
                ),
                issue(
                    "ex05-1603",
                    "EXCH05",
                    "EXCH05-run-1",
                    "MSI-1603",
                    4,
                    "Windows Installer returned 1603 (fatal error during installation)",
                    &["MSI (s) (A8:0C) [06:01:13:101]: Product: Microsoft Exchange Server -- Installation failed."],
                    "Find the first 'Return value 3' in the MSI log; that action is the cause.",
                    &["Open the MSI log and search for 'Return value 3'."],
                ),
                issue(
                    "ex05-perm",
                    "EXCH05",
                    "EXCH05-run-1",
                    "EXCH-ACCESS-DENIED",
                    3,
                    "Access to a setup path was denied",
                    &["[ERROR] Access to the path 'C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Bin' is denied."],
                    "Run setup as a member of Organization Management with local admin rights.",
                    &["Check the ACL on the path."],
                ),
            ],
        );
    let stopped = batch.run_updates[0].clone();
    let minute = 60_000_000_000;
    for (i, phase) in ["Language Files", "Mailbox role: Client Access service"]
        .into_iter()
        .enumerate()
    {
        let at = stopped.last_line_unix_nano - (40 - 15 * i as i64) * minute;
        batch.run_updates.insert(
            i,
            patchwatch_proto::RunUpdate {
                outcome: 1,
                phase: phase.into(),
                updated_unix_nano: stopped.updated_unix_nano - 10 + i as i64,
                last_line_unix_nano: at,
                started_unix_nano: stopped.last_line_unix_nano - 40 * minute,
                ..stopped.clone()
            },
        );
    }
    batch.run_updates[2].started_unix_nano = stopped.last_line_unix_nano - 40 * minute;
    stream.roundtrip(batch).await;
    let row = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(r#"tr[data-host="EXCH05"]"#))
        .await
        .expect("the new host appears without a reload");
    let text = row.text().await.unwrap();
    assert!(text.contains("Microsoft Exchange Server 2019"), "{text}");
    assert!(text.contains("15.2.1544.4"), "{text}");
    assert!(text.contains("Failed"), "{text}");
    let crit = row
        .find(Locator::Css(".count.sev-critical"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(crit, "1");
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(
            r#"tr[data-host="EXCH05"] a.cause[href="/findings/ex05-transport"]"#,
        ))
        .await
        .expect("the row names the failure's cause");
    let marker = browser
        .execute("return window.__noReload;", vec![])
        .await
        .unwrap();
    assert_eq!(marker, serde_json::json!(42), "the page was not reloaded");

    // An existing row is updated in place.
    stream
        .roundtrip(fleet_batch(
            5,
            "EXCH03",
            2,
            "Setup complete",
            "15.2.1544.4",
            vec![],
        ))
        .await;
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(r#"tr[data-host="EXCH03"] .outcome-succeeded"#))
        .await
        .expect("EXCH03's outcome updates live");
    let rows = browser
        .find_all(Locator::Css("#fleet tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 4, "one row per host");
    assert_eq!(
        js(
            &browser,
            "[...document.querySelectorAll('tr.flash')].map(r => r.dataset.host).sort()"
        )
        .await,
        serde_json::json!(["EXCH03", "EXCH05"]),
        "only the rows that changed are highlighted"
    );
    assert_eq!(
        js(
            &browser,
            "document.getElementById('stat-failed').textContent"
        )
        .await,
        serde_json::json!("1")
    );

    tokio::time::sleep(Duration::from_millis(1800)).await; // let the highlight fade
    screenshot(&browser, "fleet.png").await;

    // The Failed count links to the failed hosts; that view stays live: a host that fails
    // while it is open appears on it, in order.
    browser
        .find(Locator::Css(
            r#"#fleet-summary a.stat[data-state="failed"]"#,
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &browser,
        "the failed hosts' view",
        "location.search === '?state=failed' && !!document.querySelector('#fleet-summary a[aria-current][data-state=failed]')",
    )
    .await;
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(r#"#live[data-state="live"]"#))
        .await
        .expect("the filtered view subscribes to the event stream");
    assert_eq!(
        js(
            &browser,
            "[...document.querySelectorAll('#fleet tbody tr')].map(r => r.dataset.host)"
        )
        .await,
        serde_json::json!(["EXCH05"])
    );
    // (Read in one script: the live view replaces these parts when they change.)
    until(
        &browser,
        "the range of the failed hosts",
        "document.getElementById('fleet-range').textContent.startsWith('Hosts 1–1 of 1 (failed)')",
    )
    .await;
    stream
        .roundtrip(fleet_batch(
            6,
            "MBX01",
            3,
            "Mailbox role: Transport service",
            "15.2.1544.4",
            vec![],
        ))
        .await;
    until(
        &browser,
        "MBX01 on the failed hosts' view",
        "[...document.querySelectorAll('#fleet tbody tr')].map(r => r.dataset.host).join() === 'EXCH05,MBX01' \
         && document.getElementById('stat-failed').textContent === '2' \
         && document.getElementById('fleet-range').textContent.startsWith('Hosts 1–2 of 2')",
    )
    .await;
    page_basics(&browser, "/?state=failed").await;
    // A search within the filter keeps it; one that matches nothing says so.
    fill(&browser, "f-q", "mbx").await;
    submit(&browser, "#fleet-search").await;
    until(
        &browser,
        "the search",
        "location.search === '?q=mbx&state=failed' && \
         [...document.querySelectorAll('#fleet tbody tr')].map(r => r.dataset.host).join() === 'MBX01'",
    )
    .await;
    fill(&browser, "f-q", "nosuchhost").await;
    submit(&browser, "#fleet-search").await;
    until(
        &browser,
        "the note that nothing matches",
        "location.search === '?q=nosuchhost&state=failed' && \
         document.getElementById('fleet-empty').textContent\
         .startsWith('No host matches these filters (failed, name contains “nosuchhost”)')",
    )
    .await;

    // The finding page: evidence lines and the fix.
    browser
        .goto(&format!("{base}/findings/ex05-transport"))
        .await
        .unwrap();
    let evidence = browser
        .find(Locator::Css("pre.evidence"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        evidence.contains("failed to reach status 'Running'"),
        "{evidence}"
    );
    let steps = browser.find_all(Locator::Css("ol.steps li")).await.unwrap();
    assert_eq!(steps.len(), 3);
    let fix = browser
        .find(Locator::Css(".fix-summary"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(fix.contains("Transport service did not start"), "{fix}");
    assert_eq!(
        js(
            &browser,
            "document.querySelector('.fix-summary code').textContent"
        )
        .await,
        serde_json::json!("Get-Service MSExchangeTransport"),
        "the fix's inline code is code"
    );
    page_basics(&browser, "/findings/{id}").await;

    // Acknowledge the finding through its form.
    fill(&browser, "note-by", "alice").await;
    submit(&browser, "#note-form").await;
    let notes = shown_text(
        &browser,
        "#notes li[data-action=ack]",
        "the acknowledgement is listed after saving",
    )
    .await;
    assert!(notes.starts_with("alice acknowledged"), "{notes}");
    screenshot(&browser, "finding.png").await;

    // The host page: the failed run first with its cause; the run page: primary first, the
    // matched line highlighted.
    browser.goto(&format!("{base}/hosts/EXCH05")).await.unwrap();
    let why = browser
        .find(Locator::Css("#why"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        why.contains("Service MSExchangeTransport failed to start"),
        "{why}"
    );
    // Its timeline: each phase with how long it lasted, and where the run stopped.
    let phases = js(
        &browser,
        "[...document.querySelectorAll('details[data-timeline=\"EXCH05-run-1\"] li[data-phase]')]\
         .map(li => li.dataset.phase + ' | ' + li.querySelector('.dur').textContent)",
    )
    .await;
    assert_eq!(
        phases,
        serde_json::json!([
            "Language Files | 15m 00s",
            "Mailbox role: Client Access service | 25m 00s",
            "Mailbox role: Transport service | 0s · stopped here"
        ])
    );
    assert!(
        shown_text(&browser, "#timeline li.stopped", "the phase it stopped at")
            .await
            .contains("Mailbox role: Transport service"),
    );
    assert!(shown_text(&browser, "#preflight", "the preflight card")
        .await
        .contains("no preflight yet"));
    page_basics(&browser, "/hosts/{host}").await;
    screenshot(&browser, "host.png").await;
    browser
        .execute(
            "document.getElementById('preflight').scrollIntoView(); return null;",
            vec![],
        )
        .await
        .unwrap();
    screenshot(&browser, "host-timeline.png").await;
    browser
        .goto(&format!("{base}/runs/EXCH05-run-1"))
        .await
        .unwrap();
    let hit = browser
        .find(Locator::Css("section.finding pre.evidence .hit"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(hit.starts_with("77"), "{hit}");
    assert!(hit.contains("failed to reach status 'Running'"), "{hit}");
    screenshot(&browser, "run.png").await;

    // A filter applied on the findings page.
    browser.goto(&format!("{base}/findings")).await.unwrap();
    page_basics(&browser, "/findings").await;
    let before = browser
        .find_all(Locator::Css("#triage tbody tr"))
        .await
        .unwrap()
        .len();
    assert_eq!(before, 5, "every finding but info");
    browser
        .find(Locator::Css("#f-min_severity option[value=critical]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    submit(&browser, "#filters").await;
    until(
        &browser,
        "the filtered view",
        "location.search.includes('min_severity=critical')",
    )
    .await;
    let ids = js(
        &browser,
        "[...document.querySelectorAll('#triage tbody tr')].map(r => r.dataset.finding)",
    )
    .await;
    assert_eq!(ids, serde_json::json!(["ex05-transport"]));
    let csv = js(
        &browser,
        "document.getElementById('export-csv').getAttribute('href')",
    )
    .await;
    assert!(
        csv.as_str().unwrap().contains("min_severity=critical"),
        "{csv}"
    );
    screenshot(&browser, "findings.png").await;

    // A window created through its form (and a refused one showing the API's error), then
    // listed, shown on the fleet in local time, and ended.
    browser.goto(&format!("{base}/windows")).await.unwrap();
    page_basics(&browser, "/windows").await;
    // Keyboard: Tab reaches the form's first field, and the focus is visible.
    let mut reached = false;
    for _ in 0..40 {
        let el = browser.active_element().await.unwrap();
        el.send_keys("\u{E004}").await.unwrap();
        if js(&browser, "document.activeElement.id").await == serde_json::json!("name") {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab reaches the window form");
    assert_ne!(
        js(
            &browser,
            "getComputedStyle(document.activeElement).outlineStyle"
        )
        .await,
        serde_json::json!("none"),
        "the focused field shows its focus"
    );
    fill(&browser, "name", "CU15 wave 1").await;
    fill(&browser, "hosts", "EXCH0*").await;
    fill(&browser, "duration", "forever").await;
    browser
        .find(Locator::Id("require_clean_preflight"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    submit(&browser, "#window-form").await;
    until(
        &browser,
        "the form's error",
        "!document.querySelector('#window-form .form-error').hidden",
    )
    .await;
    let err = js(
        &browser,
        "document.querySelector('#window-form .form-error').textContent",
    )
    .await;
    assert!(err.as_str().unwrap().starts_with("duration:"), "{err}");
    fill(&browser, "duration", "2h").await;
    submit(&browser, "#window-form").await;
    let row = shown_text(&browser, "#windows tbody tr", "the new window is listed").await;
    assert!(
        row.contains("CU15 wave 1") && row.contains("active"),
        "{row}"
    );
    assert!(row.contains("requires a clean preflight"), "{row}");
    screenshot(&browser, "windows.png").await;
    browser
        .find(Locator::Css("#windows tbody a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#window-hosts"))
        .await
        .unwrap();
    let in_scope = js(
        &browser,
        "[...document.querySelectorAll('#window-hosts tbody tr')].map(r => r.dataset.host).sort()",
    )
    .await;
    assert_eq!(
        in_scope,
        serde_json::json!(["EXCH01", "EXCH02", "EXCH03", "EXCH05"])
    );
    // The window requires a clean preflight: every host in it but the clean EXCH01 is marked.
    assert_eq!(
        js(
            &browser,
            "[...document.querySelectorAll('#gate li[data-gate=blocked]')].map(l => l.dataset.host).sort()",
        )
        .await,
        serde_json::json!(["EXCH02", "EXCH03", "EXCH05"])
    );
    screenshot(&browser, "window.png").await;
    browser.goto(&format!("{base}/")).await.unwrap();
    let banner = browser
        .find(Locator::Css("#maintenance"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(banner.contains("CU15 wave 1"), "{banner}");
    assert!(
        !banner
            .split(|c: char| !c.is_ascii_digit())
            .any(|d| d.len() >= 12),
        "no raw timestamps: {banner}"
    );
    let shown = js(
        &browser,
        "document.querySelector('#maintenance time.local').textContent",
    )
    .await;
    assert!(
        !shown.as_str().unwrap().contains('T'),
        "local time, not RFC 3339: {shown}"
    );
    let cell = browser
        .find(Locator::Css(
            r#"tr[data-host="EXCH05"] a[href="/windows/"]"#,
        ))
        .await;
    assert!(cell.is_err(), "links name the window id");
    assert!(browser
        .find(Locator::Css(
            r#"tr[data-host="EXCH05"] a[href^="/windows/cu15-wave-1-"]"#
        ))
        .await
        .is_ok());
    browser.goto(&format!("{base}/windows")).await.unwrap();
    browser
        .find(Locator::Css("#windows button[data-post]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &browser,
        "the window to end",
        "document.querySelector('#windows tbody tr').textContent.includes('ended')",
    )
    .await;

    // A silence created through its form, then expired.
    browser.goto(&format!("{base}/silences")).await.unwrap();
    page_basics(&browser, "/silences").await;
    fill(&browser, "comment", "CHG-1234 known Transport issue").await;
    fill(&browser, "created_by", "alice").await;
    fill(&browser, "hosts", "EXCH05").await;
    fill(&browser, "duration", "1h").await;
    submit(&browser, "#silence-form").await;
    let row = shown_text(&browser, "#silences tbody tr", "the new silence is listed").await;
    assert!(row.contains("CHG-1234") && row.contains("active"), "{row}");
    screenshot(&browser, "silences.png").await;
    browser
        .find(Locator::Css("#silences button[data-post]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &browser,
        "the silence to expire",
        "document.querySelector('#silences tbody tr').textContent.includes('expired')",
    )
    .await;

    browser.close().await.unwrap();
    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
    drop(dir);
}
