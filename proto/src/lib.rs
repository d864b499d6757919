//! The one crate every tagrelay service shares: what travels on the bus and
//! what is stored in it.
//!
//! - [`event`]: the versioned envelope and the six event payloads.
//! - [`names`]: subjects, streams, durable consumers and buckets, defined once.
//! - [`bus`]: connecting, declaring the topology idempotently, publishing with
//!   `Nats-Msg-Id` and `traceparent`, consuming, and the configuration store.
//! - [`consume`]: the one consume loop every stage runs (decode, trace,
//!   heartbeat, ack/nak, lag, readiness, drain) and `Failures`, the one
//!   way a stage records a failure.
//! - [`config`]: the Flux kinds, strict decoding and Flux's validation.
//! - [`credentials`]: Secrets mounted as files (Git, signing keys, forges)
//!   and how the `git` CLI is handed them (askpass, `GIT_SSH_COMMAND`,
//!   `GIT_CONFIG_*`): shared by the committer and the configuration source.
//! - [`reference`]: image references and the OCI tag grammar.
//! - [`runtime`]: TLS provider, bus flags, instance names, shutdown,
//!   readiness and health endpoints.
//! - [`scan`]: scan requests on the scanner's work queue, interval slots.
//! - [`state`]: state records stages share through KV (policy selections).
//! - [`status`]: status records shown by `tagrelay get`.
//! - [`telemetry`]: logs, OTLP traces and metrics, the metric instruments.
//! - [`trace`]: W3C trace context through NATS headers.
//!
//! Without the default `bus` feature only the pure vocabulary is built
//! (events, names, configuration kinds, scan requests, state and status
//! records): the pure crates and offline tools depend on it that way.
//!
//! No service imports another service; everything they must agree on is here.

#[cfg(feature = "bus")]
pub mod bus;
pub mod config;
#[cfg(feature = "bus")]
pub mod consume;
pub mod credentials;
pub mod event;
pub mod names;
pub use tagrelay_reference as reference;
#[cfg(feature = "bus")]
pub mod runtime;
pub mod scan;
#[cfg(test)]
mod schema_tests;
pub mod state;
pub mod status;
#[cfg(feature = "bus")]
pub mod telemetry;
#[cfg(feature = "bus")]
pub mod trace;
