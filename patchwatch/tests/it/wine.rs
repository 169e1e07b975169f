//! The real Windows build (`patchwatch.exe`, x86_64-pc-windows-gnu) under Wine: scan, `up` on
//! the default locations, rotation done from the Windows side, an agent config without
//! `[sources]`, and the service commands.
//!
//! `.ci/setup-wine.sh` prepares a template prefix and `.ci/run` builds the exe; each test runs
//! in its own copy of the prefix (hard links, ~0.1 s; the registry files are real copies), so it
//! has its own C: drive, wineserver and services, and ends them all when it is dropped. The
//! aggregator a test needs runs in-process on the Linux side; the exe reaches it on 127.0.0.1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use patchwatch_pipeline::sample::MsiScenario;
use patchwatch_testkit::env_or_skip;

/// How long the findings of a test may take to arrive (a Wine process starts in ~1 s).
const SETTLE: Duration = Duration::from_secs(45);
/// The Windows service's own log file.
const SERVICE_LOG: &str = r"C:\ProgramData\patchwatch\logs\patchwatch.log";
/// Upper bound for one short Windows command (`cmd /c move`, `scan`, `sc`).
const COMMAND: Duration = Duration::from_secs(60);

/// A private Wine prefix with `C:\patchwatch\patchwatch.exe`.
pub struct Wine {
    tmp: tempfile::TempDir,
    prefix: PathBuf,
    loader: PathBuf,
}

impl Wine {
    /// A copy of the template prefix of `.ci/setup-wine.sh`; `None` (skipped) outside CI.
    pub fn new() -> Option<Self> {
        let exe = env_or_skip("PATCHWATCH_EXE", "setup-wine.sh")?;
        let loader = env_or_skip("PATCHWATCH_WINE", "setup-wine.sh")?;
        let template = env_or_skip("WINEPREFIX", "setup-wine.sh")?;
        assert!(
            Path::new(&exe).is_file(),
            "{exe} is missing: build it with `cargo build --target x86_64-pc-windows-gnu \
             --profile wine -p patchwatch` (as .ci/run does)"
        );
        let tmp = tempfile::Builder::new()
            .prefix("patchwatch-wine-")
            .tempdir()
            .unwrap();
        let prefix = tmp.path().join("prefix");
        let ok = Command::new("cp")
            .arg("-al")
            .arg(&template)
            .arg(&prefix)
            .status()
            .expect("running cp");
        assert!(ok.success(), "copying the Wine prefix {template} failed");
        // wineserver rewrites the registry files: they must not be links into the template.
        for reg in ["system.reg", "user.reg", "userdef.reg"] {
            let to = prefix.join(reg);
            let _ = std::fs::remove_file(&to);
            std::fs::copy(Path::new(&template).join(reg), &to).unwrap();
        }
        let dir = prefix.join("drive_c/patchwatch");
        std::fs::create_dir_all(&dir).unwrap();
        let to = dir.join("patchwatch.exe");
        if std::fs::hard_link(&exe, &to).is_err() {
            std::fs::copy(&exe, &to).unwrap();
        }
        Some(Self {
            tmp,
            prefix,
            loader: PathBuf::from(loader),
        })
    }

    /// A Linux-side scratch folder of this test (outside the prefix).
    pub fn scratch(&self) -> PathBuf {
        let p = self.tmp.path().join("scratch");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// `wine64 program args...` in this prefix.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(&self.loader);
        c.arg(program)
            .args(args)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env("NO_COLOR", "1")
            .env("PATCHWATCH_LOG", "info")
            .stdin(Stdio::null());
        c
    }

    /// `patchwatch.exe args...`.
    pub fn patchwatch(&self, args: &[&str]) -> Command {
        self.command(r"C:\patchwatch\patchwatch.exe", args)
    }

    /// Runs `c` to completion within [`COMMAND`]; panics (killing it) when it takes longer.
    pub fn run(&self, mut c: Command) -> Output {
        let what = format!("{c:?}");
        // Files of their own: the first command of a prefix starts Wine's services.exe, whose
        // services (the agent) keep writing to that command's stderr.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = self.tmp.path().join(format!("out-{n}.txt"));
        let err = self.tmp.path().join(format!("err-{n}.txt"));
        c.stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        let mut child = c.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
        let deadline = Instant::now() + COMMAND;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{what} did not finish within {COMMAND:?}; stderr:\n{}",
                    log_tail(&err)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            status,
            stdout: std::fs::read(&out).unwrap(),
            stderr: std::fs::read(&err).unwrap(),
        }
    }

    /// [`run`](Self::run) that must succeed; its stdout as text.
    pub fn run_ok(&self, c: Command) -> String {
        let what = format!("{c:?}");
        let o = self.run(c);
        assert!(
            o.status.success(),
            "{what}: {}\nstdout:\n{}\nstderr:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).replace('\r', "")
    }

    /// `cmd /c line` from the Windows side, which must succeed.
    pub fn cmd(&self, line: &str) -> String {
        self.run_ok(self.command("cmd", &["/c", line]))
    }

    /// Starts a long-running `patchwatch.exe args...`, stdout and stderr appended to `log`.
    pub fn spawn(&self, args: &[&str], log: &Path) -> Child {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        self.patchwatch(args)
            .env("RUST_LOG", "info")
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("spawning patchwatch.exe under wine")
    }

    /// The Linux path of a `C:\...` path in this prefix.
    pub fn unix(&self, win: &str) -> PathBuf {
        let rest = win
            .strip_prefix("C:\\")
            .or_else(|| win.strip_prefix("c:\\"))
            .unwrap_or_else(|| panic!("{win} is not on C:"));
        // Windows names are case-insensitive: `%WINDIR%\Temp` is drive_c/windows/temp here.
        let mut p = self.prefix.join("drive_c");
        for part in rest.split('\\').filter(|s| !s.is_empty()) {
            let existing = std::fs::read_dir(&p).ok().and_then(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name())
                    .find(|n| n.to_string_lossy().eq_ignore_ascii_case(part))
            });
            p.push(existing.unwrap_or_else(|| part.into()));
        }
        p
    }

    /// The value of a Windows environment variable as the exe sees it (`%TEMP%`, `%WINDIR%`).
    pub fn var(&self, name: &str) -> String {
        self.cmd(&format!("echo %{name}%")).trim().to_string()
    }

    /// An existing folder at the Windows path `win`; returns its Linux path.
    pub fn mkdir(&self, win: &str) -> PathBuf {
        let p = self.unix(win);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

impl Wine {
    /// Ends every process of the prefix and boots it again (`wineboot`): Wine's services.exe
    /// then starts the services marked for automatic start, as Windows does at boot.
    pub fn reboot(&self) {
        let server = self.loader.with_file_name("wineserver");
        let killed = Command::new(&server)
            .arg("-k")
            .env("WINEPREFIX", &self.prefix)
            .status()
            .expect("wineserver -k");
        assert!(
            killed.success() || killed.code() == Some(1),
            "wineserver -k: {killed}"
        );
        let _ = Command::new(&server)
            .arg("-w")
            .env("WINEPREFIX", &self.prefix)
            .status();
        self.run_ok(self.command("wineboot", &[]));
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the commands and the services said, for the failure at hand.
            let mut logs: Vec<_> = std::fs::read_dir(self.tmp.path())
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "txt"))
                .collect();
            logs.sort();
            logs.push(self.unix(SERVICE_LOG));
            for l in logs {
                let tail = log_tail(&l);
                if !tail.trim().is_empty() {
                    eprintln!("--- {}:\n{tail}", l.display());
                }
            }
        }
        // Ends every process of this prefix (agents, services, their wineserver).
        let server = self.loader.with_file_name("wineserver");
        let _ = Command::new(server)
            .arg("-k")
            .env("WINEPREFIX", &self.prefix)
            .status();
    }
}

/// Blocking work inside an async test, without starving the in-process aggregator.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// `scan --format json` output with the file path left out of each object (it is the one
/// field that differs between `C:\corpus\x.log` and `/tmp/.../drive_c/corpus/x.log`).
fn without_paths(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"));
            if let Some(o) = v.as_object_mut() {
                o.remove("path");
            }
            v
        })
        .collect()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn scan_matches_the_linux_build() {
    let Some(w) = Wine::new() else { return };
    let Some(corpus) = env_or_skip("PATCHWATCH_CORPUS", "run") else {
        return;
    };
    let root = w.mkdir(r"C:\corpus");
    for sub in ["exchange", "msi", "seed"] {
        let from = Path::new(&corpus).join(sub);
        if from.is_dir() {
            copy_tree(&from, &root.join(sub));
        }
    }
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipeline/tests/data/exchange"),
        &root.join("committed"),
    );
    let args = [
        "scan",
        "--format",
        "json",
        "--host",
        "EX01",
        "--utc-offset",
        "60",
    ];
    let windows = w.run_ok(w.patchwatch(&[&args[..], &[r"C:\corpus"]].concat()));
    let linux = w.run_ok({
        let mut c = Command::new(env!("CARGO_BIN_EXE_patchwatch"));
        c.args(args).arg(&root);
        c
    });
    let (win, lin) = (without_paths(&windows), without_paths(&linux));
    let count = |v: &[serde_json::Value], t: &str| v.iter().filter(|o| o["type"] == t).count();
    assert!(
        count(&lin, "run") >= 20 && count(&lin, "finding") >= 40,
        "the corpus should give many runs and findings: {} runs, {} findings",
        count(&lin, "run"),
        count(&lin, "finding")
    );
    assert_eq!(win.len(), lin.len(), "objects: Windows vs Linux");
    for (i, (a, b)) in win.iter().zip(&lin).enumerate() {
        assert_eq!(a, b, "object {i} differs (Windows left, Linux right)");
    }
    // Paths are reported as Windows writes them.
    let first = windows.lines().next().unwrap_or_default();
    assert!(
        first.contains(r#""path":"C:\\corpus\\"#),
        "Windows path form expected: {first}"
    );

    // A reader that stops early (`| more`, `| Select-Object -First 1`) ends the exe quietly:
    // 73 KB of completions overflow the pipe, so the exe writes into a closed pipe.
    let mut child = w
        .patchwatch(&["completions", "zsh"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 64];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut head).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "closed pipe: {stderr}");
    assert!(!stderr.contains("error"), "closed pipe: {stderr}");
}

/// Writes `bytes` to `path` in bursts of `burst` bytes, like msiexec and Exchange setup.
async fn write_in_bursts(path: &Path, bytes: &[u8], burst: usize) {
    for chunk in bytes.chunks(burst) {
        append(path, chunk);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

/// Every finding id the aggregator at `http` stored, with its host and source path.
async fn api_findings(client: &reqwest::Client, http: u16) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<i64> = None;
    loop {
        let mut url = format!("http://127.0.0.1:{http}/api/v1/findings?limit=500");
        if let Some(c) = cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let Ok(resp) = client.get(&url).send().await else {
            return out;
        };
        let Ok(page) = resp.json::<serde_json::Value>().await else {
            return out;
        };
        for f in page["items"].as_array().into_iter().flatten() {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            out.insert(s("id"), (s("host"), s("source_path")));
        }
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_without_watch_tails_the_default_locations() {
    let Some(w) = Wine::new() else { return };
    let (http, grpc) = (
        patchwatch_testkit::free_port(),
        patchwatch_testkit::free_port(),
    );
    let exchange = w.mkdir(r"C:\ExchangeSetupLogs");
    let windir_temp = w.unix(&format!(r"{}\Temp", w.var("WINDIR")));
    let user_temp = w.unix(&w.var("TEMP"));
    let log = w.scratch().join("up.log");
    let mut up = w.spawn(
        &[
            "up",
            "--data-dir",
            r"C:\pwdata",
            "--http",
            &format!("127.0.0.1:{http}"),
            "--grpc",
            &format!("127.0.0.1:{grpc}"),
        ],
        &log,
    );
    patchwatch_testkit::eventually(SETTLE, "`up` to start", async || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Ctrl-C stops")
            .then_some(())
    })
    .await;
    let said = std::fs::read_to_string(&log).unwrap();
    for place in [
        r"%SystemDrive%\ExchangeSetupLogs\*.log",
        r"%WINDIR%\Temp\MSI*.LOG",
        r"%TEMP%\MSI*.LOG",
    ] {
        assert!(said.contains(place), "`up` should watch {place}:\n{said}");
    }

    let files = [
        exchange.join("ExchangeSetup.log"),
        windir_temp.join("MSI3f2a1.LOG"),
        user_temp.join("MSIa91c7.LOG"),
    ];
    let mut exchange_bytes = exchange_sample(SAMPLES[0]);
    exchange_bytes.extend(exchange_sample(SAMPLES[1]));
    append_lines(&files[0], &exchange_bytes).await;
    // UTF-16LE with BOM in bursts of ~20 lines, as msiexec writes; odd burst sizes cut code units.
    write_in_bursts(
        &files[1],
        &msi_log(MsiScenario::ServiceControlExecutionPolicy, 2),
        2049,
    )
    .await;
    write_in_bursts(&files[2], &msi_log(MsiScenario::FileInUse, 1), 777).await;

    let client = reqwest::Client::new();
    let host = patchwatch_testkit::eventually(SETTLE, "a first finding", async || {
        api_findings(&client, http)
            .await
            .into_values()
            .next()
            .map(|(host, _)| host)
    })
    .await;
    let expected = expected_files(&host, &files);
    assert!(expected.len() >= 6, "the inputs should produce findings");
    let deadline = Instant::now() + SETTLE;
    loop {
        let stored = api_findings(&client, http).await;
        if stored.keys().eq(expected.keys()) {
            // Paths as Windows writes them, not `C:/ExchangeSetupLogs\ExchangeSetup.log`.
            for (_, path) in stored.values() {
                assert!(
                    path.starts_with(r"C:\") && !path.contains('/'),
                    "source path in Windows form: {path}"
                );
            }
            break;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = expected
                .iter()
                .filter(|(k, _)| !stored.contains_key(*k))
                .collect();
            let extra: Vec<_> = stored
                .keys()
                .filter(|k| !expected.contains_key(*k))
                .collect();
            let _ = up.kill();
            let _ = up.wait();
            panic!(
                "stored {} of {} findings\nmissing: {missing:#?}\nunexpected: {extra:?}\n`up` said:\n{}",
                stored.len(),
                expected.len(),
                log_tail(&log)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = up.kill();
    let _ = up.wait();
}

/// An agent config for the Windows side: `sources` is a `[sources]` table or empty.
pub(crate) fn windows_agent_toml(host: &str, endpoint: &str, sources: &str) -> String {
    format!(
        "host_name = \"{host}\"\ndata_dir = 'C:\\pwdata'\n{sources}\n[aggregator]\n\
         endpoint = \"{endpoint}\"\nconnect_timeout = \"2s\"\ninitial_backoff = \"50ms\"\n\
         max_backoff = \"300ms\"\n\n[batch]\nlinger = \"20ms\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_recreation_from_the_windows_side() {
    let Some(w) = Wine::new() else { return };
    let host = "WINE-ROTATE";
    let agg = TestAggregator::start(&w.scratch().join("aggregator")).await;
    let dir = w.mkdir(r"C:\ExchangeSetupLogs");
    let sources = "[sources]\ninclude = ['C:\\ExchangeSetupLogs\\*.log']\n\
                   poll_interval = \"50ms\"\nrescan_interval = \"200ms\"\n";
    std::fs::write(
        w.unix(r"C:\pwdata.toml"),
        windows_agent_toml(host, &agg.endpoint(), sources),
    )
    .unwrap();
    let log = w.scratch().join("agent.log");
    let mut agent = w.spawn(&["agent", "--config", r"C:\pwdata.toml"], &log);
    let live = dir.join("ExchangeSetup.log");

    // Generation 1: the agent has it open (a first finding stored), then the rest is written
    // and at once the file is renamed away from the watched name: the tail must drain it.
    let gen1 = exchange_sample(SAMPLES[0]);
    let half = gen1.len() / 2;
    append_lines(&live, &gen1[..half]).await;
    patchwatch_testkit::eventually(SETTLE, "a first finding of generation 1", async || {
        (!agg.stored(host).await.is_empty()).then_some(())
    })
    .await;
    append(&live, &gen1[half..]);
    blocking(|| {
        w.cmd(
            r"move C:\ExchangeSetupLogs\ExchangeSetup.log C:\ExchangeSetupLogs\ExchangeSetup.log.1",
        )
    });
    // Generation 2 under the old name.
    append_lines(&live, &exchange_sample(SAMPLES[1])).await;
    let mut expected = expected_files(host, &[dir.join("ExchangeSetup.log.1"), live.clone()]);
    agg.assert_settles(host, &expected, SETTLE).await;

    // Deleted while held, then recreated with other content (generation 3).
    blocking(|| w.cmd(r"del C:\ExchangeSetupLogs\ExchangeSetup.log"));
    assert!(!live.exists(), "del should have removed the file");
    append_lines(&live, &exchange_sample(SAMPLES[2])).await;
    expected.extend(expected_files(host, std::slice::from_ref(&live)));
    agg.assert_settles(host, &expected, SETTLE).await;
    let _ = agent.kill();
    let _ = agent.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_config_without_sources_watches_the_defaults() {
    let Some(w) = Wine::new() else { return };
    let host = "WINE-DEFAULTS";
    let agg = TestAggregator::start(&w.scratch().join("aggregator")).await;
    std::fs::write(
        w.unix(r"C:\agent.toml"),
        windows_agent_toml(host, &agg.endpoint(), ""),
    )
    .unwrap();
    let check =
        blocking(|| w.run_ok(w.patchwatch(&["agent", "--check", "--config", r"C:\agent.toml"])));
    assert!(
        check.contains("ExchangeSetupLogs") && check.contains("configuration OK"),
        "--check should list the default folders:\n{check}"
    );
    let exchange = w.mkdir(r"C:\ExchangeSetupLogs");
    let user_temp = w.unix(&w.var("TEMP"));
    let log = w.scratch().join("agent.log");
    let mut agent = w.spawn(&["agent", "--config", r"C:\agent.toml"], &log);
    let files = [
        exchange.join("ExchangeSetup.log"),
        user_temp.join("MSI77e01.LOG"),
    ];
    append_lines(&files[0], &exchange_sample(SAMPLES[3])).await;
    write_in_bursts(&files[1], &msi_log(MsiScenario::FileInUse, 1), 1500).await;
    let expected = expected_files(host, &files);
    agg.assert_settles(host, &expected, SETTLE).await;
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
fn service_is_windows_only_elsewhere() {
    let o = Command::new(env!("CARGO_BIN_EXE_patchwatch"))
        .args(["service", "status"])
        .output()
        .unwrap();
    if cfg!(windows) {
        return;
    }
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Windows-only"),
        "{o:?}"
    );
}

/// `patchwatch.exe service ...` in `w`; its exit code and stdout.
fn service(w: &Wine, args: &[&str]) -> (i32, String) {
    let o = w.run(w.patchwatch(&[&["service"], args].concat()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

fn service_ok(w: &Wine, args: &[&str]) -> String {
    let (code, text) = service(w, args);
    assert_eq!(code, 0, "service {args:?}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_install_start_kill_restart_uninstall() {
    let Some(w) = Wine::new() else { return };
    let host = "WINE-SVC";
    let agg = TestAggregator::start(&w.scratch().join("aggregator")).await;
    let dir = w.mkdir(r"C:\ExchangeSetupLogs");
    w.mkdir(r"C:\ProgramData\patchwatch");
    let sources = "[sources]\ninclude = ['C:\\ExchangeSetupLogs\\*.log']\n\
                   poll_interval = \"50ms\"\nrescan_interval = \"200ms\"\n";
    let toml = windows_agent_toml(host, &agg.endpoint(), sources).replace(
        r"data_dir = 'C:\pwdata'",
        r"data_dir = 'C:\ProgramData\patchwatch'",
    );
    std::fs::write(w.unix(r"C:\ProgramData\patchwatch\agent.toml"), toml).unwrap();
    let config = r"C:\ProgramData\patchwatch\agent.toml";

    blocking(|| {
        assert_eq!(service(&w, &["status"]).0, 4, "not installed yet");
        let first = service_ok(&w, &["install", "--config", config]);
        assert!(first.contains("installed"), "{first}");
        let again = service_ok(&w, &["install", "--config", config]);
        assert!(again.contains("updated"), "install twice updates: {again}");
        let image =
            w.cmd(r"reg query HKLM\System\CurrentControlSet\Services\patchwatch /v ImagePath");
        assert!(
            image.contains(r"agent --config") && image.contains(config),
            "the config path is in the service's command line:\n{image}"
        );
        let source = w.cmd(
            r"reg query HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\patchwatch /v EventMessageFile",
        );
        assert!(
            source.contains("EventLogMessages.dll"),
            "install registers the Event Log source:\n{source}"
        );
        service_ok(&w, &["start"]);
        service_ok(&w, &["start"]);
        assert_eq!(service(&w, &["status"]).0, 0);
        // No console: the service logs to a file under its data directory.
        patchwatch_testkit::eventually_blocking(COMMAND, "the service's log file", || {
            let log = std::fs::read_to_string(w.unix(SERVICE_LOG)).unwrap_or_default();
            log.contains("Agent started.").then_some(())
        });
    });

    let first = dir.join("ExchangeSetup.log");
    append_lines(&first, &exchange_sample(SAMPLES[0])).await;
    let mut files = vec![first.clone()];
    agg.assert_settles(host, &expected_files(host, &files), SETTLE)
        .await;

    // Killed (a crash). Windows' SCM restarts it after 10 s (the recovery actions); Wine's
    // does not notice the death (it keeps reporting it running), so the test restarts the
    // machine instead: every process of the prefix ends, and Wine's services.exe starts the
    // automatic-start service at boot. Files written meanwhile are read.
    blocking(|| {
        w.cmd("taskkill /f /im patchwatch.exe");
    });
    let second = dir.join("ExchangeSetup_2.log");
    append_lines(&second, &exchange_sample(SAMPLES[1])).await;
    files.push(second);
    blocking(|| {
        w.reboot();
        patchwatch_testkit::eventually_blocking(COMMAND, "the service to start at boot", || {
            (service(&w, &["status"]).0 == 0).then_some(())
        });
    });
    agg.assert_settles(host, &expected_files(host, &files), SETTLE)
        .await;

    // Stopped cleanly, a file dropped meanwhile, started again.
    blocking(|| service_ok(&w, &["stop"]));
    let third = dir.join("ExchangeSetup_3.log");
    append_lines(&third, &exchange_sample(SAMPLES[2])).await;
    files.push(third);
    // The stopped process may still be exiting, and Wine's SCM then hands the start to it
    // (Windows starts a new process): give it a moment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    blocking(|| service_ok(&w, &["start"]));
    agg.assert_settles(host, &expected_files(host, &files), SETTLE)
        .await;

    // Reload (paramchange): a second folder is watched without a restart. A broken
    // configuration is refused before it is sent, and the running one stays.
    let other = w.mkdir(r"C:\OtherLogs");
    let config_path = w.unix(config);
    let good = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(&config_path, "[sources]\nno_such_key = 1\n").unwrap();
    blocking(|| {
        let (code, text) = service(&w, &["reload", "--config", config]);
        assert_ne!(code, 0, "{text}");
        assert!(
            text.contains("not reloaded") && text.contains("no_such_key"),
            "{text}"
        );
    });
    let both = good.replace(
        "include = ['C:\\ExchangeSetupLogs\\*.log']",
        "include = ['C:\\ExchangeSetupLogs\\*.log', 'C:\\OtherLogs\\*.log']",
    );
    assert_ne!(both, good, "the test edits the include list");
    std::fs::write(&config_path, &both).unwrap();
    blocking(|| {
        // Wine's SCM may hand a control right after a stop and start to the process that is
        // still exiting, where it is lost (Windows starts a new process and routes to it):
        // ask again, a few times, as an admin would.
        let reloaded = || {
            std::fs::read_to_string(w.unix(SERVICE_LOG))
                .unwrap_or_default()
                .contains("Configuration and rules reloaded.")
        };
        for _ in 0..4 {
            service_ok(&w, &["reload", "--config", config]);
            let asked = std::time::Instant::now();
            while !reloaded() && asked.elapsed() < Duration::from_secs(15) {
                std::thread::sleep(Duration::from_millis(200));
            }
            if reloaded() {
                break;
            }
        }
        assert!(reloaded(), "the service never logged the reload");
    });
    let fourth = other.join("ExchangeSetup.log");
    append_lines(&fourth, &exchange_sample(SAMPLES[3])).await;
    files.push(fourth);
    agg.assert_settles(host, &expected_files(host, &files), SETTLE)
        .await;

    // A configuration broken while the service was stopped: the start fails at once, says
    // why, and the log file has the reason.
    std::fs::write(&config_path, "[sources]\nno_such_key = 1\n").unwrap();
    blocking(|| {
        service_ok(&w, &["stop"]);
        std::thread::sleep(Duration::from_secs(3));
        let (code, text) = service(&w, &["start"]);
        assert_ne!(code, 0, "{text}");
        assert!(text.contains("configuration is invalid"), "{text}");
        let log = std::fs::read_to_string(w.unix(SERVICE_LOG)).unwrap_or_default();
        assert!(
            log.contains("The configuration is invalid") && log.contains("no_such_key"),
            "{log}"
        );
    });
    std::fs::write(&config_path, &both).unwrap();

    blocking(|| {
        service_ok(&w, &["uninstall"]);
        assert_eq!(service(&w, &["status"]).0, 4, "uninstalled");
        let again = service_ok(&w, &["uninstall"]);
        assert!(again.contains("not installed"), "{again}");
        assert!(
            w.unix(r"C:\ProgramData\patchwatch\agent.toml").exists(),
            "uninstall keeps the configuration"
        );
    });
}

/// Builds the MSI of `deploy/windows/patchwatch.wxs` around the test exe with `wixl`, as
/// `deploy/build-release.sh` does, into `C:\pkg\patchwatch-<version>.msi`.
fn build_msi(w: &Wine, version: &str) -> String {
    let exe = std::env::var("PATCHWATCH_EXE").expect("set when a Wine exists");
    let wxs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/windows/patchwatch.wxs");
    let name = format!("patchwatch-{version}.msi");
    let out = w.mkdir(r"C:\pkg").join(&name);
    let exe = Path::new(&exe);
    // wixl resolves File/@Source against the working directory and refuses absolute paths.
    let o = Command::new("wixl")
        .current_dir(exe.parent().unwrap())
        .args(["-a", "x64", "-D"])
        .arg(format!("Version={version}"))
        .arg("-D")
        .arg(format!(
            "Exe={}",
            exe.file_name().unwrap().to_string_lossy()
        ))
        .arg("-o")
        .arg(&out)
        .arg(&wxs)
        .output()
        .expect("wixl (Debian package wixl; .ci/setup-wine.sh installs it)");
    assert!(o.status.success(), "wixl: {o:?}");
    format!(r"C:\pkg\{name}")
}

/// msiexec's 1603 as Wine hands it to Linux (exit statuses are 8 bits there).
const ERROR_INSTALL_FAILURE: i32 = 1603 & 0xff;

/// `msiexec args... /qn /l*v C:\pkg\<log>`: its exit code (low 8 bits).
fn msiexec(w: &Wine, args: &[&str], log: &str) -> i32 {
    let log = format!(r"C:\pkg\{log}");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["/qn", "/l*v", &log]);
    w.run(w.command("msiexec", &all))
        .status
        .code()
        .unwrap_or(-1)
}

/// `patchwatch scan --format json` of an installer log: (outcomes of its runs, rule ids).
fn scan_log(w: &Wine, log: &str) -> (Vec<String>, Vec<String>) {
    let out = w.run_ok(w.patchwatch(&[
        "scan",
        "--format",
        "json",
        "--all",
        &format!(r"C:\pkg\{log}"),
    ]));
    let mut outcomes = vec![];
    let mut rules = vec![];
    for v in without_paths(&out) {
        match v["type"].as_str() {
            Some("run") => outcomes.push(v["outcome"].as_str().unwrap_or_default().to_string()),
            Some("finding") => rules.push(v["rule_id"].as_str().unwrap_or_default().to_string()),
            _ => {}
        }
    }
    (outcomes, rules)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msi_installs_upgrades_and_uninstalls_the_service() {
    let Some(w) = Wine::new() else { return };
    let host = "WINE-MSI";
    let agg = TestAggregator::start(&w.scratch().join("aggregator")).await;
    let dir = w.mkdir(r"C:\ExchangeSetupLogs");
    let (v1, v2) = blocking(|| (build_msi(&w, "0.1.0"), build_msi(&w, "0.1.1")));
    let program_files_exe = w.unix(r"C:\Program Files\patchwatch\patchwatch.exe");
    let config = w.unix(r"C:\ProgramData\patchwatch\agent.toml");

    // A failing install: no AGGREGATOR on a first install fails the launch condition, and
    // nothing is installed.
    blocking(|| {
        let code = msiexec(&w, &["/i", &v1], "failed.log");
        assert_eq!(
            code, ERROR_INSTALL_FAILURE,
            "a first install without AGGREGATOR fails"
        );
        assert!(!program_files_exe.exists(), "nothing installed");
    });

    blocking(|| {
        let props = [
            "/i",
            &v1,
            &format!("AGGREGATOR={}", agg.endpoint()),
            &format!("HOST_NAME={host}"),
            r"SOURCES=C:\ExchangeSetupLogs\*.log",
        ];
        let code = msiexec(&w, &props, "install.log");
        assert_eq!(
            code,
            0,
            "install: {}",
            log_tail(&w.unix(r"C:\pkg\install.log"))
        );
        assert!(program_files_exe.is_file());
        let text = std::fs::read_to_string(&config).expect("agent.toml written");
        assert!(
            text.contains(host) && text.contains(&agg.endpoint()),
            "{text}"
        );
        assert_eq!(service(&w, &["status"]).0, 0, "the MSI starts the service");
    });
    let first = dir.join("ExchangeSetup.log");
    append_lines(&first, &exchange_sample(SAMPLES[4])).await;
    let mut files = vec![first];
    agg.assert_settles(host, &expected_files(host, &files), SETTLE)
        .await;

    // Major upgrade without properties: the config is kept, the service runs again.
    blocking(|| {
        let code = msiexec(&w, &["/i", &v2], "upgrade.log");
        assert_eq!(
            code,
            0,
            "upgrade: {}",
            log_tail(&w.unix(r"C:\pkg\upgrade.log"))
        );
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(text.contains(host), "upgrade keeps agent.toml: {text}");
        assert_eq!(service(&w, &["status"]).0, 0, "running after the upgrade");
    });
    let second = dir.join("ExchangeSetup_2.log");
    append_lines(&second, &exchange_sample(SAMPLES[5])).await;
    files.push(second);
    agg.assert_settles(host, &expected_files(host, &files), SETTLE)
        .await;

    blocking(|| {
        let code = msiexec(&w, &["/x", &v2], "uninstall.log");
        assert_eq!(
            code,
            0,
            "uninstall: {}",
            log_tail(&w.unix(r"C:\pkg\uninstall.log"))
        );
        assert!(!program_files_exe.exists(), "the exe is removed");
        assert_eq!(service(&w, &["status"]).0, 4, "the service is removed");
        assert!(config.is_file(), "ProgramData keeps agent.toml");
        assert!(
            w.unix(r"C:\ProgramData\patchwatch\spool").is_dir(),
            "ProgramData keeps the spool"
        );
    });
}

/// Wine's msiexec writes a shorter log than Windows' (a message record first, each session
/// twice, no status line) and ends a failed launch condition with `Return value 0` without its
/// message: the log is read as a Windows Installer log, its top-level action's end gives the
/// outcome, and a failed install is never reported as a success.
#[test]
fn msi_logs_of_wine_are_read_as_installer_logs() {
    let Some(w) = Wine::new() else { return };
    let msi = build_msi(&w, "0.1.0");
    let code = msiexec(&w, &["/i", &msi], "failed.log");
    assert_eq!(code, ERROR_INSTALL_FAILURE);
    let (outcomes, rules) = scan_log(&w, "failed.log");
    assert!(!outcomes.is_empty(), "runs: {outcomes:?}");
    assert!(
        !outcomes.iter().any(|o| o == "succeeded"),
        "{outcomes:?} {rules:?}"
    );
    let code = msiexec(
        &w,
        &["/i", &msi, "AGGREGATOR=http://127.0.0.1:9"],
        "install.log",
    );
    assert_eq!(code, 0);
    let (outcomes, rules) = scan_log(&w, "install.log");
    assert!(
        outcomes.iter().any(|o| o == "succeeded"),
        "{outcomes:?} {rules:?}"
    );
    assert!(
        !outcomes.iter().any(|o| o == "failed"),
        "{outcomes:?} {rules:?}"
    );
}
