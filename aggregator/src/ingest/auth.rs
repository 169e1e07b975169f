//! The gRPC side of authentication: a tonic interceptor that checks the bearer token and
//! records the caller's collector id for the service.
//!
//! Client certificates (mutual TLS) are verified by rustls during the handshake; a collector
//! that presents none gets through the handshake and is refused here with a clear status.
//! Without tokens, a verified certificate's first SAN DNS name (else its subject CN) is the
//! caller's collector id, to which its hosts are bound (see [`super::owner`]).

use tonic::service::Interceptor;
use tonic::{Request, Status};

use super::service::Caller;
use super::status;
use crate::auth::{bearer, TokenTable};

/// Checks `authorization: Bearer <token>` when tokens are configured.
#[derive(Clone, Debug)]
pub struct GrpcAuth {
    tokens: TokenTable,
    require_client_cert: bool,
}

impl GrpcAuth {
    /// An interceptor over `tokens` (none: every call passes as anonymous), refusing calls
    /// without a verified client certificate when `require_client_cert` is set.
    pub fn new(tokens: TokenTable, require_client_cert: bool) -> Self {
        Self {
            tokens,
            require_client_cert,
        }
    }
}

impl Interceptor for GrpcAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if self.require_client_cert && request.peer_certs().is_none_or(|c| c.is_empty()) {
            metrics::counter!("patchwatch_aggregator_auth_failures_total", "listener" => "grpc")
                .increment(1);
            tracing::info!(message = "Refused a gRPC call without a client certificate.", peer = ?request.remote_addr());
            return Err(status::missing_client_certificate());
        }
        if self.tokens.is_empty() {
            // With mutual TLS the certificate names the collector: hosts bind to it.
            let collector_id = request
                .peer_certs()
                .and_then(|certs| certs.first().and_then(|c| certificate_identity(c)));
            request.extensions_mut().insert(Caller {
                collector_id,
                from_certificate: true,
            });
            return Ok(request);
        }
        let refused = |s: Status| {
            metrics::counter!("patchwatch_aggregator_auth_failures_total", "listener" => "grpc")
                .increment(1);
            tracing::info!(message = "Refused a gRPC call.", reason = s.message(), peer = ?request.remote_addr());
            s
        };
        let Some(value) = request.metadata().get("authorization") else {
            return Err(refused(status::missing_token()));
        };
        let Some(token) = value.to_str().ok().and_then(bearer) else {
            return Err(refused(status::malformed_token()));
        };
        let Some((id, scopes)) = self.tokens.lookup_scoped(token) else {
            return Err(refused(status::invalid_token()));
        };
        if !scopes.contains(&crate::config::Scope::Ingest) {
            return Err(refused(status::missing_scope(id)));
        }
        let caller = Caller {
            collector_id: Some(id.to_owned()),
            from_certificate: false,
        };
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// The collector identity a client certificate names: its first SAN DNS name, else its
/// subject's common name.
pub fn certificate_identity(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                if !dns.is_empty() {
                    return Some((*dns).to_owned());
                }
            }
        }
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .map(str::to_owned);
    cn
}

#[cfg(test)]
mod tests {
    use super::certificate_identity;

    fn cert(sans: &[&str], cn: Option<&str>) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_names_its_collector() {
        assert_eq!(
            certificate_identity(&cert(&["exch01-collector"], Some("other"))).as_deref(),
            Some("exch01-collector")
        );
        assert_eq!(
            certificate_identity(&cert(&[], Some("exch02"))).as_deref(),
            Some("exch02")
        );
        assert_eq!(certificate_identity(b"not a certificate"), None);
    }
}
