//! Whole commands as users run them: `patchwatch scan FILE` (text and `--format json`, the
//! whole process: start-up, catalog build, read, scan, report) beside ripgrep's
//! `rg -c -F -i -f <the catalog's literals> FILE` on the same file in the same run, with the
//! peak RSS of each process, and a scaling check (time per byte at growing sizes).
//!
//! ```sh
//! cargo build --release -p patchwatch --bin patchwatch
//! PATCHWATCH_CORPUS=../shared/corpus cargo run --release -p patchwatch-benches --bin commands -- \
//!     [--size-mib 256] [--big-mib 2048] [--scaling 64,256,1024] [--runs 3] [--dir bench-data]
//! ```
//!
//! Rows: the corpus's real ExchangeSetup.log samples and real Windows Installer logs (UTF-16LE)
//! repeated to `--size-mib`; the generated realistic corpora; the failure-dense one; one large
//! ExchangeSetup.log holding thousands of runs (`--big-mib`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use patchwatch_benches::{arg, utf16le_corpus, utf8_corpus, utf8_realistic_corpus, UTF16LE_BOM};

/// What one process run cost.
#[derive(Clone, Copy, Debug)]
struct Cost {
    wall: Duration,
    /// Peak resident set, KiB (`ru_maxrss` of the child).
    max_rss_kib: i64,
}

/// Runs `cmd` with stdout discarded (as a pipe into a consumer would cost) and returns its
/// wall time and peak RSS. Status 0 and 1 (rg: no match; patchwatch: `--fail-on`) are fine.
fn run(cmd: &mut Command) -> Result<Cost> {
    // The child's own peak: run it under GNU time, whose fresh fork starts from time's small
    // footprint. `wait4` on a direct child reports this bench's high-water mark (gigabytes of
    // corpus), which Linux carries across fork and exec.
    let rss_file = std::env::temp_dir().join(format!("pw-commands-rss-{}", std::process::id()));
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M", "-o"])
        .arg(&rss_file)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let cmd = &mut timed;
    let t = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let pid = libc::pid_t::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: pid is our child and status points to a live local; no rusage is asked for.
    let r = unsafe { libc::wait4(pid, &mut status, 0, std::ptr::null_mut()) };
    let wall = t.elapsed();
    if r != pid {
        bail!("wait4 failed for {cmd:?}");
    }
    let code = libc::WEXITSTATUS(status);
    if !libc::WIFEXITED(status) || code > 1 {
        bail!("{cmd:?} exited with status {code}");
    }
    let max_rss_kib = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
        .with_context(|| "GNU time (Debian package `time`) did not report the peak RSS")?;
    let _ = std::fs::remove_file(&rss_file);
    Ok(Cost { wall, max_rss_kib })
}

fn best(runs: usize, mut f: impl FnMut() -> Result<Cost>) -> Result<Cost> {
    let mut best = f()?;
    for _ in 1..runs {
        let c = f()?;
        if c.wall < best.wall {
            best = Cost {
                wall: c.wall,
                max_rss_kib: best.max_rss_kib.max(c.max_rss_kib),
            };
        }
    }
    Ok(best)
}

/// Files of `dir` with extension `ext`, sorted, as one stream: UTF-16LE files lose their BOM
/// (one is written at the start of the corpus), UTF-8 ones are taken as they are.
fn concat_dir(dir: &Path, ext: &str, utf16: bool) -> Result<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let b = std::fs::read(&p)?;
        if utf16 {
            match b.strip_prefix(&UTF16LE_BOM) {
                Some(body) => out.extend_from_slice(body),
                None => continue, // not a UTF-16LE log (an excerpt in UTF-8)
            }
        } else {
            out.extend_from_slice(&b);
        }
    }
    Ok(out)
}

/// `unit` repeated to at least `bytes`, behind `prefix`.
fn repeat(prefix: &[u8], unit: &[u8], bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + unit.len());
    out.extend_from_slice(prefix);
    while out.len() < bytes {
        out.extend_from_slice(unit);
    }
    out
}

struct Bench {
    exe: PathBuf,
    patterns: PathBuf,
    runs: usize,
}

impl Bench {
    fn scan(&self, path: &Path, json: bool) -> Result<Cost> {
        best(self.runs, || {
            let mut c = Command::new(&self.exe);
            c.arg("scan").arg("--utc-offset").arg("0");
            if json {
                c.args(["--format", "json"]);
            }
            run(c.arg(path))
        })
    }

    fn rg(&self, path: &Path) -> Result<Cost> {
        best(self.runs, || {
            run(Command::new("rg")
                .args(["--no-config", "-c", "-F", "-i", "-f"])
                .arg(&self.patterns)
                .arg(path))
        })
    }

    /// One table row; returns patchwatch's JSON time.
    fn row(&self, name: &str, path: &Path, bytes: usize) -> Result<Duration> {
        let _ = std::fs::read(path)?; // page cache warm for both tools alike
        let text = self.scan(path, false)?;
        let json = self.scan(path, true)?;
        let rg = self.rg(path)?;
        let gbs = |c: Cost| bytes as f64 / c.wall.as_secs_f64() / 1e9;
        println!(
            "| {name} | {} MiB | {:.2} GB/s | {:.2} GB/s | {:.2} GB/s | {:.2}× | {:.1} / {:.1} MiB |",
            bytes >> 20,
            gbs(text),
            gbs(json),
            gbs(rg),
            rg.wall.as_secs_f64() / json.wall.as_secs_f64(),
            json.max_rss_kib as f64 / 1024.0,
            rg.max_rss_kib as f64 / 1024.0,
        );
        Ok(json.wall)
    }
}

fn main() -> Result<()> {
    let size: usize = arg("--size-mib", "256").parse::<usize>()? << 20;
    let big: usize = arg("--big-mib", "2048").parse::<usize>()? << 20;
    let scaling: Vec<usize> = arg("--scaling", "64,256,1024")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.trim().parse::<usize>().map(|m| m << 20))
        .collect::<Result<_, _>>()?;
    let dir = PathBuf::from(arg("--dir", "bench-data"));
    std::fs::create_dir_all(&dir)?;
    let exe = PathBuf::from(arg("--exe", "target/release/patchwatch"));
    if !exe.exists() {
        bail!(
            "{} not found: cargo build --release -p patchwatch (or --exe PATH)",
            exe.display()
        );
    }
    let catalog = patchwatch_pipeline::Catalog::builtin();
    let patterns = dir.join("patterns.txt");
    std::fs::write(&patterns, catalog.literals().join("\n") + "\n")?;
    let b = Bench {
        exe,
        patterns,
        runs: arg("--runs", "3").parse()?,
    };
    println!(
        "`patchwatch scan` (text, `--format json`) and `rg -c -F -i -f` ({} literals), best of {}, peak RSS of the JSON scan and of rg",
        catalog.literals().len(),
        b.runs
    );
    println!();
    println!("| corpus | size | scan (text) | scan --format json | rg | json vs rg | peak RSS (scan / rg) |");
    println!("|---|---|---|---|---|---|---|");

    let corpus = std::env::var_os("PATCHWATCH_CORPUS").map(PathBuf::from);
    let mut rows: Vec<(&str, &str, Vec<u8>)> = Vec::new();
    let mut real_exchange = None;
    if let Some(c) = &corpus {
        let ex = concat_dir(&c.join("exchange"), "log", false)?;
        real_exchange = Some(ex.clone());
        rows.push((
            "real ExchangeSetup.log samples, repeated",
            "real-exchange",
            repeat(&[], &ex, size),
        ));
        let msi = concat_dir(&c.join("msi"), "log", true)?;
        rows.push((
            "real Windows Installer logs (UTF-16LE), repeated",
            "real-msi",
            repeat(&UTF16LE_BOM, &msi, size),
        ));
    } else {
        eprintln!("PATCHWATCH_CORPUS unset: no rows for the real logs");
    }
    rows.push((
        "generated realistic ExchangeSetup.log",
        "gen-exchange",
        utf8_realistic_corpus(size),
    ));
    rows.push((
        "generated Windows Installer logs (UTF-16LE)",
        "gen-msi",
        utf16le_corpus(size),
    ));
    rows.push((
        "failing samples only (a finding every ~12 KB)",
        "dense",
        utf8_corpus(size),
    ));
    for (name, file, bytes) in rows {
        let path = dir.join(format!("{file}.log"));
        std::fs::write(&path, &bytes)?;
        b.row(name, &path, bytes.len())?;
        std::fs::remove_file(&path)?;
    }
    if big > 0 {
        let path = dir.join("big-exchange.log");
        let bytes = utf8_realistic_corpus(big);
        std::fs::write(&path, &bytes)?;
        let runs = bytes
            .windows(23)
            .filter(|w| w == b"Starting Microsoft Exch")
            .count();
        let len = bytes.len();
        drop(bytes);
        b.row(&format!("one ExchangeSetup.log, {runs} runs"), &path, len)?;
        std::fs::remove_file(&path)?;
    }

    if let (Some(unit), false) = (real_exchange, scaling.is_empty()) {
        println!();
        println!("Scaling, real ExchangeSetup.log samples repeated, `scan --format json`:");
        println!();
        println!("| size | time | ns per byte | vs smallest |");
        println!("|---|---|---|---|");
        let mut first = None;
        let mut worst: f64 = 0.0;
        for s in scaling {
            let path = dir.join("scaling.log");
            let bytes = repeat(&[], &unit, s);
            std::fs::write(&path, &bytes)?;
            let _ = std::fs::read(&path)?;
            let t = b.scan(&path, true)?.wall;
            let per = t.as_secs_f64() * 1e9 / bytes.len() as f64;
            let base = *first.get_or_insert(per);
            worst = worst.max(per / base - 1.0);
            println!(
                "| {} MiB | {:.3} s | {per:.3} | {:+.1} % |",
                bytes.len() >> 20,
                t.as_secs_f64(),
                (per / base - 1.0) * 100.0
            );
            std::fs::remove_file(&path)?;
        }
        println!();
        println!(
            "time per byte grew by at most {:.1} % (goal: ≤ 10 %)",
            worst * 100.0
        );
    }
    Ok(())
}
