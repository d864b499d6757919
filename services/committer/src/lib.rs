//! The committer: rewrites manifests in Git and publishes CommitPushed.
//!
//! The service is a library so that its own binary and `tagrelay run --all`
//! run the same code.

pub mod rewrite;

use std::future::Future;

use tagrelay_proto::bus::{Bus, BusError};
use tagrelay_proto::names::Stage;

/// Runs the committer until `shutdown` resolves.
pub async fn run(bus: &Bus, shutdown: impl Future<Output = ()>) -> Result<(), BusError> {
    let _consumer = bus.consumer(Stage::Commit).await?;
    tracing::info!(source = bus.source(), "committer ready");
    shutdown.await;
    tracing::info!("committer stopped");
    Ok(())
}
