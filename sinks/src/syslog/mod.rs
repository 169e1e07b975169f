//! Syslog: RFC 5424 messages with structured data (or an ArcSight CEF payload) over UDP, TCP
//! (RFC 6587 octet counting) or TLS (RFC 5425, rustls).
//!
//! TCP and TLS have no application acknowledgement. Before each batch the connection is probed
//! with a non-blocking read: a peer that closed (EOF) is replaced by a fresh connection before
//! anything is written, so a receiver restart does not swallow the next batch.

mod config;
mod encoder;
mod service;
#[cfg(test)]
mod tests;

pub use config::{build, CefConfig, SyslogConfig, SyslogFormat, SyslogTlsConfig, Transport};
pub use encoder::{cef_message, rfc5424_message};
