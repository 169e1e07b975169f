//! Helpers shared by the pipeline's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use patchwatch_pipeline::{scan_bytes, Catalog, ScanContext, ScanOutput};

/// The built-in catalog, built once per test binary.
pub fn catalog() -> Arc<Catalog> {
    static C: std::sync::OnceLock<Arc<Catalog>> = std::sync::OnceLock::new();
    Arc::clone(C.get_or_init(|| Arc::new(Catalog::builtin())))
}

/// Scans a whole buffer with default context.
pub fn scan(path: &str, bytes: &[u8]) -> ScanOutput {
    scan_bytes(catalog(), ScanContext::new("EX01", path), bytes)
}

/// Committed fixture path.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// A file of the shared corpus that may not be committed (see its README): read through
/// `PATCHWATCH_CORPUS`. `None` (with a note) when the variable is unset outside CI; a panic when
/// it is set but the file is missing, or when CI runs without it.
pub fn corpus_file(rel: &str) -> Option<Vec<u8>> {
    match std::env::var_os("PATCHWATCH_CORPUS") {
        Some(dir) => {
            let p = PathBuf::from(dir).join(rel);
            Some(std::fs::read(&p).unwrap_or_else(|e| {
                panic!(
                    "PATCHWATCH_CORPUS is set but {} is unreadable: {e}",
                    p.display()
                )
            }))
        }
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but PATCHWATCH_CORPUS is not set")
        }
        None => {
            eprintln!("skipped: PATCHWATCH_CORPUS is not set, {rel} not checked");
            None
        }
    }
}

/// UTF-16LE with BOM.
pub fn utf16le_bom(s: &str) -> Vec<u8> {
    let mut v = vec![0xFF, 0xFE];
    v.extend(s.encode_utf16().flat_map(|u| u.to_le_bytes()));
    v
}

/// UTF-16BE with BOM.
pub fn utf16be_bom(s: &str) -> Vec<u8> {
    let mut v = vec![0xFE, 0xFF];
    v.extend(s.encode_utf16().flat_map(|u| u.to_be_bytes()));
    v
}

/// The derived rules of the built-in rule file `file` alone (`exchange.toml`, `msi.toml`): what
/// a log model says without any anchored rule.
pub fn derived_only(file: &str) -> Arc<Catalog> {
    let mut b = patchwatch_pipeline::CatalogBuilder::new();
    for (name, text) in patchwatch_pipeline::rules::BUILTIN {
        if name.ends_with(file) {
            let table: toml::Table = toml::from_str(text).expect("built-in rules parse");
            let derived: Vec<toml::Value> = table["rule"]
                .as_array()
                .expect("rules")
                .iter()
                .filter(|r| r.get("derived").and_then(toml::Value::as_bool) == Some(true))
                .cloned()
                .collect();
            let mut t = toml::Table::new();
            t.insert("rule".into(), toml::Value::Array(derived));
            b.add_str(
                &format!("derived-{file}"),
                &toml::to_string(&t).expect("serializes"),
            );
        }
    }
    Arc::new(b.build().expect("valid"))
}
