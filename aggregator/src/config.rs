//! The aggregator's configuration file (TOML): types, defaults, loading and validation.
//!
//! Every field is optional; [`DEFAULT_CONFIG`] is the commented reference file and parses to
//! [`Config::default`]. Unknown keys are errors, so a typo never silently falls back to a default.
//! Keys use the shared vocabulary of `patchwatch_config`: tokens and the PostgreSQL URL are
//! [`Secret`]s (redacted in `Debug`), listener TLS is a [`ServerTls`], durations are
//! [`Duration`]s (`"10s"`). Old spellings (`token_env`, `[grpc.tls] cert`, `url_env`,
//! `shutdown_grace_seconds`, `[forwarding] *_ms`) are rewritten with a warning naming the new key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::routing::RoutingConfig;
use patchwatch_config::{Duration, Secret, ServerTls};
use patchwatch_sinks::SinkConfig;
use serde::Deserialize;

pub use crate::forward::{ForwardingConfig, StartFrom};

/// The reference configuration: every key with its default value and what it means.
///
/// `patchwatch aggregator --print-default-config` prints this text; it parses to
/// [`Config::default`] (a test holds it to that).
pub const DEFAULT_CONFIG: &str = include_str!("default_config.toml");

/// The whole aggregator configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the embedded SQLite database and other state. Created if missing.
    pub data_dir: PathBuf,
    /// The gRPC listener the collectors stream batches to.
    pub grpc: GrpcConfig,
    /// The HTTP listener: JSON API, Server-Sent Events, Prometheus metrics and the dashboard.
    pub http: HttpConfig,
    /// Where findings, runs and hosts are stored.
    pub store: StoreConfig,
    /// Alert routing (`[routing]`, a [`RoutingConfig`]):
    /// routes, receivers, silences and static maintenance windows. Absent: no routing.
    pub routing: Option<RoutingConfig>,
    /// SIEM sinks every newly stored finding is forwarded to (`[sinks.<name>]`, the shape of
    /// `patchwatch_sinks::SinksConfig`). Empty: no forwarding.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// How stored findings are forwarded to the router and the sinks (cursors, batches).
    pub forwarding: ForwardingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/patchwatch"),
            grpc: GrpcConfig::default(),
            http: HttpConfig::default(),
            store: StoreConfig::default(),
            routing: None,
            sinks: BTreeMap::new(),
            forwarding: ForwardingConfig::default(),
        }
    }
}

/// Settings of the gRPC ingest listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Address to listen on. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// TLS for the listener (`cert_file`, `key_file`, `client_ca_file` for mutual TLS);
    /// absent means plaintext, which is refused on a non-loopback address unless
    /// `allow_plaintext` is set.
    pub tls: Option<ServerTls>,
    /// Accept plaintext connections on a non-loopback address.
    pub allow_plaintext: bool,
    /// Bearer tokens, one per collector. When any is configured, every stream must present one
    /// (`authorization: Bearer <token>`), and a batch's `collector_id` must match the token's.
    pub tokens: Vec<TokenConfig>,
    /// Accept streams without a token on a non-loopback address when no tokens and no client CA
    /// are configured.
    pub allow_unauthenticated: bool,
    /// Largest accepted `Batch` message in bytes (after decompression). A larger one ends the
    /// stream with `RESOURCE_EXHAUSTED`.
    pub max_message_bytes: usize,
    /// How far into the future (by the aggregator's clock) an item's timestamps may lie; an
    /// item beyond it is rejected with a reason. Collectors' clocks drift; a run update
    /// dated far ahead would otherwise freeze its run.
    pub max_clock_skew: Duration,
    /// How far into the past an item's timestamps may lie (logs are re-read after years at
    /// most).
    pub max_item_age: Duration,
    /// Batches of one stream being stored at once; the stream is not read further until one
    /// of them is acknowledged (backpressure, not an error).
    pub max_inflight_batches: usize,
    /// Collector streams open at once; a further stream is refused with `RESOURCE_EXHAUSTED`.
    pub max_streams: usize,
    /// Streams one authenticated collector (token or client certificate) may hold at once; a
    /// further one is refused with `RESOURCE_EXHAUSTED`.
    pub max_streams_per_collector: usize,
    /// Bytes of received batches (encoded size) held across all streams until acknowledged;
    /// a stream whose batch does not fit is not read until others are acknowledged.
    pub max_inflight_bytes: usize,
    /// How long a shutdown waits for open streams to finish their in-flight batches
    /// (was `shutdown_grace_seconds`).
    pub shutdown_grace: Duration,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4790)),
            tls: None,
            allow_plaintext: false,
            tokens: Vec::new(),
            allow_unauthenticated: false,
            max_message_bytes: 4 * 1024 * 1024,
            max_clock_skew: Duration::from_secs(24 * 3600),
            // "10y" in humantime's years of 365.25 days.
            max_item_age: Duration::from_secs(315_576_000),
            max_inflight_batches: 8,
            max_streams: 1024,
            max_streams_per_collector: 4,
            max_inflight_bytes: 256 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Settings of the HTTP listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// TLS for the listener (`cert_file` and `key_file`; client certificates are not asked
    /// for, so `client_ca_file` is refused); absent means plaintext, which is refused on a
    /// non-loopback address unless `allow_plaintext` is set.
    pub tls: Option<ServerTls>,
    /// Serve plaintext HTTP on a non-loopback address.
    pub allow_plaintext: bool,
    /// Read tokens. When any is configured, every route but `/healthz` needs one, as
    /// `Authorization: Bearer <token>` or through the dashboard's sign-in page (a cookie).
    pub tokens: Vec<TokenConfig>,
    /// Serve reads without a token on a non-loopback address when no tokens are configured.
    pub allow_unauthenticated: bool,
    /// Largest page of `/api/v1/findings` and `/api/v1/runs`.
    pub max_page_size: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8790)),
            tls: None,
            allow_plaintext: false,
            tokens: Vec::new(),
            allow_unauthenticated: false,
            max_page_size: 1000,
        }
    }
}

/// One bearer token and who presents it: `token = { env = "VAR" }`, `{ file = "/path" }` or
/// inline (old spellings `token_env` / `token_file` still parse). The value is never logged
/// or printed (`Debug` shows `[redacted]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The collector id (gRPC tokens) or the reader's name (HTTP tokens) the token stands for.
    pub id: String,
    /// The token. Prefer `{ env = ... }` or `{ file = ... }`, which keep it out of the file.
    pub token: Secret,
    /// gRPC tokens only: the hosts this collector may write, as case-insensitive globs
    /// (`["EX0*", "EXCH-*"]`). Empty: a host is bound to the first collector that reports it,
    /// until an admin releases it (`DELETE /api/v1/hosts/{host}/binding`).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// What the token may do: `"read"` (dashboard and GET endpoints), `"write"` (create and
    /// end windows and silences, release host bindings), `"ingest"` (stream batches; gRPC
    /// tokens). Absent: what tokens could always do, `["read", "write"]` for HTTP tokens and
    /// `["ingest"]` for gRPC tokens.
    #[serde(default)]
    pub scopes: Option<Vec<Scope>>,
}

/// One permission of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The dashboard, `/metrics` and every GET endpoint.
    Read,
    /// Windows, silences and host bindings.
    Write,
    /// The gRPC ingest stream.
    Ingest,
}

impl TokenConfig {
    /// A token for `id` with no host list.
    pub fn new(id: impl Into<String>, token: Secret) -> Self {
        Self {
            id: id.into(),
            token,
            hosts: Vec::new(),
            scopes: None,
        }
    }
}

/// Which backend stores the data, and its settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `"sqlite"` (embedded, in `data_dir`) or `"postgres"` (shared by several aggregators).
    pub backend: StoreBackend,
    /// Settings of the SQLite backend.
    pub sqlite: SqliteConfig,
    /// Settings of the PostgreSQL backend.
    pub postgres: PostgresConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Sqlite,
            sqlite: SqliteConfig::default(),
            postgres: PostgresConfig::default(),
        }
    }
}

/// The storage backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StoreBackend {
    /// SQLite in WAL mode, one writer thread with group commit.
    Sqlite,
    /// PostgreSQL through a connection pool.
    Postgres,
}

/// Settings of the SQLite backend.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteConfig {
    /// Database file; a relative path is taken relative to `data_dir`.
    pub path: PathBuf,
    /// `"full"` fsyncs the write-ahead log at every commit, so an acknowledged batch survives
    /// power loss. `"normal"` survives a crash of the aggregator but not of the machine.
    pub synchronous: SqliteSync,
    /// Most batches written in one transaction (group commit across streams).
    pub max_group_batches: usize,
    /// Most findings and run updates written in one transaction.
    pub max_group_rows: usize,
    /// Read-only connections kept for the HTTP API.
    pub read_connections: usize,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("patchwatch.db"),
            synchronous: SqliteSync::Full,
            max_group_batches: 256,
            max_group_rows: 50_000,
            read_connections: 4,
        }
    }
}

/// SQLite's `synchronous` setting for the write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// Durable across power loss: fsync at every commit.
    Full,
    /// Durable across a crash of the process, not of the machine.
    Normal,
}

/// Settings of the PostgreSQL backend.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL, e.g. `postgres://patchwatch@db.example:5432/patchwatch`, as a secret:
    /// prefer `{ env = "VAR" }` or `{ file = "/path" }` when it carries a password (the old
    /// `url_env = "VAR"` still parses). Redacted in `Debug`.
    pub url: Option<Secret>,
    /// Connections in the pool.
    pub pool_size: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 16,
        }
    }
}

/// What went wrong loading or checking a configuration; names the file and the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (syntax, type, or unknown key).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line, column and key.
        message: String,
    },
    /// A field has a value the aggregator cannot use.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// The file (or `<config>` when the config did not come from a file).
        path: PathBuf,
        /// The dotted field name, e.g. `grpc.tokens[1].token_file`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: PathBuf::from("<config>"),
            field: field.into(),
            message: message.into(),
        }
    }

    fn with_path(self, path: &Path) -> Self {
        match self {
            Self::Invalid { field, message, .. } => Self::Invalid {
                path: path.to_path_buf(),
                field,
                message,
            },
            other => other,
        }
    }
}

impl Config {
    /// Reads, parses and validates a configuration file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and, where it applies, the field.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] or [`ConfigError::Invalid`].
    pub fn parse(text: &str, origin: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let origin = origin.as_ref();
        // Deprecated keys are rewritten here, each logged once naming its replacement.
        let config: Config = patchwatch_config::from_toml(text)
            .map_err(|e| ConfigError::Parse {
                path: origin.to_path_buf(),
                message: e.to_string().trim_end().to_owned(),
            })?
            .value;
        config.validate().map_err(|e| e.with_path(origin))?;
        Ok(config)
    }

    /// Checks the rules that types alone do not express: listener security, token sources,
    /// limits, and that the chosen store is configured.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let g = &self.grpc;
        if g.tls.is_none() && !g.listen.ip().is_loopback() && !g.allow_plaintext {
            return Err(ConfigError::invalid(
                "grpc.listen",
                format!(
                    "{} is not a loopback address and no [grpc.tls] is configured; \
                     configure TLS or set grpc.allow_plaintext = true",
                    g.listen
                ),
            ));
        }
        let grpc_mtls = g.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
        if g.tokens.is_empty()
            && !grpc_mtls
            && !g.listen.ip().is_loopback()
            && !g.allow_unauthenticated
        {
            return Err(ConfigError::invalid(
                "grpc.tokens",
                format!(
                    "{} is not a loopback address and neither tokens nor grpc.tls.client_ca_file \
                     are configured; add [[grpc.tokens]] or set grpc.allow_unauthenticated = true",
                    g.listen
                ),
            ));
        }
        validate_tokens("grpc.tokens", &g.tokens)?;
        for (i, t) in g.tokens.iter().enumerate() {
            for p in &t.hosts {
                crate::routing::host_glob(p).map_err(|e| {
                    ConfigError::invalid(
                        format!("grpc.tokens[{i}].hosts"),
                        format!("`{p}` is not a glob: {}", e.kind()),
                    )
                })?;
            }
        }
        for (field, tokens, allowed) in [
            ("grpc.tokens", &g.tokens, &[Scope::Ingest][..]),
            (
                "http.tokens",
                &self.http.tokens,
                &[Scope::Read, Scope::Write][..],
            ),
        ] {
            for (i, t) in tokens.iter().enumerate() {
                if let Some(bad) = t.scopes.iter().flatten().find(|s| !allowed.contains(s)) {
                    return Err(ConfigError::invalid(
                        format!("{field}[{i}].scopes"),
                        format!("{bad:?} is not a scope of {field}; use {allowed:?}"),
                    ));
                }
            }
        }
        for (i, t) in self.http.tokens.iter().enumerate() {
            if !t.hosts.is_empty() {
                return Err(ConfigError::invalid(
                    format!("http.tokens[{i}].hosts"),
                    "host lists are for collector tokens ([[grpc.tokens]])",
                ));
            }
        }
        for (field, value) in [
            ("grpc.max_message_bytes", g.max_message_bytes),
            ("grpc.max_inflight_batches", g.max_inflight_batches),
            ("grpc.max_streams", g.max_streams),
            (
                "grpc.max_streams_per_collector",
                g.max_streams_per_collector,
            ),
            ("grpc.max_inflight_bytes", g.max_inflight_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(field, "must be at least 1"));
            }
        }

        let h = &self.http;
        if h.tls.is_none() && !h.listen.ip().is_loopback() && !h.allow_plaintext {
            return Err(ConfigError::invalid(
                "http.listen",
                format!(
                    "{} is not a loopback address and no [http.tls] is configured; \
                     configure TLS or set http.allow_plaintext = true",
                    h.listen
                ),
            ));
        }
        if h.tokens.is_empty() && !h.listen.ip().is_loopback() && !h.allow_unauthenticated {
            return Err(ConfigError::invalid(
                "http.tokens",
                format!(
                    "{} is not a loopback address and no read tokens are configured; \
                     add [[http.tokens]] or set http.allow_unauthenticated = true",
                    h.listen
                ),
            ));
        }
        if h.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some()) {
            return Err(ConfigError::invalid(
                "http.tls.client_ca_file",
                "the HTTP listener does not ask for client certificates; remove it \
                 (readers authenticate with [[http.tokens]])",
            ));
        }
        validate_tokens("http.tokens", &h.tokens)?;
        if h.max_page_size == 0 {
            return Err(ConfigError::invalid(
                "http.max_page_size",
                "must be at least 1",
            ));
        }

        let s = &self.store;
        for (field, value) in [
            ("store.sqlite.max_group_batches", s.sqlite.max_group_batches),
            ("store.sqlite.max_group_rows", s.sqlite.max_group_rows),
            ("store.sqlite.read_connections", s.sqlite.read_connections),
            ("store.postgres.pool_size", s.postgres.pool_size),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(field, "must be at least 1"));
            }
        }
        self.forwarding.validate()?;
        if s.backend == StoreBackend::Postgres && s.postgres.url.is_none() {
            return Err(ConfigError::invalid(
                "store.postgres.url",
                "the postgres backend needs a URL: url = { env = \"VAR\" }, { file = \"/path\" } \
                 or \"postgres://...\"",
            ));
        }
        Ok(())
    }

    /// The SQLite database file: `store.sqlite.path`, relative to `data_dir` unless absolute.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join(&self.store.sqlite.path)
    }

    /// The PostgreSQL URL, read from wherever `store.postgres.url` says.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when it is not set, or its variable or file is missing or
    /// empty; the message never holds the URL.
    pub fn postgres_url(&self) -> Result<patchwatch_config::SecretValue, ConfigError> {
        const FIELD: &str = "store.postgres.url";
        let Some(url) = &self.store.postgres.url else {
            return Err(ConfigError::invalid(FIELD, "not set"));
        };
        url.resolve(FIELD)
            .map_err(|e| ConfigError::invalid(FIELD, e.reason()))
    }
}

impl Config {
    /// The security opt-outs in effect on listeners bound to `grpc` and `http`: one message
    /// per setting that lets a non-loopback listener run without TLS or without
    /// authentication, naming the setting. Empty when every listener is protected.
    pub fn insecure_settings(&self, grpc: SocketAddr, http: SocketAddr) -> Vec<String> {
        let mut out = Vec::new();
        let g = &self.grpc;
        if !grpc.ip().is_loopback() {
            if g.tls.is_none() {
                out.push(format!(
                    "grpc.allow_plaintext: the gRPC listener {grpc} is not loopback and has no TLS; \
                     tokens and findings cross the network in the clear"
                ));
            }
            let mtls = g.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
            if g.tokens.is_empty() && !mtls {
                out.push(format!(
                    "grpc.allow_unauthenticated: the gRPC listener {grpc} is not loopback and \
                     accepts batches from anyone"
                ));
            }
        }
        let h = &self.http;
        if !http.ip().is_loopback() {
            if h.tls.is_none() {
                out.push(format!(
                    "http.allow_plaintext: the HTTP listener {http} is not loopback and has no TLS"
                ));
            }
            if h.tokens.is_empty() {
                out.push(format!(
                    "http.allow_unauthenticated: the HTTP listener {http} is not loopback and \
                     serves findings to anyone"
                ));
            }
        }
        out
    }
}

fn validate_tokens(field: &str, tokens: &[TokenConfig]) -> Result<(), ConfigError> {
    for (i, t) in tokens.iter().enumerate() {
        if t.id.trim().is_empty() {
            return Err(ConfigError::invalid(
                format!("{field}[{i}].id"),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

impl TokenConfig {
    /// Reads the token from wherever it is configured. `field` names the entry in errors.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the variable or file is missing or empty; the message
    /// never contains the token.
    pub fn resolve(&self, field: &str) -> Result<patchwatch_config::SecretValue, ConfigError> {
        let field = format!("{field}.token");
        self.token
            .resolve(&field)
            .map_err(|e| ConfigError::invalid(field, e.reason()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_text_parses_to_defaults() {
        let parsed =
            Config::parse(DEFAULT_CONFIG, "DEFAULT_CONFIG").expect("DEFAULT_CONFIG parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(Config::parse("", "empty.toml").unwrap(), Config::default());
    }

    #[test]
    fn unknown_field_is_an_error_naming_file_and_key() {
        let err = Config::parse("[grpc]\nlisten_addr = \"127.0.0.1:1\"\n", "agg.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("agg.toml: "), "{text}");
        assert!(text.contains("listen_addr"), "{text}");
    }

    #[test]
    fn plaintext_beyond_loopback_is_refused() {
        let err = Config::parse("[grpc]\nlisten = \"0.0.0.0:4790\"\n", "agg.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("agg.toml: grpc.listen:"), "{text}");
        let err = Config::parse(
            "[grpc]\nlisten = \"0.0.0.0:4790\"\nallow_plaintext = true\n",
            "agg.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("grpc.tokens"), "{err}");
        Config::parse(
            "[grpc]\nlisten = \"0.0.0.0:4790\"\nallow_plaintext = true\n\
             [[grpc.tokens]]\nid = \"exch01\"\ntoken_env = \"PW_TOKEN\"\n",
            "agg.toml",
        )
        .unwrap();
    }

    #[test]
    fn insecure_opt_outs_are_named() {
        let c = Config::parse(
            "[grpc]\nlisten = \"0.0.0.0:4790\"\nallow_plaintext = true\nallow_unauthenticated = true\n\
             [http]\nlisten = \"0.0.0.0:8790\"\nallow_plaintext = true\nallow_unauthenticated = true\n",
            "agg.toml",
        )
        .unwrap();
        let text = c.insecure_settings(c.grpc.listen, c.http.listen).join("\n");
        for key in [
            "grpc.allow_plaintext",
            "grpc.allow_unauthenticated",
            "http.allow_plaintext",
            "http.allow_unauthenticated",
        ] {
            assert!(text.contains(key), "{key}: {text}");
        }
        let d = Config::default();
        assert!(d.insecure_settings(d.grpc.listen, d.http.listen).is_empty());
    }

    #[test]
    fn http_beyond_loopback_needs_read_tokens() {
        let err = Config::parse(
            "[http]\nlisten = \"0.0.0.0:8790\"\nallow_plaintext = true\n",
            "agg.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("http.tokens"), "{err}");
    }

    #[test]
    fn token_needs_exactly_one_source_and_is_redacted() {
        let err = Config::parse(
            "[[grpc.tokens]]\nid = \"a\"\ntoken = \"x\"\ntoken_env = \"Y\"\n",
            "agg.toml",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("grpc.tokens[0].token_env")
                && text.contains("`grpc.tokens[0].token` is set too"),
            "{text}"
        );
        let c = Config::parse(
            "[[grpc.tokens]]\nid = \"a\"\ntoken = \"s3cret\"\n",
            "agg.toml",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn token_errors_name_the_entry_and_the_variable() {
        let c = Config::parse(
            "[[http.tokens]]\nid = \"ops\"\ntoken = { env = \"PW_AGG_TEST_UNSET_TOKEN\" }\n",
            "agg.toml",
        )
        .unwrap();
        let err = c.http.tokens[0].resolve("http.tokens[0]").unwrap_err();
        assert_eq!(
            err.to_string(),
            "<config>: http.tokens[0].token: environment variable `PW_AGG_TEST_UNSET_TOKEN` is not set"
        );
    }

    #[test]
    fn http_tls_refuses_a_client_ca() {
        let err = Config::parse(
            "[http.tls]\ncert_file = \"/c\"\nkey_file = \"/k\"\nclient_ca_file = \"/ca\"\n",
            "agg.toml",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("agg.toml: http.tls.client_ca_file: "),
            "{err}"
        );
    }

    #[test]
    fn forwarding_durations_are_checked() {
        let err = Config::parse(
            "[forwarding]\ninitial_backoff = \"2s\"\nmax_backoff = \"1s\"\n",
            "agg.toml",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "agg.toml: forwarding.max_backoff: must be at least forwarding.initial_backoff"
        );
        let err = Config::parse("[forwarding]\npoll_interval = 1000\n", "agg.toml").unwrap_err();
        assert!(err.to_string().contains("\"1000s\" or \"1000ms\""), "{err}");
        let c = Config::parse("[forwarding]\npoll_interval_ms = 200\n", "agg.toml").unwrap();
        assert_eq!(
            c.forwarding.poll_interval.get(),
            std::time::Duration::from_millis(200)
        );
    }

    #[test]
    fn deploy_example_parses_with_routing_sinks_and_windows() {
        let text = include_str!("../../deploy/aggregator.example.toml");
        let c = Config::parse(text, "deploy/aggregator.example.toml").expect("example parses");
        let routing = c.routing.expect("[routing]");
        assert_eq!(routing.route.len(), 4);
        assert_eq!(routing.windows.len(), 1);
        routing.windows[0].validate().unwrap();
        assert!(routing.windows[0].require_clean_preflight);
        // Without the key a window is not gated.
        let ungated = text.replace("require_clean_preflight = true\n", "");
        let c = Config::parse(&ungated, "ungated.toml").expect("example parses without the key");
        assert!(!c.routing.expect("[routing]").windows[0].require_clean_preflight);
        assert_eq!(routing.receivers.len(), 4);
        // Routes name existing receivers, durations parse: the router accepts it.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { crate::routing::Router::new(routing.clone()) })
            .expect("the router accepts the example");
        assert_eq!(c.sinks.len(), 2);
        assert_eq!(c.grpc.listen.port(), 4790);
    }

    #[test]
    fn routing_and_sinks_sections_are_checked() {
        let err = Config::parse("[routing]\nroutes = []\n", "agg.toml").unwrap_err();
        assert!(err.to_string().contains("routes"), "{err}");
        let err = Config::parse("[sinks.x]\ntype = \"carrier-pigeon\"\n", "agg.toml").unwrap_err();
        assert!(err.to_string().contains("carrier-pigeon"), "{err}");
    }

    #[test]
    fn postgres_needs_a_url_and_names_its_variable() {
        let err = Config::parse("[store]\nbackend = \"postgres\"\n", "agg.toml").unwrap_err();
        assert!(err.to_string().contains("store.postgres.url"), "{err}");
        let c = Config::parse(
            "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl_env = \"PW_AGG_TEST_UNSET_PG\"\n",
            "agg.toml",
        )
        .unwrap();
        assert_eq!(
            c.postgres_url().unwrap_err().to_string(),
            "<config>: store.postgres.url: environment variable `PW_AGG_TEST_UNSET_PG` is not set"
        );
        let c = Config::parse(
            "[store.postgres]\nurl = \"postgres://pw:hunter2@db/x\"\n",
            "agg.toml",
        )
        .unwrap();
        assert_eq!(
            c.postgres_url().unwrap().expose(),
            "postgres://pw:hunter2@db/x"
        );
    }
}
