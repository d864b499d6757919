//! `tagrelay-notifier`: the notifier as its own process.

use clap::Parser;
use tagrelay_notifier::process::{serve, NotifierArgs};
use tagrelay_proto::runtime::{self, BusArgs};

/// The tagrelay notifier: delivers events to Flux notification Providers
/// and announces stuck policies and automations.
#[derive(Parser)]
#[command(name = "tagrelay-notifier", version, about)]
struct Args {
    #[command(flatten)]
    bus: BusArgs,
    #[command(flatten)]
    notifier: NotifierArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let own = args.notifier;
    runtime::run_service("notifier", &args.bus, |bus, shutdown| async move {
        serve(&bus, &own, shutdown).await
    })
    .await?;
    Ok(())
}
