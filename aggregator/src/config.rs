//! The aggregator's configuration file (TOML): types, defaults, loading and validation.
//!
//! Every field is optional; [`DEFAULT_CONFIG`] is the commented reference file and parses to
//! [`Config::default`]. Unknown keys are errors, so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::routing::RoutingConfig;
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
    /// TLS for the listener; absent means plaintext, which is refused on a non-loopback
    /// address unless `allow_plaintext` is set.
    pub tls: Option<TlsConfig>,
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
    /// Batches of one stream being stored at once; the stream is not read further until one
    /// of them is acknowledged (backpressure, not an error).
    pub max_inflight_batches: usize,
    /// Collector streams open at once; a further stream is refused with `RESOURCE_EXHAUSTED`.
    pub max_streams: usize,
    /// Seconds a shutdown waits for open streams to finish their in-flight batches.
    pub shutdown_grace_seconds: u64,
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
            max_inflight_batches: 8,
            max_streams: 1024,
            shutdown_grace_seconds: 10,
        }
    }
}

/// Settings of the HTTP listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// TLS for the listener (server certificate only); absent means plaintext, which is refused
    /// on a non-loopback address unless `allow_plaintext` is set.
    pub tls: Option<HttpTlsConfig>,
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

/// Server certificate and key, and optionally the CA that client certificates must chain to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate chain.
    pub cert: PathBuf,
    /// PEM file with the server's private key.
    pub key: PathBuf,
    /// PEM file with the CA certificate(s) client certificates must chain to. When set, a
    /// client without a valid certificate is refused during the TLS handshake (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// Server certificate and key for the HTTP listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTlsConfig {
    /// PEM file with the server certificate chain.
    pub cert: PathBuf,
    /// PEM file with the server's private key.
    pub key: PathBuf,
}

/// One bearer token and who presents it. Exactly one of `token`, `token_env` and `token_file`
/// must be set. Token values are never logged or printed.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The collector id (gRPC tokens) or the reader's name (HTTP tokens) the token stands for.
    pub id: String,
    /// The token itself. Prefer `token_env` or `token_file`, which keep it out of the file.
    pub token: Option<String>,
    /// Name of an environment variable holding the token.
    pub token_env: Option<String>,
    /// File holding the token; surrounding whitespace is ignored.
    pub token_file: Option<PathBuf>,
}

impl fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("id", &self.id)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_env", &self.token_env)
            .field("token_file", &self.token_file)
            .finish()
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
    /// Connection URL, e.g. `postgres://patchwatch@db.example:5432/patchwatch`. Prefer
    /// `url_env` when the URL carries a password.
    pub url: Option<String>,
    /// Name of an environment variable holding the connection URL.
    pub url_env: Option<String>,
    /// Connections in the pool.
    pub pool_size: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: None,
            url_env: None,
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
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string().trim_end().to_owned(),
        })?;
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
        let grpc_mtls = g.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        if g.tokens.is_empty()
            && !grpc_mtls
            && !g.listen.ip().is_loopback()
            && !g.allow_unauthenticated
        {
            return Err(ConfigError::invalid(
                "grpc.tokens",
                format!(
                    "{} is not a loopback address and neither tokens nor grpc.tls.client_ca \
                     are configured; add [[grpc.tokens]] or set grpc.allow_unauthenticated = true",
                    g.listen
                ),
            ));
        }
        validate_tokens("grpc.tokens", &g.tokens)?;
        for (field, value) in [
            ("grpc.max_message_bytes", g.max_message_bytes),
            ("grpc.max_inflight_batches", g.max_inflight_batches),
            ("grpc.max_streams", g.max_streams),
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
        if s.backend == StoreBackend::Postgres
            && s.postgres.url.is_some() == s.postgres.url_env.is_some()
        {
            return Err(ConfigError::invalid(
                "store.postgres.url",
                "the postgres backend needs exactly one of store.postgres.url and store.postgres.url_env",
            ));
        }
        Ok(())
    }

    /// The SQLite database file: `store.sqlite.path`, relative to `data_dir` unless absolute.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join(&self.store.sqlite.path)
    }

    /// The PostgreSQL URL from `url` or the environment variable named by `url_env`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when neither is set or the variable is missing.
    pub fn postgres_url(&self) -> Result<String, ConfigError> {
        let pg = &self.store.postgres;
        if let Some(url) = &pg.url {
            return Ok(url.clone());
        }
        let Some(var) = &pg.url_env else {
            return Err(ConfigError::invalid("store.postgres.url", "not set"));
        };
        std::env::var(var).map_err(|_| {
            ConfigError::invalid(
                "store.postgres.url_env",
                format!("environment variable {var} is not set"),
            )
        })
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
        let sources = [
            t.token.is_some(),
            t.token_env.is_some(),
            t.token_file.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(ConfigError::invalid(
                format!("{field}[{i}]"),
                "set exactly one of token, token_env, token_file",
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
    pub fn resolve(&self, field: &str) -> Result<String, ConfigError> {
        let value = if let Some(token) = &self.token {
            token.clone()
        } else if let Some(var) = &self.token_env {
            std::env::var(var).map_err(|_| {
                ConfigError::invalid(
                    format!("{field}.token_env"),
                    format!("environment variable {var} is not set"),
                )
            })?
        } else if let Some(file) = &self.token_file {
            std::fs::read_to_string(file).map_err(|e| {
                ConfigError::invalid(
                    format!("{field}.token_file"),
                    format!("cannot read {}: {e}", file.display()),
                )
            })?
        } else {
            return Err(ConfigError::invalid(field, "no token source"));
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(ConfigError::invalid(field, "the token is empty"));
        }
        Ok(value)
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
        assert!(err.to_string().contains("grpc.tokens[0]"), "{err}");
        let c = Config::parse(
            "[[grpc.tokens]]\nid = \"a\"\ntoken = \"s3cret\"\n",
            "agg.toml",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn deploy_example_parses_with_routing_sinks_and_windows() {
        let text = include_str!("../../deploy/aggregator.example.toml");
        let c = Config::parse(text, "deploy/aggregator.example.toml").expect("example parses");
        let routing = c.routing.expect("[routing]");
        assert_eq!(routing.route.len(), 4);
        assert_eq!(routing.windows.len(), 1);
        routing.windows[0].validate().unwrap();
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
    fn postgres_needs_a_url() {
        let err = Config::parse("[store]\nbackend = \"postgres\"\n", "agg.toml").unwrap_err();
        assert!(err.to_string().contains("store.postgres.url"), "{err}");
    }
}
