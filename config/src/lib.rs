//! The configuration vocabulary shared by the agent, the aggregator and the sinks.
//!
//! # Brief overview
//!
//! Every config file of patchwatch spells the same things the same way:
//!
//! - [`Secret`]: tokens, passwords and URLs that may hold one. `token = "inline"`,
//!   `token = { env = "VAR" }` or `token = { file = "/path" }`; [`Secret::resolve`] reads it
//!   and names the field, variable or file when that fails. Neither a [`Secret`] nor its
//!   [`SecretValue`] ever prints its value (`[redacted]`).
//! - [`ClientTls`] (`ca_file`, `cert_file`, `key_file`, `server_name`) and [`ServerTls`]
//!   (`cert_file`, `key_file`, `client_ca_file`), whose `load` reads and checks the PEM files.
//! - [`Duration`]: `"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"2d"`, parsed by `humantime`.
//! - Closed sets are serde enums in the crate that owns them, so a bad value is an error that
//!   lists the valid ones.
//!
//! Every string value may use `${VAR}` or `${VAR:-default}`: [`from_toml`] expands them from the
//! environment (an unset variable without a default is an error naming the key and the
//! variable; `$${` is a literal `${`).
//!
//! Keys spelled the old way (`linger_ms = 50`, `token_env = "X"`, `[grpc.tls] cert = ...`)
//! still parse: [`from_toml`] rewrites them to the new spelling before deserializing, after
//! logging one warning per key that names the new spelling ([`DEPRECATED_KEYS`]).
//!
//! ```
//! #[derive(serde::Deserialize)]
//! struct Agent {
//!     token: patchwatch_config::Secret,
//!     linger: patchwatch_config::Duration,
//! }
//! let loaded = patchwatch_config::from_toml::<Agent>(
//!     "token = { env = \"PW_DOC_TOKEN\" }\nlinger_ms = 50\n",
//! )
//! .unwrap();
//! assert_eq!(loaded.value.linger.get(), std::time::Duration::from_millis(50));
//! assert_eq!(format!("{:?}", loaded.value.token), "[redacted]");
//! assert_eq!(loaded.deprecations[0].old_path, "linger_ms");
//! ```
#![deny(missing_docs)]

mod deprecated;
mod duration;
mod expand;
mod secret;
mod tls;

pub use deprecated::{from_toml, Deprecation, Loaded, ParseError, Rewrite, Rule, DEPRECATED_KEYS};
pub use duration::Duration;
pub use secret::{Secret, SecretError, SecretValue};
pub use tls::{ClientTls, ClientTlsPem, ServerTls, ServerTlsPem, TlsError};
