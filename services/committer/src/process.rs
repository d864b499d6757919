//! The committer as a process: its flags and how it serves, shared by the
//! `tagrelay-committer` binary and `tagrelay run --all`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use tagrelay_proto::bus::Bus;
use tagrelay_proto::config::parse_go_duration;
use tagrelay_proto::runtime::{serve_with_health, Readiness, SecretsArgs, ServeError};

use crate::service::{run, Settings};

/// The committer's own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CommitterArgs {
    /// Directory of the cached bare clones (one per remote).
    #[arg(
        long,
        env = "TAGRELAY_CACHE_DIR",
        default_value = "/var/cache/tagrelay/git"
    )]
    pub cache_dir: PathBuf,
    /// Mounted Git Secrets, with Flux's keys (identity, known_hosts,
    /// username, password, bearerToken, ca.crt, tls.crt, tls.key; address
    /// for a proxy).
    #[command(flatten)]
    pub secrets: SecretsArgs,
    /// Address of the `/healthz` and `/readyz` endpoints.
    #[arg(long, env = "TAGRELAY_HTTP_ADDR", default_value = "127.0.0.1:8083")]
    pub http_addr: Option<SocketAddr>,
    /// How long after a policy moved to wait before committing (longer while
    /// selections are still being written, at most four times this), so
    /// that the moves of one burst land as one commit (Go duration; `0s`
    /// commits each move at once).
    #[arg(long, env = "TAGRELAY_COMMIT_WINDOW", default_value = "750ms", value_parser = go_duration)]
    pub commit_window: std::time::Duration,
}

/// Parses a Go duration for clap, as the flag's users write it.
pub fn go_duration(text: &str) -> Result<std::time::Duration, String> {
    parse_go_duration(text).map_err(|e| e.to_string())
}

/// Runs the committer (and its health endpoints, when an address is given)
/// until `shutdown` resolves.
pub async fn serve(
    bus: &Bus,
    args: &CommitterArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let readiness = Readiness::watching(bus);
    let settings = Settings {
        cache_dir: args.cache_dir.clone(),
        secrets_dir: args.secrets.secrets_dir.clone(),
        commit_window: args.commit_window,
    };
    serve_with_health(
        args.http_addr,
        readiness.clone(),
        run(bus, settings, readiness, shutdown),
    )
    .await
}
