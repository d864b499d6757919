//! `tagrelay run --all`: the four services in one process, for small
//! installations, and the Git configuration source when `--git-url` is
//! given. Each runs through its own library's `serve`, the same code its
//! binary runs; only the process is shared.

use std::path::PathBuf;

use tagrelay_committer::process::{go_duration, CommitterArgs};
use tagrelay_configsource::process::ConfigSourceArgs;
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
    /// How long after a policy moved the committer waits, so that the
    /// moves of one burst land as one commit (Go duration; `0s`: at once).
    #[arg(long, env = "TAGRELAY_COMMIT_WINDOW", default_value = "750ms", value_parser = go_duration)]
    commit_window: std::time::Duration,
    /// The Git configuration source's flags: with `--git-url`, the
    /// configuration is read from Git instead of `tagrelay apply`.
    #[command(flatten)]
    config_source: ConfigSourceArgs,
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
        commit_window: args.commit_window,
    };
    let notifier_args = NotifierArgs {
        secrets: args.scanner.secrets.clone(),
        http_addr: None,
        stale: args.stale.clone(),
    };
    let scanner_bus = cli.bus_args.connect_waiting("scanner").await?;
    let resolver_bus = cli.bus_args.connect_waiting("resolver").await?;
    let committer_bus = cli.bus_args.connect_waiting("committer").await?;
    let config_source_bus = if args.config_source.is_configured() {
        Some(cli.bus_args.connect_waiting("configsource").await?)
    } else {
        None
    };
    let config_source_args = ConfigSourceArgs {
        config_http_addr: None,
        ..args.config_source.clone()
    };
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
    let config_source = async {
        match &config_source_bus {
            Some(bus) => {
                tagrelay_configsource::process::serve(
                    bus,
                    &config_source_args,
                    &args.scanner.secrets,
                    until_stopped(),
                )
                .await
            }
            None => Ok(()),
        }
    };
    let (scanner, resolver, committer, notifier, config_source) = tokio::join!(
        tagrelay_scanner::process::serve(&scanner_bus, &args.scanner, until_stopped()),
        tagrelay_resolver::process::serve(&resolver_bus, &resolver_args, until_stopped()),
        tagrelay_committer::process::serve(&committer_bus, &committer_args, until_stopped()),
        tagrelay_notifier::process::serve(&notifier_bus, &notifier_args, until_stopped()),
        config_source,
    );
    signal.abort();
    for (service, result) in [
        ("scanner", scanner),
        ("resolver", resolver),
        ("committer", committer),
        ("notifier", notifier),
        ("configsource", config_source),
    ] {
        result.map_err(|e| Failure::Failed(anyhow::anyhow!("{service}: {e}")))?;
    }
    Ok(())
}
