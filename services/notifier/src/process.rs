//! The notifier as a process: its flags and how it serves, shared by the
//! `tagrelay-notifier` binary and `tagrelay run --all`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tagrelay_proto::bus::Bus;
use tagrelay_proto::config::parse_go_duration;
use tagrelay_proto::runtime::{serve_with_health, Readiness, SecretsArgs, ServeError};

use crate::service::{run, Settings};
use crate::stale::Limits;

/// The notifier's own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct NotifierArgs {
    /// Mounted Provider Secrets, with Flux's keys (address, token,
    /// username, password, headers).
    #[command(flatten)]
    pub secrets: SecretsArgs,
    /// Address of the `/healthz`, `/readyz` and `/metrics` endpoints.
    #[arg(long, env = "TAGRELAY_HTTP_ADDR", default_value = "127.0.0.1:8084")]
    pub http_addr: Option<SocketAddr>,
    /// When policies and automations count as stuck.
    #[command(flatten)]
    pub stale: StaleArgs,
}

/// The stuck-policy limits, also taken by `tagrelay run --all`.
#[derive(Debug, Clone, clap::Args)]
pub struct StaleArgs {
    /// A policy is stale when its repository has had no successful scan
    /// for this many of its intervals.
    #[arg(long, env = "TAGRELAY_STALE_INTERVALS", default_value_t = 3)]
    pub stale_intervals: u32,
    /// A policy is stale when its repository's scans failed this many
    /// times in a row.
    #[arg(long, env = "TAGRELAY_STALE_FAILURES", default_value_t = 3)]
    pub stale_failures: u32,
    /// An automation is stalled when it has failed for longer than this
    /// (a Go duration).
    #[arg(long, env = "TAGRELAY_STALL_AFTER", default_value = "10m", value_parser = go_duration)]
    pub stall_after: Duration,
    /// How often to look for stuck policies and automations (a Go duration).
    #[arg(long, env = "TAGRELAY_STALE_CHECK_EVERY", default_value = "30s", value_parser = go_duration)]
    pub stale_check_every: Duration,
}

fn go_duration(text: &str) -> Result<Duration, String> {
    parse_go_duration(text).map_err(|e| e.to_string())
}

/// Runs the notifier (and its health endpoints, when an address is given)
/// until `shutdown` resolves.
pub async fn serve(
    bus: &Bus,
    args: &NotifierArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let readiness = Readiness::watching(bus);
    let settings = Settings {
        secrets_dir: args.secrets.secrets_dir.clone(),
        limits: Limits {
            intervals: args.stale.stale_intervals,
            failures: args.stale.stale_failures,
            stall_after: args.stale.stall_after,
        },
        sweep_every: args.stale.stale_check_every,
    };
    serve_with_health(
        args.http_addr,
        readiness.clone(),
        run(bus, readiness, settings, shutdown),
    )
    .await
}
