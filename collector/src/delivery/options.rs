//! Delivery settings resolved from the config: TLS material loaded, token read, endpoint built.

use std::time::Duration;

use patchwatch_proto::HostInfo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::AgentConfig;

/// Errors preparing or running delivery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// A TLS file cannot be read or holds no certificate or key; names field and file.
    #[error(transparent)]
    Tls(#[from] patchwatch_config::TlsError),
    /// The token's variable is not set, or its file cannot be read or is empty; names the
    /// field and the variable or file.
    #[error(transparent)]
    Token(#[from] patchwatch_config::SecretError),
    /// The token cannot be sent as an HTTP header value.
    #[error("{0}: bearer token contains characters not allowed in an HTTP header")]
    TokenInvalid(&'static str),
    /// Endpoint or TLS settings rejected by the transport.
    #[error("aggregator.endpoint {endpoint}: {source}")]
    Endpoint {
        /// The endpoint.
        endpoint: String,
        /// Transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// Connecting failed (the aggregator is down or unreachable); retried with backoff.
    #[error("cannot connect to aggregator {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// Transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The aggregator answered with an error status; retried with backoff.
    #[error("aggregator stream failed: {0}")]
    Status(#[from] tonic::Status),
    /// Reading or acknowledging the spool failed.
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
}

/// A bearer token; never printed (its `Debug` is redacted) and marked sensitive on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps a token value.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The `authorization` header value.
    pub(crate) fn header(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// PEM material for TLS, already read from disk.
#[derive(Clone, Default)]
pub struct TlsMaterial {
    /// CA certificate(s) to trust for the server.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key for mTLS.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Server name to verify, if not the endpoint host.
    pub domain_name: Option<String>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca", &self.ca_pem.is_some())
            .field("client_identity", &self.identity_pem.is_some())
            .field("domain_name", &self.domain_name)
            .finish()
    }
}

/// How often an idle connection sends an empty batch: a preflight snapshot follows a window's
/// start within this (plus the aggregator's window reload), and 10,000 idle collectors cost
/// the aggregator about 170 host-row updates a second.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(60);

/// Everything [`run`](super::run) needs.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// `http://` or `https://` endpoint of the aggregator.
    pub endpoint: String,
    /// TLS settings (with an `https://` endpoint).
    pub tls: Option<TlsMaterial>,
    /// Bearer token sent as `authorization` metadata.
    pub token: Option<BearerToken>,
    /// Gzip-compress requests (and accept gzip responses).
    pub compression: bool,
    /// This collector's stable id (`Batch.collector_id`).
    pub collector_id: String,
    /// Host identity sent with every batch.
    pub host: HostInfo,
    /// Most records per batch.
    pub max_batch_records: usize,
    /// Most payload bytes per batch (one record may exceed it alone).
    pub max_batch_bytes: usize,
    /// Wait this long for a batch to fill before sending it partial.
    pub linger: Duration,
    /// Most unacknowledged batches at once.
    pub max_in_flight: usize,
    /// Connection attempt timeout.
    pub connect_timeout: Duration,
    /// First backoff ceiling; doubles per failed attempt.
    pub backoff_initial: Duration,
    /// Largest backoff ceiling.
    pub backoff_max: Duration,
    /// An idle connection sends an empty batch this often, to receive acks (and the
    /// aggregator's preflight requests) with nothing to deliver.
    pub heartbeat: Duration,
    /// Where an ack naming a new maintenance window asks for a preflight snapshot; `None`
    /// when preflight does not run.
    pub preflight: Option<super::SnapshotRequests>,
}

impl DeliveryOptions {
    /// Options for `endpoint` with the defaults of `[batch]` and `[aggregator]`.
    pub fn new(
        endpoint: impl Into<String>,
        collector_id: impl Into<String>,
        host: HostInfo,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            tls: None,
            token: None,
            compression: true,
            collector_id: collector_id.into(),
            host,
            max_batch_records: 500,
            max_batch_bytes: 1024 * 1024,
            linger: Duration::from_millis(200),
            max_in_flight: 4,
            connect_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            heartbeat: DEFAULT_HEARTBEAT,
            preflight: None,
        }
    }

    /// Resolves the config: reads TLS files and the token (from value, env var or file).
    ///
    /// # Errors
    /// [`DeliveryError`] naming the config field and the file or variable.
    pub fn from_config(
        cfg: &AgentConfig,
        collector_id: impl Into<String>,
        host: HostInfo,
    ) -> Result<Self, DeliveryError> {
        let a = &cfg.aggregator;
        let tls = match &a.tls {
            None => None,
            Some(t) => {
                let pem = t.load("aggregator.tls")?;
                Some(TlsMaterial {
                    ca_pem: pem.ca,
                    identity_pem: pem.identity,
                    domain_name: pem.server_name,
                })
            }
        };
        let token = match &a.token {
            None => None,
            Some(secret) => Some(BearerToken(
                secret.resolve("aggregator.token")?.expose().to_owned(),
            )),
        };
        if let Some(t) = &token {
            if tonic::metadata::MetadataValue::try_from(t.header()).is_err() {
                return Err(DeliveryError::TokenInvalid("aggregator.token"));
            }
        }
        let mut o = Self::new(a.endpoint.clone(), collector_id, host);
        o.tls = tls;
        o.token = token;
        o.compression = a.compression;
        o.max_batch_records = cfg.batch.max_records;
        o.max_batch_bytes = cfg.batch.max_bytes;
        o.linger = cfg.batch.linger.get();
        o.max_in_flight = cfg.batch.max_in_flight;
        o.connect_timeout = a.connect_timeout.get();
        o.backoff_initial = a.initial_backoff.get();
        o.backoff_max = a.max_backoff.get();
        o.heartbeat = a.heartbeat.get();
        Ok(o)
    }

    /// Builds the transport endpoint (TLS applied), without connecting.
    ///
    /// # Errors
    /// [`DeliveryError::Endpoint`].
    pub fn endpoint(&self) -> Result<Endpoint, DeliveryError> {
        let err = |source| DeliveryError::Endpoint {
            endpoint: self.endpoint.clone(),
            source,
        };
        let mut ep = Endpoint::from_shared(self.endpoint.clone())
            .map_err(err)?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if let Some(t) = &self.tls {
            let mut tls = ClientTlsConfig::new().with_enabled_roots();
            if let Some(ca) = &t.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &t.identity_pem {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            if let Some(name) = &t.domain_name {
                tls = tls.domain_name(name.clone());
            }
            ep = ep.tls_config(tls).map_err(err)?;
        }
        Ok(ep)
    }

    /// Connects once.
    pub(crate) async fn connect(&self) -> Result<Channel, DeliveryError> {
        self.endpoint()?
            .connect()
            .await
            .map_err(|source| DeliveryError::Connect {
                endpoint: self.endpoint.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostInfo {
        HostInfo {
            hostname: "EX01".into(),
            ..HostInfo::default()
        }
    }

    #[test]
    fn heartbeat_comes_from_the_aggregator_section() {
        let base = "data_dir = \"/tmp/pw\"\n[sources]\ninclude = [\"/l/*.log\"]\n\
                    [aggregator]\nendpoint = \"http://127.0.0.1:4790\"\n";
        let cfg = AgentConfig::from_toml(base, "t").unwrap();
        let o = DeliveryOptions::from_config(&cfg, "c1", host()).unwrap();
        assert_eq!(o.heartbeat, DEFAULT_HEARTBEAT);
        let cfg = AgentConfig::from_toml(&format!("{base}heartbeat = \"20s\"\n"), "t").unwrap();
        let o = DeliveryOptions::from_config(&cfg, "c1", host()).unwrap();
        assert_eq!(o.heartbeat, Duration::from_secs(20));
    }
}
