//! The sinks example as spelled before the shared config vocabulary (`token_env`,
//! `token_file`, `api_key_env`, `ack_timeout_ms`, `[batch] timeout_ms`, a sink's own `ca_file`) parses to the same
//! configuration as the current one.

use patchwatch_sinks::{SinkConfig, SinksConfig};

#[test]
fn old_sinks_example_parses_to_the_current_one() {
    let old = include_str!("../../../config/tests/data/old/sinks.toml");
    let new = include_str!("../../../deploy/sinks/sinks.toml");
    let loaded = patchwatch_config::from_toml::<SinksConfig>(old).unwrap();
    assert_eq!(loaded.value, SinksConfig::from_toml(new).unwrap());
    assert_eq!(loaded.value, SinksConfig::from_toml(old).unwrap());
    let said: Vec<String> = loaded.deprecations.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        said,
        [
            "`sinks.elastic.api_key_env` is deprecated; use `sinks.elastic.api_key = { env = \"PATCHWATCH_ES_API_KEY\" }`",
            "`sinks.otel.token_env` is deprecated; use `sinks.otel.token = { env = \"PATCHWATCH_OTLP_TOKEN\" }`",
            "`sinks.splunk.ack_poll_interval_ms` is deprecated; use `sinks.splunk.ack_poll_interval = \"1000ms\"`",
            "`sinks.splunk.ack_timeout_ms` is deprecated; use `sinks.splunk.ack_timeout = \"60000ms\"`",
            "`sinks.splunk.token_file` is deprecated; use `sinks.splunk.token = { file = \"/etc/patchwatch/hec.token\" }`",
            "`sinks.splunk.ca_file` is deprecated; use `sinks.splunk.tls.ca_file = \"/etc/patchwatch/splunk-ca.pem\"`",
            "`sinks.splunk.batch.timeout_ms` is deprecated; use `sinks.splunk.batch.timeout = \"1000ms\"`",
        ]
    );
    let SinkConfig::SplunkHec(splunk) = &loaded.value.sinks["splunk"] else {
        panic!("splunk is a splunk_hec sink");
    };
    assert!(!format!("{splunk:?}").contains("hec.token"), "{splunk:?}");
}
