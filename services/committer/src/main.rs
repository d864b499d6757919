//! `tagrelay-committer`: the committer as its own process.

use std::path::PathBuf;

use clap::Parser;
use tagrelay_proto::runtime::{self, BusArgs};

/// The tagrelay committer: rewrites manifests in Git and publishes CommitPushed.
#[derive(Parser)]
#[command(name = "tagrelay-committer", version, about)]
struct Args {
    #[command(flatten)]
    bus: BusArgs,
    /// Directory of the cached bare clones (one per remote).
    #[arg(
        long,
        env = "TAGRELAY_CACHE_DIR",
        default_value = "/var/cache/tagrelay/git"
    )]
    cache_dir: PathBuf,
    /// Directory of mounted Git Secrets: `<dir>/<namespace>/<name>/<key>`
    /// with Flux's keys (identity, known_hosts, username, password,
    /// bearerToken).
    #[arg(
        long,
        env = "TAGRELAY_SECRETS_DIR",
        default_value = "/var/run/tagrelay/secrets"
    )]
    secrets_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::install_crypto_provider();
    runtime::init_logging();
    let args = Args::parse();
    let bus = args.bus.connect("committer").await?;
    let settings = tagrelay_committer::Settings {
        cache_dir: args.cache_dir,
        secrets_dir: args.secrets_dir,
    };
    tagrelay_committer::run(&bus, settings, runtime::shutdown_signal()).await?;
    Ok(())
}
