//! The resolver: selects the latest tag per ImagePolicy and publishes
//! `PolicyResolved`.
//!
//! - [`service`]: the service around the pure policy engine
//!   (`tagrelay-policy`) (consumer, config watch, state).
//! - [`process`]: its flags and health endpoints, for the binary and
//!   `tagrelay run --all`.
//!
//! The service is a library so that its own binary and `tagrelay run --all`
//! run the same code.

pub mod process;
pub mod service;

pub use service::run;
