//! The decision, pure: given the documents of one commit, what the source
//! owns now (from its last `ConfigSynced`) and what the bucket holds, which
//! objects to put and delete, or why the commit is refused as a whole.

use std::collections::{BTreeMap, BTreeSet};

use tagrelay_proto::config::{Kind, Object, ObjectKey};
use tagrelay_validate::batch::Note;
use tagrelay_validate::{check_references, decode_batch, Problem, UnknownKinds};

/// What to do about one commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Every document is valid: make the bucket equal to them.
    Sync(Plan),
    /// At least one document is invalid: write nothing, report every
    /// problem.
    Reject(Vec<Problem>),
}

/// The writes that make the bucket equal to a valid commit.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Objects to put (new or changed), sources before the objects that
    /// refer to them.
    pub puts: Vec<Object>,
    /// Keys the source wrote before, gone from Git and still stored, to
    /// delete: referring objects first.
    pub deletes: Vec<ObjectKey>,
    /// Keys of the commit already stored exactly as written.
    pub unchanged: Vec<ObjectKey>,
    /// Keys the source owned that are already gone from the bucket (deleted
    /// by hand): nothing to do but to stop owning them.
    pub released: Vec<ObjectKey>,
    /// Documents not stored (Secrets, foreign kinds).
    pub skipped: Vec<Problem>,
}

impl Plan {
    /// What the source owns once the plan is carried out.
    pub fn owned(&self) -> BTreeSet<ObjectKey> {
        self.puts
            .iter()
            .map(Object::key)
            .chain(self.unchanged.iter().cloned())
            .collect()
    }

    /// Whether carrying the plan out would change nothing, neither in the
    /// bucket nor in what the source owns: then nothing is written and
    /// nothing published.
    pub fn is_noop(&self, owned: &BTreeSet<ObjectKey>) -> bool {
        self.puts.is_empty() && self.deletes.is_empty() && self.owned() == *owned
    }
}

/// Decides what `files` (`(path, text)` of every YAML/JSON file under the
/// source's paths) ask of the bucket, given the keys the source `owned`
/// after its last sync and everything `stored` in the bucket now.
///
/// The commit is checked as `tagrelay apply` checks a batch, against the
/// configuration it will stand beside: what is stored, less what the source
/// is about to delete. Kinds tagrelay does not store are skipped, not
/// refused: a fleet repository's paths hold Deployments and Kustomizations
/// too.
pub fn decide(
    files: &[(String, String)],
    owned: &BTreeSet<ObjectKey>,
    stored: &BTreeMap<ObjectKey, Object>,
) -> Decision {
    let mut batch = decode_batch(files, UnknownKinds::Skip);
    let keys = batch.keys();
    let gone: BTreeSet<&ObjectKey> = owned.difference(&keys).collect();
    let others: BTreeMap<ObjectKey, Object> = stored
        .iter()
        .filter(|(key, _)| !gone.contains(key) && !keys.contains(key))
        .map(|(key, object)| (key.clone(), object.clone()))
        .collect();
    check_references(&mut batch, &others);
    if !batch.errors.is_empty() {
        return Decision::Reject(batch.errors);
    }
    let mut plan = Plan {
        skipped: batch
            .notes
            .iter()
            .filter_map(|note| match note {
                Note::Skipped(problem) => Some(problem.clone()),
                Note::Deprecated(_) => None,
            })
            .collect(),
        ..Plan::default()
    };
    for kind in Kind::ALL {
        for checked in batch.objects.iter().filter(|c| c.object.kind() == kind) {
            let key = checked.object.key();
            match stored.get(&key) {
                Some(existing) if existing.to_json() == checked.object.to_json() => {
                    plan.unchanged.push(key)
                }
                _ => plan.puts.push(checked.object.clone()),
            }
        }
    }
    for kind in Kind::ALL.into_iter().rev() {
        for key in gone.iter().filter(|key| key.kind == kind) {
            if stored.contains_key(key) {
                plan.deletes.push((*key).clone());
            } else {
                plan.released.push((*key).clone());
            }
        }
    }
    Decision::Sync(plan)
}

#[cfg(test)]
mod tests;
