//! The scanner as a process: its flags and how it serves (the scan loop and
//! the webhook + health server), shared by the `tagrelay-scanner` binary and
//! `tagrelay run --all`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tagrelay_proto::bus::Bus;
use tagrelay_proto::runtime::ServeError;

use crate::registry::RegistrySettings;
use crate::webhook::{self, WebhookSecret};
use crate::{run_scanner, Scanner, ScannerSettings};

/// The scanner's own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ScannerArgs {
    /// Where Secrets are mounted: `<dir>/<namespace>/<secretRef.name>/` holds
    /// `.dockerconfigjson` (or `config.json`), `ca.crt`, `tls.crt`, `tls.key`.
    #[arg(
        long,
        env = "TAGRELAY_SECRETS_DIR",
        default_value = "/var/run/tagrelay/secrets"
    )]
    pub secrets_dir: PathBuf,
    /// Address of the webhook and health server.
    #[arg(long, env = "TAGRELAY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// File holding the shared secret registry webhooks must present
    /// (token or HMAC key); webhooks are refused without one.
    #[arg(long, env = "TAGRELAY_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Scans run at once by this instance.
    #[arg(long, env = "TAGRELAY_SCAN_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,
    /// Requests per second to one registry host, shared by every repository
    /// this instance scans on it.
    #[arg(long, env = "TAGRELAY_REGISTRY_RPS", default_value_t = 20.0)]
    pub registry_rps: f64,
    /// Requests to one registry host allowed in a burst.
    #[arg(long, env = "TAGRELAY_REGISTRY_BURST", default_value_t = 40)]
    pub registry_burst: u32,
    /// Time limit of one registry request (Go duration: `30s`, `1m`); a
    /// request that takes longer is retried with back-off, within the
    /// repository's scan timeout.
    #[arg(long, env = "TAGRELAY_REGISTRY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub registry_timeout: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    match tagrelay_proto::config::parse_go_duration(text) {
        Ok(duration) if duration > Duration::ZERO => Ok(duration),
        Ok(_) => Err("must be more than zero".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs the scanner and its webhook + health server until `shutdown`
/// resolves.
pub async fn serve(
    bus: &Bus,
    args: &ScannerArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let secret = match &args.webhook_secret_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ServeError::Io {
                what: format!("reading the webhook secret file {}", path.display()),
                source,
            })?;
            WebhookSecret::new(text.trim().as_bytes())
        }
        None => WebhookSecret::none(),
    };
    let settings = ScannerSettings {
        secrets_dir: args.secrets_dir.clone(),
        concurrency: args.concurrency.max(1),
        registry: RegistrySettings {
            rate: args.registry_rps,
            burst: args.registry_burst,
            request_timeout: args.registry_timeout,
            ..RegistrySettings::default()
        },
        ..ScannerSettings::default()
    };
    let scanner = Arc::new(Scanner::new(bus, settings).await?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Io {
            what: format!("listening on {}", args.listen),
            source,
        })?;
    tracing::info!(address = %args.listen, "webhook and health server listening");
    let app = webhook::router(scanner.clone(), secret);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let result = run_scanner(scanner, shutdown).await;
    server.abort();
    Ok(result?)
}
