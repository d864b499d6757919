//! The committer: rewrites manifests in Git and publishes CommitPushed.
//!
//! - [`rewrite`]: the pure, byte-exact manifest rewriter.
//! - [`template`] and [`message`]: Flux's commit message templates, and the
//!   trailers that carry the event chain into Git.
//! - [`automation`]: an ImageUpdateAutomation and its GitRepository,
//!   resolved with Flux's defaults.
//! - [`git`] (gix: cached bare clones, fetch, tree walk, object writes),
//!   [`push`] (the `git` CLI) and [`credentials`] (mounted Secrets).
//! - [`objects`]: which Kubernetes object a changed line belongs to.
//! - [`derive`]: ImageRepository / ImagePolicy objects for Flux v1
//!   annotated workloads.
//! - [`service`]: the reconcile loop, events and status.
//!
//! The service is a library so that its own binary and `tagrelay run --all`
//! run the same code.

pub mod automation;
pub mod credentials;
pub mod derive;
pub mod git;
pub mod message;
pub mod objects;
pub mod process;
pub mod push;
pub mod rewrite;
pub mod service;
pub mod template;

pub use service::{run, Settings};
