//! `tagrelay-committer`: the committer as its own process.

use clap::Parser;
use tagrelay_proto::runtime::{self, BusArgs};

/// The tagrelay committer: rewrites manifests in Git and publishes CommitPushed.
#[derive(Parser)]
#[command(name = "tagrelay-committer", version, about)]
struct Args {
    #[command(flatten)]
    bus: BusArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::install_crypto_provider();
    runtime::init_logging();
    let args = Args::parse();
    let bus = args.bus.connect("committer").await?;
    tagrelay_committer::run(&bus, runtime::shutdown_signal()).await?;
    Ok(())
}
