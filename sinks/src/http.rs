//! A reqwest client configured the same way for every HTTP sink.

use patchwatch_config::ClientTls;

use crate::error::SinkError;
use crate::secret::{Secret, SecretValue};

/// Builds a client with the request timeout and the `[tls]` table: an extra CA certificate
/// to trust and a client certificate for mutual TLS.
pub(crate) fn client(
    sink: &str,
    timeout: std::time::Duration,
    tls: Option<&ClientTls>,
) -> Result<reqwest::Client, SinkError> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(std::time::Duration::from_secs(10)))
        .user_agent(concat!("patchwatch-sinks/", env!("CARGO_PKG_VERSION")));
    if let Some(tls) = tls {
        let invalid = |reason: String| SinkError::InvalidField {
            sink: sink.to_string(),
            field: "tls",
            reason,
        };
        let pem = tls.load("tls").map_err(|e| invalid(e.to_string()))?;
        if pem.server_name.is_some() {
            // reqwest verifies the URL's host name and has no override.
            return Err(invalid(
                "`server_name` is not supported by HTTP sinks; use the certificate's name in the URL"
                    .into(),
            ));
        }
        if let Some(ca) = &pem.ca {
            for cert in reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| invalid(format!("tls.ca_file: {e}")))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = &pem.identity {
            let identity = reqwest::Identity::from_pem(&[cert.as_slice(), b"\n", key].concat())
                .map_err(|e| invalid(format!("tls.cert_file: {e}")))?;
            b = b.identity(identity);
        }
    }
    b.build().map_err(|e| SinkError::InvalidField {
        sink: sink.to_string(),
        field: "endpoint",
        reason: e.to_string(),
    })
}

/// Checks that `url` parses and uses http or https.
pub(crate) fn check_url(sink: &str, field: &'static str, url: &str) -> Result<(), SinkError> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        Ok(u) => Err(SinkError::InvalidField {
            sink: sink.to_string(),
            field,
            reason: format!("scheme `{}` is not http or https", u.scheme()),
        }),
        Err(e) => Err(SinkError::InvalidField {
            sink: sink.to_string(),
            field,
            reason: format!("`{url}`: {e}"),
        }),
    }
}

/// Resolves an optional secret, mapping errors to [`SinkError::Secret`] naming `field`.
pub(crate) fn secret(
    sink: &str,
    field: &str,
    secret: &Option<Secret>,
) -> Result<Option<SecretValue>, SinkError> {
    secret
        .as_ref()
        .map(|s| {
            s.resolve(field).map_err(|e| SinkError::Secret {
                sink: sink.to_string(),
                field: field.to_string(),
                reason: e.reason(),
            })
        })
        .transpose()
}
