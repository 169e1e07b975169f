//! patchwatch-aggregator: the central service collectors stream findings to.
//!
//! # Brief overview
//!
//! - **Ingest** ([`ingest`]): a tonic server for `patchwatch.v1.Ingest`, with TLS or mutual TLS
//!   (rustls) and per-collector bearer tokens. Each collector holds one bidirectional stream;
//!   every `Batch` gets one `Ack`, sent only once the batch is durable. Malformed items are
//!   listed in `Ack.rejected` while the rest of the batch is stored.
//! - **Store** ([`store`]): SQLite in WAL mode (embedded default; one writer thread with group
//!   commit) or PostgreSQL (several aggregators behind a load balancer), behind [`store::Store`].
//!   Writes are idempotent by finding id.
//! - **HTTP** ([`http`]): axum on a second listener: `/api/v1/{findings,hosts,runs,events}`,
//!   `/api/v1/windows` (maintenance windows, the only writes), `/metrics`, `/healthz`, and the
//!   dashboard at `/`.
//! - **Routing and forwarding** ([`routing`], [`forward`], [`windows`]): findings are tagged
//!   with the maintenance window covering their host and stored; the alert router
//!   (`[routing]`) and each SIEM sink (`[sinks.<name>]`) of `patchwatch-sinks` then read them from the store through
//!   their own durable cursor, which advances only when the destination confirmed them.
//!   A window may require a clean preflight ([`gate`]): hosts in its scope that are not clean
//!   are marked on the board and alerted on through the router.
//!
//! Architecture invariants: the aggregator never writes a finding it has not validated, never
//! acks a batch before its transaction committed, and (SQLite) one thread owns the only
//! writing connection.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use patchwatch_aggregator::{serve, Config};
//! let mut config = Config::default();
//! config.data_dir = "/tmp/patchwatch-demo".into();
//! let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let running = serve(config, grpc, http, shutdown.clone()).await?;
//! println!("gRPC on {}, dashboard on http://{}/", running.grpc_addr(), running.http_addr());
//! shutdown.cancel();
//! running.wait().await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use patchwatch_proto::ingest_server::IngestServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

pub mod auth;
pub mod config;
pub mod events;
pub mod forward;
pub mod gate;
pub mod http;
pub mod ingest;
pub mod model;
pub mod routing;
pub mod store;
pub mod telemetry;
pub mod windows;

pub use config::{Config, ConfigError, DEFAULT_CONFIG};

/// The Prometheus recorder all aggregator metrics go to.
///
/// Installs a global recorder on first call. If the process already installed a different
/// one (an embedding program), a handle to a private recorder is returned and `/metrics`
/// shows nothing; such a program should call this function first and use its handle.
pub fn prometheus_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = telemetry::recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    message = "A metrics recorder was already installed; /metrics will be empty."
                );
            }
            telemetry::describe();
            handle
        })
        .clone()
}

/// A running aggregator: its bound addresses and the task that ends when it has shut down.
pub struct RunningAggregator {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    store: Arc<dyn store::Store>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningAggregator {
    /// Where the gRPC listener is bound.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where the HTTP listener is bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The store, for embedding programs and tests.
    pub fn store(&self) -> Arc<dyn store::Store> {
        Arc::clone(&self.store)
    }

    /// Waits until the aggregator has stopped (after its shutdown token is cancelled, or a
    /// listener failed): streams finished, store closed.
    ///
    /// # Errors
    /// A listener failed.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("aggregator task panicked")?
    }
}

/// Loads the configuration's listeners and runs until `shutdown` is cancelled.
///
/// # Errors
/// A listener cannot be bound, the store cannot be opened, or a listener fails.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let grpc = TcpListener::bind(config.grpc.listen)
        .await
        .with_context(|| format!("grpc.listen: cannot bind {}", config.grpc.listen))?;
    let http = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("http.listen: cannot bind {}", config.http.listen))?;
    let running = serve(config, grpc, http, shutdown).await?;
    tracing::info!(
        message = "Aggregator listening.",
        grpc = %running.grpc_addr(),
        http = %running.http_addr(),
        store = running.store.backend()
    );
    running.wait().await
}

/// Starts the aggregator on already-bound listeners (port 0 works; ask the result for the
/// addresses). The configuration's `listen` addresses are used only for its security checks
/// (plaintext and anonymous access are allowed on loopback), so callers binding themselves
/// should bind the address they configured.
///
/// Returns once the store is open and both listeners are serving.
///
/// # Errors
/// Invalid configuration, unreadable token or certificate files, or a store that cannot be
/// opened or migrated.
pub async fn serve(
    config: Config,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningAggregator> {
    config.validate()?;
    let grpc_addr = grpc_listener
        .local_addr()
        .context("grpc listener address")?;
    let http_addr = http_listener
        .local_addr()
        .context("http listener address")?;
    for setting in config.insecure_settings(grpc_addr, http_addr) {
        tracing::warn!(
            message = "Listener security is switched off.",
            setting = setting.as_str()
        );
    }
    let grpc_tokens = auth::TokenTable::from_config(
        "grpc.tokens",
        &config.grpc.tokens,
        &[config::Scope::Ingest],
    )?;
    let http_tokens = auth::TokenTable::from_config(
        "http.tokens",
        &config.http.tokens,
        &[config::Scope::Read, config::Scope::Write],
    )?;
    let grpc_tls = config.grpc.tls.as_ref().map(grpc_tls_config).transpose()?;
    let http_tls = config
        .http
        .tls
        .as_ref()
        .map(|t| http::tls::server_config(t, "http.tls"))
        .transpose()?;
    let metrics = prometheus_handle();

    let store = store::open(&config).await?;
    // The store and event bus outlive the listeners: they get their own token, cancelled
    // only after both servers have finished, so in-flight batches can still be written.
    let inner = CancellationToken::new();
    let events = events::EventBus::start(Arc::clone(&store), inner.clone());

    let limits = ingest::IngestLimits {
        max_streams: config.grpc.max_streams,
        max_inflight_batches: config.grpc.max_inflight_batches,
        max_message_bytes: config.grpc.max_message_bytes,
        max_inflight_bytes: config.grpc.max_inflight_bytes,
        max_streams_per_collector: config.grpc.max_streams_per_collector,
    };
    let grace = config.grpc.shutdown_grace.get();
    let (routing_state, forwarder, router_task) =
        start_forwarding(&config, &store, inner.clone(), grace).await?;
    tokio::spawn(
        routing_state
            .clone()
            .reload_loop(Arc::clone(&store), inner.clone()),
    );
    let ownership = ingest::HostOwnership::load(&config.grpc.tokens, store.as_ref()).await?;
    let service =
        ingest::IngestService::new(Arc::clone(&store), events.clone(), limits, shutdown.clone())
            .with_forwarding(routing_state.windows().clone(), forwarder.clone())
            .with_item_rules(
                ownership.clone(),
                ingest::validate::TimeBounds::new(
                    config.grpc.max_clock_skew.get(),
                    config.grpc.max_item_age.get(),
                ),
            );
    let ingest = IngestServer::new(service)
        .max_decoding_message_size(config.grpc.max_message_bytes)
        .accept_compressed(CompressionEncoding::Gzip);
    let require_client_cert = config
        .grpc
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca_file.is_some());
    let ingest = InterceptedService::new(
        ingest,
        ingest::auth::GrpcAuth::new(grpc_tokens, require_client_cert),
    );
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("patchwatch.v1.Ingest", tonic_health::ServingStatus::Serving)
        .await;

    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)));
    if let Some(tls) = grpc_tls {
        builder = builder.tls_config(tls).context("grpc.tls")?;
    }
    let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    let grpc_shutdown = shutdown.clone();
    let grpc_server = builder
        .add_service(health_service)
        .add_service(ingest)
        .serve_with_incoming_shutdown(incoming, grpc_shutdown.cancelled_owned());
    let grpc_task: JoinHandle<anyhow::Result<()>> =
        tokio::spawn(async move { grpc_server.await.context("grpc listener") });

    let app = http::router(http::AppState {
        store: Arc::clone(&store),
        events,
        tokens: http_tokens,
        max_page_size: config.http.max_page_size,
        metrics,
        shutdown: shutdown.clone(),
        tls: http_tls.is_some(),
        routing: routing_state,
        forwarder: forwarder.clone(),
        writes_need_token: !config.http.listen.ip().is_loopback(),
        ownership,
    });
    let http_task = spawn_http(app, http_listener, http_tls, shutdown.clone())?;

    let task_store = Arc::clone(&store);
    let task = tokio::spawn(async move {
        let result = supervise(grpc_task, http_task, &shutdown, grace).await;
        health_reporter
            .set_service_status(
                "patchwatch.v1.Ingest",
                tonic_health::ServingStatus::NotServing,
            )
            .await;
        // The router flushes groups with unsent findings when it sees `inner` cancelled, while
        // the forwarding tasks wait for what is in flight and persist their cursors.
        inner.cancel();
        let router = async {
            if let Some(router) = router_task {
                if tokio::time::timeout(grace, router).await.is_err() {
                    tracing::warn!(message = "Alert router did not stop within the grace period.");
                }
            }
        };
        tokio::join!(router, forwarder.shutdown());
        task_store.close().await;
        tracing::info!(message = "Aggregator stopped.");
        result
    });
    Ok(RunningAggregator {
        grpc_addr,
        http_addr,
        store,
        task,
    })
}

/// Serves the board and the API on a runtime of their own, on one thread: under a saturating
/// ingest the shared workers hold thousands of ingest tasks, and a page queued behind them
/// waited seconds. The returned task ends with the server.
fn spawn_http(
    app: axum::Router,
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    // Sockets belong to the runtime that registered them: hand the listener over unregistered.
    let listener = listener.into_std().context("http listener")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the http runtime")?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("patchwatch-http".into())
        .spawn(move || {
            let result = rt.block_on(async move {
                let listener = TcpListener::from_std(listener).context("http listener")?;
                let stop = shutdown.cancelled_owned();
                match tls {
                    Some(tls) => {
                        let listener = http::tls::TlsListener::new(listener, tls)?;
                        axum::serve(listener, app)
                            .with_graceful_shutdown(stop)
                            .await
                    }
                    None => {
                        axum::serve(listener, app)
                            .with_graceful_shutdown(stop)
                            .await
                    }
                }
                .context("http listener")
            });
            // Event streams still open end here; reads still running get a moment to finish.
            rt.shutdown_timeout(Duration::from_secs(1));
            let _ = tx.send(result);
        })
        .context("starting the http thread")?;
    Ok(tokio::spawn(async move {
        rx.await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("http thread ended without a result")))
    }))
}

/// Builds the router and the sinks the configuration asks for, loads the stored maintenance
/// windows and silences, starts the router's driver (stopped by `stop`) and the forwarding
/// tasks.
async fn start_forwarding(
    config: &Config,
    store: &Arc<dyn store::Store>,
    stop: CancellationToken,
    drain: Duration,
) -> anyhow::Result<(
    windows::RoutingState,
    forward::Forwarder,
    Option<JoinHandle<()>>,
)> {
    let router = config
        .routing
        .as_ref()
        .map(|routing| routing::Router::new(routing.clone()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("routing: {e}"))?;
    let sinks = if config.sinks.is_empty() {
        None
    } else {
        let cfg = patchwatch_sinks::SinksConfig {
            sinks: config.sinks.clone(),
        };
        Some(patchwatch_sinks::Sinks::build(&cfg).map_err(|e| anyhow::anyhow!("sinks: {e}"))?)
    };
    let routing_state = windows::RoutingState::new(router.clone());
    routing_state
        .reload(store.as_ref())
        .await
        .context("loading maintenance windows and silences")?;
    let router_task = router.clone().map(|router| {
        tokio::spawn(async move {
            if let Err(error) = router.run(stop.cancelled_owned()).await {
                tracing::error!(message = "Alert router stopped.", %error);
            }
        })
    });
    let forwarder = forward::Forwarder::start(
        Arc::clone(store),
        router,
        sinks,
        config.forwarding.clone(),
        drain,
    )
    .await
    .context("starting forwarding")?;
    Ok((routing_state, forwarder, router_task))
}

/// Waits for shutdown (or a server failing), then gives both servers `grace` to finish.
async fn supervise(
    mut grpc: JoinHandle<anyhow::Result<()>>,
    mut http: JoinHandle<anyhow::Result<()>>,
    shutdown: &CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let flatten = |r: Result<anyhow::Result<()>, tokio::task::JoinError>| {
        r.map_err(anyhow::Error::from).and_then(|r| r)
    };
    let early = tokio::select! {
        // Servers finish right after shutdown is cancelled; check that first.
        biased;
        _ = shutdown.cancelled() => None,
        r = &mut grpc => Some(("grpc", flatten(r))),
        r = &mut http => Some(("http", flatten(r))),
    };
    if let Some((which, result)) = early.filter(|_| !shutdown.is_cancelled()) {
        // One listener stopped on its own: stop the other too and report why.
        shutdown.cancel();
        grpc.abort();
        http.abort();
        return result.and_then(|()| Err(anyhow::anyhow!("{which} listener stopped unexpectedly")));
    }
    let deadline = tokio::time::Instant::now() + grace;
    let mut result = Ok(());
    for (name, handle) in [("grpc", &mut grpc), ("http", &mut http)] {
        match tokio::time::timeout_at(deadline, &mut *handle).await {
            Ok(r) => {
                if let Err(e) = flatten(r) {
                    result = Err(e);
                }
            }
            Err(_) => {
                tracing::warn!(
                    message = "Listener did not stop within the grace period.",
                    listener = name
                );
                handle.abort();
            }
        }
    }
    result
}

fn grpc_tls_config(t: &patchwatch_config::ServerTls) -> anyhow::Result<ServerTlsConfig> {
    let pem = t.load("grpc.tls")?;
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(pem.cert, pem.key));
    if let Some(ca) = pem.client_ca {
        // rustls verifies every certificate a client presents against the CA during the
        // handshake. A client that presents none is let through the handshake only so that
        // `GrpcAuth` can refuse it with a clear UNAUTHENTICATED status instead of a bare
        // connection reset.
        tls = tls
            .client_ca_root(Certificate::from_pem(ca))
            .client_auth_optional(true);
    }
    Ok(tls)
}
