//! The resolver: selects the latest tag per ImagePolicy and publishes
//! `PolicyResolved`.
//!
//! - [`policy`]: the pure, Flux-exact policy engine (no I/O, no async).
//! - [`rules`]: Flux ImagePolicy YAML → engine rules.
//! - [`service`]: the service around them (consumer, config watch, state).
//! - [`process`]: its flags and health endpoints, for the binary and
//!   `tagrelay run --all`.
//!
//! The service is a library so that its own binary and `tagrelay run --all`
//! run the same code.

pub mod policy;
pub mod process;
pub mod rules;
pub mod service;

pub use service::run;
