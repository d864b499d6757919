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
    let args = Args::parse();
    let own = args.committer;
    runtime::run_service("committer", &args.bus, |bus, shutdown| async move {
        serve(&bus, &own, shutdown).await
    })
    .await?;
    Ok(())
}
