//! Prints what a scan finds in the files given as arguments (a debugging aid).
use std::sync::Arc;

use patchwatch_pipeline::{scan_bytes, Catalog, ScanContext};

fn main() {
    let catalog = Arc::new(Catalog::builtin());
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path).expect("readable file");
        let out = scan_bytes(
            Arc::clone(&catalog),
            ScanContext::new("host", path.as_str()),
            &bytes,
        );
        println!(
            "== {path} kind={:?} lines={} diags={:?}",
            out.kind, out.stats.lines, out.diagnostics
        );
        for r in &out.runs {
            println!(
                "  run {} outcome={:?} exit={:?} mode={:?} product={:?} build={:?} installed={:?} phase={:?} primary={:?}",
                r.index, r.outcome, r.exit_code, r.mode, r.product, r.target_build, r.installed_build, r.phase, r.primary_finding_id
            );
        }
        for f in &out.findings {
            println!(
                "  [{}] run{} L{} {} {} prio={:?} fields={:?}",
                f.id,
                f.run_index,
                f.line,
                f.rule_id,
                f.severity.as_str(),
                f.priority,
                f.fields
            );
            println!("      fix: {}", f.remediation.summary);
        }
    }
}
