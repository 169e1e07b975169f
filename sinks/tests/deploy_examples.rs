//! The example configs in `deploy/sinks/` parse and validate, so they cannot rot.

use patchwatch_sinks::routing::{Router, RoutingConfig};
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

#[tokio::test]
async fn routing_example_builds_a_router() {
    // Point receivers at loopback so that their background healthchecks touch nothing outside.
    let text = read("routing.toml")
        .replace("chat.corp.example", "127.0.0.1")
        .replace("siem.corp.example", "127.0.0.1")
        .replace("alertmanager.corp.example", "127.0.0.1");
    let cfg = RoutingConfig::from_toml(&text).unwrap();
    assert_eq!(cfg.route.len(), 4);
    Router::new(cfg).expect("example routing config is valid");
}
