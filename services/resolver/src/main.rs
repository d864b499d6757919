//! `tagrelay-resolver`: the resolver as its own process.

use std::net::SocketAddr;

use clap::Parser;
use tagrelay_proto::runtime::{self, BusArgs, Readiness};

/// The tagrelay resolver: selects the latest tag per ImagePolicy and
/// publishes PolicyResolved.
#[derive(Parser)]
#[command(name = "tagrelay-resolver", version, about)]
struct Args {
    #[command(flatten)]
    bus: BusArgs,
    /// Address of the `/healthz` and `/readyz` endpoints.
    #[arg(long, env = "TAGRELAY_HTTP_ADDR", default_value = "127.0.0.1:8082")]
    http_addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::install_crypto_provider();
    let _telemetry = tagrelay_proto::telemetry::init("tagrelay-resolver");
    let args = Args::parse();
    let bus = args.bus.connect("resolver").await?;
    let readiness = Readiness::default();
    let (stop_health, health_stopped) = tokio::sync::oneshot::channel::<()>();
    let health = tokio::spawn(runtime::serve_health(
        args.http_addr,
        readiness.clone(),
        async {
            let _ = health_stopped.await;
        },
    ));
    tagrelay_resolver::run(&bus, readiness, runtime::shutdown_signal()).await?;
    let _ = stop_health.send(());
    health.await??;
    Ok(())
}
