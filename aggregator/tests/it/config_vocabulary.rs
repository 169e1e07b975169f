//! The aggregator config in the shared vocabulary: the examples as spelled before it
//! (`config/tests/data/old/`) parse to the same config as the current ones, with one warning
//! per old key naming its replacement, and `Debug` of a config never shows a secret.

use patchwatch_aggregator::{Config, DEFAULT_CONFIG};

fn old(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/tests/data/old")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn warnings(text: &str) -> Vec<String> {
    patchwatch_config::from_toml::<Config>(text)
        .unwrap()
        .deprecations
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn old_aggregator_example_gives_the_current_config_with_one_warning_per_old_key() {
    let old = old("aggregator.example.toml");
    let new = include_str!("../../../deploy/aggregator.example.toml");
    assert_eq!(
        Config::parse(&old, "old.toml").unwrap(),
        Config::parse(new, "new.toml").unwrap()
    );
    assert_eq!(warnings(new), Vec::<String>::new());
    assert_eq!(
        warnings(&old),
        [
            "`grpc.tls.cert` is deprecated; use `grpc.tls.cert_file = \"/etc/patchwatch/aggregator.crt\"`",
            "`grpc.tls.key` is deprecated; use `grpc.tls.key_file = \"/etc/patchwatch/aggregator.key\"`",
            "`grpc.tls.client_ca` is deprecated; use `grpc.tls.client_ca_file = \"/etc/patchwatch/collector-ca.crt\"`",
            "`http.tls.cert` is deprecated; use `http.tls.cert_file = \"/etc/patchwatch/aggregator.crt\"`",
            "`http.tls.key` is deprecated; use `http.tls.key_file = \"/etc/patchwatch/aggregator.key\"`",
            "`http.tokens[0].token_env` is deprecated; use `http.tokens[0].token = { env = \"PATCHWATCH_TOKEN\" }`",
            "`sinks.splunk.token_env` is deprecated; use `sinks.splunk.token = { env = \"PATCHWATCH_HEC_TOKEN\" }`",
        ]
    );
}

#[test]
fn old_default_config_gives_the_defaults_with_one_warning_per_old_key() {
    let old = old("default_config.toml");
    assert_eq!(Config::parse(&old, "old.toml").unwrap(), Config::default());
    assert_eq!(warnings(DEFAULT_CONFIG), Vec::<String>::new());
    assert_eq!(
        warnings(&old),
        [
            "`forwarding.poll_interval_ms` is deprecated; use `forwarding.poll_interval = \"1000ms\"`",
            "`forwarding.initial_backoff_ms` is deprecated; use `forwarding.initial_backoff = \"500ms\"`",
            "`forwarding.max_backoff_ms` is deprecated; use `forwarding.max_backoff = \"30000ms\"`",
            "`forwarding.cursor_write_interval_ms` is deprecated; use `forwarding.cursor_write_interval = \"250ms\"`",
            "`grpc.shutdown_grace_seconds` is deprecated; use `grpc.shutdown_grace = \"10s\"`",
        ]
    );
}

#[test]
fn old_postgres_url_env_and_token_file_still_work() {
    let c = Config::parse(
        "[[grpc.tokens]]\nid = \"exch01\"\ntoken_file = \"/etc/patchwatch/tokens/exch01\"\n\
         [store]\nbackend = \"postgres\"\n[store.postgres]\nurl_env = \"PATCHWATCH_PG_URL\"\n",
        "old.toml",
    )
    .unwrap();
    assert_eq!(
        c.grpc.tokens[0].token.file(),
        Some(std::path::Path::new("/etc/patchwatch/tokens/exch01"))
    );
    assert_eq!(
        c.store.postgres.url.as_ref().and_then(|u| u.env_var()),
        Some("PATCHWATCH_PG_URL")
    );
}

#[test]
fn debug_of_a_config_shows_no_token_and_no_url_password() {
    let c = Config::parse(
        "[[grpc.tokens]]\nid = \"exch01\"\ntoken = \"grpc-token-value\"\n\
         [[http.tokens]]\nid = \"ops\"\ntoken = \"http-token-value\"\n\
         [store.postgres]\nurl = \"postgres://patchwatch:pg-password@db.example/patchwatch\"\n\
         [sinks.splunk]\ntype = \"splunk_hec\"\nendpoint = \"https://splunk.example:8088\"\n\
         token = \"hec-token-value\"\n\
         [routing.receivers.es]\ntype = \"elasticsearch\"\nendpoint = \"https://es.example:9200\"\n\
         index = \"patchwatch\"\nusername = \"pw\"\npassword = \"es-password\"\n",
        "secrets.toml",
    )
    .unwrap();
    let shown = format!("{c:?} {c:#?}");
    for secret in [
        "grpc-token-value",
        "http-token-value",
        "pg-password",
        "hec-token-value",
        "es-password",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // The ids are still there to tell the entries apart.
    assert!(shown.contains("exch01") && shown.contains("ops"), "{shown}");
}
