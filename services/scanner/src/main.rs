//! `tagrelay-scanner`: the scanner as its own process.

use clap::Parser;
use tagrelay_proto::runtime::{self, BusArgs};
use tagrelay_scanner::process::{serve, ScannerArgs};

/// The tagrelay scanner: lists registry tags and publishes TagsDiscovered.
#[derive(Parser)]
#[command(name = "tagrelay-scanner", version, about)]
struct Args {
    #[command(flatten)]
    bus: BusArgs,
    #[command(flatten)]
    scanner: ScannerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let own = args.scanner;
    runtime::run_service("scanner", &args.bus, |bus, shutdown| async move {
        serve(&bus, &own, shutdown).await
    })
    .await?;
    Ok(())
}
