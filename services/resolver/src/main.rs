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
    let args = Args::parse();
    let own = args.resolver;
    runtime::run_service("resolver", &args.bus, |bus, shutdown| async move {
        serve(&bus, &own, shutdown).await
    })
    .await?;
    Ok(())
}
