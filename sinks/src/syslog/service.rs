//! Connections and writes for UDP, TCP and TLS.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use patchwatch_proto::Finding;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use patchwatch_config::ClientTls;

use super::config::{SyslogConfig, Transport};
use super::encoder::{message, octet_counted};
use crate::driver::{SendReport, Service};
use crate::error::{SendError, SinkError};

/// A TLS connector and the name to verify.
pub(super) struct Tls {
    connector: TlsConnector,
    server_name: rustls::pki_types::ServerName<'static>,
}

/// Builds the rustls client config from the `[tls]` table.
pub(super) fn tls_connector(
    sink: &str,
    cfg: &ClientTls,
    default_host: &str,
) -> Result<Tls, SinkError> {
    let invalid = |field: &'static str, reason: String| SinkError::InvalidField {
        sink: sink.to_string(),
        field,
        reason,
    };
    let pem = cfg.load("tls").map_err(|e| invalid("tls", e.to_string()))?;
    let Some(ca) = &pem.ca else {
        return Err(invalid(
            "tls.ca_file",
            "required: the CA that signs the receiver's certificate".into(),
        ));
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        let cert = cert.map_err(|e| invalid("tls.ca_file", e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| invalid("tls.ca_file", e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("tls", e.to_string()))?
        .with_root_certificates(roots);
    let config = match &pem.identity {
        Some((cpem, kpem)) => {
            let chain = rustls_pemfile::certs(&mut cpem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("tls.cert_file", e.to_string()))?;
            let key = rustls_pemfile::private_key(&mut kpem.as_slice())
                .map_err(|e| invalid("tls.key_file", e.to_string()))?
                .ok_or_else(|| invalid("tls.key_file", "no private key found".into()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid("tls.key_file", e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    let name = cfg
        .server_name
        .as_deref()
        .unwrap_or(default_host)
        .to_string();
    let server_name = rustls::pki_types::ServerName::try_from(name.clone())
        .map_err(|e| invalid("tls.server_name", format!("`{name}`: {e}")))?;
    Ok(Tls {
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

enum Conn {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Udp(UdpSocket),
}

pub(super) struct SyslogService {
    cfg: SyslogConfig,
    tls: Option<Tls>,
    conn: tokio::sync::Mutex<Option<Conn>>,
}

/// True when the peer has closed or reset the stream. The receiver never sends application
/// data, so a readable stream means EOF, an error or a TLS close_notify.
fn peer_closed<S: AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut buf = [0u8; 64];
    match s.read(&mut buf).now_or_never() {
        None => false,
        Some(Ok(0)) | Some(Err(_)) => true,
        Some(Ok(_)) => false,
    }
}

async fn write_all<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}

impl SyslogService {
    pub(super) fn new(cfg: SyslogConfig, tls: Option<Tls>) -> Self {
        SyslogService {
            cfg,
            tls,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let dest = self.destination();
        match self.cfg.transport {
            Transport::Udp => {
                let sock = UdpSocket::bind(if self.cfg.address.starts_with('[') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                })
                .await
                .map_err(|e| SendError::retryable(&dest, "bind", e))?;
                sock.connect(&self.cfg.address)
                    .await
                    .map_err(|e| SendError::retryable(&dest, "connect", e))?;
                Ok(Conn::Udp(sock))
            }
            Transport::Tcp | Transport::Tls => {
                let tcp = TcpStream::connect(&self.cfg.address)
                    .await
                    .map_err(|e| SendError::retryable(&dest, "connect", e))?;
                let _ = tcp.set_nodelay(true);
                match &self.tls {
                    None => Ok(Conn::Tcp(tcp)),
                    Some(t) => {
                        let s = t
                            .connector
                            .connect(t.server_name.clone(), tcp)
                            .await
                            .map_err(|e| {
                                // Certificate problems do not fix themselves, but the receiver
                                // may be mid-restart; retry and let the error show in health.
                                SendError::retryable(&dest, "tls_handshake", e)
                            })?;
                        Ok(Conn::Tls(Box::new(s)))
                    }
                }
            }
        }
    }
}

impl Service for SyslogService {
    fn destination(&self) -> String {
        let scheme = match self.cfg.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        };
        format!("{scheme}://{}", self.cfg.address)
    }

    fn send<'a>(&'a self, batch: &'a [Finding]) -> BoxFuture<'a, Result<SendReport, SendError>> {
        Box::pin(async move {
            let dest = self.destination();
            let mut guard = self.conn.lock().await;
            let stale = match guard.as_mut() {
                Some(Conn::Tcp(s)) => peer_closed(s),
                Some(Conn::Tls(s)) => peer_closed(s.as_mut()),
                Some(Conn::Udp(_)) | None => false,
            };
            if stale {
                tracing::info!(message = "Syslog receiver closed the connection; reconnecting.", destination = %dest);
                *guard = None;
            }
            if guard.is_none() {
                *guard = Some(self.connect().await?);
            }
            let conn = guard.as_mut().expect("connected above");
            let result = match conn {
                Conn::Udp(sock) => {
                    let mut r = Ok(());
                    for f in batch {
                        if let Err(e) = sock.send(message(f, &self.cfg).as_bytes()).await {
                            r = Err(e);
                            break;
                        }
                    }
                    r
                }
                Conn::Tcp(_) | Conn::Tls(_) => {
                    let mut bytes = Vec::with_capacity(batch.len() * 600);
                    for f in batch {
                        octet_counted(&message(f, &self.cfg), &mut bytes);
                    }
                    match conn {
                        Conn::Tcp(s) => write_all(s, &bytes).await,
                        Conn::Tls(s) => write_all(s.as_mut(), &bytes).await,
                        Conn::Udp(_) => unreachable!("matched above"),
                    }
                }
            };
            if let Err(e) = result {
                *guard = None;
                return Err(SendError::retryable(&dest, "write", e));
            }
            Ok(SendReport::default())
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(async move {
            let conn = self.connect().await?;
            if let Conn::Tls(mut s) = conn {
                // Close cleanly (close_notify) as RFC 5425 asks of senders.
                let _ = s.shutdown().await;
            }
            Ok(())
        })
    }
}
