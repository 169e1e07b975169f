//! TLS for the HTTP listener: an axum [`Listener`] that accepts TCP connections and completes
//! rustls handshakes off the accept path, so one slow client cannot stall the others.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the listener's PEM certificate chain and private key (`cert_file`, `key_file`) into a
/// rustls server configuration. `field` is the table's dotted key (`http.tls`), named in errors.
///
/// # Errors
/// A file cannot be read or holds no certificate / key, or rustls refuses the pair.
pub fn server_config(
    tls: &patchwatch_config::ServerTls,
    field: &str,
) -> anyhow::Result<rustls::ServerConfig> {
    use anyhow::Context as _;
    let pem = tls.load(field)?;
    let certs = rustls_pemfile::certs(&mut pem.cert.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{field}.cert_file: {} is not PEM", tls.cert_file.display()))?;
    let key = rustls_pemfile::private_key(&mut pem.key.as_slice())
        .with_context(|| format!("{field}.key_file: {} is not PEM", tls.key_file.display()))?
        .with_context(|| {
            format!(
                "{field}.key_file: {} holds no private key",
                tls.key_file.display()
            )
        })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .with_context(|| format!("{field}: no usable TLS versions"))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .with_context(|| format!("{field}: certificate and key do not form a usable pair"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A listener yielding connections whose TLS handshake has completed.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Starts accepting on `tcp` with `config`. The accept task ends when this listener is
    /// dropped.
    ///
    /// # Errors
    /// The socket has no local address.
    pub fn new(tcp: TcpListener, config: rustls::ServerConfig) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (sock, peer) = tokio::select! {
                    _ = tx.closed() => return,
                    r = tcp.accept() => match r {
                        Ok(conn) => conn,
                        Err(error) => {
                            tracing::warn!(message = "HTTP accept failed.", %error);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(message = "TLS handshake failed.", %error, %peer)
                        }
                        Err(_) => tracing::debug!(message = "TLS handshake timed out.", %peer),
                    }
                });
            }
        });
        Ok(Self { local, ready })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task only ends when we are dropped; never resolve otherwise.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
