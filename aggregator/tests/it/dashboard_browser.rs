//! The dashboard in a real headless Chromium (Debian's `chromium` + `chromium-driver`, set up by
//! `.ci/setup-chromium.sh`): findings sent over gRPC appear in the fleet view without a reload,
//! the finding page shows evidence and fix, and screenshots are saved (to `docs/` with
//! `PATCHWATCH_UPDATE_SCREENSHOTS=1`).

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

/// Where screenshots go: `docs/` (committed, linked from the README) when
/// `PATCHWATCH_UPDATE_SCREENSHOTS=1`, else cargo's scratch directory so a test run leaves the
/// work tree clean.
fn screenshot_dir() -> PathBuf {
    let dir = if std::env::var("PATCHWATCH_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("docs")
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_view_updates_live_and_finding_page_shows_the_fix() {
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
    // A marker that a reload would wipe.
    browser
        .execute("window.__noReload = 42; return null;", vec![])
        .await
        .unwrap();

    // New findings and run updates arrive over gRPC while the page is open.
    stream
        .roundtrip(fleet_batch(
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
                        "[11/21/2025 06:01:12.0456] [2] [ERROR] The following error was generated when \"$error.Clear(); Start-SetupService -ServiceName MSExchangeTransport\" was run:",
                        "[11/21/2025 06:01:12.0457] [2] [ERROR] Service 'MSExchangeTransport' failed to reach status 'Running' on this server.",
                    ],
                    "The Transport service did not start; it usually depends on a disabled or stopped service.",
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
        ))
        .await;
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
            r#"#findings tr[data-finding="ex05-transport"]"#,
        ))
        .await
        .expect("the new finding is listed");
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

    tokio::time::sleep(Duration::from_millis(1800)).await; // let the highlight fade
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join("dashboard.png"), &png).unwrap();

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
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join("finding.png"), &png).unwrap();

    browser.close().await.unwrap();
    drop(stream);
    shutdown.cancel();
    agg.wait().await.unwrap();
    drop(dir);
}
