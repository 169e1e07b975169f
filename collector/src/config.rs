//! The agent's configuration file (TOML): [`AgentConfig`].
//!
//! Parsing rejects unknown keys (`deny_unknown_fields`), so a typo is an error naming the key
//! and line, not a silently ignored setting. [`AgentConfig::validate`] then checks values and
//! names the offending field (`aggregator.endpoint`, `spool.max_bytes`, ...). Durations,
//! secrets and TLS files use the shared vocabulary of `patchwatch_config` (`linger = "50ms"`,
//! `token = { file = "/etc/patchwatch/token" }`); the old spellings (`linger_ms`,
//! `token_file`, ...) still parse, each with a warning naming the new one.
//! `deploy/agent.example.toml` shows every key.

use patchwatch_config::{ClientTls, Duration, Secret};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::discovery::default_includes;
use crate::spool::FsyncPolicy;
use crate::tail::TailOptions;

/// Errors loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config file {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key or wrong type; the message names key and line.
    #[error("config file {origin}: {message}")]
    Parse {
        /// File name or `<string>`.
        origin: String,
        /// The TOML parser's message (with line and key).
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("config field `{field}`: {reason}")]
    Invalid {
        /// Dotted field path.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Root of the agent configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Host name reported in findings; default: the OS host name.
    #[serde(default)]
    pub host_name: Option<String>,
    /// Directory for checkpoints and the spool; must be writable by the agent.
    pub data_dir: PathBuf,
    /// Prometheus scrape address (`ip:port`); no metrics endpoint when absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// A run with no new log line for this long is reported as stalled.
    #[serde(default = "default_stall")]
    pub stall_threshold: Duration,
    /// Which files to tail; absent or empty: the platform's standard locations
    /// ([`SourcesConfig::default`]).
    #[serde(default)]
    pub sources: SourcesConfig,
    /// Where to deliver findings and run updates. Optional when `[sinks]` are configured: with
    /// no `[aggregator]` section (or an empty `endpoint`) the agent sends findings to its sinks
    /// only (see [`AgentConfig::aggregator_enabled`]).
    #[serde(default)]
    pub aggregator: AggregatorConfig,
    /// On-disk buffer.
    #[serde(default)]
    pub spool: SpoolConfig,
    /// Batching towards the aggregator.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Direct-to-SIEM sinks (`[sinks.<name>]`, as in `deploy/sinks/sinks.toml`): findings (not
    /// run updates) are also sent there, besides the aggregator, with the same guarantee: each
    /// sink reads the spool from its own durable cursor (`spool/cursor-sink%3A<name>`) that
    /// advances only when the destination confirmed, so nothing is dropped and anything
    /// unconfirmed at a crash is sent again (at least once). A sink that is down keeps its
    /// findings in the spool without holding up the aggregator or other sinks; if it stays
    /// down until the spool is full, reading pauses. Empty (default): aggregator only.
    #[serde(default)]
    pub sinks: std::collections::BTreeMap<String, patchwatch_sinks::SinkConfig>,
    /// `[preflight]`: the periodic check of this server for conditions that make the next
    /// update fail (Windows only; elsewhere there is nothing to read).
    #[serde(default)]
    pub preflight: PreflightConfig,
}

/// `[preflight]`: when the agent checks the server ahead of an update.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PreflightConfig {
    /// Run the checks at all (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Time between two snapshots (default `"6h"`); one is also taken at start.
    #[serde(default = "default_preflight_interval")]
    pub interval: Duration,
}

impl Default for PreflightConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: default_preflight_interval(),
        }
    }
}

fn default_preflight_interval() -> Duration {
    Duration::from_secs(6 * 3600)
}

fn default_stall() -> Duration {
    Duration::from_secs(600)
}

/// `[sources]`: which files to tail and how.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    /// Glob patterns of files to tail; `%VAR%` and `${VAR}` are expanded. Absent: the
    /// platform's standard locations (on Windows the Exchange setup and MSI logs; elsewhere
    /// none, so the config must name them).
    #[serde(default = "default_includes")]
    pub include: Vec<String>,
    /// Glob patterns to leave out, matched after `include`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Poll instead of using filesystem events (set for network shares).
    #[serde(default)]
    pub poll: bool,
    /// Match globs case-insensitively (default true: Windows file names).
    #[serde(default = "yes")]
    pub case_insensitive: bool,
    /// Code page for files with no BOM that are not valid UTF-8 (an `encoding_rs` label).
    #[serde(default = "default_encoding")]
    pub encoding_fallback: String,
    /// How often active files are checked for new data.
    #[serde(default = "default_poll")]
    pub poll_interval: Duration,
    /// How often the directories are walked again.
    #[serde(default = "default_rescan")]
    pub rescan_interval: Duration,
    /// Close a file handle after this long without new data.
    #[serde(default = "default_idle_close")]
    pub idle_close: Duration,
}

impl Default for SourcesConfig {
    /// The platform's standard locations ([`default_includes`]) with default settings.
    fn default() -> Self {
        Self {
            include: default_includes(),
            exclude: Vec::new(),
            poll: false,
            case_insensitive: true,
            encoding_fallback: default_encoding(),
            poll_interval: default_poll(),
            rescan_interval: default_rescan(),
            idle_close: default_idle_close(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_encoding() -> String {
    "windows-1252".into()
}
fn default_poll() -> Duration {
    Duration::from_millis(250)
}
fn default_rescan() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_close() -> Duration {
    Duration::from_secs(300)
}

/// `[aggregator]`: endpoint and credentials.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AggregatorConfig {
    /// gRPC endpoint, `http://host:port` or `https://host:port`. Empty (the default when the
    /// section is left out): no aggregator, which needs at least one of `[sinks]`.
    #[serde(default)]
    pub endpoint: String,
    /// TLS settings (`ca_file`, `cert_file`, `key_file`, `server_name`); needs an
    /// `https://` endpoint.
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// Bearer token: `{ file = "..." }` or `{ env = "..." }` (an inline string works but
    /// config files get copied around). Never logged.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Gzip-compress batches.
    #[serde(default = "yes")]
    pub compression: bool,
    /// Give up a connection attempt after this long.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// First reconnect delay ceiling (doubles up to `max_backoff`).
    #[serde(default = "default_backoff_initial")]
    pub initial_backoff: Duration,
    /// Largest reconnect delay.
    #[serde(default = "default_backoff_max")]
    pub max_backoff: Duration,
    /// An idle connection sends an empty batch this often, so that acks, and the preflight
    /// request when a maintenance window starts, reach an agent with nothing to send.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: Duration,
}

impl Default for AggregatorConfig {
    /// No aggregator (empty endpoint), other settings at their defaults.
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            tls: None,
            token: None,
            compression: true,
            connect_timeout: default_connect_timeout(),
            initial_backoff: default_backoff_initial(),
            max_backoff: default_backoff_max(),
            heartbeat: default_heartbeat(),
        }
    }
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_backoff_initial() -> Duration {
    Duration::from_millis(500)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(60)
}
/// `crate::delivery::DEFAULT_HEARTBEAT`, spelled here so that config does not import delivery.
fn default_heartbeat() -> Duration {
    Duration::from_secs(60)
}
/// Bounds of `aggregator.heartbeat`: below a second an idle fleet floods the aggregator; above
/// an hour a window's preflight request waits longer than most windows last.
const HEARTBEAT_RANGE: std::ops::RangeInclusive<std::time::Duration> =
    std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(3600);

/// `spool.fsync`: when the spool is flushed to disk.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SpoolFsync {
    /// fsync before each checkpoint write (default): a checkpoint never passes data that is
    /// not on disk.
    #[default]
    Batch,
    /// fsync after every record.
    Always,
}

impl From<SpoolFsync> for FsyncPolicy {
    fn from(f: SpoolFsync) -> Self {
        match f {
            SpoolFsync::Batch => FsyncPolicy::OnSync,
            SpoolFsync::Always => FsyncPolicy::Always,
        }
    }
}

/// `[spool]`: the on-disk buffer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Largest size on disk in bytes; when full, tailing pauses until acks free space.
    #[serde(default = "default_spool_max")]
    pub max_bytes: u64,
    /// Segment file size in bytes (at most half of `max_bytes`).
    #[serde(default = "default_segment")]
    pub segment_bytes: u64,
    /// `"batch"` (fsync before each checkpoint write) or `"always"` (fsync every record).
    #[serde(default)]
    pub fsync: SpoolFsync,
}

fn default_spool_max() -> u64 {
    256 * 1024 * 1024
}
fn default_segment() -> u64 {
    8 * 1024 * 1024
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            max_bytes: default_spool_max(),
            segment_bytes: default_segment(),
            fsync: SpoolFsync::default(),
        }
    }
}

/// `[batch]`: how findings are grouped towards the aggregator.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most records per batch.
    #[serde(default = "default_batch_records")]
    pub max_records: usize,
    /// Most payload bytes per batch (keep well under the server's 4 MiB message limit).
    #[serde(default = "default_batch_bytes")]
    pub max_bytes: usize,
    /// Wait this long for more records before sending a partial batch.
    #[serde(default = "default_linger")]
    pub linger: Duration,
    /// Batches sent but not yet acknowledged, at most.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
}

fn default_batch_records() -> usize {
    500
}
fn default_batch_bytes() -> usize {
    1024 * 1024
}
fn default_linger() -> Duration {
    Duration::from_millis(50)
}
fn default_in_flight() -> usize {
    4
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_records: default_batch_records(),
            max_bytes: default_batch_bytes(),
            linger: default_linger(),
            max_in_flight: default_in_flight(),
        }
    }
}

impl AgentConfig {
    /// Reads, parses and validates `path`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, key or field.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] or [`ConfigError::Invalid`].
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        // Deprecated keys are rewritten here and each logged once, naming its replacement.
        let cfg: Self = patchwatch_config::from_toml(text)
            .map_err(|e| ConfigError::Parse {
                origin: origin.to_owned(),
                message: e.to_string(),
            })?
            .value;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Defaults for this platform: on Windows the Exchange and MSI log locations and
    /// `C:\ProgramData\patchwatch`; elsewhere no sources (the config must name them) and
    /// `/var/lib/patchwatch`. The aggregator endpoint is a loopback placeholder.
    pub fn default_for_platform() -> Self {
        let data_dir = if cfg!(windows) {
            PathBuf::from(r"C:\ProgramData\patchwatch")
        } else {
            PathBuf::from("/var/lib/patchwatch")
        };
        Self {
            host_name: None,
            data_dir,
            metrics_listen: None,
            stall_threshold: default_stall(),
            sources: SourcesConfig::default(),
            aggregator: AggregatorConfig {
                endpoint: "http://127.0.0.1:4790".into(),
                ..AggregatorConfig::default()
            },
            spool: SpoolConfig::default(),
            batch: BatchConfig::default(),
            sinks: Default::default(),
            preflight: PreflightConfig::default(),
        }
    }

    /// Checks values; every error names its field.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.sources.include.is_empty() {
            return Err(invalid(
                "sources.include",
                "at least one glob pattern is required (this platform has no standard locations)",
            ));
        }
        if encoding_rs::Encoding::for_label(self.sources.encoding_fallback.as_bytes()).is_none() {
            return Err(invalid(
                "sources.encoding_fallback",
                format!(
                    "unknown encoding {:?}; try \"windows-1252\"",
                    self.sources.encoding_fallback
                ),
            ));
        }
        if self.sources.poll_interval.is_zero() {
            return Err(invalid("sources.poll_interval", "must be greater than 0"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        self.validate_aggregator()?;
        if self.spool.segment_bytes == 0 || self.spool.segment_bytes * 2 > self.spool.max_bytes {
            return Err(invalid(
                "spool.segment_bytes",
                "must be non-zero and at most half of spool.max_bytes",
            ));
        }
        if self.batch.max_records == 0 || self.batch.max_in_flight == 0 {
            return Err(invalid(
                "batch.max_records",
                "batch.max_records and batch.max_in_flight must be greater than 0",
            ));
        }
        if self.stall_threshold.is_zero() {
            return Err(invalid("stall_threshold", "must be greater than 0"));
        }
        // Each snapshot is a run stored by the aggregator: more often than a minute would
        // only fill its database.
        if self.preflight.interval.get() < std::time::Duration::from_secs(60) {
            return Err(invalid(
                "preflight.interval",
                format!(
                    "\"{}\" is too short; at least \"1m\" (default \"6h\")",
                    self.preflight.interval
                ),
            ));
        }
        Ok(())
    }

    /// True when findings go to an aggregator (`aggregator.endpoint` is set); false for an
    /// agent that sends to its `[sinks]` only.
    pub fn aggregator_enabled(&self) -> bool {
        !self.aggregator.endpoint.trim().is_empty()
    }

    fn validate_aggregator(&self) -> Result<(), ConfigError> {
        if !self.aggregator_enabled() {
            if self.sinks.is_empty() {
                return Err(invalid(
                    "aggregator.endpoint",
                    "required unless at least one [sinks.<name>] is configured",
                ));
            }
            let a = &self.aggregator;
            if a.tls.is_some() || a.token.is_some() {
                return Err(invalid(
                    "aggregator.endpoint",
                    "TLS or token settings are given but no endpoint",
                ));
            }
            return Ok(());
        }
        let ep = &self.aggregator.endpoint;
        if !(ep.starts_with("http://") || ep.starts_with("https://")) {
            return Err(invalid(
                "aggregator.endpoint",
                format!("{ep:?} must start with http:// or https://"),
            ));
        }
        if let Some(tls) = &self.aggregator.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Err(invalid(
                    "aggregator.tls.cert_file",
                    "cert_file and key_file must be given together",
                ));
            }
            if ep.starts_with("http://") {
                return Err(invalid(
                    "aggregator.tls",
                    "TLS settings need an https:// endpoint",
                ));
            }
        }
        if self.aggregator.initial_backoff.is_zero()
            || self.aggregator.max_backoff < self.aggregator.initial_backoff
        {
            return Err(invalid(
                "aggregator.max_backoff",
                "initial_backoff must be > 0 and <= max_backoff",
            ));
        }
        if !HEARTBEAT_RANGE.contains(&self.aggregator.heartbeat.get()) {
            return Err(invalid(
                "aggregator.heartbeat",
                format!(
                    "\"{}\" is out of range; between \"1s\" and \"1h\" (default \"60s\")",
                    self.aggregator.heartbeat
                ),
            ));
        }
        Ok(())
    }

    /// The fsync policy named by `spool.fsync`.
    pub fn spool_fsync(&self) -> FsyncPolicy {
        self.spool.fsync.into()
    }

    /// Tailer options derived from `[sources]`.
    pub fn tail_options(&self) -> TailOptions {
        TailOptions {
            poll_interval: self.sources.poll_interval.get(),
            rescan_interval: self.sources.rescan_interval.get(),
            idle_close: self.sources.idle_close.get(),
            poll: self.sources.poll,
            ..TailOptions::default()
        }
    }

    /// Where the checkpoint file lives.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.data_dir.join("checkpoints.json")
    }

    /// Where the spool lives.
    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir.join("spool")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
data_dir = "/tmp/pw"
[sources]
include = ["/var/log/ex/*.log"]
[aggregator]
endpoint = "http://127.0.0.1:4790"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = AgentConfig::from_toml(MIN, "t.toml").unwrap();
        assert_eq!(c.stall_threshold, Duration::from_secs(600));
        assert_eq!(c.sources.encoding_fallback, "windows-1252");
        assert_eq!(c.batch.max_in_flight, 4);
        assert_eq!(c.spool_fsync(), FsyncPolicy::OnSync);
        assert_eq!(c.preflight, PreflightConfig::default());
        assert!(c.preflight.enabled);
        assert_eq!(c.preflight.interval, Duration::from_secs(6 * 3600));
    }

    #[test]
    fn preflight_section_takes_the_shared_vocabulary_and_refuses_a_short_interval() {
        let c = AgentConfig::from_toml(
            &format!("{MIN}[preflight]\nenabled = false\ninterval = \"2h 30m\"\n"),
            "t.toml",
        )
        .unwrap();
        assert!(!c.preflight.enabled);
        assert_eq!(c.preflight.interval, Duration::from_secs(9000));
        let e = AgentConfig::from_toml(&format!("{MIN}[preflight]\ninterval = \"5s\"\n"), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("preflight.interval") && e.contains("5s"), "{e}");
        let e =
            AgentConfig::from_toml(&format!("{MIN}[preflight]\nintervall = \"6h\"\n"), "t.toml")
                .unwrap_err()
                .to_string();
        assert!(e.contains("intervall"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = MIN.replace("[sources]", "[sources]\npol = true");
        let e = AgentConfig::from_toml(&text, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pol") && e.contains("t.toml"), "{e}");
    }

    #[test]
    fn invalid_values_name_the_field() {
        let cases = [
            ("http://127.0.0.1:4790", "ftp://x", "aggregator.endpoint"),
            (
                "[sources]",
                "[sources]\nencoding_fallback = \"klingon\"",
                "sources.encoding_fallback",
            ),
            (
                "[aggregator]",
                "[spool]\nfsync = \"sometimes\"\n[aggregator]",
                "unknown variant `sometimes`, expected `batch` or `always`",
            ),
            (
                "[aggregator]",
                "[batch]\nlinger = \"soon\"\n[aggregator]",
                "invalid duration \"soon\"",
            ),
            (
                "[aggregator]",
                "[spool]\nmax_bytes = 10\n[aggregator]",
                "spool.segment_bytes",
            ),
        ];
        for (from, to, field) in cases {
            let e = AgentConfig::from_toml(&MIN.replace(from, to), "t")
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn aggregator_is_optional_with_sinks_only() {
        let no_agg = "data_dir = \"/tmp/pw\"\n[sources]\ninclude = [\"/x/*.log\"]\n";
        let e = AgentConfig::from_toml(no_agg, "t").unwrap_err().to_string();
        assert!(
            e.contains("aggregator.endpoint") && e.contains("sinks"),
            "{e}"
        );
        let sinks = format!("{no_agg}[sinks.local]\ntype = \"jsonl\"\npath = \"/tmp/f.jsonl\"\n");
        let c = AgentConfig::from_toml(&sinks, "t").unwrap();
        assert!(!c.aggregator_enabled());
        assert_eq!(c.sinks.len(), 1);
        let token = format!("{sinks}[aggregator]\ntoken = \"x\"\n");
        let e = AgentConfig::from_toml(&token, "t").unwrap_err().to_string();
        assert!(e.contains("no endpoint"), "{e}");
        assert!(AgentConfig::from_toml(MIN, "t")
            .unwrap()
            .aggregator_enabled());
    }

    #[test]
    fn shipped_example_parses_and_validates() {
        let text = include_str!("../../deploy/agent.example.toml");
        let c = AgentConfig::from_toml(text, "agent.example.toml").unwrap();
        assert!(c.sources.poll);
        assert!(c.aggregator.tls.as_ref().unwrap().cert_file.is_some());
    }

    #[test]
    fn missing_or_empty_sources_mean_the_platform_locations() {
        let no_sources =
            "data_dir = \"/tmp/pw\"\n[aggregator]\nendpoint = \"http://127.0.0.1:1\"\n";
        let empty = format!("{no_sources}[sources]\n");
        let poll_only = format!("{no_sources}[sources]\npoll = true\n");
        for text in [no_sources, &empty, &poll_only] {
            let parsed: AgentConfig = patchwatch_config::from_toml(text).unwrap().value;
            assert_eq!(parsed.sources.include, default_includes(), "{text}");
            assert_eq!(
                parsed.sources.rescan_interval,
                SourcesConfig::default().rescan_interval
            );
            // Windows has standard locations; elsewhere validation asks for them by name.
            let result = AgentConfig::from_toml(text, "t");
            assert_eq!(result.is_ok(), cfg!(windows), "{result:?}");
            match result {
                Ok(c) => assert_eq!(c.sources.include.len(), 5),
                Err(e) => assert!(e.to_string().contains("sources.include"), "{e}"),
            }
        }
    }

    #[test]
    fn token_is_redacted_in_debug() {
        let text = format!("{MIN}token = \"s3cret-token\"\n");
        let c = AgentConfig::from_toml(&text, "t").unwrap();
        assert!(c.aggregator.token.is_some());
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
    }

    #[test]
    fn old_example_spellings_give_the_same_config_with_warnings() {
        let old = include_str!("../../config/tests/data/old/agent.example.toml");
        let new = include_str!("../../deploy/agent.example.toml");
        let loaded = patchwatch_config::from_toml::<AgentConfig>(old).unwrap();
        assert_eq!(loaded.value, AgentConfig::from_toml(new, "new").unwrap());
        assert_eq!(
            AgentConfig::from_toml(old, "old").unwrap(),
            AgentConfig::from_toml(new, "new").unwrap()
        );
        let old_keys: Vec<&str> = loaded
            .deprecations
            .iter()
            .map(|d| d.old_path.as_str())
            .collect();
        assert_eq!(
            old_keys,
            [
                "stall_threshold_secs",
                "aggregator.connect_timeout_secs",
                "aggregator.backoff_initial_ms",
                "aggregator.backoff_max_ms",
                "aggregator.token_file",
                "batch.linger_ms",
                "sources.poll_interval_ms",
                "sources.rescan_interval_ms",
                "sources.idle_close_secs",
            ]
        );
        assert_eq!(
            loaded.deprecations[4].to_string(),
            "`aggregator.token_file` is deprecated; use `aggregator.token = { file = \"/etc/patchwatch/token\" }`"
        );
    }

    #[test]
    fn heartbeat_out_of_range_is_refused_by_name() {
        for bad in ["0s", "500ms", "2h"] {
            let text = format!("{MIN}heartbeat = \"{bad}\"\n");
            let e = AgentConfig::from_toml(&text, "t").unwrap_err().to_string();
            assert!(e.contains("aggregator.heartbeat"), "{e}");
            assert!(e.contains(bad), "{e}");
        }
        let e = AgentConfig::from_toml(&format!("{MIN}heartbeat = \"soon\"\n"), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("heartbeat"), "{e}");
        let c = AgentConfig::from_toml(&format!("{MIN}heartbeat = \"15s\"\n"), "t").unwrap();
        assert_eq!(
            c.aggregator.heartbeat.get(),
            std::time::Duration::from_secs(15)
        );
    }

    #[test]
    fn platform_defaults_validate_where_sources_exist() {
        let c = AgentConfig::default_for_platform();
        assert_eq!(c.validate().is_ok(), cfg!(windows));
    }
}
