//! Reading the event log: the last event on a subject, and the ordered log.

use async_nats::jetstream::{consumer, stream};
use futures::StreamExt;

use super::{setup, Bus, BusError};
use crate::event::{DecodeError, Envelope};
use crate::names;

/// One entry of the event log, as [`Bus::read_log`] yields it.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    /// Its sequence in the events stream.
    pub sequence: u64,
    /// When the stream stored it.
    pub stored_at: chrono::DateTime<chrono::Utc>,
    /// The event, or why this build cannot read it.
    pub envelope: Result<Envelope, DecodeError>,
}

impl Bus {
    /// The event stored at `sequence` of the audit log: what a state record
    /// names by sequence (the scan a selection came from, the
    /// `PolicyResolved` that announced it). `None` when the log no longer
    /// holds it or it does not decode (logged).
    pub async fn event_at(&self, sequence: u64) -> Result<Option<Envelope>, BusError> {
        let stream = self
            .jetstream()
            .get_stream_no_info(names::EVENTS_STREAM)
            .await
            .map_err(|e| BusError::Setup {
                what: names::EVENTS_STREAM.into(),
                reason: e.to_string(),
            })?;
        let message = match stream.get_raw_message(sequence).await {
            Ok(message) => message,
            Err(e) => {
                tracing::debug!(sequence, error = %e, "event no longer in the log");
                return Ok(None);
            }
        };
        match Envelope::from_json(&message.payload) {
            Ok(envelope) => Ok(Some(envelope)),
            Err(e) => {
                tracing::warn!(sequence, error = %e, "event unreadable");
                Ok(None)
            }
        }
    }

    /// The last event published on `subject` and its stream sequence, the
    /// way a stage finds "the current fact" (a repository's latest tag set, a
    /// policy's latest move) without keeping a copy of its own.
    pub async fn last_event(&self, subject: &str) -> Result<Option<(Envelope, u64)>, BusError> {
        let stream = self
            .js
            .get_stream_no_info(names::EVENTS_STREAM)
            .await
            .map_err(|e| setup(names::EVENTS_STREAM.to_string(), e))?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => {
                let envelope =
                    Envelope::from_json(&message.payload).map_err(|e| BusError::Corrupt {
                        bucket: names::EVENTS_STREAM.to_string(),
                        key: subject.to_string(),
                        reason: e.to_string(),
                    })?;
                Ok(Some((envelope, message.sequence)))
            }
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(BusError::Bucket {
                bucket: names::EVENTS_STREAM.to_string(),
                key: subject.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Reads the event log in order: every event matching `filter` (a
    /// subject filter such as [`names::POLICY_FILTER`] or `tagrelay.>`) from
    /// `since` (the beginning when `None`). Without `follow` the stream ends
    /// at the current end of the log; with it, it waits for new events. An
    /// event this build cannot decode is yielded as an error with its
    /// sequence, never skipped silently.
    pub async fn read_log(
        &self,
        filter: &str,
        since: Option<chrono::DateTime<chrono::Utc>>,
        follow: bool,
    ) -> Result<impl futures::Stream<Item = LoggedEvent> + use<>, BusError> {
        let deliver_policy = match since {
            Some(since) => consumer::DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from_unix_timestamp(since.timestamp())
                    .map(|t| t + time::Duration::nanoseconds(since.timestamp_subsec_nanos().into()))
                    .map_err(|e| BusError::Setup {
                        what: format!("log reader on {filter}"),
                        reason: format!("start time {since} out of range: {e}"),
                    })?,
            },
            None => consumer::DeliverPolicy::All,
        };
        let what = || format!("log reader on {filter}");
        let stream = self
            .js
            .get_stream_no_info(names::EVENTS_STREAM)
            .await
            .map_err(|e| setup(what(), e))?;
        let mut reader = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter.to_string(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| setup(what(), e))?;
        let empty = reader
            .info()
            .await
            .map(|info| info.num_pending == 0)
            .map_err(|e| setup(what(), e))?;
        let messages = reader.messages().await.map_err(|e| setup(what(), e))?;
        let done = !follow && empty;
        Ok(
            futures::stream::unfold((messages, done), move |(mut messages, done)| async move {
                if done {
                    return None;
                }
                let message = messages.next().await?.ok()?;
                let info = message.info().ok()?;
                let (sequence, pending) = (info.stream_sequence, info.pending);
                let stored_at = chrono::DateTime::from_timestamp_nanos(
                    i64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(0),
                );
                let event = LoggedEvent {
                    sequence,
                    stored_at,
                    envelope: Envelope::from_json(&message.payload),
                };
                Some((event, (messages, !follow && pending == 0)))
            })
            .filter(move |event| {
                // The server's start-time lookup is a hint (a start time past the
                // last message has been seen to deliver everything): enforce it.
                futures::future::ready(since.is_none_or(|since| event.stored_at >= since))
            }),
        )
    }
}
