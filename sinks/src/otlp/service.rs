//! Calls `LogsService/Export` and interprets the status and partial success.

use futures::future::BoxFuture;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use patchwatch_proto::Finding;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use super::encoder::export_request;
use crate::driver::{SendReport, Service};
use crate::error::SendError;

pub(super) struct OtlpService {
    endpoint: Endpoint,
    channel: Channel,
    metadata: tonic::metadata::MetadataMap,
    gzip: bool,
    service_name: String,
    url: String,
}

impl OtlpService {
    pub(super) fn new(
        endpoint: Endpoint,
        metadata: tonic::metadata::MetadataMap,
        gzip: bool,
        service_name: String,
        url: String,
    ) -> Self {
        // Lazy: the channel connects (and reconnects) on use, so a collector that is down at
        // start only delays delivery.
        let channel = endpoint.connect_lazy();
        OtlpService {
            endpoint,
            channel,
            metadata,
            gzip,
            service_name,
            url,
        }
    }
}

/// OTLP's retry table (specification, "Failures"): these codes may succeed later.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
    )
}

impl Service for OtlpService {
    fn destination(&self) -> String {
        self.url.clone()
    }

    fn send<'a>(&'a self, batch: &'a [Finding]) -> BoxFuture<'a, Result<SendReport, SendError>> {
        Box::pin(async move {
            let mut client = LogsServiceClient::new(self.channel.clone());
            if self.gzip {
                client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
            }
            let mut req = tonic::Request::new(export_request(batch, &self.service_name));
            *req.metadata_mut() = self.metadata.clone();
            match client.export(req).await {
                Ok(resp) => {
                    let rejected = resp
                        .into_inner()
                        .partial_success
                        .map(|p| {
                            if p.rejected_log_records > 0 || !p.error_message.is_empty() {
                                tracing::warn!(message = "OTLP partial success.", destination = %self.url,
                                    rejected = p.rejected_log_records, error = %p.error_message);
                            }
                            p.rejected_log_records.clamp(0, batch.len() as i64) as usize
                        })
                        .unwrap_or(0);
                    Ok(SendReport {
                        rejected,
                        retry: Vec::new(),
                    })
                }
                Err(status) => {
                    let code = format!("grpc_{:?}", status.code()).to_lowercase();
                    let msg = format!("{:?}: {}", status.code(), status.message());
                    // RESOURCE_EXHAUSTED is retryable only with RetryInfo; we cannot parse
                    // google.rpc details without another dependency, so treat the presence
                    // of details as that signal.
                    let retry = retryable(status.code())
                        || (status.code() == Code::ResourceExhausted
                            && !status.details().is_empty());
                    if retry {
                        Err(SendError::retryable(&self.url, code, msg))
                    } else {
                        Err(SendError::fatal(&self.url, code, msg))
                    }
                }
            }
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SendError>> {
        Box::pin(async move {
            self.endpoint
                .connect()
                .await
                .map(|_| ())
                .map_err(|e| SendError::retryable(&self.url, "connect", e))
        })
    }
}
