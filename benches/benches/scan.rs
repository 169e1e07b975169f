//! Scan throughput of the full built-in catalog over 256 MiB UTF-8 (realistic and
//! failure-dense) and UTF-16LE corpora.
//!
//! `cargo bench -p patchwatch-benches --bench scan`. Each measurement asserts the finding count
//! it expects, so a broken matcher cannot look fast.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use patchwatch_benches::{scan_count, utf16le_corpus, utf8_corpus, utf8_realistic_corpus};
use patchwatch_pipeline::Catalog;

const SIZE: usize = 256 << 20;

fn scan(c: &mut Criterion) {
    let catalog = Arc::new(Catalog::builtin());
    let mut g = c.benchmark_group("scan");
    g.sample_size(10);
    for (name, corpus) in [
        ("utf8", utf8_realistic_corpus(SIZE)),
        ("utf8-dense", utf8_corpus(SIZE)),
        ("utf16le", utf16le_corpus(SIZE)),
    ] {
        let expected = scan_count(&catalog, &corpus);
        assert!(expected > 20, "{name}: the corpus should produce findings");
        g.throughput(Throughput::Bytes(corpus.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| assert_eq!(scan_count(&catalog, &corpus), expected))
        });
    }
    g.finish();
}

criterion_group!(benches, scan);
criterion_main!(benches);
