//! KV records written only by compare-and-set.

use async_nats::jetstream::{kv, stream};

use super::{bucket_error, is_wrong_last_sequence, BusError};

/// The header a KV bucket marks deletions and purges with.
const KV_OPERATION_HEADER: &str = "KV-Operation";

/// A KV bucket of JSON records written only with compare-and-set: the way
/// every stage keeps state that two instances may race on (policy
/// selections, scan records), so neither ever overwrites the other blindly.
#[derive(Clone)]
pub struct CasBucket {
    store: kv::Store,
    bucket: &'static str,
}

impl CasBucket {
    /// Wraps `store`, the bucket named `bucket`.
    pub fn new(store: kv::Store, bucket: &'static str) -> Self {
        Self { store, bucket }
    }

    /// The record under `key` and the revision to write against (0: none).
    /// A record that no longer decodes is logged and treated as absent, so
    /// the next write replaces it instead of wedging the key forever.
    pub async fn read<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<(Option<T>, u64), BusError> {
        Ok(match self.latest(key).await? {
            Some((Some(value), revision)) => match serde_json::from_slice(&value) {
                Ok(value) => (Some(value), revision),
                Err(e) => {
                    tracing::warn!(bucket = self.bucket, key, error = %e, "unreadable record; it will be replaced");
                    (None, revision)
                }
            },
            Some((None, revision)) => (None, revision),
            None => (None, 0),
        })
    }

    /// The record under `key`, for a reader that acts on it without writing
    /// back (the committer reading selections); `None` when absent or
    /// deleted, an error when it does not decode.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, BusError> {
        let Some((Some(value), _)) = self.latest(key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&value)
            .map(Some)
            .map_err(|e| BusError::Corrupt {
                bucket: self.bucket.to_string(),
                key: key.to_string(),
                reason: e.to_string(),
            })
    }

    /// The latest value under `key` (`None` for a deletion) and its
    /// revision, or `None` when the key was never written.
    ///
    /// Read from the bucket's stream leader, not with the KV "direct get":
    /// on a cluster a direct get may be answered by a follower that has not
    /// applied the latest writes yet (NATS promises monotonic reads, not
    /// read-your-writes). A stale revision makes every compare-and-set lose,
    /// and a stale selection could make the committer write an older tag
    /// over a newer one. The leader has applied every acknowledged write.
    async fn latest(&self, key: &str) -> Result<Option<(Option<bytes::Bytes>, u64)>, BusError> {
        let subject = format!("{}{}", self.store.prefix, key);
        let message = match self
            .store
            .stream
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(message) => message,
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                return Ok(None)
            }
            Err(e) => return Err(bucket_error(self.bucket, key, e)),
        };
        let operation = match message.headers.get(KV_OPERATION_HEADER) {
            Some(operation) => operation.as_str().parse().map_err(|_| BusError::Corrupt {
                bucket: self.bucket.to_string(),
                key: key.to_string(),
                reason: format!("unknown operation {operation}"),
            })?,
            None => kv::Operation::Put,
        };
        let value = (operation == kv::Operation::Put).then_some(message.payload);
        Ok(Some((value, message.sequence)))
    }

    /// Removes the record and its history (a deleted object's state).
    pub async fn purge(&self, key: &str) -> Result<(), BusError> {
        self.store
            .purge(key)
            .await
            .map_err(|e| bucket_error(self.bucket, key, e))
    }

    /// Writes `value` if the key is still at `revision` (0: absent);
    /// `false` when another writer got there first.
    pub async fn write<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
        revision: u64,
    ) -> Result<bool, BusError> {
        let bytes = serde_json::to_vec(value)?;
        let result = if revision == 0 {
            self.store
                .create(key, bytes.into())
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        matches!(e.kind(), kv::CreateErrorKind::AlreadyExists)
                            || is_wrong_last_sequence(&e),
                        e.to_string(),
                    )
                })
        } else {
            self.store
                .update(key, bytes.into(), revision)
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        matches!(e.kind(), kv::UpdateErrorKind::WrongLastRevision)
                            || is_wrong_last_sequence(&e),
                        e.to_string(),
                    )
                })
        };
        match result {
            Ok(()) => Ok(true),
            Err((true, _)) => Ok(false),
            Err((false, reason)) => Err(bucket_error(self.bucket, key, reason)),
        }
    }
}
