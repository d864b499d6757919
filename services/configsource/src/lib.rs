//! The Git configuration source: a stage that keeps the `tagrelay-config`
//! bucket equal to the Flux objects under paths of a Git repository.
//!
//! Each poll fetches the branch, reads every YAML/JSON document under the
//! configured paths at its tip, and decides ([`decide`], pure) what the
//! bucket needs: the objects to put, the ones it wrote before that are gone
//! from Git to delete, or a refusal of the whole commit when any document
//! is invalid (the same checks as `tagrelay apply`, from
//! `tagrelay-validate`). The effect is written through
//! `tagrelay_proto::bus::ConfigStore` and announced as `ConfigSynced` or
//! `ConfigRejected` with the commit. The last `ConfigSynced` on the source's
//! subject is its memory of what it owns, so objects applied by hand or
//! derived from Flux v1 annotations are never deleted by it.
//!
//! A commit that leaves the documents as they are writes and publishes
//! nothing: that is why the committer's own image-update commits into the
//! same repository cannot start a loop.
//!
//! - [`decide`]: the decision, without I/O.
//! - [`git`]: fetching and reading the tree with the `git` CLI.
//! - [`service`]: the poll loop, the writes and the events.
//! - [`process`]: the flags, shared by the binary and `tagrelay run --all`.

pub mod decide;
pub mod git;
pub mod process;
pub mod service;
