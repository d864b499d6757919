//! A bucket of JSON records held in memory, kept equal to the bucket by one
//! watch, and readable as of "now"; and the catch-up rule it shares with the
//! configuration mirror.
//!
//! The committer reads the selection of every policy of an automation on
//! each reconcile: one request per policy, a thousand sequential round trips
//! for an automation over a thousand manifests, on every move. The mirror
//! makes those reads lookups, at the cost of one message per write to the
//! bucket (O(changes)), and [`RecordMirror::current`] keeps the bucket's
//! read-your-writes promise the same way the configuration mirror does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::{bucket_error, BusError};

/// How long a mirror's `current` waits for its watch to catch up before it
/// reports the bucket as unavailable.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(10);

/// How far a mirror's watch has applied the bucket, so that a reader can wait
/// for the revision the bucket held when it asked.
pub(crate) struct CatchUp {
    applied: tokio::sync::watch::Sender<u64>,
}

impl CatchUp {
    pub(crate) fn new() -> Self {
        Self {
            applied: tokio::sync::watch::channel(0).0,
        }
    }

    /// A new watch is replaying the bucket: readers wait for the replay.
    pub(crate) fn restart(&self) {
        self.applied.send_replace(0);
    }

    /// The watch has applied the entry at `revision`.
    pub(crate) fn applied(&self, revision: u64) {
        // `send_modify` stores the value even while nobody waits.
        self.applied
            .send_modify(|applied| *applied = (*applied).max(revision));
    }

    /// Waits until the watch has applied `wanted`; an error naming `bucket`
    /// when it has not within [`CATCH_UP_LIMIT`].
    pub(crate) async fn wait_for(&self, bucket: &str, wanted: u64) -> Result<(), BusError> {
        let mut applied = self.applied.subscribe();
        let caught_up = tokio::time::timeout(
            CATCH_UP_LIMIT,
            applied.wait_for(|revision| *revision >= wanted),
        )
        .await
        .is_ok_and(|waited| waited.is_ok());
        if caught_up {
            return Ok(());
        }
        Err(BusError::Bucket {
            bucket: bucket.to_string(),
            key: ">".to_string(),
            reason: format!(
                "the watch of the bucket has not reached revision {wanted} within {CATCH_UP_LIMIT:?}"
            ),
        })
    }
}

/// The revision of the newest entry in `store`: how far a watch must have
/// read to have seen every write made so far. Answered by the stream leader.
pub(crate) async fn last_revision(store: &kv::Store, bucket: &str) -> Result<u64, BusError> {
    let info = store
        .stream
        .get_info()
        .await
        .map_err(|e| bucket_error(bucket, ">", e))?;
    Ok(info.state.last_sequence)
}

/// The records as the watch has applied them so far, by key.
#[derive(Debug)]
pub struct MirroredRecords<T> {
    records: HashMap<String, T>,
}

impl<T> MirroredRecords<T> {
    /// The record under `key`; `None` when absent, deleted, or unreadable
    /// (logged when it was read).
    pub fn get(&self, key: &str) -> Option<&T> {
        self.records.get(key)
    }

    /// The keys of every record, in no order: for finding the records
    /// nothing wants any more.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.records.keys().map(String::as_str)
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// The revision of the newest entry under `prefix` in `store` (0 when there
/// is none): how far a watch of those keys alone must have read. One direct
/// get of the last message on a wildcard subject.
async fn last_revision_under(
    store: &kv::Store,
    bucket: &str,
    prefix: &str,
) -> Result<u64, BusError> {
    let subject = format!("{}{prefix}>", store.prefix);
    match store.stream.get_last_raw_message_by_subject(&subject).await {
        Ok(message) => Ok(message.sequence),
        Err(e)
            if e.kind()
                == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
        {
            Ok(0)
        }
        Err(e) => Err(bucket_error(bucket, &format!("{prefix}>"), e)),
    }
}

struct Shared<T> {
    records: RwLock<MirroredRecords<T>>,
    catch_up: CatchUp,
    /// When the watch last applied a write (or opened).
    last_write: Mutex<Instant>,
}

/// A handle on the mirror of one bucket of JSON records of type `T`; cheap
/// to clone.
pub struct RecordMirror<T> {
    store: kv::Store,
    bucket: &'static str,
    /// Only keys starting with this (ending in `.`) are mirrored.
    prefix: Option<&'static str>,
    shared: Arc<Shared<T>>,
}

impl<T> Clone for RecordMirror<T> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            bucket: self.bucket,
            prefix: self.prefix,
            shared: self.shared.clone(),
        }
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> RecordMirror<T> {
    /// A mirror of `store`, the bucket named `bucket`; empty until
    /// [`RecordMirror::follow`] runs.
    pub fn new(store: kv::Store, bucket: &'static str) -> Self {
        Self::mirroring(store, bucket, None)
    }

    /// A mirror of the records under `prefix` (ending in `.`) in `store`
    /// alone: for a bucket that also holds records of other types, which
    /// would neither read as `T` nor be wanted in memory. Keys keep their
    /// prefix.
    pub fn under(store: kv::Store, bucket: &'static str, prefix: &'static str) -> Self {
        Self::mirroring(store, bucket, Some(prefix))
    }

    fn mirroring(store: kv::Store, bucket: &'static str, prefix: Option<&'static str>) -> Self {
        Self {
            store,
            bucket,
            prefix,
            shared: Arc::new(Shared {
                records: RwLock::new(MirroredRecords {
                    records: HashMap::new(),
                }),
                catch_up: CatchUp::new(),
                last_write: Mutex::new(Instant::now()),
            }),
        }
    }

    /// Keeps the mirror equal to the bucket. A watch that fails or ends is
    /// opened again with back-off; its replay starts from an empty mirror
    /// (so a deletion missed while it was down is not kept), and
    /// [`RecordMirror::current`] waits for the replay. Returns only if the
    /// caller drops it.
    pub async fn follow(self) {
        let mut pause = Duration::from_millis(200);
        loop {
            let keys = self
                .prefix
                .map_or_else(|| ">".to_string(), |p| format!("{p}>"));
            match self.store.watch_with_history(keys).await {
                Ok(watch) => {
                    pause = Duration::from_millis(200);
                    self.write().records.clear();
                    self.shared.catch_up.restart();
                    let mut watch = std::pin::pin!(watch);
                    while let Some(entry) = watch.next().await {
                        match entry {
                            Ok(entry) => self.apply(entry),
                            Err(error) => {
                                tracing::warn!(bucket = self.bucket, %error, "watch error");
                            }
                        }
                    }
                    tracing::warn!(bucket = self.bucket, retry_in = ?pause, "the watch ended; opening it again");
                }
                Err(error) => {
                    tracing::warn!(bucket = self.bucket, %error, retry_in = ?pause, "cannot watch the bucket yet");
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    fn apply(&self, entry: kv::Entry) {
        let record = match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<T>(&entry.value) {
                Ok(record) => Some(record),
                Err(error) => {
                    tracing::warn!(bucket = self.bucket, key = entry.key, %error, "unreadable record; treated as absent");
                    None
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        {
            let mut records = self.write();
            match record {
                Some(record) => records.records.insert(entry.key, record),
                None => records.records.remove(&entry.key),
            };
        }
        self.shared.catch_up.applied(entry.revision);
        *self
            .shared
            .last_write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// How long the bucket has gone without a write, as far as the watch has
    /// seen: a burst of writes is over when this grows.
    pub fn quiet_for(&self) -> Duration {
        self.shared
            .last_write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }

    /// The records holding at least every revision the bucket held when this
    /// was called: what a decision must read. One request.
    pub async fn current(&self) -> Result<RwLockReadGuard<'_, MirroredRecords<T>>, BusError> {
        let wanted = match self.prefix {
            None => last_revision(&self.store, self.bucket).await?,
            Some(prefix) => last_revision_under(&self.store, self.bucket, prefix).await?,
        };
        self.shared.catch_up.wait_for(self.bucket, wanted).await?;
        Ok(self
            .shared
            .records
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MirroredRecords<T>> {
        self.shared
            .records
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
