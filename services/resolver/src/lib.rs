//! The resolver: selects the latest tag per ImagePolicy and publishes PolicyResolved.
//!
//! The service is a library so that its own binary and `tagrelay run --all`
//! run the same code.

use std::future::Future;

use tagrelay_proto::bus::{Bus, BusError};
use tagrelay_proto::names::Stage;

/// Runs the resolver until `shutdown` resolves.
pub async fn run(bus: &Bus, shutdown: impl Future<Output = ()>) -> Result<(), BusError> {
    let _consumer = bus.consumer(Stage::Resolve).await?;
    tracing::info!(source = bus.source(), "resolver ready");
    shutdown.await;
    tracing::info!("resolver stopped");
    Ok(())
}
