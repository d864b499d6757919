//! The resolver as a process: its flags and how it serves, shared by the
//! `tagrelay-resolver` binary and `tagrelay run --all`.

use std::future::Future;
use std::net::SocketAddr;

use tagrelay_proto::bus::Bus;
use tagrelay_proto::runtime::{serve_with_health, Readiness, ServeError};

/// The resolver's own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ResolverArgs {
    /// Address of the `/healthz` and `/readyz` endpoints.
    #[arg(long, env = "TAGRELAY_HTTP_ADDR", default_value = "127.0.0.1:8082")]
    pub http_addr: Option<SocketAddr>,
}

/// Runs the resolver (and its health endpoints, when an address is given)
/// until `shutdown` resolves.
pub async fn serve(
    bus: &Bus,
    args: &ResolverArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let readiness = Readiness::watching(bus);
    serve_with_health(
        args.http_addr,
        readiness.clone(),
        crate::service::run(bus, readiness, shutdown),
    )
    .await
}
