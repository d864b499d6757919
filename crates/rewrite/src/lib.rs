//! The committer's pure rewriting engine.
//!
//! Given a file's bytes and what should change (the latest image of each
//! policy the automation may use, and the tags chosen for Flux v1 automated
//! containers), it returns the new bytes and a list of changes. Nothing else
//! in the file moves: only the bytes of each changed value are replaced,
//! keeping quoting, comments, indentation, key order and line endings, and
//! every rewritten file is re-parsed and compared with the original before it
//! is returned. There is no I/O here, so the committer, the CLI's
//! `update --diff` and the fuzzer all share one implementation.
//!
//! - [`setters`]: Flux's `# {"$imagepolicy": "NS:NAME"}` markers.
//! - [`v1`]: Flux v1's workload annotations (`fluxcd.io/automated`, …):
//!   discovery of automated containers, and writing their new tags.
//! - [`helm`]: the image shapes Flux v1 recognised in HelmRelease `values`.
//! - `scalar` and `yaml` (private): quoting, byte-exact replacement and the
//!   position-aware YAML tree they work on.

pub mod helm;
pub mod lint;
pub mod message;
pub mod objects;
pub mod review;
mod scalar;
pub mod screen;
pub mod setters;
pub mod template;
pub mod v1;
mod yaml;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use tagrelay_reference::ImageReference;

pub use setters::{is_setters_candidate, may_contain_markers, Setter, SetterField, SETTER_TOKEN};
pub use v1::{
    discover_v1, discover_v1_files, is_v1_candidate, V1Container, V1Discovery, V1Note,
    V1NoteReason, V1Update, WorkloadId,
};

/// Why a file was skipped. Every other file of the batch is still updated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// The file is not UTF-8, so it is not YAML the engine can edit safely.
    #[error("not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The YAML parser rejected the file.
    #[error("YAML syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A mapping repeats a key; Flux (kyaml) refuses such files too.
    #[error("duplicate mapping key {key:?} at line {line}")]
    DuplicateKey {
        /// 1-based line of the second occurrence.
        line: usize,
        /// The key.
        key: String,
    },
    /// Collections nest deeper than any manifest does.
    #[error("collections nested more than {limit} deep at line {line}")]
    TooDeep {
        /// 1-based line where the limit was passed.
        line: usize,
        /// The limit.
        limit: usize,
    },
    /// The rewritten file did not read back as the original with only the
    /// intended values changed, so nothing was written. A bug, reported
    /// rather than committed.
    #[error("rewrite verification failed: {0}")]
    Verification(String),
}

/// What caused a change: a Setters marker, or a Flux v1 automated container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// A `# {"$imagepolicy": …}` marker.
    Setter(Setter),
    /// A container of a workload automated with Flux v1 annotations.
    V1 {
        /// The workload, as identified in the file.
        workload: WorkloadId,
        /// The container (for a HelmRelease, `chart-image`, a values key or
        /// an alias from the mapping annotations).
        container: String,
    },
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Setter(s) => s.fmt(f),
            Cause::V1 {
                workload,
                container,
            } => write!(f, "{workload} container {container}"),
        }
    }
}

/// One value changed in a file. The caller adds the file's path; the CLI
/// prints `file: old -> new (cause)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// 1-based line where the value starts.
    pub line: usize,
    /// The value before, as YAML reads it (without quotes).
    pub old: String,
    /// The value after.
    pub new: String,
    /// The marker or container that asked for it.
    pub cause: Cause,
}

/// Why a value that should have changed was left alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusalReason {
    /// The tag does not match the OCI tag grammar, so it is never written.
    #[error("tag {0:?} does not match the OCI tag grammar")]
    InvalidTag(String),
    /// The digest is not `algorithm:hex`.
    #[error("digest {0:?} is not a valid digest")]
    InvalidDigest(String),
    /// The policy's latest image has no tag to write.
    #[error("the policy's latest image has no tag")]
    MissingTag,
    /// A `:digest` marker, but the policy does not reflect digests. (Flux
    /// would write an empty string.)
    #[error("the policy's latest image has no digest")]
    MissingDigest,
    /// The value is a multi-line or otherwise unusual scalar whose bytes the
    /// engine will not guess at.
    #[error("the value is a multi-line scalar the engine does not rewrite")]
    Unrewritable,
    /// Two causes want different values in the same scalar.
    #[error("another update already writes {0:?} here")]
    Conflict(String),
    /// Writing the value here would not read back as the same document with
    /// only this value changed (a YAML reader quirk), so it was not written.
    #[error("writing {0:?} here would not read back as intended")]
    Unsafe(String),
}

/// A value that was not changed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 1-based line of the value.
    pub line: usize,
    /// The marker or container that asked for the change.
    pub cause: Cause,
    /// Why it was refused.
    pub reason: RefusalReason,
}

/// What should change. Built by the committer from the policies' latest
/// images and the resolver's choices for Flux v1 containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateSet {
    /// Latest image of each policy markers may refer to, keyed `NS:NAME`.
    /// Only the automation's own namespace, filtered by its `policySelector`:
    /// a marker naming any other policy is left alone.
    pub policies: BTreeMap<String, ImageReference>,
    /// New tags for Flux v1 automated containers.
    pub v1: Vec<V1Update>,
}

impl UpdateSet {
    /// Whether nothing is to change, so files need not even be parsed.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.v1.is_empty()
    }
}

/// The outcome for one file that parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRewrite {
    /// The new bytes (the original bytes when nothing changed).
    pub content: Vec<u8>,
    /// What changed, in file order.
    pub changes: Vec<Change>,
    /// What should have changed but was refused.
    pub refusals: Vec<Refusal>,
}

impl FileRewrite {
    /// Whether the file must be written back.
    pub fn is_changed(&self) -> bool {
        !self.changes.is_empty()
    }
}

/// Results for many files: the ones that parsed, and the ones skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<K, T> {
    /// Files that parsed and had something to report, in input order.
    pub files: Vec<(K, T)>,
    /// Files that were skipped, with why.
    pub errors: Vec<(K, RewriteError)>,
}

impl<K, T> Default for Batch<K, T> {
    fn default() -> Self {
        Self {
            files: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// Rewrites one file: Setters markers (only if the file contains
/// [`SETTER_TOKEN`], as Flux screens files) and Flux v1 container tags.
///
/// Callers choose which files to pass ([`is_setters_candidate`],
/// [`is_v1_candidate`]). A file that does not parse is an error; nothing in
/// it is changed.
pub fn rewrite_file(content: &[u8], updates: &UpdateSet) -> Result<FileRewrite, RewriteError> {
    let unchanged = || FileRewrite {
        content: content.to_vec(),
        changes: Vec::new(),
        refusals: Vec::new(),
    };
    let setters = !updates.policies.is_empty() && may_contain_markers(content);
    if !setters && updates.v1.is_empty() {
        return Ok(unchanged());
    }
    let text = as_text(content)?;
    let parsed = yaml::parse(text)?;
    let mut plan = Plan::default();
    if setters {
        setters::plan(&parsed, &updates.policies, &mut plan);
    }
    if !updates.v1.is_empty() {
        v1::plan(&parsed, &updates.v1, &mut plan);
    }
    if plan.edits.is_empty() {
        let mut result = unchanged();
        result.refusals = plan.refusals;
        return Ok(result);
    }
    let mut refusals = plan.refusals;
    let mut edits = plan.edits;
    let all: Vec<_> = edits.iter().map(|(e, _)| e).collect();
    let rewritten = match scalar::apply(text, &parsed.signatures, &all) {
        Ok(rewritten) => rewritten,
        Err(RewriteError::Verification(_)) => {
            // Keep the edits that read back correctly; refuse the others
            // rather than give up on the whole file.
            let (good, bad) = split_verified(text, &parsed.signatures, edits);
            refusals.extend(bad.into_iter().map(|(_, c)| Refusal {
                line: c.line,
                cause: c.cause,
                reason: RefusalReason::Unsafe(c.new),
            }));
            edits = good;
            let kept: Vec<_> = edits.iter().map(|(e, _)| e).collect();
            scalar::apply(text, &parsed.signatures, &kept)?
        }
        Err(e) => return Err(e),
    };
    let mut changes: Vec<Change> = edits.into_iter().map(|(_, c)| c).collect();
    changes.sort_by_key(|c| c.line);
    refusals.sort_by_key(|r| r.line);
    Ok(FileRewrite {
        content: rewritten.into_bytes(),
        changes,
        refusals,
    })
}

/// Planned edits with the change each one records.
type Planned = Vec<(scalar::Edit, Change)>;

/// Splits edits into those that verify and those that do not, by bisection,
/// so one bad edit among thousands costs a few re-parses, not thousands.
fn split_verified(
    text: &str,
    original: &[yaml::Signature],
    mut edits: Planned,
) -> (Planned, Planned) {
    let all: Vec<_> = edits.iter().map(|(e, _)| e).collect();
    if scalar::apply(text, original, &all).is_ok() {
        return (edits, Vec::new());
    }
    if edits.len() <= 1 {
        return (Vec::new(), edits);
    }
    let second = edits.split_off(edits.len() / 2);
    let (mut good, mut bad) = split_verified(text, original, edits);
    let (good2, bad2) = split_verified(text, original, second);
    good.extend(good2);
    bad.extend(bad2);
    (good, bad)
}

/// Rewrites many files, collecting each file's outcome or error; a file that
/// fails does not stop the others. Only files with changes or refusals are
/// listed in [`Batch::files`].
pub fn rewrite_files<K, B>(
    files: impl IntoIterator<Item = (K, B)>,
    updates: &UpdateSet,
) -> Batch<K, FileRewrite>
where
    B: AsRef<[u8]>,
{
    let mut batch = Batch::default();
    for (key, content) in files {
        match rewrite_file(content.as_ref(), updates) {
            Ok(r) if r.changes.is_empty() && r.refusals.is_empty() => {}
            Ok(r) => batch.files.push((key, r)),
            Err(e) => batch.errors.push((key, e)),
        }
    }
    batch
}

fn as_text(content: &[u8]) -> Result<&str, RewriteError> {
    std::str::from_utf8(content).map_err(|e| RewriteError::NotUtf8 {
        offset: e.valid_up_to(),
    })
}

/// The edits and refusals gathered for one file before anything is written.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    edits: Vec<(scalar::Edit, Change)>,
    /// Index into `edits` by the edited scalar's event, to spot conflicts.
    by_event: HashMap<usize, usize>,
    refusals: Vec<Refusal>,
}

impl Plan {
    /// Plans writing `new` into `target` on behalf of `cause`; no-ops, scalars
    /// that cannot be rewritten and conflicting writes are sorted out here.
    pub(crate) fn write(
        &mut self,
        parsed: &yaml::Parsed<'_>,
        target: &yaml::Scalar,
        new: &str,
        cause: Cause,
    ) {
        if target.content() == new {
            return;
        }
        let Some(edit) = scalar::edit(target, new, parsed.preferred_quote) else {
            self.refuse(parsed, target, cause, RefusalReason::Unrewritable);
            return;
        };
        if let Some((other, _)) = self
            .by_event
            .get(&edit.event)
            .and_then(|&i| self.edits.get(i))
        {
            let expected = &other.expected;
            if *expected != edit.expected {
                let reason = RefusalReason::Conflict(expected.trim_end_matches('\n').to_string());
                self.refuse(parsed, target, cause, reason);
            }
            return;
        }
        let change = Change {
            line: parsed.line_of(target.start),
            old: target.content().to_string(),
            new: new.to_string(),
            cause,
        };
        self.by_event.insert(edit.event, self.edits.len());
        self.edits.push((edit, change));
    }

    /// Records that `target` was not changed for `cause`.
    pub(crate) fn refuse(
        &mut self,
        parsed: &yaml::Parsed<'_>,
        target: &yaml::Scalar,
        cause: Cause,
        reason: RefusalReason,
    ) {
        self.refusals.push(Refusal {
            line: parsed.line_of(target.start),
            cause,
            reason,
        });
    }
}

#[cfg(test)]
mod tests;
