//! `tagrelay-configsource`: the Git configuration source as its own
//! process.

use clap::Parser;
use tagrelay_configsource::process::{serve, ConfigSourceArgs};
use tagrelay_proto::runtime::{self, BusArgs, SecretsArgs};

/// The tagrelay configuration source: keeps the configuration bucket equal
/// to the Flux objects under paths of a Git repository.
#[derive(Parser)]
#[command(name = "tagrelay-configsource", version, about)]
struct Args {
    #[command(flatten)]
    bus: BusArgs,
    #[command(flatten)]
    source: ConfigSourceArgs,
    #[command(flatten)]
    secrets: SecretsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (own, secrets) = (args.source, args.secrets);
    runtime::run_service("configsource", &args.bus, |bus, shutdown| async move {
        serve(&bus, &own, &secrets, shutdown).await
    })
    .await?;
    Ok(())
}
