//! TLS settings: [`ClientTls`] for connections patchwatch makes, [`ServerTls`] for its
//! listeners. Both name PEM files; `load` reads them and checks they hold what they should.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// TLS for an outgoing connection (agent → aggregator, sink → SIEM):
///
/// ```toml
/// [aggregator.tls]
/// ca_file = "/etc/patchwatch/ca.pem"        # trust this CA; absent: the system roots
/// cert_file = "/etc/patchwatch/agent.pem"   # client certificate for mutual TLS ...
/// key_file = "/etc/patchwatch/agent.key"    # ... and its key (both or neither)
/// server_name = "aggregator.example"        # name to verify, when not the host connected to
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// PEM file of the CA certificate(s) to trust; absent means the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS; needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name to verify in the server certificate, when it differs from the host connected to.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// The PEM contents of a [`ClientTls`], read and checked.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientTlsPem {
    /// CA certificate(s) to trust, when `ca_file` was given.
    pub ca: Option<Vec<u8>>,
    /// Client certificate chain and private key, when `cert_file` and `key_file` were given.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Name to verify in the server certificate.
    pub server_name: Option<String>,
}

impl fmt::Debug for ClientTlsPem {
    // The key is secret, and the certificates are noise in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTlsPem")
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl ClientTls {
    /// Reads and checks the PEM files. `field` is the table's dotted key (`aggregator.tls`);
    /// errors name `<field>.<key>` and the file.
    ///
    /// # Errors
    /// [`TlsError`] when a file cannot be read or holds no certificate or key, or when only
    /// one of `cert_file` and `key_file` is given.
    pub fn load(&self, field: &str) -> Result<ClientTlsPem, TlsError> {
        let ca = self
            .ca_file
            .as_deref()
            .map(|p| read_certs(field, "ca_file", p))
            .transpose()?;
        let identity = match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => Some((
                read_certs(field, "cert_file", c)?,
                read_key(field, "key_file", k)?,
            )),
            (None, None) => None,
            (Some(_), None) => return Err(TlsError::pair(field, "cert_file", "key_file")),
            (None, Some(_)) => return Err(TlsError::pair(field, "key_file", "cert_file")),
        };
        Ok(ClientTlsPem {
            ca,
            identity,
            server_name: self.server_name.clone(),
        })
    }
}

/// TLS for a listener (the aggregator's gRPC and HTTP):
///
/// ```toml
/// [grpc.tls]
/// cert_file = "/etc/patchwatch/aggregator.crt"
/// key_file = "/etc/patchwatch/aggregator.key"
/// client_ca_file = "/etc/patchwatch/collector-ca.crt"   # mutual TLS: clients need a cert
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// PEM file with the server certificate chain.
    pub cert_file: PathBuf,
    /// PEM file with the server's private key.
    pub key_file: PathBuf,
    /// PEM file with the CA certificate(s) client certificates must chain to. When set, a
    /// client without a valid certificate is refused during the handshake (mutual TLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// The PEM contents of a [`ServerTls`], read and checked.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerTlsPem {
    /// Server certificate chain.
    pub cert: Vec<u8>,
    /// Server private key.
    pub key: Vec<u8>,
    /// CA certificate(s) for client certificates.
    pub client_ca: Option<Vec<u8>>,
}

impl fmt::Debug for ServerTlsPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTlsPem")
            .field("client_ca", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads and checks the PEM files. `field` is the table's dotted key (`grpc.tls`).
    ///
    /// # Errors
    /// [`TlsError`] naming `<field>.<key>` and the file when a file cannot be read or holds no
    /// certificate or key.
    pub fn load(&self, field: &str) -> Result<ServerTlsPem, TlsError> {
        Ok(ServerTlsPem {
            cert: read_certs(field, "cert_file", &self.cert_file)?,
            key: read_key(field, "key_file", &self.key_file)?,
            client_ca: self
                .client_ca_file
                .as_deref()
                .map(|p| read_certs(field, "client_ca_file", p))
                .transpose()?,
        })
    }
}

/// A TLS file that cannot be used. Every variant names the config key and the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file cannot be read.
    #[error("{field}: cannot read {}: {source}", path.display())]
    Read {
        /// Dotted config key, e.g. `grpc.tls.cert_file`.
        field: String,
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no PEM block of the expected kind.
    #[error("{field}: {} holds no PEM {expected}", path.display())]
    NotPem {
        /// Dotted config key.
        field: String,
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        expected: &'static str,
    },
    /// A certificate without its key or the other way round.
    #[error("{field}: needs `{missing}` too (give both or neither)")]
    Incomplete {
        /// Dotted config key that is set.
        field: String,
        /// Key that is missing.
        missing: &'static str,
    },
}

impl TlsError {
    fn pair(table: &str, given: &str, missing: &'static str) -> Self {
        Self::Incomplete {
            field: format!("{table}.{given}"),
            missing,
        }
    }
}

fn read(table: &str, key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        field: format!("{table}.{key}"),
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(table: &str, key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(table, key, path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .filter(|c| c.is_ok())
        .count();
    if certs == 0 {
        return Err(TlsError::NotPem {
            field: format!("{table}.{key}"),
            path: path.to_path_buf(),
            expected: "certificate",
        });
    }
    Ok(pem)
}

fn read_key(table: &str, key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(table, key, path)?;
    match rustls_pemfile::private_key(&mut pem.as_slice()) {
        Ok(Some(_)) => Ok(pem),
        _ => Err(TlsError::NotPem {
            field: format!("{table}.{key}"),
            path: path.to_path_buf(),
            expected: "private key",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A syntactically valid PEM block is all `load` checks; rustls checks the DER later.
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";

    fn files() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, CERT).unwrap();
        std::fs::write(&key, KEY).unwrap();
        (dir, cert, key)
    }

    #[test]
    fn client_tls_parses_and_loads() {
        let (_dir, cert, key) = files();
        let text = format!(
            "ca_file = {cert:?}\ncert_file = {cert:?}\nkey_file = {key:?}\nserver_name = \"agg\"\n"
        );
        let tls: ClientTls = toml::from_str(&text).unwrap();
        let pem = tls.load("aggregator.tls").unwrap();
        assert_eq!(pem.ca.as_deref(), Some(CERT.as_bytes()));
        assert_eq!(pem.identity.as_ref().unwrap().1, KEY.as_bytes());
        assert_eq!(pem.server_name.as_deref(), Some("agg"));
        assert!(!format!("{pem:?}").contains("PRIVATE"));
        let none = ClientTls::default().load("x").unwrap();
        assert_eq!(none, ClientTlsPem::default());
    }

    #[test]
    fn client_tls_errors_name_field_and_file() {
        let (_dir, cert, key) = files();
        let only_cert = ClientTls {
            cert_file: Some(cert.clone()),
            ..Default::default()
        };
        assert_eq!(
            only_cert.load("aggregator.tls").unwrap_err().to_string(),
            "aggregator.tls.cert_file: needs `key_file` too (give both or neither)"
        );
        let missing = ClientTls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = missing.load("sinks.siem.tls").unwrap_err().to_string();
        assert!(
            e.starts_with("sinks.siem.tls.ca_file: cannot read /nonexistent/ca.pem: "),
            "{e}"
        );
        let swapped = ClientTls {
            cert_file: Some(key.clone()),
            key_file: Some(cert.clone()),
            ..Default::default()
        };
        let e = swapped.load("t").unwrap_err().to_string();
        assert_eq!(
            e,
            format!("t.cert_file: {} holds no PEM certificate", key.display())
        );
        let e = toml::from_str::<ClientTls>("ca = \"/x\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown field `ca`") && e.contains("ca_file"),
            "{e}"
        );
    }

    #[test]
    fn server_tls_loads_and_names_the_bad_file() {
        let (_dir, cert, key) = files();
        let tls = ServerTls {
            cert_file: cert.clone(),
            key_file: key.clone(),
            client_ca_file: Some(cert.clone()),
        };
        let pem = tls.load("grpc.tls").unwrap();
        assert_eq!(pem.key, KEY.as_bytes());
        assert!(pem.client_ca.is_some());
        let bad = ServerTls {
            key_file: cert.clone(),
            ..tls
        };
        assert_eq!(
            bad.load("grpc.tls").unwrap_err().to_string(),
            format!(
                "grpc.tls.key_file: {} holds no PEM private key",
                cert.display()
            )
        );
        let e = toml::from_str::<ServerTls>("cert_file = \"/a\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key_file"), "{e}");
    }
}
