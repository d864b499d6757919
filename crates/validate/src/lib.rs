//! Configuration checked as a whole, the same way wherever it enters the
//! bus: `tagrelay apply` and the Git configuration source call the same
//! functions, so a batch one accepts the other accepts too.
//!
//! Beyond Flux's schema rules (`tagrelay_proto::config::validate`), a
//! batch is checked with the stages' own engines: policies are compiled with
//! the resolver's (`tagrelay-policy`), message and pull request templates
//! parsed with the committer's (`tagrelay-rewrite`), each automation
//! resolved against its GitRepository as the committer will
//! ([`automation`]), and cross-namespace references checked against
//! `accessFrom`. What a stage would refuse at run time is refused here,
//! with its file, line and field.
//!
//! - [`automation`]: an ImageUpdateAutomation and its GitRepository,
//!   resolved with Flux's defaults (the committer acts on the result).
//! - [`batch`]: documents decoded and checked, then checked against the
//!   configuration they will stand beside.
//!
//! Pure: no I/O and no async (`tests/e2e/tests/tidy.rs` holds it to that).

pub mod automation;
pub mod batch;

pub use batch::{check_references, decode_batch, Batch, Checked, Problem, UnknownKinds};
