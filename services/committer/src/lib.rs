//! The committer: rewrites manifests in Git and publishes CommitPushed.
//!
//! The pure parts (the byte-exact rewriter, Flux's commit message
//! templates and trailers) live in `tagrelay-rewrite`.
//! - `tagrelay_validate::automation`: an ImageUpdateAutomation and its
//!   GitRepository, resolved with Flux's defaults (shared with `apply` and
//!   the Git configuration source).
//! - [`git`] (gix: cached bare clones, fetch, tree walk, object writes),
//!   [`push`] (the `git` CLI) and `credentials` (mounted Secrets, in
//!   `tagrelay_proto::credentials`).
//! - [`review`] (the review stage: one pull request per review branch)
//!   and [`forge`] (GitHub, GitLab and Gitea REST clients).
//! - [`signing`]: OpenPGP and SSH commit signatures, in-process.
//! - [`plan`]: the decision (which files change, the commit for them),
//!   pure, with the one `Failed` error a reconcile stops with.
//! - [`derive`]: ImageRepository / ImagePolicy objects for Flux v1
//!   annotated workloads.
//! - [`service`]: the reconcile loop, events and status.
//!
//! The service is a library so that its own binary and `tagrelay run --all`
//! run the same code.

/// Mounted Secrets, shared with the configuration source through `proto`.
pub use tagrelay_proto::credentials;
pub mod derive;
pub mod forge;
pub mod git;
pub mod plan;
pub mod process;
pub mod push;
pub mod review;
pub mod service;
pub mod signing;

pub use service::{run, Settings};
