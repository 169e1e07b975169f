fn main() {
    let c = patchwatch_benches::utf8_corpus(64 << 20);
    let catalog = std::sync::Arc::new(patchwatch_pipeline::Catalog::builtin());
    let t = std::time::Instant::now();
    let mut n = 0;
    for _ in 0..8 {
        n += patchwatch_benches::scan_count(&catalog, &c);
    }
    let s = t.elapsed().as_secs_f64();
    eprintln!("{n} findings, {:.2} GB/s", 8.0 * c.len() as f64 / s / 1e9);
}
