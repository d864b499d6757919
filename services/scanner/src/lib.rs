//! The scanner: lists registry tags and publishes TagsDiscovered.
//!
//! The service is a library so that its own binary and `tagrelay run --all`
//! run the same code.

use std::future::Future;

use tagrelay_proto::bus::{Bus, BusError};
use tagrelay_proto::names::Stage;

/// Runs the scanner until `shutdown` resolves.
pub async fn run(bus: &Bus, shutdown: impl Future<Output = ()>) -> Result<(), BusError> {
    let _consumer = bus.consumer(Stage::Scan).await?;
    tracing::info!(source = bus.source(), "scanner ready");
    shutdown.await;
    tracing::info!("scanner stopped");
    Ok(())
}
