//! The scanner: lists registry tags and publishes `TagsDiscovered`.
//!
//! The service is a library so that its own binary and `tagrelay run --all`
//! run the same code. Pure decisions live in their own modules and are
//! tested without I/O; the registry client, the service and the HTTP server
//! are the edges.
//!
//! - [`paging`]: which page to fetch next (Link, `last`, when to stop).
//! - [`backoff`]: back-off with jitter, `Retry-After`, the request budget.
//! - [`tags`]: the OCI grammar, `exclusionList`, sorting, the status sample.
//! - [`credentials`]: Secrets mounted as directories, docker `config.json`,
//!   `WWW-Authenticate` challenges.
//! - [`cloud`]: registry credentials from AWS, Google Cloud and Azure
//!   (`spec.provider`).
//! - [`helper`]: docker credential helpers (`credHelpers`, `credsStore`).
//! - [`registry`]: HTTP to registries (tags, digests, creation times).
//! - [`schedule`]: which repository is next due for a scan, as a queue by
//!   due time, so an idle fleet costs nothing per tick.
//! - [`service`]: the scheduler loop, the scan-request consumer,
//!   publication.
//! - [`webhook`]: push notifications (parsers in [`webhook::payload`]),
//!   `/healthz`, `/readyz`.

pub mod backoff;
pub mod cloud;
pub mod credentials;
pub mod helper;
pub mod paging;
pub mod process;
pub mod registry;
pub mod schedule;
pub mod service;
pub mod tags;
pub mod webhook;

pub use service::{run_scanner, Scanner, ScannerSettings};
