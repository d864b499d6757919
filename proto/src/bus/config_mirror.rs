//! The whole applied configuration held in memory, kept equal to the bucket
//! by one watch, and readable as of "now".
//!
//! Reading an object from the bucket costs one request; a service that looks
//! through every automation or policy on each event (which the committer
//! must: which automations does this policy move concern?) would make O(N)
//! requests per event and O(N²) over a cold start. The mirror makes each of
//! those reads a walk in memory, and [`ConfigMirror::current`] keeps the
//! bucket's read-your-writes promise: it waits until the watch has applied
//! every revision the bucket held when it was called (one request), so an
//! object applied just before a trigger is never missed.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use super::config_store::{ConfigChange, Watched};
use super::record_mirror::CatchUp;
use super::{BusError, ConfigStore};
use crate::config::{Kind, Object, ObjectKey};
use crate::names;

/// The configuration as the watch has applied it so far.
#[derive(Debug, Default)]
pub struct MirroredConfig {
    objects: BTreeMap<ObjectKey, Object>,
    revision: u64,
    generation: u64,
}

impl MirroredConfig {
    /// One object.
    pub fn get(&self, key: &ObjectKey) -> Option<&Object> {
        self.objects.get(key)
    }

    /// Every object of `kind`, in key order; a range walk, not a scan of
    /// the other kinds.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = (&ObjectKey, &Object)> {
        let from = ObjectKey::new(kind, "", "");
        self.objects
            .range(from..)
            .take_while(move |(key, _)| key.kind == kind)
    }

    /// Every object, in key order.
    pub fn objects(&self) -> impl Iterator<Item = &Object> {
        self.objects.values()
    }

    /// A number that changes whenever an object is applied or deleted, so a
    /// caller can cache what it derives from the configuration.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn apply(&mut self, revision: u64, change: Option<ConfigChange>) {
        self.revision = self.revision.max(revision);
        match change {
            Some(ConfigChange::Applied(object)) => {
                self.objects.insert(object.key(), *object);
            }
            Some(ConfigChange::Deleted(key)) => {
                self.objects.remove(&key);
            }
            None => return,
        }
        self.generation += 1;
    }
}

struct Shared {
    config: RwLock<MirroredConfig>,
    catch_up: CatchUp,
}

/// A handle on the mirror; cheap to clone.
#[derive(Clone)]
pub struct ConfigMirror {
    store: ConfigStore,
    shared: Arc<Shared>,
}

impl ConfigMirror {
    /// A mirror of `store`, empty until [`ConfigMirror::follow`] runs.
    pub fn new(store: ConfigStore) -> Self {
        Self {
            store,
            shared: Arc::new(Shared {
                config: RwLock::new(MirroredConfig::default()),
                catch_up: CatchUp::new(),
            }),
        }
    }

    /// Keeps the mirror equal to the bucket, calling `on_change` after each
    /// change is applied (so what it triggers reads the new object). A watch
    /// that fails or ends is opened again with back-off; its replay of the
    /// current objects starts from an empty mirror (so a deletion missed
    /// while it was down is not kept), and [`ConfigMirror::current`] waits
    /// for the replay. Returns only if the caller drops it.
    pub async fn follow<F, Fut>(self, mut on_change: F)
    where
        F: FnMut(ConfigChange) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let store = self.store.clone();
        store
            .follow_revisions(|watched| {
                let change = match watched {
                    Watched::Opened => {
                        // A new watch replays everything: rebuild, and make
                        // readers wait for the replay.
                        let mut config = self.write();
                        *config = MirroredConfig {
                            generation: config.generation + 1,
                            ..MirroredConfig::default()
                        };
                        self.shared.catch_up.restart();
                        None
                    }
                    Watched::Entry(revision, change) => {
                        self.write().apply(revision, change.clone());
                        self.shared.catch_up.applied(revision);
                        change
                    }
                };
                let followed = change.map(&mut on_change);
                async move {
                    if let Some(followed) = followed {
                        followed.await;
                    }
                }
            })
            .await;
    }

    /// The configuration as the watch has applied it, without waiting: for
    /// reads that a slightly old view cannot make wrong (a schedule).
    pub fn read(&self) -> RwLockReadGuard<'_, MirroredConfig> {
        self.shared
            .config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The configuration holding at least every revision the bucket held
    /// when this was called: what a decision must read.
    pub async fn current(&self) -> Result<RwLockReadGuard<'_, MirroredConfig>, BusError> {
        let wanted = self.store.last_revision().await?;
        self.shared
            .catch_up
            .wait_for(names::CONFIG_BUCKET, wanted)
            .await?;
        Ok(self.read())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MirroredConfig> {
        self.shared
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
