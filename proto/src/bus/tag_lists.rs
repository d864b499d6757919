//! Tag lists too large for a `TagsDiscovered`, in the tag-lists object store.

use async_nats::jetstream::object_store;

use super::{bucket_error, Bus, BusError};
use crate::event::{tag_set_digest, TagsDiscovered, TagsRef};
use crate::names;

/// A tag list whose JSON is larger than this travels in the
/// [`names::TAG_LISTS_BUCKET`] object store instead of inside its
/// `TagsDiscovered` (`tags_ref` instead of `tags`). A quarter of NATS'
/// default 1 MiB payload limit: the envelope and the per-tag image
/// metadata must fit beside it. About 20,000 ten-character tags.
pub const INLINE_TAGS_MAX_BYTES: usize = 256 * 1024;

/// The size of `tags` as a JSON array, to compare with
/// [`INLINE_TAGS_MAX_BYTES`] without serialising them.
pub fn tags_json_size(tags: &[String]) -> usize {
    2 + tags.iter().map(|t| t.len() + 3).sum::<usize>()
}

impl Bus {
    /// Stores a tag list too large for an event in the tag-lists object
    /// store under its tag-set digest, and returns the reference to put in
    /// `TagsDiscovered.tags_ref`. The key is the content's digest, so an
    /// entry never changes: writing an existing one is skipped, and a reader
    /// of an older event never sees a newer set.
    pub async fn put_tag_list(&self, tags: &[String]) -> Result<TagsRef, BusError> {
        let key = tag_set_digest(tags.iter().map(String::as_str));
        let store = self.tag_lists().await?;
        if store.info(&key).await.is_err() {
            let bytes = serde_json::to_vec(tags)?;
            store
                .put(key.as_str(), &mut bytes.as_slice())
                .await
                .map_err(|e| bucket_error(names::TAG_LISTS_BUCKET, &key, e))?;
        }
        Ok(TagsRef {
            bucket: names::TAG_LISTS_BUCKET.to_string(),
            key,
        })
    }

    /// The complete tag list of a `TagsDiscovered`: inline, or read from
    /// the object store its `tags_ref` names. `None` when the event carries
    /// no complete list (no list, a count that does not match, a stored
    /// list that is missing or is not the set the event's digest names): a
    /// reader must then act as if it had no tags, never on a partial set.
    pub async fn tag_list(
        &self,
        discovered: &TagsDiscovered,
    ) -> Result<Option<Vec<String>>, BusError> {
        if let Some(tags) = &discovered.tags {
            return Ok((tags.len() == discovered.tag_count).then(|| tags.clone()));
        }
        let Some(reference) = &discovered.tags_ref else {
            return Ok(None);
        };
        let store = self
            .js
            .get_object_store(&reference.bucket)
            .await
            .map_err(|e| bucket_error(&reference.bucket, &reference.key, e))?;
        let mut object = match store.get(&reference.key).await {
            Ok(object) => object,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => {
                tracing::warn!(bucket = %reference.bucket, key = %reference.key, "tag list referred to by an event is missing");
                return Ok(None);
            }
            Err(e) => return Err(bucket_error(&reference.bucket, &reference.key, e)),
        };
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut object, &mut bytes)
            .await
            .map_err(|e| bucket_error(&reference.bucket, &reference.key, e))?;
        let tags: Vec<String> = serde_json::from_slice(&bytes).map_err(|e| BusError::Corrupt {
            bucket: reference.bucket.clone(),
            key: reference.key.clone(),
            reason: e.to_string(),
        })?;
        let complete = tags.len() == discovered.tag_count
            && tag_set_digest(tags.iter().map(String::as_str)) == discovered.tag_set_digest;
        Ok(complete.then_some(tags))
    }

    async fn tag_lists(&self) -> Result<object_store::ObjectStore, BusError> {
        self.js
            .get_object_store(names::TAG_LISTS_BUCKET)
            .await
            .map_err(|e| bucket_error(names::TAG_LISTS_BUCKET, "", e))
    }
}
