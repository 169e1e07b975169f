//! Side-by-side scan throughput: patchwatch against `rg -F -i -f <the catalog's literals>`
//! (Debian's ripgrep) on the same files, in one run, reported as GB/s and a ratio.
//!
//! `cargo run --release -p patchwatch-benches --bin compare -- [--size-mib 256] [--runs 3] [--dir bench-data]`

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use patchwatch_benches::{
    arg, real_msi_corpus, utf16le_corpus, utf8_corpus, utf8_realistic_corpus,
};
use patchwatch_pipeline::{Catalog, Event, FileScanner, ScanContext};

/// Reads the file in 4 MiB blocks and scans it: what `patchwatch scan` does per file.
fn patchwatch(catalog: &Arc<Catalog>, path: &Path) -> Result<(Duration, usize)> {
    let t = Instant::now();
    let mut f = std::fs::File::open(path)?;
    let mut s = FileScanner::new(
        Arc::clone(catalog),
        ScanContext::new("bench", path.display().to_string()),
    );
    // As `patchwatch scan` reads.
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        s.feed(&buf[..k]);
        n += s
            .drain_events()
            .iter()
            .filter(|e| matches!(e, Event::Finding(_)))
            .count();
    }
    s.finish();
    n += s
        .drain_events()
        .iter()
        .filter(|e| matches!(e, Event::Finding(_)))
        .count();
    Ok((t.elapsed(), n))
}

fn ripgrep(patterns: &Path, path: &Path) -> Result<(Duration, usize)> {
    let t = Instant::now();
    let out = Command::new("rg")
        .args(["--no-config", "-F", "-i", "-c", "-f"])
        .arg(patterns)
        .arg(path)
        .output()
        .context("running rg (install Debian's ripgrep: apt-get install ripgrep)")?;
    let elapsed = t.elapsed();
    if !out.status.success() && out.status.code() != Some(1) {
        bail!("rg failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let n = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    Ok((elapsed, n))
}

fn best<T>(runs: usize, mut f: impl FnMut() -> Result<(Duration, T)>) -> Result<(Duration, T)> {
    let mut best = f()?;
    for _ in 1..runs {
        let r = f()?;
        if r.0 < best.0 {
            best = r;
        }
    }
    Ok(best)
}

fn main() -> Result<()> {
    let size: usize = arg("--size-mib", "256").parse::<usize>()? << 20;
    let runs: usize = arg("--runs", "3").parse()?;
    let dir = PathBuf::from(arg("--dir", "bench-data"));
    std::fs::create_dir_all(&dir)?;
    let catalog = Arc::new(Catalog::builtin());
    let literals = catalog.literals();
    let patterns = dir.join("patterns.txt");
    std::fs::write(&patterns, literals.join("\n") + "\n")?;
    let rg_version = Command::new("rg")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    println!(
        "{} literals (rules' anchors and the log models' structural anchors); {rg_version}",
        literals.len()
    );
    println!("| corpus | size | patchwatch | rg -F -i -f | ratio | findings | rg matching lines |");
    println!("|---|---|---|---|---|---|---|");
    let mut corpora = vec![
        ("UTF-8 (Exchange)", "utf8", utf8_realistic_corpus(size)),
        (
            "UTF-8 (failing samples only)",
            "utf8-dense",
            utf8_corpus(size),
        ),
        ("UTF-16LE (MSI)", "utf16le", utf16le_corpus(size)),
    ];
    // A real MSI log, not from the generator the matcher's keys are costed on.
    match real_msi_corpus(size) {
        Some(bytes) => corpora.push((
            "UTF-16LE (real MSI log, repeated)",
            "utf16le-real",
            bytes
                .context("PATCHWATCH_CORPUS is set but its Dell SupportAssist log is unreadable")?,
        )),
        None => eprintln!("PATCHWATCH_CORPUS unset: no row for the real MSI log"),
    }
    for (name, file, bytes) in corpora {
        let path = dir.join(format!("corpus-{file}.log"));
        std::fs::write(&path, &bytes)?;
        // Warm the page cache for both tools alike.
        let _ = std::fs::read(&path)?;
        let (pt, pn) = best(runs, || patchwatch(&catalog, &path))?;
        let (rt, rn) = best(runs, || ripgrep(&patterns, &path))?;
        let gbs = |d: Duration| bytes.len() as f64 / d.as_secs_f64() / 1e9;
        println!(
            "| {name} | {} MiB | {:.2} GB/s | {:.2} GB/s | {:.1}x | {pn} | {rn} |",
            bytes.len() >> 20,
            gbs(pt),
            gbs(rt),
            rt.as_secs_f64() / pt.as_secs_f64()
        );
    }
    Ok(())
}
