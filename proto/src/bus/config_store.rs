//! The configuration store: applied objects, their status, history and watch.

use std::collections::BTreeSet;

use async_nats::jetstream::kv;
use futures::StreamExt;

use super::{bucket_error, Bus, BusError};
use crate::config::{Kind, Object, ObjectKey};
use crate::names;
use crate::status::ObjectStatus;

impl Bus {
    /// The configuration store.
    pub async fn config_store(&self) -> Result<ConfigStore, BusError> {
        Ok(ConfigStore {
            config: self.bucket(names::CONFIG_BUCKET).await?,
            status: self.bucket(names::STATUS_BUCKET).await?,
        })
    }
}

/// The applied configuration and its status, as `tagrelay apply/get/delete`
/// and the services' watchers see them.
#[derive(Clone)]
pub struct ConfigStore {
    config: kv::Store,
    status: kv::Store,
}

impl ConfigStore {
    /// Stores (creates or replaces) an object; returns the bucket revision.
    pub async fn put(&self, object: &Object) -> Result<u64, BusError> {
        let key = object.key().bucket_key();
        let bytes = serde_json::to_vec(object)?;
        self.config
            .put(&key, bytes.into())
            .await
            .map_err(|e| bucket_error(names::CONFIG_BUCKET, &key, e))
    }

    /// Reads one object.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, BusError> {
        let bucket_key = key.bucket_key();
        let entry = self
            .config
            .get(&bucket_key)
            .await
            .map_err(|e| bucket_error(names::CONFIG_BUCKET, &bucket_key, e))?;
        entry
            .map(|bytes| decode_object(&bucket_key, &bytes))
            .transpose()
    }

    /// Every stored key.
    pub async fn keys(&self) -> Result<BTreeSet<ObjectKey>, BusError> {
        let mut keys = BTreeSet::new();
        let mut listing = match self.config.keys().await {
            Ok(listing) => listing,
            Err(e) => return Err(bucket_error(names::CONFIG_BUCKET, ">", e)),
        };
        while let Some(key) = listing.next().await {
            let key = key.map_err(|e| bucket_error(names::CONFIG_BUCKET, ">", e))?;
            if let Some(parsed) = ObjectKey::from_bucket_key(&key) {
                keys.insert(parsed);
            }
        }
        Ok(keys)
    }

    /// Every stored object of `kind` (all kinds when `None`), in key order.
    pub async fn list(&self, kind: Option<Kind>) -> Result<Vec<Object>, BusError> {
        let mut objects = Vec::new();
        for key in self.keys().await? {
            if kind.is_none_or(|k| k == key.kind) {
                if let Some(object) = self.get(&key).await? {
                    objects.push(object);
                }
            }
        }
        Ok(objects)
    }

    /// Every stored object by key: the configuration a new batch will stand
    /// beside, as `apply` and the Git source check it.
    pub async fn snapshot(
        &self,
    ) -> Result<std::collections::BTreeMap<ObjectKey, Object>, BusError> {
        Ok(self
            .list(None)
            .await?
            .into_iter()
            .map(|object| (object.key(), object))
            .collect())
    }

    /// Deletes an object and its status; returns whether it existed.
    pub async fn delete(&self, key: &ObjectKey) -> Result<bool, BusError> {
        let existed = self.get(key).await?.is_some();
        let bucket_key = key.bucket_key();
        if existed {
            self.config
                .delete(&bucket_key)
                .await
                .map_err(|e| bucket_error(names::CONFIG_BUCKET, &bucket_key, e))?;
            self.status
                .delete(&bucket_key)
                .await
                .map_err(|e| bucket_error(names::STATUS_BUCKET, &bucket_key, e))?;
        }
        Ok(existed)
    }

    /// Writes an object's status.
    pub async fn put_status(&self, key: &ObjectKey, status: &ObjectStatus) -> Result<(), BusError> {
        let bucket_key = key.bucket_key();
        let bytes = serde_json::to_vec(status)?;
        self.status
            .put(&bucket_key, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| bucket_error(names::STATUS_BUCKET, &bucket_key, e))
    }

    /// Writes an object's status as a service's side effect: status is for
    /// people (`tagrelay get`), never what a stage decides on, so a failed
    /// write is logged and the work goes on.
    pub async fn record_status(&self, key: &ObjectKey, status: &ObjectStatus) {
        if let Err(e) = self.put_status(key, status).await {
            tracing::warn!(error = %e, object = %key, "cannot write status");
        }
    }

    /// The object's last status to build the next one on: empty when none
    /// was written yet or it cannot be read (status is for people; a stage
    /// never stops for it).
    pub async fn last_status(&self, key: &ObjectKey) -> ObjectStatus {
        self.status(key).await.ok().flatten().unwrap_or_default()
    }

    /// Reads an object's status; `None` until a service has written one.
    pub async fn status(&self, key: &ObjectKey) -> Result<Option<ObjectStatus>, BusError> {
        let bucket_key = key.bucket_key();
        let entry = self
            .status
            .get(&bucket_key)
            .await
            .map_err(|e| bucket_error(names::STATUS_BUCKET, &bucket_key, e))?;
        entry
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| BusError::Corrupt {
                    bucket: names::STATUS_BUCKET.to_string(),
                    key: bucket_key.clone(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// Every kept revision of an object (the bucket keeps 5), oldest first,
    /// with when it was written; `None` marks a deletion. `tagrelay replay`
    /// uses it to evaluate each recorded decision with the policy in force
    /// at the time.
    pub async fn history(&self, key: &ObjectKey) -> Result<Vec<Revision>, BusError> {
        let bucket_key = key.bucket_key();
        let mut entries = self
            .config
            .history(&bucket_key)
            .await
            .map_err(|e| bucket_error(names::CONFIG_BUCKET, &bucket_key, e))?;
        let mut revisions = Vec::new();
        while let Some(entry) = entries.next().await {
            let entry = entry.map_err(|e| bucket_error(names::CONFIG_BUCKET, &bucket_key, e))?;
            let written = chrono::DateTime::from_timestamp_nanos(
                i64::try_from(entry.created.unix_timestamp_nanos()).unwrap_or(0),
            );
            let object = match entry.operation {
                kv::Operation::Put => Some(decode_object(&bucket_key, &entry.value)?),
                kv::Operation::Delete | kv::Operation::Purge => None,
            };
            revisions.push(Revision { written, object });
        }
        Ok(revisions)
    }

    /// Watches configuration changes, starting with the current value of
    /// every key, so a service that starts late sees everything applied.
    pub async fn watch(
        &self,
    ) -> Result<impl futures::Stream<Item = ConfigChange> + use<>, BusError> {
        Ok(self
            .watch_revisions()
            .await?
            .filter_map(|(_, change)| std::future::ready(change)))
    }

    /// Calls `on_entry` for every entry of a watch of the bucket (with its
    /// revision, and `None` for an entry that is not an object), opening the
    /// watch again with back-off whenever it fails or ends (NATS
    /// restarting). Each new watch starts with [`Watched::Opened`] and then
    /// replays the current objects. Returns only if the caller drops it.
    pub async fn follow_revisions<F, Fut>(&self, mut on_entry: F)
    where
        F: FnMut(Watched) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut pause = std::time::Duration::from_millis(200);
        loop {
            match self.watch_revisions().await {
                Ok(changes) => {
                    pause = std::time::Duration::from_millis(200);
                    on_entry(Watched::Opened).await;
                    let mut changes = std::pin::pin!(changes);
                    while let Some((revision, change)) = changes.next().await {
                        on_entry(Watched::Entry(revision, change)).await;
                    }
                    tracing::warn!(retry_in = ?pause, "the configuration watch ended; opening it again");
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?pause, "cannot watch configuration yet");
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(10));
        }
    }

    /// [`ConfigStore::watch`] with the bucket revision of each entry, and
    /// `None` for an entry that is not an object (so a follower still knows
    /// how far it has read).
    async fn watch_revisions(
        &self,
    ) -> Result<impl futures::Stream<Item = (u64, Option<ConfigChange>)> + use<>, BusError> {
        let watch = self
            .config
            .watch_with_history(">")
            .await
            .map_err(|e| bucket_error(names::CONFIG_BUCKET, ">", e))?;
        Ok(watch.filter_map(|entry| async move {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!(error = %e, "configuration watch error");
                    return None;
                }
            };
            let change =
                ObjectKey::from_bucket_key(&entry.key).and_then(|key| match entry.operation {
                    kv::Operation::Put => match decode_object(&entry.key, &entry.value) {
                        Ok(object) => Some(ConfigChange::Applied(Box::new(object))),
                        Err(e) => {
                            tracing::warn!(error = %e, "skipping unreadable configuration entry");
                            None
                        }
                    },
                    kv::Operation::Delete | kv::Operation::Purge => {
                        Some(ConfigChange::Deleted(key))
                    }
                });
            Some((entry.revision, change))
        }))
    }

    /// The revision of the newest entry in the bucket: how far a watch must
    /// have read to have seen every write made so far.
    pub(crate) async fn last_revision(&self) -> Result<u64, BusError> {
        super::record_mirror::last_revision(&self.config, names::CONFIG_BUCKET).await
    }
}

/// The ImageRepositories and ImagePolicies a service acts on, kept current
/// from [`ConfigStore::watch`]: what the scanner and the resolver both need
/// to know which policies read which repository.
#[derive(Debug, Default)]
pub struct ConfigIndex {
    /// Every ImageRepository, by key.
    pub repositories: std::collections::BTreeMap<ObjectKey, crate::config::ImageRepository>,
    /// Every ImagePolicy, by key.
    pub policies: std::collections::BTreeMap<ObjectKey, crate::config::ImagePolicy>,
    /// The applied labels of every Namespace object, by name.
    pub namespaces: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// The policies reading each repository: what [`ConfigIndex::policies_of`]
    /// answers from, so that a scan's evaluation and the scheduler's interval
    /// cost O(policies of the repository), not O(every policy).
    readers: std::collections::HashMap<ObjectKey, BTreeSet<ObjectKey>>,
}

impl ConfigIndex {
    /// Records one change.
    pub fn apply(&mut self, change: &ConfigChange) {
        match change {
            ConfigChange::Applied(object) => match object.as_ref() {
                Object::ImageRepository(r) => {
                    self.repositories.insert(object.key(), r.clone());
                }
                Object::ImagePolicy(p) => {
                    let key = object.key();
                    self.forget_reader(&key);
                    self.readers
                        .entry(p.repository_key())
                        .or_default()
                        .insert(key.clone());
                    self.policies.insert(key, p.clone());
                }
                Object::Namespace(n) => {
                    self.namespaces
                        .insert(n.metadata.name.clone(), n.metadata.labels.clone());
                }
                _ => {}
            },
            ConfigChange::Deleted(key) => {
                self.repositories.remove(key);
                self.forget_reader(key);
                self.policies.remove(key);
                if key.kind == crate::config::Kind::Namespace {
                    self.namespaces.remove(&key.name);
                }
            }
        }
    }

    /// The labels of namespace `name`, as `accessFrom` selectors see them.
    pub fn namespace_labels(&self, name: &str) -> std::collections::BTreeMap<String, String> {
        crate::config::namespace_labels(name, self.namespaces.get(name))
    }

    /// Every policy reading `repository`, in key order.
    pub fn policies_of(
        &self,
        repository: &ObjectKey,
    ) -> Vec<(ObjectKey, crate::config::ImagePolicy)> {
        self.readers
            .get(repository)
            .into_iter()
            .flatten()
            .filter_map(|key| Some((key.clone(), self.policies.get(key)?.clone())))
            .collect()
    }

    fn forget_reader(&mut self, policy: &ObjectKey) {
        let Some(previous) = self.policies.get(policy) else {
            return;
        };
        let repository = previous.repository_key();
        if let Some(readers) = self.readers.get_mut(&repository) {
            readers.remove(policy);
            if readers.is_empty() {
                self.readers.remove(&repository);
            }
        }
    }
}

/// One kept revision of a configuration object.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    /// When it was written.
    pub written: chrono::DateTime<chrono::Utc>,
    /// The object, or `None` for a deletion.
    pub object: Option<Object>,
}

/// What [`ConfigStore::follow_revisions`] reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Watched {
    /// A new watch was opened: the current objects follow.
    Opened,
    /// One entry at a bucket revision; `None` when it is not an object.
    Entry(u64, Option<ConfigChange>),
}

/// One change seen by [`ConfigStore::watch`].
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigChange {
    /// An object was applied (or already existed when the watch started).
    Applied(Box<Object>),
    /// An object was deleted.
    Deleted(ObjectKey),
}

fn decode_object(key: &str, bytes: &[u8]) -> Result<Object, BusError> {
    let corrupt = |reason: String| BusError::Corrupt {
        bucket: names::CONFIG_BUCKET.to_string(),
        key: key.to_string(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    Object::decode(&value).map_err(|e| corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::{ConfigChange, ConfigIndex};
    use crate::config::{load_documents, Kind, Object, ObjectKey};

    fn policy(name: &str, repository: &str) -> ConfigChange {
        let yaml = format!("apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata: {{name: {name}, namespace: team}}\nspec:\n  imageRepositoryRef: {{name: {repository}}}\n  policy: {{alphabetical: {{}}}}\n");
        let object = Object::decode(&load_documents(&yaml).unwrap()[0].value).unwrap();
        ConfigChange::Applied(Box::new(object))
    }

    fn names(index: &ConfigIndex, repository: &str) -> Vec<String> {
        let key = ObjectKey::new(Kind::ImageRepository, "team", repository);
        index
            .policies_of(&key)
            .into_iter()
            .map(|(k, _)| k.name)
            .collect()
    }

    #[test]
    fn a_policy_moved_to_another_repository_or_deleted_stops_reading_the_first() {
        let mut index = ConfigIndex::default();
        index.apply(&policy("b", "one"));
        index.apply(&policy("a", "one"));
        index.apply(&policy("c", "two"));
        assert_eq!(names(&index, "one"), ["a", "b"]);
        index.apply(&policy("a", "two"));
        assert_eq!(names(&index, "one"), ["b"]);
        assert_eq!(names(&index, "two"), ["a", "c"]);
        index.apply(&ConfigChange::Deleted(ObjectKey::new(
            Kind::ImagePolicy,
            "team",
            "c",
        )));
        assert_eq!(names(&index, "two"), ["a"]);
        index.apply(&ConfigChange::Deleted(ObjectKey::new(
            Kind::ImagePolicy,
            "team",
            "b",
        )));
        assert!(names(&index, "one").is_empty());
        assert!(
            index.readers.keys().all(|r| r.name != "one"),
            "no empty sets kept"
        );
    }
}
