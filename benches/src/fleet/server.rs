//! The aggregator under load: TLS material made at start, a configuration with one token per
//! simulated collector, and the aggregator itself, either the real `patchwatch aggregator`
//! binary (what users run; its memory is its own) or `patchwatch_aggregator::serve` in this
//! process (for the quick test).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio_util::sync::CancellationToken;

use super::workload::Collector;

/// A CA and a server certificate for `localhost` and `127.0.0.1` signed by it (PEM).
pub struct Pki {
    /// The CA certificate the collectors trust.
    pub ca: String,
    /// The aggregator's certificate.
    pub server_cert: String,
    /// The aggregator's private key.
    pub server_key: String,
}

impl Pki {
    /// Fresh keys and certificates.
    ///
    /// # Errors
    /// Key generation or signing failed.
    pub fn generate() -> Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "patchwatch fleet bench CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let server_key = KeyPair::generate()?;
        let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?
            .signed_by(&server_key, &ca)?;
        Ok(Self {
            ca: ca.pem(),
            server_cert: server.pem(),
            server_key: server_key.serialize_pem(),
        })
    }
}

/// Where the aggregator stores.
#[derive(Clone, Debug)]
pub enum Backend {
    /// SQLite in the data directory, with this `synchronous` setting (`full` is the default).
    Sqlite {
        /// `"full"` or `"normal"`.
        synchronous: String,
    },
    /// PostgreSQL at this URL (a fresh database of its own).
    Postgres {
        /// Connection URL.
        url: String,
    },
}

/// The parts of an aggregator configuration a fleet run chooses.
#[derive(Clone, Debug)]
pub struct Setup {
    /// gRPC (TLS) listener.
    pub grpc: SocketAddr,
    /// HTTP listener.
    pub http: SocketAddr,
    /// Store.
    pub backend: Backend,
    /// `grpc.max_streams`.
    pub max_streams: usize,
    /// Give each token a `hosts` list naming its collector's host; otherwise hosts are bound
    /// to the first collector that reports them (the default).
    pub configured_hosts: bool,
}

/// The aggregator configuration (TOML) for a fleet: TLS on gRPC, one ingest token per
/// collector, loopback listeners.
pub fn config_toml(dir: &Path, fleet: &[Collector], setup: &Setup) -> String {
    let Setup {
        grpc,
        http,
        backend,
        max_streams,
        configured_hosts,
    } = setup;
    let mut t = String::new();
    let path = |p: PathBuf| p.display().to_string().replace('\\', "/");
    let _ = writeln!(t, "data_dir = {:?}", path(dir.to_path_buf()));
    let _ = writeln!(
        t,
        "[grpc]\nlisten = \"{grpc}\"\nmax_streams = {max_streams}"
    );
    let _ = writeln!(
        t,
        "[grpc.tls]\ncert_file = {:?}\nkey_file = {:?}",
        path(dir.join("server.crt")),
        path(dir.join("server.key"))
    );
    for c in fleet {
        let _ = writeln!(t, "[[grpc.tokens]]\nid = {:?}\ntoken = {:?}", c.id, c.token);
        if *configured_hosts {
            let _ = writeln!(t, "hosts = [{:?}]", c.host.hostname);
        }
    }
    let _ = writeln!(t, "[http]\nlisten = \"{http}\"");
    match backend {
        Backend::Sqlite { synchronous } => {
            let _ = writeln!(
                t,
                "[store]\nbackend = \"sqlite\"\n[store.sqlite]\nsynchronous = {synchronous:?}"
            );
        }
        Backend::Postgres { url } => {
            let _ = writeln!(
                t,
                "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = {url:?}"
            );
        }
    }
    t
}

/// Writes the certificates and the configuration into `dir`; returns the configuration's path.
///
/// # Errors
/// A file could not be written.
pub fn write_config(dir: &Path, pki: &Pki, toml: &str) -> Result<PathBuf> {
    std::fs::write(dir.join("server.crt"), &pki.server_cert)?;
    std::fs::write(dir.join("server.key"), &pki.server_key)?;
    let p = dir.join("aggregator.toml");
    std::fs::write(&p, toml)?;
    Ok(p)
}

/// A PostgreSQL database of its own for one bench run, made next to the one
/// `PATCHWATCH_PG_URL` names (`.ci/setup-postgres.sh` sets it); [`ScratchDatabase::drop`]
/// removes it.
pub struct ScratchDatabase {
    /// The new database's URL.
    pub url: String,
    admin: tokio_postgres::Client,
    name: String,
}

impl ScratchDatabase {
    /// Creates `<prefix>_<pid>`, replacing one left by an earlier run of the same pid.
    pub async fn create(prefix: &str) -> Result<Self> {
        let base = std::env::var("PATCHWATCH_PG_URL")
            .context("--store postgres needs PATCHWATCH_PG_URL (.ci/setup-postgres.sh)")?;
        let name = format!("{prefix}_{}", std::process::id());
        let (admin, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .context("connecting to PATCHWATCH_PG_URL")?;
        tokio::spawn(conn);
        // Two statements: DROP DATABASE refuses to run inside the implicit transaction of a
        // multi-statement query.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        let url = format!(
            "{}/{name}",
            base.rsplit_once('/').map_or(base.as_str(), |(b, _)| b)
        );
        Ok(Self { url, admin, name })
    }

    /// Drops the database (the store using it must be closed).
    pub async fn drop(self) -> Result<()> {
        self.admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {}", self.name))
            .await?;
        Ok(())
    }
}

/// A free loopback port (bound and released; the aggregator binds it right after).
///
/// # Errors
/// No port could be bound.
pub fn free_addr() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A running aggregator.
pub enum Aggregator {
    /// The `patchwatch aggregator` process.
    Binary {
        /// The child process.
        child: Child,
        /// Its log (stderr), shown when it fails.
        log: PathBuf,
    },
    /// `patchwatch_aggregator::serve` in this process.
    InProcess {
        /// The running server.
        running: Box<patchwatch_aggregator::RunningAggregator>,
        /// Stops it.
        shutdown: CancellationToken,
    },
}

impl Aggregator {
    /// Starts `binary aggregator --config config` and waits until its HTTP listener answers
    /// `/healthz`.
    ///
    /// # Errors
    /// It could not start, or exited, or did not answer within a minute.
    pub async fn spawn(binary: &Path, config: &Path, http: SocketAddr) -> Result<Self> {
        let log = config.with_extension("log");
        let child = Command::new(binary)
            .arg("aggregator")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut agg = Self::Binary { child, log };
        let client = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Self::Binary { child, log } = &mut agg {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "the aggregator exited ({status}): {}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    );
                }
            }
            let ok = client
                .get(format!("http://{http}/healthz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(agg);
            }
            if start.elapsed() > Duration::from_secs(60) {
                agg.stop().await?;
                bail!("the aggregator did not answer /healthz within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts the aggregator in this process on the configuration's addresses.
    ///
    /// # Errors
    /// The configuration is refused or the store cannot be opened.
    pub async fn in_process(config: &Path) -> Result<Self> {
        let config = patchwatch_aggregator::Config::load(config)?;
        let grpc = tokio::net::TcpListener::bind(config.grpc.listen).await?;
        let http = tokio::net::TcpListener::bind(config.http.listen).await?;
        let shutdown = CancellationToken::new();
        let running = patchwatch_aggregator::serve(config, grpc, http, shutdown.clone()).await?;
        Ok(Self::InProcess {
            running: Box::new(running),
            shutdown,
        })
    }

    /// The process whose memory and CPU are the aggregator's (this one when in process).
    pub fn pid(&self) -> u32 {
        match self {
            Self::Binary { child, .. } => child.id(),
            Self::InProcess { .. } => std::process::id(),
        }
    }

    /// The in-process server's store, for counting what was stored.
    pub fn store(&self) -> Option<std::sync::Arc<dyn patchwatch_aggregator::store::Store>> {
        match self {
            Self::Binary { .. } => None,
            Self::InProcess { running, .. } => Some(running.store()),
        }
    }

    /// Stops the aggregator (SIGTERM for the binary) and waits for it.
    ///
    /// # Errors
    /// The process could not be signalled, or the server ended with an error.
    pub async fn stop(self) -> Result<()> {
        match self {
            Self::Binary { mut child, log } => {
                #[cfg(unix)]
                // SAFETY: kill(2) on our own child's pid has no memory effects.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
                }
                #[cfg(not(unix))]
                child.kill()?;
                let status = tokio::task::spawn_blocking(move || child.wait()).await??;
                if !status.success() {
                    bail!(
                        "the aggregator ended with {status}: {}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    );
                }
                Ok(())
            }
            Self::InProcess { running, shutdown } => {
                shutdown.cancel();
                running.wait().await
            }
        }
    }
}

/// Resident set of a process: (current, peak) in bytes, from `/proc/<pid>/status`.
pub fn rss(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User + system CPU seconds of a process so far.
pub use patchwatch_testkit::cpu_seconds;

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The value of an unlabelled counter or gauge in a Prometheus text page.
pub fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| *k == name)
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum()
}
