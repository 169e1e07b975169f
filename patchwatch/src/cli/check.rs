//! `--check` of `agent` and `aggregator`: everything short of starting. Every file a setting
//! names is read and parsed (certificates, keys, token files, `{ file = }` secrets), every
//! `{ env = }` variable is looked up, a key is matched against its certificate, the data
//! directory is written to (a probe file, removed again) and every listen address is bound
//! (and released). Each problem is reported with the setting that names it; nothing stops at
//! the first one.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use patchwatch_config::{ClientTls, Secret, ServerTls};
use patchwatch_sinks::SinkConfig;

/// Exit code of a check that found a problem.
pub const PROBLEM_EXIT: i32 = 2;

/// Problems found so far, each with the setting that names it.
#[derive(Debug, Default)]
pub struct Checks {
    problems: Vec<(String, String)>,
}

impl Checks {
    /// Records a problem of `setting`.
    pub fn problem(&mut self, setting: impl Into<String>, message: impl Into<String>) {
        self.problems.push((setting.into(), message.into()));
    }

    /// True when nothing was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Prints the problems to `out` and returns the exit code: 0 when clean, 2 otherwise.
    pub fn finish(&self, out: &mut impl Write) -> std::io::Result<i32> {
        if self.is_clean() {
            writeln!(out, "configuration OK")?;
            return Ok(0);
        }
        for (setting, message) in &self.problems {
            // A multi-line message (a TOML error with its excerpt) stays under its problem.
            let message = message.trim_end().replace('\n', "\n    ");
            writeln!(out, "problem: {setting}: {message}")?;
        }
        writeln!(out, "{} problem(s) found", self.problems.len())?;
        Ok(PROBLEM_EXIT)
    }

    /// Resolves `secret` (reads its file or variable); `setting` is its dotted key.
    pub fn secret(&mut self, setting: &str, secret: &Secret) {
        if let Err(e) = secret.resolve(setting) {
            self.problem(setting, e.reason());
        }
    }

    /// Reads, parses and pairs the files of a client TLS table at `setting`.
    pub fn client_tls(&mut self, setting: &str, tls: &ClientTls) {
        let pem = match tls.load(setting) {
            Ok(p) => p,
            Err(e) => return self.tls_error(e),
        };
        if let (Some(ca), Some(path)) = (&pem.ca, &tls.ca_file) {
            self.ca(&format!("{setting}.ca_file"), path, ca);
        }
        if let (Some((cert, key)), Some(path)) = (&pem.identity, &tls.cert_file) {
            self.key_pair(setting, path, cert, key);
        }
    }

    /// Reads, parses and pairs the files of a server TLS table at `setting`.
    pub fn server_tls(&mut self, setting: &str, tls: &ServerTls) {
        let pem = match tls.load(setting) {
            Ok(p) => p,
            Err(e) => return self.tls_error(e),
        };
        if let (Some(ca), Some(path)) = (&pem.client_ca, &tls.client_ca_file) {
            self.ca(&format!("{setting}.client_ca_file"), path, ca);
        }
        self.key_pair(setting, &tls.cert_file, &pem.cert, &pem.key);
    }

    fn tls_error(&mut self, e: patchwatch_config::TlsError) {
        // The error's text starts with the dotted key it names.
        let text = e.to_string();
        match text.split_once(": ") {
            Some((setting, rest)) => self.problem(setting, rest),
            None => self.problem("tls", text),
        }
    }

    /// Every certificate of a CA file must parse as X.509.
    fn ca(&mut self, setting: &str, path: &Path, pem: &[u8]) {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let added = match cert {
                Ok(der) => roots.add(der).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = added {
                self.problem(
                    setting,
                    format!("{}: a certificate does not parse: {e}", path.display()),
                );
                return;
            }
        }
    }

    /// The key must be usable and belong to the first certificate of the chain.
    fn key_pair(&mut self, table: &str, cert_path: &Path, cert_pem: &[u8], key_pem: &[u8]) {
        let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut &cert_pem[..]).collect();
        let certs = match certs {
            Ok(c) => c,
            Err(e) => {
                return self.problem(
                    format!("{table}.cert_file"),
                    format!("{}: {e}", cert_path.display()),
                )
            }
        };
        let key = match rustls_pemfile::private_key(&mut &key_pem[..]) {
            Ok(Some(k)) => k,
            Ok(None) => return self.problem(format!("{table}.key_file"), "holds no private key"),
            Err(e) => return self.problem(format!("{table}.key_file"), e.to_string()),
        };
        let signer = match rustls::crypto::ring::sign::any_supported_type(&key) {
            Ok(s) => s,
            Err(e) => {
                return self.problem(
                    format!("{table}.key_file"),
                    format!("not a usable private key: {e}"),
                )
            }
        };
        let pair = rustls::sign::CertifiedKey::new(certs, Arc::clone(&signer));
        match pair.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => self
                .problem(
                    format!("{table}.key_file"),
                    format!(
                        "the key does not belong to the certificate in {table}.cert_file ({})",
                        cert_path.display()
                    ),
                ),
            // The signer cannot tell its public key: nothing to compare, not a problem.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => self.problem(
                format!("{table}.cert_file"),
                format!(
                    "{}: the certificate does not parse: {e}",
                    cert_path.display()
                ),
            ),
        }
    }

    /// `dir` (created if missing, as the service would) must take a new file.
    pub fn writable_dir(&mut self, setting: &str, dir: &Path) {
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
            .map(Path::to_path_buf)
            .collect();
        if let Err(e) = std::fs::create_dir_all(dir) {
            return self.problem(setting, format!("{} cannot be created: {e}", dir.display()));
        }
        let probe = dir.join(format!(".patchwatch-check-{}", std::process::id()));
        match std::fs::File::create(&probe).and_then(|mut f| f.write_all(b"probe")) {
            Ok(()) => {
                let _ = std::fs::remove_file(&probe);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&probe);
                self.problem(setting, format!("{} is not writable: {e}", dir.display()));
            }
        }
        // Leave no trace: the directories this check created go again (deepest first).
        for d in missing {
            let _ = std::fs::remove_dir(d);
        }
    }

    /// `addr` must be bindable now (the listener is dropped at once).
    pub fn bindable(&mut self, setting: &str, addr: SocketAddr) {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            self.problem(setting, format!("cannot listen on {addr}: {e}"));
        }
    }

    /// The secrets, certificates and files of `[sinks.<name>]` tables under `prefix`
    /// (`sinks`).
    pub fn sinks(&mut self, prefix: &str, sinks: &BTreeMap<String, SinkConfig>) {
        for (name, sink) in sinks {
            let at = |key: &str| format!("{prefix}.{name}.{key}");
            let (secrets, tls): (Vec<(&str, &Option<Secret>)>, _) = match sink {
                SinkConfig::Otlp(c) => (vec![("token", &c.token)], &c.tls),
                SinkConfig::SplunkHec(c) => (vec![("token", &c.token)], &c.tls),
                SinkConfig::Syslog(c) => (vec![], &c.tls),
                SinkConfig::Elasticsearch(c) => (
                    vec![("password", &c.password), ("api_key", &c.api_key)],
                    &c.tls,
                ),
                SinkConfig::Webhook(c) => (vec![("token", &c.token)], &c.tls),
                SinkConfig::Jsonl(c) => {
                    if let Some(dir) = c.path.as_deref().and_then(Path::parent) {
                        if !dir.as_os_str().is_empty() && !dir.is_dir() {
                            self.problem(
                                at("path"),
                                format!("folder {} does not exist", dir.display()),
                            );
                        }
                    }
                    (vec![], &None)
                }
                // A sink type added later: its own `build` still checks it at start.
                #[allow(unreachable_patterns)]
                _ => (vec![], &None),
            };
            for (key, secret) in secrets {
                if let Some(s) = secret {
                    self.secret(&at(key), s);
                }
            }
            if let Some(t) = tls {
                self.client_tls(&at("tls"), t);
            }
        }
    }
}
