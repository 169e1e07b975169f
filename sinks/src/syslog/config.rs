//! Configuration of the syslog sink.

use std::sync::Arc;

use patchwatch_config::ClientTls;
use serde::Deserialize;

use super::service::SyslogService;
use crate::config::Healthcheck;
use crate::driver::{self, BatchConfig, RetryConfig, Service};
use crate::{SinkError, SinkHandle};

/// Network transport.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// One datagram per message; no delivery confirmation at all.
    Udp,
    /// TCP with RFC 6587 octet counting (`<len> <msg>`).
    Tcp,
    /// TLS with RFC 5425 framing (same octet counting).
    Tls,
}

/// Payload format.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    /// RFC 5424 with a `finding@<pen>` structured-data element, MSG = title.
    #[default]
    Rfc5424,
    /// RFC 5424 header with an ArcSight CEF:0 message (for SIEMs that ingest CEF).
    Cef,
}

/// TLS settings: the shared client TLS table. `ca_file` (the CA that signs the receiver's
/// certificate) is required; `server_name` defaults to the host part of `address`.
pub type SyslogTlsConfig = ClientTls;

/// CEF header values.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CefConfig {
    /// Device Vendor (default `patchwatch`).
    pub vendor: String,
    /// Device Product (default `patchwatch`).
    pub product: String,
    /// Device Version (default this crate's version).
    pub version: String,
}

impl Default for CefConfig {
    fn default() -> Self {
        CefConfig {
            vendor: "patchwatch".into(),
            product: "patchwatch".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// `type = "syslog"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// Receiver as `host:port`, e.g. `siem.example:6514`.
    pub address: String,
    /// `udp`, `tcp` or `tls`.
    pub transport: Transport,
    /// `rfc5424` (default) or `cef`.
    #[serde(default)]
    pub format: SyslogFormat,
    /// Facility number 0..=23 (default 20 = local4).
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// APP-NAME (default `patchwatch`).
    #[serde(default = "default_app")]
    pub app_name: String,
    /// SD-ID of the structured-data element, `name@<private enterprise number>` (default
    /// `finding@32473`, the documentation PEN; use your organisation's own).
    #[serde(default = "default_sd_id")]
    pub sd_id: String,
    /// TLS settings (`ca_file`, `cert_file`, `key_file`, `server_name`); required when
    /// `transport = "tls"`.
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// CEF header values when `format = "cef"`.
    #[serde(default)]
    pub cef: CefConfig,
    /// Batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retries; `request_timeout` bounds connect and write.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_facility() -> u8 {
    20
}
fn default_app() -> String {
    "patchwatch".into()
}
fn default_sd_id() -> String {
    "finding@32473".into()
}

/// Validates the config and starts the sink. Connection happens on first send.
///
/// # Errors
/// Bad `address`, `facility` or `sd_id`, `tls` missing for the tls transport, unreadable
/// certificates or keys.
pub fn build(name: &str, cfg: &SyslogConfig) -> Result<(SinkHandle, Healthcheck), SinkError> {
    let invalid = |field: &'static str, reason: String| SinkError::InvalidField {
        sink: name.to_string(),
        field,
        reason,
    };
    let (host, port) = cfg
        .address
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        .ok_or_else(|| invalid("address", format!("`{}` is not host:port", cfg.address)))?;
    if cfg.facility > 23 {
        return Err(invalid(
            "facility",
            format!("{} is not in 0..=23", cfg.facility),
        ));
    }
    let sd_ok = !cfg.sd_id.is_empty()
        && cfg.sd_id.len() <= 32
        && cfg
            .sd_id
            .bytes()
            .all(|b| (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"'));
    if !sd_ok {
        return Err(invalid(
            "sd_id",
            "1 to 32 printable ASCII characters, no `=`, `]`, `\"` or space".into(),
        ));
    }
    let tls = match (cfg.transport, &cfg.tls) {
        (Transport::Tls, None) => {
            return Err(invalid(
                "tls",
                "`transport = \"tls\"` needs a [tls] table with `ca_file`".into(),
            ))
        }
        (Transport::Tls, Some(t)) => Some(super::service::tls_connector(
            name,
            t,
            host.trim_matches(['[', ']']),
        )?),
        _ => None,
    };
    let _ = port;
    let svc = Arc::new(SyslogService::new(cfg.clone(), tls));
    let hc = svc.clone();
    let sink = name.to_string();
    let health: Healthcheck = Box::pin(async move {
        hc.healthcheck().await.map_err(|e| SinkError::Unhealthy {
            sink,
            destination: e.destination.clone(),
            reason: e.message,
        })
    });
    Ok((
        driver::spawn(name, svc, cfg.batch.clone(), cfg.retry.clone()),
        health,
    ))
}
