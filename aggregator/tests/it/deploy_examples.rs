//! The example routing config in `deploy/sinks/` parses and builds a router, so it cannot rot
//! (the aggregator's own example is held to the same by a unit test of `config`).

use patchwatch_aggregator::routing::{Router, RoutingConfig};

#[tokio::test]
async fn routing_example_builds_a_router() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/sinks/routing.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Point receivers at loopback so that their background healthchecks touch nothing outside.
    let text = text
        .replace("chat.corp.example", "127.0.0.1")
        .replace("siem.corp.example", "127.0.0.1")
        .replace("alertmanager.corp.example", "127.0.0.1");
    let cfg = RoutingConfig::from_toml(&text).unwrap();
    assert_eq!(cfg.route.len(), 4);
    Router::new(cfg).expect("example routing config is valid");
}
