//! `tagrelay run --all`: the four services in one process, for small
//! installations. Each runs through its own library's `serve`, the same
//! code its binary runs; only the process is shared.

use std::path::PathBuf;

use tagrelay_committer::process::CommitterArgs;
use tagrelay_notifier::process::{NotifierArgs, StaleArgs};
use tagrelay_resolver::process::ResolverArgs;
use tagrelay_scanner::process::ScannerArgs;

use crate::{Cli, Failure};

/// Arguments of `run`.
#[derive(clap::Args)]
pub struct Args {
    /// Run the scanner, the resolver, the committer and the notifier
    /// (required: the only mode so far; single services run as their own
    /// binaries).
    #[arg(long, required = true)]
    all: bool,
    /// The scanner's flags (its server also answers `/healthz` and
    /// `/readyz` for the whole process).
    #[command(flatten)]
    scanner: ScannerArgs,
    /// Directory of the committer's cached bare clones.
    #[arg(
        long,
        env = "TAGRELAY_CACHE_DIR",
        default_value = "/var/cache/tagrelay/git"
    )]
    cache_dir: PathBuf,
    /// The notifier's stuck-policy limits (its Secrets are the scanner's
    /// `--secrets-dir`, its endpoints the scanner's server).
    #[command(flatten)]
    stale: StaleArgs,
}

/// Runs `run`.
pub async fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let _telemetry = tagrelay_proto::telemetry::init("tagrelay");
    let resolver_args = ResolverArgs { http_addr: None };
    let committer_args = CommitterArgs {
        cache_dir: args.cache_dir.clone(),
        secrets: args.scanner.secrets.clone(),
        http_addr: None,
    };
    let notifier_args = NotifierArgs {
        secrets: args.scanner.secrets.clone(),
        http_addr: None,
        stale: args.stale.clone(),
    };
    let scanner_bus = cli.bus_args.connect_waiting("scanner").await?;
    let resolver_bus = cli.bus_args.connect_waiting("resolver").await?;
    let committer_bus = cli.bus_args.connect_waiting("committer").await?;
    let notifier_bus = cli.bus_args.connect_waiting("notifier").await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signal = tokio::spawn(async move {
        tagrelay_proto::runtime::shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let (scanner, resolver, committer, notifier) = tokio::join!(
        tagrelay_scanner::process::serve(&scanner_bus, &args.scanner, until_stopped()),
        tagrelay_resolver::process::serve(&resolver_bus, &resolver_args, until_stopped()),
        tagrelay_committer::process::serve(&committer_bus, &committer_args, until_stopped()),
        tagrelay_notifier::process::serve(&notifier_bus, &notifier_args, until_stopped()),
    );
    signal.abort();
    for (service, result) in [
        ("scanner", scanner),
        ("resolver", resolver),
        ("committer", committer),
        ("notifier", notifier),
    ] {
        result.map_err(|e| Failure::Failed(anyhow::anyhow!("{service}: {e}")))?;
    }
    Ok(())
}
