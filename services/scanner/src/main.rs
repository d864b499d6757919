//! `tagrelay-scanner`: the scanner as its own process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tagrelay_proto::runtime::{self, BusArgs};
use tagrelay_scanner::registry::RegistrySettings;
use tagrelay_scanner::webhook::{self, WebhookSecret};
use tagrelay_scanner::{Scanner, ScannerSettings};

/// The tagrelay scanner: lists registry tags and publishes TagsDiscovered.
#[derive(Parser)]
#[command(name = "tagrelay-scanner", version, about)]
struct Args {
    #[command(flatten)]
    bus: BusArgs,
    /// Where Secrets are mounted: `<dir>/<namespace>/<secretRef.name>/` holds
    /// `.dockerconfigjson` (or `config.json`), `ca.crt`, `tls.crt`, `tls.key`.
    #[arg(
        long,
        env = "TAGRELAY_SECRETS_DIR",
        default_value = "/var/run/tagrelay/secrets"
    )]
    secrets_dir: PathBuf,
    /// Address of the webhook and health server.
    #[arg(long, env = "TAGRELAY_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// File holding the shared secret registry webhooks must present
    /// (token or HMAC key); webhooks are refused without one.
    #[arg(long, env = "TAGRELAY_WEBHOOK_SECRET_FILE")]
    webhook_secret_file: Option<PathBuf>,
    /// Scans run at once by this instance.
    #[arg(long, env = "TAGRELAY_SCAN_CONCURRENCY", default_value_t = 8)]
    concurrency: usize,
    /// Requests per second to one registry host, shared by every repository
    /// this instance scans on it.
    #[arg(long, env = "TAGRELAY_REGISTRY_RPS", default_value_t = 20.0)]
    registry_rps: f64,
    /// Requests to one registry host allowed in a burst.
    #[arg(long, env = "TAGRELAY_REGISTRY_BURST", default_value_t = 40)]
    registry_burst: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::install_crypto_provider();
    runtime::init_logging();
    let args = Args::parse();
    let secret = match &args.webhook_secret_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the webhook secret file {}", path.display()))?;
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
            ..RegistrySettings::default()
        },
        ..ScannerSettings::default()
    };
    let bus = args.bus.connect("scanner").await?;
    let scanner = Arc::new(Scanner::new(&bus, settings).await?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(address = %args.listen, "webhook and health server listening");
    let app = webhook::router(scanner.clone(), secret);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    tagrelay_scanner::run_scanner(scanner, runtime::shutdown_signal()).await?;
    server.abort();
    Ok(())
}
