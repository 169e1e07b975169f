//! The gRPC side of authentication: a tonic interceptor that checks the bearer token and
//! records the caller's collector id for the service.
//!
//! Client certificates (mutual TLS) are verified by rustls during the handshake; a collector
//! that presents none gets through the handshake and is refused here with a clear status.

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
            request.extensions_mut().insert(Caller::default());
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
        let Some(id) = self.tokens.lookup(token) else {
            return Err(refused(status::invalid_token()));
        };
        let caller = Caller {
            collector_id: Some(id.to_owned()),
        };
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}
