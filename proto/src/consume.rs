//! The one consume loop every stage runs, and the one way a stage records a
//! failure.
//!
//! Each stage is "decide → effect → publish" on messages of its durable
//! pull consumer. What is the same for all of them lives here, written once,
//! so that a guarantee the README makes ("SIGTERM finishes the message in
//! hand") holds for every stage or for none:
//!
//! - **decode or terminate**: a payload this build cannot read is
//!   terminated (`AckKind::Term`), never redelivered forever;
//! - **trace context**: the publisher's `traceparent` becomes the parent of
//!   the handler's span, so one trace spans scanner → resolver → committer;
//! - **heartbeat**: while a handler runs, `AckKind::Progress` every
//!   [`ConsumeSettings::progress_every`] keeps JetStream from redelivering a
//!   long piece of work (a committer's fetch + push cycles) to another
//!   instance after `ack_wait`;
//! - **ack / nak with back-off**: the handler's [`Disposition`] decides;
//! - **consumer lag**: the `tagrelay.consumer.lag` gauge per consumer;
//! - **readiness**: ready once bound, not ready as soon as shutdown begins;
//! - **drain**: on shutdown no new message is taken and every message in
//!   hand is finished (acked or nacked) before [`consume`] returns.
//!
//! [`Failures::record`] is the other half: a stage that gives up on an object publishes
//! the failure event, counts it and marks the object not ready while keeping
//! the rest of its status (last scan, latest image, last push).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tracing::Instrument;

use crate::bus::{Bus, BusError, ConfigChange, ConfigStore, Watched, MSG_ID_HEADER};
use crate::config::ObjectKey;
use crate::event::{Envelope, Event, Failure, FailureReason, ObjectRef};
use crate::names::Stage;
use crate::runtime::Readiness;
use crate::scan::ScanRequest;
use crate::status::ObjectStatus;
use crate::telemetry::{attribute, metrics};
use crate::trace::TRACEPARENT;

/// A payload a stage's consumer carries, decoded once by the loop.
pub trait Payload: Sized + Send + 'static {
    /// Reads the payload, or says why it cannot be read (the message is
    /// then terminated: no later delivery would read it either).
    fn decode(bytes: &[u8]) -> Result<Self, String>;
}

impl Payload for Envelope {
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        Envelope::from_json(bytes).map_err(|e| e.to_string())
    }
}

impl Payload for ScanRequest {
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// What the transport knew about a message, handed to the handler with the
/// decoded payload.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The subject it was published on.
    pub subject: String,
    /// The `Nats-Msg-Id` it was published with.
    pub msg_id: Option<String>,
    /// The W3C `traceparent` it was published with.
    pub traceparent: Option<String>,
    /// Its sequence in the stream: the order stages compare against.
    pub stream_sequence: u64,
    /// Which delivery this is, from 1: the attempt a failure reports.
    pub attempt: u32,
    /// Messages still waiting for the consumer behind this one.
    pub pending: u64,
}

impl Delivery {
    /// What `message`'s headers and JetStream metadata say about it.
    pub fn of(message: &jetstream::Message) -> Self {
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
        };
        let (stream_sequence, delivered, pending) = message
            .info()
            .map(|info| (info.stream_sequence, info.delivered, info.pending))
            .unwrap_or((0, 1, 0));
        Self {
            subject: message.subject.to_string(),
            msg_id: header(MSG_ID_HEADER),
            traceparent: header(TRACEPARENT),
            stream_sequence,
            attempt: u32::try_from(delivered).unwrap_or(u32::MAX).max(1),
            pending,
        }
    }
}

/// What to do with a message once its handler is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Handled (including "handled by recording a failure"): ack.
    Done,
    /// Not handled; deliver again after this pause (a nak with delay).
    Retry(Duration),
    /// Never handle it (terminate): it can never succeed.
    Drop,
}

/// One stage's work on one message.
pub trait Handler: Send + Sync + 'static {
    /// The payload its consumer carries.
    type Item: Payload;

    /// The span the handling runs in; the loop makes the publisher's trace
    /// its parent.
    fn span(&self, item: &Self::Item, delivery: &Delivery) -> tracing::Span;

    /// Handles one message. Runs to completion even when shutdown begins.
    fn handle(
        &self,
        item: Self::Item,
        delivery: Delivery,
    ) -> impl Future<Output = Disposition> + Send;
}

/// How a stage consumes.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeSettings {
    /// The stage, which names its durable consumer.
    pub stage: Stage,
    /// Messages handled at once by this instance.
    pub concurrency: usize,
    /// How often a running handler's message is marked in progress; well
    /// under the consumer's `ack_wait` (30 s).
    pub progress_every: Duration,
}

impl ConsumeSettings {
    /// One message at a time, heartbeat every 10 s.
    pub fn new(stage: Stage) -> Self {
        Self {
            stage,
            concurrency: 1,
            progress_every: Duration::from_secs(10),
        }
    }

    /// The same, `concurrency` messages at a time.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }
}

/// Consumes `settings.stage`'s durable consumer with `handler` until
/// `shutdown` resolves, then finishes every message in hand and returns.
///
/// A message stream that ends or errors (NATS restarting, a leader
/// election) is bound again with back-off; only failing to bind the
/// consumer at start-up is an error.
pub async fn consume<H: Handler>(
    bus: &Bus,
    handler: Arc<H>,
    settings: ConsumeSettings,
    readiness: Readiness,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BusError> {
    let concurrency = settings.concurrency.max(1);
    let mut messages = bind(bus, settings.stage, concurrency).await?;
    let mut in_hand = tokio::task::JoinSet::new();
    readiness.set(true);
    tracing::info!(
        source = bus.source(),
        stage = settings.stage.as_str(),
        "ready"
    );
    tokio::pin!(shutdown);
    let mut rebind_pause = Duration::from_millis(200);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(finished) = in_hand.join_next(), if !in_hand.is_empty() => {
                if let Err(e) = finished {
                    tracing::error!(error = %e, "a message handler panicked; the message will be redelivered");
                }
            }
            message = messages.next(), if in_hand.len() < concurrency => match message {
                Some(Ok(message)) => {
                    rebind_pause = Duration::from_millis(200);
                    in_hand.spawn(handle_one(handler.clone(), message, settings));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => {
                    tracing::warn!(retry_in = ?rebind_pause, "the consumer's message stream ended; binding it again");
                    tokio::time::sleep(rebind_pause).await;
                    rebind_pause = (rebind_pause * 2).min(Duration::from_secs(10));
                    match bind(bus, settings.stage, concurrency).await {
                        Ok(again) => messages = again,
                        Err(e) => tracing::warn!(error = %e, "cannot bind the consumer yet"),
                    }
                }
            },
        }
    }
    readiness.set(false);
    drop(messages);
    tracing::info!(
        stage = settings.stage.as_str(),
        in_hand = in_hand.len(),
        "stopping: finishing the messages in hand"
    );
    while let Some(finished) = in_hand.join_next().await {
        if let Err(e) = finished {
            tracing::error!(error = %e, "a message handler panicked; the message will be redelivered");
        }
    }
    // Acks are sent without waiting; make sure the last ones left before
    // the process does, or they would be redelivered to another instance.
    if let Err(error) = bus.client().flush().await {
        tracing::warn!(%error, "cannot flush the last acknowledgements");
    }
    tracing::info!(stage = settings.stage.as_str(), "stopped");
    Ok(())
}

async fn bind(
    bus: &Bus,
    stage: Stage,
    concurrency: usize,
) -> Result<jetstream::consumer::pull::Stream, BusError> {
    bus.consumer(stage)
        .await?
        .stream()
        .max_messages_per_batch(concurrency)
        .messages()
        .await
        .map_err(|e| BusError::Setup {
            what: format!("{} consumer", stage.consumer()),
            reason: e.to_string(),
        })
}

async fn handle_one<H: Handler>(
    handler: Arc<H>,
    message: jetstream::Message,
    settings: ConsumeSettings,
) {
    let delivery = Delivery::of(&message);
    metrics().consumer_lag.record(
        delivery.pending,
        &attribute("consumer", settings.stage.consumer()),
    );
    let item = match H::Item::decode(&message.payload) {
        Ok(item) => item,
        Err(error) => {
            tracing::error!(%error, subject = %delivery.subject, "unreadable message; terminating it");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let span = handler.span(&item, &delivery);
    crate::trace::continue_trace(&span, delivery.traceparent.as_deref());
    let work = handler.handle(item, delivery).instrument(span);
    tokio::pin!(work);
    let mut progress = tokio::time::interval(settings.progress_every);
    progress.tick().await;
    let disposition = loop {
        tokio::select! {
            disposition = &mut work => break disposition,
            _ = progress.tick() => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    };
    let acked = match disposition {
        Disposition::Done => message.ack().await,
        Disposition::Retry(after) => message.ack_with(AckKind::Nak(Some(after))).await,
        Disposition::Drop => message.ack_with(AckKind::Term).await,
    };
    if let Err(error) = acked {
        tracing::warn!(%error, ?disposition, "cannot acknowledge; the message will be redelivered");
    }
}

/// Why a stage gave up on an object for now: the failure reason the
/// failure event records, the error in words an operator can act on (never
/// credentials), and whether the stage will try again by itself (a remote
/// down) or needs someone to change something (a template Go would refuse).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct Failed {
    /// The kind of failure, for alerts and scripts.
    pub reason: FailureReason,
    /// The error, in words.
    pub error: String,
    /// Whether the stage will try again by itself.
    pub will_retry: bool,
}

impl Failed {
    /// A failure that may go away by itself.
    pub fn transient(reason: FailureReason, error: impl Into<String>) -> Self {
        Self {
            reason,
            error: error.into(),
            will_retry: true,
        }
    }

    /// A failure that needs someone to change something.
    pub fn permanent(reason: FailureReason, error: impl Into<String>) -> Self {
        Self {
            reason,
            error: error.into(),
            will_retry: false,
        }
    }
}

/// Where one stage records its failures: its failure events on the bus,
/// and the objects' statuses.
#[derive(Clone)]
pub struct Failures {
    bus: Bus,
    store: ConfigStore,
    stage: Stage,
}

impl Failures {
    /// Failures of `stage`, published on `bus`, reflected in `store`.
    pub fn new(bus: &Bus, store: &ConfigStore, stage: Stage) -> Self {
        Self {
            bus: bus.clone(),
            store: store.clone(),
            stage,
        }
    }

    /// Publishes the stage's failure event for `key` (caused by `cause`
    /// when there is one, so `why` and `audit` can follow the chain),
    /// counts it by stage and reason, logs it, and marks the object not
    /// ready with the error as its message while the rest of its status
    /// (last scan, tags, latest image, last push) is kept. `amend` adjusts
    /// the new status (a scanner records when it tried).
    pub async fn record(
        &self,
        key: &ObjectKey,
        cause: Option<&Envelope>,
        failed: &Failed,
        attempt: u32,
        amend: impl FnOnce(&mut ObjectStatus),
    ) -> Result<(), BusError> {
        let Failed {
            reason,
            error,
            will_retry,
        } = failed;
        let (reason, will_retry) = (*reason, *will_retry);
        let failure = Failure {
            object: ObjectRef::new(&key.namespace, &key.name),
            error: error.clone(),
            will_retry,
            attempt,
            reason,
        };
        let event = match self.stage {
            Stage::Scan => Event::ScanFailed(failure),
            Stage::Resolve => Event::ResolveFailed(failure),
            Stage::Commit => Event::CommitFailed(failure),
            Stage::Review => Event::ReviewFailed(failure),
            Stage::Notify => Event::NotificationFailed(failure),
        };
        let envelope = match cause {
            Some(cause) => Envelope::caused_by(cause, self.bus.source(), event),
            None => Envelope::new(self.bus.source(), event),
        };
        self.bus.publish(&envelope).await?;
        metrics().record_failure(self.stage.as_str(), reason);
        let previous = self.store.last_status(key).await;
        let mut status = failed_status(previous, error, Utc::now());
        amend(&mut status);
        self.store.record_status(key, &status).await;
        match self.stage {
            Stage::Scan => {
                tracing::warn!(repository = %key, %reason, %error, will_retry, attempt, "scan failed")
            }
            Stage::Resolve => {
                tracing::warn!(policy = %key, %reason, %error, will_retry, attempt, "policy not resolved")
            }
            Stage::Commit => {
                tracing::warn!(automation = %key, %reason, %error, will_retry, attempt, "commit failed")
            }
            Stage::Review => {
                tracing::warn!(automation = %key, %reason, %error, will_retry, attempt, "pull request not synced")
            }
            Stage::Notify => {
                tracing::warn!(provider = %key, %reason, %error, will_retry, attempt, "notification not delivered")
            }
        }
        Ok(())
    }
}

/// Follows the configuration bucket for the life of the process, calling
/// `on_change` for every change, starting with every current object. A
/// watch that fails or ends (NATS restarting) is opened again with
/// back-off, replaying the current objects, so a stage never goes on with a
/// configuration it silently stopped seeing. Returns only if the caller
/// drops it (abort the task running it).
pub async fn follow_config<F, Fut>(store: ConfigStore, mut on_change: F)
where
    F: FnMut(ConfigChange) -> Fut,
    Fut: Future<Output = ()>,
{
    store
        .follow_revisions(|watched| {
            let followed = match watched {
                Watched::Entry(_, Some(change)) => Some(on_change(change)),
                _ => None,
            };
            async move {
                if let Some(followed) = followed {
                    followed.await;
                }
            }
        })
        .await;
}

/// `previous` with the failure written over what a failure changes.
fn failed_status(previous: ObjectStatus, error: &str, now: DateTime<Utc>) -> ObjectStatus {
    ObjectStatus {
        ready: false,
        message: error.to_string(),
        updated_at: Some(now),
        last_error: Some(error.to_string()),
        failures: previous.failures.saturating_add(1),
        failing_since: previous.failing_since.or(Some(now)),
        ..previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_everything_the_failure_does_not_change() {
        let previous = ObjectStatus {
            ready: true,
            message: "successful scan: found 3 tags".into(),
            tag_count: Some(3),
            latest_tags: vec!["1.2.0".into()],
            latest_image: Some("app:1.2.0".into()),
            last_push_commit: Some("abc".into()),
            ..Default::default()
        };
        let now = Utc::now();
        let status = failed_status(previous.clone(), "registry down", now);
        assert!(!status.ready);
        assert_eq!(status.message, "registry down");
        assert_eq!(status.last_error.as_deref(), Some("registry down"));
        assert_eq!(status.updated_at, Some(now));
        assert_eq!(status.tag_count, previous.tag_count);
        assert_eq!(status.latest_tags, previous.latest_tags);
        assert_eq!(status.latest_image, previous.latest_image);
        assert_eq!(status.last_push_commit, previous.last_push_commit);
        assert_eq!((status.failures, status.failing_since), (1, Some(now)));
        let later = now + chrono::Duration::seconds(5);
        let again = failed_status(status, "registry down", later);
        assert_eq!((again.failures, again.failing_since), (2, Some(now)));
    }

    #[test]
    fn payloads_decode_or_say_why_not() {
        assert!(<Envelope as Payload>::decode(b"{}").is_err());
        assert!(<ScanRequest as Payload>::decode(b"not json").is_err());
        let request = ScanRequest::new(
            ObjectRef::new("apps", "app"),
            crate::event::ScanTrigger::Reconcile,
            "x",
        );
        let bytes = serde_json::to_vec(&request).unwrap();
        assert_eq!(<ScanRequest as Payload>::decode(&bytes).unwrap(), request);
    }
}
