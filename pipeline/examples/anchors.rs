//! Prints how the anchor matcher folded the catalog's literals (a debugging aid).
fn main() {
    let c = patchwatch_pipeline::Catalog::builtin();
    let lits = c.literals();
    println!("{} literals", lits.len());
    for k in [
        patchwatch_pipeline::LogKind::ExchangeSetup,
        patchwatch_pipeline::LogKind::Msi,
        patchwatch_pipeline::LogKind::ServiceControl,
        patchwatch_pipeline::LogKind::Plain,
    ] {
        let m = c.matcher(k);
        println!(
            "{k:?}: {} anchors in {} automata",
            m.anchor_count(),
            m.stage_count()
        );
    }
    let mut short: Vec<_> = lits.iter().filter(|l| l.len() < 8).collect();
    short.sort_by_key(|l| l.len());
    println!("short literals: {short:?}");
}
