//! The sinks example config in `deploy/sinks/` parses and validates, so it cannot rot (the
//! aggregator's tests hold `routing.toml` to the same).

use patchwatch_sinks::SinksConfig;

fn read(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/sinks")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn sinks_example_parses() {
    let cfg = SinksConfig::from_toml(&read("sinks.toml")).unwrap();
    assert_eq!(cfg.sinks.len(), 7);
}
