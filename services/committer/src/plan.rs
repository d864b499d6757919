//! The committer's decision, without Git or NATS: given the files under an
//! automation's path (as the tree walk read them), what its policies
//! select, and the events behind those selections, which files change and
//! what commit records it.
//!
//! The service around it does the I/O in between: it fetches and walks the
//! tree ([`Scan`]), reads the selections, asks [`plan`] what to rewrite,
//! looks up the events that caused the rewritten policies
//! ([`Rewrite::cause_policies`]), and asks [`Rewrite::commit`] for the
//! commit's files and message. Writing and pushing the commit stays with
//! the service. Because nothing here does I/O, every decision is tested
//! with plain values.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use tagrelay_proto::config::ObjectKey;
use tagrelay_proto::consume::Failed;
use tagrelay_proto::event::{Envelope, FailureReason, FileChange};
use tagrelay_proto::state::PolicySelection;
use tagrelay_rewrite::lint::Finding;
use tagrelay_rewrite::message::{self, MessageChange, Trailers, UpdatedImage};
use tagrelay_rewrite::objects::Documents;
use tagrelay_rewrite::{self as rewrite, Cause, UpdateSet, V1Container, V1Discovery};

use crate::git::{FileEntry, NewFile, Screen};
use tagrelay_validate::automation::Automation;

/// What reading the tree found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Files that may hold a marker or annotation, with their bytes.
    pub files: Vec<(FileEntry, Screen, Vec<u8>)>,
    /// v1 discovery per v1 file, in file order.
    pub v1: Vec<(String, V1Discovery)>,
    /// Files that failed to parse for discovery, and walk skips.
    pub problems: Vec<String>,
    /// What the lint checks found in the files read and the files skipped.
    pub findings: Vec<Finding>,
}

/// One file the plan changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Rewritten {
    /// The file.
    pub entry: FileEntry,
    /// Its new bytes.
    pub content: Vec<u8>,
    /// What changed in it, with the object each change belongs to.
    pub changes: Vec<MessageChange>,
    /// The policy of each change (as a configuration key), for its cause.
    pub policies: Vec<Option<ObjectKey>>,
}

/// What an automation's files should hold compared with what they hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Nothing to change. `problems` are files that could not be updated.
    UpToDate {
        /// Files skipped or values refused, one sentence each.
        problems: Vec<String>,
    },
    /// Files to change.
    Rewrite(Rewrite),
}

impl Plan {
    /// The files that could not be updated, whatever the plan.
    pub fn problems(&self) -> &[String] {
        match self {
            Plan::UpToDate { problems } => problems,
            Plan::Rewrite(rewrite) => &rewrite.problems,
        }
    }
}

/// The files to change, before the commit is made.
#[derive(Debug, Clone, PartialEq)]
pub struct Rewrite {
    /// The changed files, in tree order.
    pub rewritten: Vec<Rewritten>,
    /// Files skipped or values refused, one sentence each, no repeats.
    pub problems: Vec<String>,
}

/// Everything the commit holds: the service writes it on the base commit
/// with the automation's author and pushes it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitPlan {
    /// The new contents of the changed files.
    pub files: Vec<NewFile>,
    /// The message: the rendered template and the `Tagrelay-*` trailers.
    pub message: String,
    /// Each change, as `CommitPushed` announces it.
    pub changes: Vec<FileChange>,
    /// The ids of the `PolicyResolved` events behind the changes.
    pub causes: Vec<String>,
    /// When those events happened: the commit's time is the newest.
    pub cause_times: Vec<DateTime<Utc>>,
}

/// Which files change, given the tree as read (`scan`), the new values
/// (`updates`) and the selections they came from, keyed by setter.
pub fn plan(
    scan: &Scan,
    updates: &UpdateSet,
    selections: &BTreeMap<String, (ObjectKey, PolicySelection)>,
) -> Plan {
    let (rewritten, mut problems) = rewrite_files(scan, updates, selections);
    problems.extend(scan.problems.iter().cloned());
    let mut seen = BTreeSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    if rewritten.is_empty() {
        Plan::UpToDate { problems }
    } else {
        Plan::Rewrite(Rewrite {
            rewritten,
            problems,
        })
    }
}

impl Rewrite {
    /// The policies whose selections caused the changes: their
    /// `PolicyResolved` events are the commit's causes.
    pub fn cause_policies(&self) -> BTreeSet<ObjectKey> {
        self.rewritten
            .iter()
            .flat_map(|r| r.policies.iter().flatten().cloned())
            .collect()
    }

    /// The commit for these changes of automation `a`, caused by `causes`
    /// (oldest first). Fails for good when the message template cannot be
    /// rendered.
    pub fn commit(&self, a: &Automation, causes: &[Envelope]) -> Result<CommitPlan, Failed> {
        let changes: Vec<MessageChange> = self
            .rewritten
            .iter()
            .flat_map(|r| r.changes.clone())
            .collect();
        let body = message::render(
            a.message_template.as_deref(),
            &a.namespace,
            &a.name,
            &changes,
            &a.message_values,
            a.template_api,
        )
        .map_err(|e| {
            Failed::permanent(
                FailureReason::InvalidSpec,
                format!("spec.git.commit.messageTemplate: {e}"),
            )
        })?;
        let file_changes: Vec<FileChange> = changes.iter().map(|c| c.change.clone()).collect();
        let trailers = Trailers {
            automation: format!("{}/{}", a.namespace, a.name),
            changes: file_changes.clone(),
            causes: causes.iter().map(|c| c.id.clone()).collect(),
        };
        let files = self
            .rewritten
            .iter()
            .map(|r| NewFile {
                path: r.entry.path.clone(),
                executable: r.entry.executable,
                content: r.content.clone(),
            })
            .collect();
        Ok(CommitPlan {
            files,
            message: message::with_trailers(&body, &trailers),
            changes: file_changes,
            causes: trailers.causes,
            cause_times: causes.iter().map(|c| c.occurred_at).collect(),
        })
    }
}

/// Flux v1's rule for containers ordered by image creation time (no
/// filter, `glob:`, `regex:`): a container whose current tag the registry
/// does not list is left alone, since its age is unknown and moving it
/// could go backwards. `listed` is the tag set the selection came from;
/// the answer is the problem to report, `None` when the update may go on.
pub fn unlisted_current_tag(container: &V1Container, listed: &[String]) -> Option<String> {
    let by_creation_time = container
        .filter
        .as_deref()
        .is_none_or(|filter| !filter.trim().starts_with("semver:"));
    let current = container.current_tag.as_deref()?;
    (by_creation_time && !listed.iter().any(|tag| tag == current)).then(|| {
        format!(
            "{} container {}: current tag {current} is not listed by the registry; left alone (its age is unknown, so moving it could go backwards)",
            container.workload, container.container
        )
    })
}

/// Rewrites every candidate file: Setters markers everywhere, Flux v1
/// annotations only in files the screen found them in.
fn rewrite_files(
    scan: &Scan,
    updates: &UpdateSet,
    selections: &BTreeMap<String, (ObjectKey, PolicySelection)>,
) -> (Vec<Rewritten>, Vec<String>) {
    let setters_only = UpdateSet {
        policies: updates.policies.clone(),
        v1: Vec::new(),
    };
    let mut out = Vec::new();
    let mut problems = Vec::new();
    if updates.is_empty() {
        return (out, problems);
    }
    for (entry, screen, data) in &scan.files {
        let set = if screen.v1 { updates } else { &setters_only };
        if set.is_empty() {
            continue;
        }
        match rewrite::rewrite_file(data, set) {
            Ok(result) => {
                for refusal in &result.refusals {
                    problems.push(format!(
                        "{}:{}: {} not written: {}",
                        entry.path, refusal.line, refusal.cause, refusal.reason
                    ));
                }
                if !result.is_changed() {
                    continue;
                }
                let docs = Documents::read(&String::from_utf8_lossy(data));
                let mut changes = Vec::new();
                let mut policies = Vec::new();
                for change in &result.changes {
                    let setter = change.cause.to_string();
                    let policy_setter = match &change.cause {
                        Cause::Setter(s) => s.policy.clone(),
                        Cause::V1 { .. } => setter.clone(),
                    };
                    let selected = selections.get(&policy_setter);
                    policies.push(selected.map(|(k, _)| k.clone()));
                    let updated = match (&change.cause, selected) {
                        (Cause::Setter(_), Some((key, selection))) => Some(UpdatedImage {
                            policy_namespace: key.namespace.clone(),
                            policy_name: key.name.clone(),
                            image: selection.reference(),
                        }),
                        _ => None,
                    };
                    changes.push(MessageChange {
                        change: FileChange {
                            file: entry.path.clone(),
                            old: change.old.clone(),
                            new: change.new.clone(),
                            setter,
                        },
                        object: docs.at(change.line),
                        updated,
                    });
                }
                out.push(Rewritten {
                    entry: entry.clone(),
                    content: result.content,
                    changes,
                    policies,
                });
            }
            Err(e) => problems.push(format!("{}: skipped: {e}", entry.path)),
        }
    }
    (out, problems)
}

#[cfg(test)]
mod tests;
