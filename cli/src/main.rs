//! `tagrelay`: the command line of the tagrelay pipeline.
//!
//! Bus commands (`apply`, `get`, `delete`) talk to NATS JetStream; offline
//! commands work on local files. Exit codes: 0 success, 1 the operation
//! failed (unreachable server, missing object), 2 the input was invalid.

mod apply;
mod audit;
mod create;
mod delete;
mod export;
mod flux_status;
mod get;
mod lint;
mod objects;
mod output;
mod policy;
mod reconcile;
mod replay;
mod run;
mod suspend;
mod tree;
mod update;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tagrelay_proto::bus::Bus;
use tagrelay_proto::runtime::BusArgs;

/// Keeps container image tags in Git up to date with what registries publish.
#[derive(Parser)]
#[command(name = "tagrelay", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    bus_args: BusArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate Flux YAML and store it in the configuration bucket.
    Apply(apply::Args),
    /// Show stored objects and their status.
    Get(get::Args),
    /// Create an object from flags, as `flux create` does (`--export`: print it).
    Create(create::Args),
    /// Delete a stored object.
    Delete(delete::Args),
    /// Suspend an object: it keeps its state and does nothing until resumed.
    Suspend(suspend::Args),
    /// Resume a suspended object.
    Resume(suspend::Args),
    /// Print stored objects as YAML that `apply` takes back unchanged.
    Export(export::Args),
    /// Ask for a scan now and wait for its result.
    Reconcile(reconcile::Args),
    /// The event log as a timeline.
    Audit(audit::AuditArgs),
    /// The causal chain of a commit, from the push back to the scan.
    Why(audit::WhyArgs),
    /// Re-run recorded tag sets through the policy engine.
    Replay(replay::Args),
    /// Run the services in this process.
    Run(run::Args),
    /// The whole pipeline on this machine: a registry push becomes a commit.
    Demo(DemoArgs),
    /// Try policies offline.
    Policy(policy::Args),
    /// Rewrite manifests offline, as the committer would.
    Update(update::Args),
    /// Find automation that silently does nothing: near-miss markers,
    /// unknown policies, unmarked images, ineffective Flux v1 annotations,
    /// files the committer skips. Exit 1 when it found any.
    Lint(lint::Args),
}

/// A failure with the exit code it maps to.
pub enum Failure {
    /// The input was invalid (exit 2); the message is already printed.
    Invalid,
    /// The operation failed (exit 1).
    Failed(anyhow::Error),
    /// The command printed what it found, and that is a failure (exit 1):
    /// `lint` finding problems.
    Reported,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Failed(error)
    }
}

impl From<tagrelay_proto::bus::BusError> for Failure {
    fn from(error: tagrelay_proto::bus::BusError) -> Self {
        Failure::Failed(error.into())
    }
}

impl Cli {
    async fn bus(&self) -> Result<Bus, Failure> {
        Ok(self.bus_args.connect("cli").await?)
    }
}

/// Arguments of `demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Signed commits on a review branch and the pull request they keep
    /// open on a loopback forge, instead of commits to `main`.
    #[arg(long)]
    review: bool,
    /// The Flux objects committed to the Git repository and read by the
    /// configuration source (`tagrelay-configsource`), instead of applied.
    #[arg(long, conflicts_with = "review")]
    gitops: bool,
}

/// Runs `tagrelay-demo`, installed next to this binary: the demo starts
/// servers and processes, so it lives with the harness that knows how.
fn demo(args: &DemoArgs) -> Result<(), Failure> {
    let exe = std::env::current_exe().map_err(anyhow::Error::from)?;
    let demo = exe.with_file_name("tagrelay-demo");
    let mut command = std::process::Command::new(&demo);
    if args.review {
        command.arg("--review");
    }
    if args.gitops {
        command.arg("--gitops");
    }
    let status = command.status().map_err(|e| {
        anyhow::anyhow!(
            "cannot run {}: {e} (build every binary: cargo build --release --bins, or use scripts/demo)",
            demo.display()
        )
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure::Failed(anyhow::anyhow!(
            "the demo failed ({status})"
        )))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tagrelay_proto::runtime::install_crypto_provider();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Apply(args) => apply::run(&cli, args).await,
        Command::Get(args) => get::run(&cli, args).await,
        Command::Create(args) => create::run(&cli, args).await,
        Command::Delete(args) => delete::run(&cli, args).await,
        Command::Suspend(args) => suspend::run(&cli, args, true).await,
        Command::Resume(args) => suspend::run(&cli, args, false).await,
        Command::Export(args) => export::run(&cli, args).await,
        Command::Reconcile(args) => reconcile::run(&cli, args).await,
        Command::Audit(args) => audit::audit(&cli, args).await,
        Command::Why(args) => audit::why(&cli, args).await,
        Command::Replay(args) => replay::run(&cli, args).await,
        Command::Run(args) => run::run(&cli, args).await,
        Command::Demo(args) => demo(args),
        Command::Policy(args) => policy::run(args),
        Command::Update(args) => update::run(args),
        Command::Lint(args) => lint::run(&cli, args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid) => ExitCode::from(2),
        Err(Failure::Reported) => ExitCode::from(1),
        Err(Failure::Failed(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}
