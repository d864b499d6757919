//! `tagrelay-scanner`: the scanner as its own process.

use clap::Parser;
use tagrelay_proto::runtime::{self, BusArgs};

/// The tagrelay scanner: lists registry tags and publishes TagsDiscovered.
#[derive(Parser)]
#[command(name = "tagrelay-scanner", version, about)]
struct Args {
    #[command(flatten)]
    bus: BusArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::install_crypto_provider();
    runtime::init_logging();
    let args = Args::parse();
    let bus = args.bus.connect("scanner").await?;
    tagrelay_scanner::run(&bus, runtime::shutdown_signal()).await?;
    Ok(())
}
