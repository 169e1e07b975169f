//! Corpora for benchmarks: realistic ExchangeSetup.log text (the committed CSS-Exchange samples,
//! run after run, as setup appends) and Windows Installer verbose logs (the pipeline's
//! generator, UTF-16LE as msiexec writes), to any size. True failures are mixed in so that
//! matching, verification and finding construction are all exercised. [`fleet`] drives an
//! aggregator with thousands of simulated collectors.

pub mod fleet;

use patchwatch_pipeline::sample::{msi_verbose_log, MsiLog, MsiScenario};

use patchwatch_pipeline::sample::exchange;

const EXCHANGE: &[&str] = &[
    include_str!("../../pipeline/tests/data/exchange/ExchangeSetup_DC_Site_1.log"),
    include_str!("../../pipeline/tests/data/exchange/ExchangeSetup_Reboot_Pending.log"),
    include_str!("../../pipeline/tests/data/exchange/ExchangeSetup_SchemaAdmin_PrepareSchema.log"),
    include_str!("../../pipeline/tests/data/exchange/ExchangeSetup_Vdir_1.log"),
    include_str!("../../pipeline/tests/data/exchange/ExchangeSetup_MSI_1.log"),
];

/// One block of ExchangeSetup.log text (CRLF): the sample runs, as setup appends run after run.
fn exchange_block() -> String {
    let mut out = String::new();
    for text in EXCHANGE {
        for line in text.lines() {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out
}

/// One block of Windows Installer sessions (CRLF), mostly successful, one failing in seven.
fn msi_block(seed: u32) -> String {
    let mut out = String::new();
    let scenarios = [
        MsiScenario::Success,
        MsiScenario::Success,
        MsiScenario::IgnoredCustomAction,
        MsiScenario::RebootRequired,
    ];
    for (i, s) in scenarios.iter().enumerate() {
        out.push_str(&msi_verbose_log(&MsiLog {
            product: "Microsoft Exchange Server",
            version: "15.2.1544.4",
            scenario: *s,
            date: "11/21/2026",
            start_seconds: (seed * 37 + i as u32 * 600) % 80_000,
            filler_blocks: 12,
        }));
    }
    if seed.is_multiple_of(7) {
        out.push_str(&msi_verbose_log(&MsiLog {
            product: "Microsoft Exchange Server",
            version: "15.2.1544.4",
            scenario: MsiScenario::ServiceControlExecutionPolicy,
            date: "11/21/2026",
            start_seconds: 3600,
            filler_blocks: 2,
        }));
    }
    out
}

fn grow(bytes: usize, mut block: impl FnMut(u32) -> String) -> String {
    let mut out = String::with_capacity(bytes + (4 << 20));
    let mut seed = 0;
    while out.len() < bytes {
        out.push_str(&block(seed));
        seed += 1;
    }
    out
}

/// The failing samples, each a whole run with its own banner, as setup appends them.
const FAILING: &[&str] = &[
    include_str!("../../pipeline/tests/data/exchange/ExchangeSetup_DC_Site_1.log"),
    include_str!("../../pipeline/tests/data/exchange/ExchangeSetup_InstallFromBin.log"),
    include_str!("../../pipeline/tests/data/exchange/ExchangeSetup_MSI_1.log"),
    include_str!("../../pipeline/tests/data/exchange/ExchangeSetup_MSI_3.log"),
    include_str!("../../pipeline/tests/data/exchange/ExchangeSetup_Reboot_Pending.log"),
    include_str!("../../pipeline/tests/data/exchange/ExchangeSetup_SchemaAdmin_PrepareSchema.log"),
    include_str!("../../pipeline/tests/data/exchange/ExchangeSetup_ServiceControl_Reverse.log"),
    include_str!("../../pipeline/tests/data/exchange/ExchangeSetup_Service_Disabled.log"),
    include_str!("../../pipeline/tests/data/exchange/ExchangeSetup_Vdir_1.log"),
];

/// How many generated successful upgrade runs come before each failing sample run, and how
/// many cmdlet executions (~1 KB each) a generated run has. A CU upgrade runs thousands of
/// cmdlets, and a maintenance window that fails usually succeeds on a later attempt.
const SUCCESSES_PER_FAILURE: u32 = 3;
const CMDLETS_PER_RUN: u32 = 3_000;

/// A realistic ExchangeSetup.log corpus of at least `bytes` bytes: generated successful upgrade
/// runs ([`exchange::upgrade_run`]), three of them (~3.5 MB each) before each failing sample
/// run, in turn. Findings are about as dense as in a server whose updates sometimes fail.
pub fn utf8_realistic_corpus(bytes: usize) -> Vec<u8> {
    let rules = exchange::rule_names(FAILING);
    let mut out = String::with_capacity(bytes + (8 << 20));
    let mut seed = 0;
    while out.len() < bytes {
        if seed % (SUCCESSES_PER_FAILURE + 1) == SUCCESSES_PER_FAILURE {
            let text = FAILING[(seed / (SUCCESSES_PER_FAILURE + 1)) as usize % FAILING.len()];
            for line in text.lines() {
                out.push_str(line);
                out.push_str("\r\n");
            }
        } else {
            out.push_str(&exchange::upgrade_run(seed, CMDLETS_PER_RUN, &rules));
        }
        seed += 1;
    }
    out.into_bytes()
}

/// An ExchangeSetup.log-like UTF-8 corpus of at least `bytes` bytes, failure-dense: the five
/// largest failing samples back to back (a finding every ~12 KB). The worst case for the
/// matcher's verification and finding paths, not what a server writes.
pub fn utf8_corpus(bytes: usize) -> Vec<u8> {
    let block = exchange_block();
    grow(bytes, |_| block.clone()).into_bytes()
}

/// A Windows Installer verbose log corpus, UTF-16LE with BOM, of at least `bytes` raw bytes.
pub fn utf16le_corpus(bytes: usize) -> Vec<u8> {
    patchwatch_pipeline::sample::utf16le_with_bom(&grow(bytes / 2, msi_block))
}

/// Scans a buffer in 1 MiB feeds (as a reader would) and returns the number of findings.
pub fn scan_count(catalog: &std::sync::Arc<patchwatch_pipeline::Catalog>, bytes: &[u8]) -> usize {
    let mut s = patchwatch_pipeline::FileScanner::new(
        std::sync::Arc::clone(catalog),
        patchwatch_pipeline::ScanContext::new("bench", "bench.log"),
    );
    let mut n = 0;
    for chunk in bytes.chunks(1 << 20) {
        s.feed(chunk);
        n += s
            .drain_events()
            .iter()
            .filter(|e| matches!(e, patchwatch_pipeline::Event::Finding(_)))
            .count();
    }
    s.finish();
    n + s
        .drain_events()
        .iter()
        .filter(|e| matches!(e, patchwatch_pipeline::Event::Finding(_)))
        .count()
}

/// The value after `--name` on the command line, or `default` (the benches take a few flags).
pub fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

/// The byte order mark msiexec writes at the start of a UTF-16LE log.
pub const UTF16LE_BOM: [u8; 2] = [0xFF, 0xFE];

/// `corpus` as the `n`th of several files: a short successful run of its own kind (an upgrade
/// run for UTF-8, an MSI session for UTF-16LE with BOM) goes first, so the file's first line,
/// and with it every finding id, differs from the other files'. Identical files would share
/// ids, and a bench waiting for the distinct ids would stop before the later files were read.
pub fn distinct_file(corpus: &[u8], n: u32) -> Vec<u8> {
    if let Some(body) = corpus.strip_prefix(&UTF16LE_BOM) {
        let head = msi_verbose_log(&MsiLog {
            product: "Microsoft Exchange Server",
            version: "15.2.1544.4",
            scenario: MsiScenario::Success,
            date: "11/20/2026",
            start_seconds: n * 60 % 80_000,
            filler_blocks: 1,
        });
        let mut out = patchwatch_pipeline::sample::utf16le_with_bom(&head);
        out.extend_from_slice(body);
        out
    } else {
        let mut out = exchange::upgrade_run(n, 5, &[]).into_bytes();
        // The generator's clock has 20 start hours; the first line's time is made unique here.
        let (h, m, s) = (n / 3600 % 24, n / 60 % 60, n % 60);
        let stamp = format!("[11/20/2026 {h:02}:{m:02}:{s:02}.0000]");
        out[..stamp.len()].copy_from_slice(stamp.as_bytes());
        out.extend_from_slice(corpus);
        out
    }
}

/// A real Windows Installer verbose log (`$PATCHWATCH_CORPUS/msi/dell-supportassist-success-verbose.log`,
/// 2.4 MB, UTF-16LE, a successful install not made by our generator), repeated to at least
/// `bytes` as sessions appended to one file: one BOM, then the sessions. `None` when the
/// variable is unset (the log may not be committed; see the corpus README).
///
/// # Errors
/// The variable is set but the file cannot be read.
pub fn real_msi_corpus(bytes: usize) -> Option<std::io::Result<Vec<u8>>> {
    let dir = std::env::var_os("PATCHWATCH_CORPUS")?;
    let path = std::path::Path::new(&dir).join("msi/dell-supportassist-success-verbose.log");
    Some(std::fs::read(&path).map(|log| {
        let body = log.strip_prefix(&UTF16LE_BOM).unwrap_or(&log);
        let mut out = Vec::with_capacity(bytes + log.len());
        out.extend_from_slice(&UTF16LE_BOM);
        while out.len() < bytes {
            out.extend_from_slice(body);
        }
        out
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_line(b: &[u8]) -> Vec<u8> {
        let b = b.strip_prefix(&UTF16LE_BOM).unwrap_or(b);
        b.split(|&c| c == b'\n').next().unwrap_or_default().to_vec()
    }

    /// Findings above info in `bytes`.
    fn above_info(catalog: &std::sync::Arc<patchwatch_pipeline::Catalog>, bytes: &[u8]) -> usize {
        patchwatch_pipeline::scan_bytes(
            std::sync::Arc::clone(catalog),
            patchwatch_pipeline::ScanContext::new("bench", "bench.log"),
            bytes,
        )
        .findings
        .iter()
        .filter(|f| f.severity > patchwatch_pipeline::Severity::Info)
        .count()
    }

    #[test]
    fn distinct_files_differ_in_their_first_line_and_find_the_same() {
        let catalog = std::sync::Arc::new(patchwatch_pipeline::Catalog::builtin());
        for corpus in [utf8_realistic_corpus(1 << 20), utf16le_corpus(1 << 20)] {
            let heads: std::collections::BTreeSet<Vec<u8>> = (0..200)
                .map(|n| first_line(&distinct_file(&corpus, n)))
                .collect();
            assert_eq!(heads.len(), 200);
            // The head is one more successful run: the corpus's findings, the same for every
            // n, plus the head run's context (info) findings and nothing above info.
            let base = scan_count(&catalog, &corpus);
            let base_above_info = above_info(&catalog, &corpus);
            assert!(base > 0);
            let counts: Vec<usize> = [0, 77, 199]
                .iter()
                .map(|&n| scan_count(&catalog, &distinct_file(&corpus, n)))
                .collect();
            assert!(counts.iter().all(|&c| c == counts[0]), "{counts:?}");
            assert!(counts[0] >= base, "{counts:?} vs {base}");
            for n in [0, 77, 199] {
                assert_eq!(
                    above_info(&catalog, &distinct_file(&corpus, n)),
                    base_above_info,
                    "file {n}: the head run adds only context"
                );
            }
        }
    }
}
