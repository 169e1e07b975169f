//! A reqwest client configured the same way for every HTTP sink.

use std::path::PathBuf;

use crate::error::SinkError;

/// Builds a client with the request timeout and an optional extra CA certificate (PEM).
pub(crate) fn client(
    sink: &str,
    timeout: std::time::Duration,
    ca_file: Option<&PathBuf>,
) -> Result<reqwest::Client, SinkError> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(std::time::Duration::from_secs(10)))
        .user_agent(concat!("patchwatch-sinks/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|source| SinkError::Io {
            sink: sink.to_string(),
            path: path.clone(),
            source,
        })?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| SinkError::InvalidField {
            sink: sink.to_string(),
            field: "ca_file",
            reason: e.to_string(),
        })?;
        b = b.add_root_certificate(cert);
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

/// Resolves a secret source into a value, mapping errors to [`SinkError::Secret`].
pub(crate) fn secret(
    sink: &str,
    prefix: &str,
    value: &Option<crate::Secret>,
    env: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Option<crate::Secret>, SinkError> {
    crate::SecretSource {
        value: value.clone(),
        env: env.clone(),
        file: file.clone(),
    }
    .resolve(prefix)
    .map_err(|(field, reason)| SinkError::Secret {
        sink: sink.to_string(),
        field,
        reason,
    })
}
