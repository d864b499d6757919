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
    runtime::install_crypto_provider();
    let _telemetry = tagrelay_proto::telemetry::init("tagrelay-scanner");
    let args = Args::parse();
    let bus = args.bus.connect_waiting("scanner").await?;
    serve(&bus, &args.scanner, runtime::shutdown_signal()).await?;
    Ok(())
}
