//! Publishing an event: with its `Nats-Msg-Id` and `traceparent`, waiting for
//! the stream's acknowledgement, optionally conditional on the subject's last
//! sequence.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::HeaderMap;

use super::{is_wrong_last_sequence, jetstream_code, Bus, BusError};
use crate::event::Envelope;
use crate::trace::{traceparent_for, TRACEPARENT};

/// The header carrying the deterministic message id the stream deduplicates on.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// Why a conditional publication did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PublishFailure {
    /// Another event was published on the subject since the expected one.
    #[error("another event was published on the subject first")]
    Conflict,
    /// Anything else.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// The header that makes a publication conditional on the subject's last
/// sequence.
pub const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";

/// The first pause before publishing again a message whose id another
/// publication is storing on a cluster (doubled each time).
const DUPLICATE_IN_PROCESS_PAUSE: Duration = Duration::from_millis(25);

/// No pause longer than this: about 3 s of pauses in all, longer than a
/// replicated write takes even during a leader election's aftermath; then the
/// error goes to the caller, whose message is redelivered.
const DUPLICATE_IN_PROCESS_GIVE_UP: Duration = Duration::from_millis(1600);

/// Whether a publication was refused because a message with the same
/// `Nats-Msg-Id` is being stored at this moment (clustered streams only).
fn is_duplicate_in_process(error: &(dyn std::error::Error + 'static)) -> bool {
    jetstream_code(error) == Some(jetstream::ErrorCode::STREAM_DUPLICATE_MESSAGE_CONFLICT)
}

/// The outcome of a publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The stream sequence of the stored message (of the original, for a
    /// duplicate).
    pub sequence: u64,
    /// Whether the stream dropped it as a duplicate of an earlier one.
    pub duplicate: bool,
}

impl Bus {
    /// Publishes an event with its `Nats-Msg-Id` and `traceparent` and waits
    /// for the stream's acknowledgement, so the caller acks its own input only
    /// once the output is durable.
    pub async fn publish(&self, envelope: &Envelope) -> Result<Published, BusError> {
        match self.publish_inner(envelope, None).await {
            Ok(published) => Ok(published),
            Err(PublishFailure::Bus(e)) => Err(e),
            Err(PublishFailure::Conflict) => Err(BusError::Publish {
                subject: envelope.payload.subject(),
                reason: "unexpected sequence conflict".to_string(),
            }),
        }
    }

    /// Publishes only if the last event on the envelope's subject is the one
    /// at `last_subject_sequence` (0: no event yet). This is optimistic
    /// concurrency on the log itself: of two instances that computed a change
    /// from the same predecessor, one publishes and the other learns
    /// [`PublishFailure::Conflict`], so each change is published once.
    pub async fn publish_after(
        &self,
        envelope: &Envelope,
        last_subject_sequence: u64,
    ) -> Result<Published, PublishFailure> {
        self.publish_inner(envelope, Some(last_subject_sequence))
            .await
    }

    async fn publish_inner(
        &self,
        envelope: &Envelope,
        last_subject_sequence: Option<u64>,
    ) -> Result<Published, PublishFailure> {
        let subject = envelope.payload.subject();
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID_HEADER, envelope.msg_id().as_str());
        headers.insert(TRACEPARENT, traceparent_for(envelope).as_str());
        if let Some(sequence) = last_subject_sequence {
            headers.insert(
                EXPECTED_LAST_SUBJECT_SEQUENCE,
                sequence.to_string().as_str(),
            );
        }
        let payload = envelope.to_json().map_err(BusError::from)?;
        let fail = |e: &dyn std::fmt::Display| {
            PublishFailure::Bus(BusError::Publish {
                subject: subject.clone(),
                reason: e.to_string(),
            })
        };
        let payload = bytes::Bytes::from(payload);
        let mut pause = DUPLICATE_IN_PROCESS_PAUSE;
        loop {
            let acked = self
                .js
                .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                .await
                .map_err(|e| fail(&e))?
                .await;
            match acked {
                Ok(ack) => {
                    return Ok(Published {
                        sequence: ack.sequence,
                        duplicate: ack.duplicate,
                    })
                }
                Err(e)
                    if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence
                        || is_wrong_last_sequence(&e) =>
                {
                    return Err(PublishFailure::Conflict)
                }
                // On a cluster, a message whose id another publication is
                // storing right now (not yet agreed by the replicas) is
                // refused with this code instead of being acknowledged as a
                // duplicate, as a single server would. Ask again once that
                // publication is settled: it is then a duplicate (or, if it
                // failed, this one is stored).
                Err(e) if is_duplicate_in_process(&e) && pause <= DUPLICATE_IN_PROCESS_GIVE_UP => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => return Err(fail(&e)),
            }
        }
    }
}
