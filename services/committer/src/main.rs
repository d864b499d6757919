//! `tagrelay-committer`: the committer as its own process.

use clap::Parser;
use tagrelay_committer::process::{serve, CommitterArgs};
use tagrelay_proto::runtime::{self, BusArgs};

/// The tagrelay committer: rewrites manifests in Git and publishes CommitPushed.
#[derive(Parser)]
#[command(name = "tagrelay-committer", version, about)]
struct Args {
    #[command(flatten)]
    bus: BusArgs,
    #[command(flatten)]
    committer: CommitterArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::install_crypto_provider();
    let _telemetry = tagrelay_proto::telemetry::init("tagrelay-committer");
    let args = Args::parse();
    let bus = args.bus.connect_waiting("committer").await?;
    serve(&bus, &args.committer, runtime::shutdown_signal()).await?;
    Ok(())
}
