//! Process plumbing every binary shares: the TLS provider, bus flags,
//! instance names, shutdown signals and health endpoints. (Logs, traces and
//! metrics: [`crate::telemetry`].)

/// Installs the process-wide rustls crypto provider. async-nats brings
/// `ring` and reqwest brings `aws-lc-rs`; with both compiled in, rustls
/// panics on the first TLS connection unless one is chosen up front.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How long a starting service waits for the bus before giving up
/// ([`BusArgs::connect_waiting`]).
pub const BUS_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// `service/instance`, the `source` of every event this process publishes.
/// The instance defaults to the host name, then the process id.
pub fn source_name(service: &str, instance: Option<&str>) -> String {
    let instance = instance
        .map(str::to_string)
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid-{}", std::process::id()));
    format!("{service}/{instance}")
}

/// Resolves when the process is asked to stop (SIGTERM or Ctrl-C), so a
/// service can stop taking work and finish what is in flight.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The flags every service binary takes to reach the bus, defined once so
/// that `tagrelay-scanner`, `tagrelay-resolver`, `tagrelay-committer` and
/// `tagrelay run` agree on names and environment variables.
#[derive(Debug, Clone, clap::Args)]
pub struct BusArgs {
    /// NATS server URL; a cluster's URLs comma-separated.
    #[arg(
        long,
        global = true,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// This instance's name in event sources (default: the host name).
    #[arg(long, global = true, env = "TAGRELAY_INSTANCE")]
    pub instance: Option<String>,
    /// Replicas of streams and buckets (3 on a JetStream cluster).
    #[arg(long, global = true, env = "TAGRELAY_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// NATS user (the password comes from `NATS_PASSWORD` only).
    #[arg(long, global = true, env = "NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS credentials file (`.creds`).
    #[arg(long, global = true, env = "NATS_CREDS")]
    pub nats_creds: Option<std::path::PathBuf>,
    /// File holding an nkey seed.
    #[arg(long, global = true, env = "NATS_NKEY_FILE")]
    pub nats_nkey: Option<std::path::PathBuf>,
    /// CA bundle to verify the NATS server (enables TLS).
    #[arg(long, global = true, env = "NATS_TLS_CA")]
    pub nats_tls_ca: Option<std::path::PathBuf>,
    /// Client certificate for mutual TLS (with `--nats-tls-key`).
    #[arg(long, global = true, env = "NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<std::path::PathBuf>,
    /// Client key for mutual TLS.
    #[arg(long, global = true, env = "NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<std::path::PathBuf>,
}

impl BusArgs {
    /// Connects as `service`, declaring the topology.
    pub async fn connect(&self, service: &str) -> Result<crate::bus::Bus, crate::bus::BusError> {
        let settings = crate::bus::BusSettings {
            replicas: self.replicas,
            ..Default::default()
        };
        let source = source_name(service, self.instance.as_deref());
        crate::bus::Bus::connect_with(&self.nats_url, &self.auth(), source, settings).await
    }

    /// Like [`BusArgs::connect`], for a long-running service: a service
    /// started before NATS, or while a cluster is electing its leader, waits
    /// for the bus (retrying with back-off from 0.5 s doubling to 10 s, each
    /// failure logged) rather than exiting, for up to [`BUS_WAIT`]; after that
    /// the last error is returned and the supervisor takes over.
    pub async fn connect_waiting(
        &self,
        service: &str,
    ) -> Result<crate::bus::Bus, crate::bus::BusError> {
        let deadline = std::time::Instant::now() + BUS_WAIT;
        let mut pause = std::time::Duration::from_millis(500);
        loop {
            match self.connect(service).await {
                Ok(bus) => return Ok(bus),
                Err(error) if std::time::Instant::now() + pause < deadline => {
                    tracing::warn!(%error, retry_in = ?pause, "the bus is not reachable yet");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(10));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The credentials these flags and the environment name.
    pub fn auth(&self) -> crate::bus::NatsAuth {
        let secret = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        crate::bus::NatsAuth {
            user: self.nats_user.clone(),
            password: secret("NATS_PASSWORD"),
            token: secret("NATS_TOKEN"),
            creds_file: self.nats_creds.clone(),
            nkey_file: self.nats_nkey.clone(),
            tls_ca: self.nats_tls_ca.clone(),
            tls_client: self.nats_tls_cert.clone().zip(self.nats_tls_key.clone()),
        }
    }
}

/// Where a service reads mounted Secrets: one flag for every service that
/// reads them, so an installation mounts them in one place.
#[derive(Debug, Clone, clap::Args)]
pub struct SecretsArgs {
    /// Where Secrets are mounted, one directory per Secret as Kubernetes
    /// mounts them: `<dir>/<namespace>/<secretRef.name>/<key>`.
    #[arg(
        long,
        env = "TAGRELAY_SECRETS_DIR",
        default_value = "/var/run/tagrelay/secrets"
    )]
    pub secrets_dir: std::path::PathBuf,
}

/// Whether a service is ready to take work: false until its consumer is
/// bound, false again once it starts shutting down, so a load balancer or
/// Kubernetes stops sending it traffic before it stops. One made with
/// [`Readiness::watching`] is also not ready while its NATS connection is
/// down.
#[derive(Clone, Default)]
pub struct Readiness {
    ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connection: Option<async_nats::Client>,
}

impl Readiness {
    /// Readiness that also requires `bus`'s connection to be up.
    pub fn watching(bus: &crate::bus::Bus) -> Self {
        Self {
            ready: Default::default(),
            connection: Some(bus.client().clone()),
        }
    }

    /// Marks the service ready or not.
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the service is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::SeqCst)
            && self.connection.as_ref().is_none_or(|client| {
                client.connection_state() == async_nats::connection::State::Connected
            })
    }
}

/// `/healthz` (the process is alive: always 200), `/readyz` (200 when
/// ready, 503 otherwise) and `/metrics` (every instrument, for Prometheus),
/// on every service's HTTP port.
pub fn health_router(readiness: Readiness) -> axum::Router {
    use axum::http::{header, StatusCode};
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                    crate::telemetry::render_metrics(),
                )
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = readiness.is_ready();
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
}

/// Serves [`health_router`] on `address` until `shutdown` resolves.
pub async fn serve_health(
    address: std::net::SocketAddr,
    readiness: Readiness,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    axum::serve(listener, health_router(readiness))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The way every service binary runs: the crypto provider, telemetry
/// (`tagrelay-<service>`), the bus (waited for, see
/// [`BusArgs::connect_waiting`]), then `serve` until SIGTERM or Ctrl-C,
/// which it is handed as its shutdown future.
pub async fn run_service<F, Fut>(service: &str, bus: &BusArgs, serve: F) -> Result<(), ServeError>
where
    F: FnOnce(
        crate::bus::Bus,
        std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) -> Fut,
    Fut: std::future::Future<Output = Result<(), ServeError>>,
{
    install_crypto_provider();
    let _telemetry = crate::telemetry::init(&format!("tagrelay-{service}"));
    let bus = bus.connect_waiting(service).await?;
    serve(bus, Box::pin(shutdown_signal())).await
}

/// Serves `work` (a service's consume loop) with its `/healthz` and
/// `/readyz` on `address`, when one is given, until `work` returns; the
/// endpoints stop with it.
pub async fn serve_with_health(
    address: Option<std::net::SocketAddr>,
    readiness: Readiness,
    work: impl std::future::Future<Output = Result<(), crate::bus::BusError>>,
) -> Result<(), ServeError> {
    let (stop_health, health) = spawn_health(address, readiness);
    let result = work.await;
    let _ = stop_health.send(());
    result?;
    health.await.map_err(|e| ServeError::Io {
        what: "health endpoints".into(),
        source: std::io::Error::other(e),
    })?
}

/// Why a service process stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The bus failed (unreachable, topology, consumer).
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
    /// A local resource failed (listening socket, a configured file).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Serves [`health_router`] on `address`, if one is given, until `stop`
/// resolves; the handle's result reports a failure to listen.
pub fn spawn_health(
    address: Option<std::net::SocketAddr>,
    readiness: Readiness,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), ServeError>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let Some(address) = address else {
            return Ok(());
        };
        serve_health(address, readiness, async {
            let _ = stopped.await;
        })
        .await
        .map_err(|source| ServeError::Io {
            what: format!("health endpoints on {address}"),
            source,
        })
    });
    (stop, task)
}
