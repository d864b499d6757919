//! `tagrelay-resolver`: the resolver as its own process.

use clap::Parser;
use tagrelay_proto::runtime::{self, BusArgs};
use tagrelay_resolver::process::{serve, ResolverArgs};

/// The tagrelay resolver: selects the latest tag per ImagePolicy and
/// publishes PolicyResolved.
#[derive(Parser)]
#[command(name = "tagrelay-resolver", version, about)]
struct Args {
    #[command(flatten)]
    bus: BusArgs,
    #[command(flatten)]
    resolver: ResolverArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::install_crypto_provider();
    let _telemetry = tagrelay_proto::telemetry::init("tagrelay-resolver");
    let args = Args::parse();
    let bus = args.bus.connect_waiting("resolver").await?;
    serve(&bus, &args.resolver, runtime::shutdown_signal()).await?;
    Ok(())
}
