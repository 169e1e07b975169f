//! Where scan time goes: anchor matching alone vs the full scanner, per corpus.
//!
//! `cargo run --release -p patchwatch-benches --bin microscan -- [--size-mib 64]`

use std::sync::Arc;
use std::time::Instant;

use patchwatch_benches::{scan_count, utf16le_corpus, utf8_corpus, utf8_realistic_corpus};
use patchwatch_pipeline::{Catalog, LogKind};

fn main() {
    let mib: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let catalog = Arc::new(Catalog::builtin());
    for (name, utf8) in [
        ("exchange", utf8_realistic_corpus(mib << 20)),
        ("exchange-dense", utf8_corpus(mib << 20)),
    ] {
        let m = catalog.matcher(LogKind::ExchangeSetup);
        let t = Instant::now();
        let mut n = 0usize;
        m.for_each(&utf8, |_, _| n += 1);
        let dt = t.elapsed().as_secs_f64();
        println!(
            "{name:<15} anchors only: {:.2} GB/s, {n} hits (built-in keys)",
            utf8.len() as f64 / dt / 1e9
        );
        let t = Instant::now();
        let tuned = m.tuned_to(&utf8[4 << 20..(4 << 20) + (512 << 10)]);
        let tune = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut n = 0usize;
        tuned.for_each(&utf8, |_, _| n += 1);
        println!(
            "{name:<15} anchors only: {:.2} GB/s, {n} hits (tuned in {:.1} ms)",
            utf8.len() as f64 / t.elapsed().as_secs_f64() / 1e9,
            tune * 1e3
        );
        let t = Instant::now();
        let f = scan_count(&catalog, &utf8);
        println!(
            "{name:<15} full scan:    {:.2} GB/s, {f} findings",
            utf8.len() as f64 / t.elapsed().as_secs_f64() / 1e9
        );
    }
    let utf16 = utf16le_corpus(mib << 20);
    let t = Instant::now();
    let text = encoding_rs::UTF_16LE
        .decode_without_bom_handling(&utf16[2..])
        .0
        .into_owned();
    println!(
        "utf-16 decode only:    {:.2} GB/s",
        utf16.len() as f64 / t.elapsed().as_secs_f64() / 1e9
    );
    let m = catalog.matcher(LogKind::Msi);
    let t = Instant::now();
    let mut n = 0usize;
    m.for_each(text.as_bytes(), |_, _| n += 1);
    println!(
        "msi anchors only:      {:.2} GB/s of UTF-8, {n} hits",
        text.len() as f64 / t.elapsed().as_secs_f64() / 1e9
    );
    let t = Instant::now();
    let f = scan_count(&catalog, &utf16);
    println!(
        "msi full scan:         {:.2} GB/s of UTF-16, {f} findings",
        utf16.len() as f64 / t.elapsed().as_secs_f64() / 1e9
    );
}
