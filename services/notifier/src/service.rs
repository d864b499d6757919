//! The notifier service: a durable subscriber of the whole event log that
//! delivers each event to the Providers its Alerts route it to, and the
//! stuck-policy sweep.
//!
//! Once per Provider: a delivered notification is recorded in the
//! notifications bucket under the Provider and the event id before the
//! message is acked, and a redelivered event skips the Providers already
//! recorded. A notifier killed between the receiver's answer and the record
//! sends that one notification again (at least once on the wire); the
//! event id travels with it (`X-Tagrelay-Event-Id`, `Nats-Msg-Id`) so a
//! receiver can drop the copy.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use chrono::Utc;
use opentelemetry::KeyValue;
use tagrelay_proto::bus::{Bus, BusError, ConfigChange, ConfigStore, RecordMirror};
use tagrelay_proto::config::{parse_go_duration, Alert, Object, ObjectKey, Provider};
use tagrelay_proto::consume::{
    consume, follow_config, ConsumeSettings, Delivery, Disposition, Failed, Failures, Handler,
};
use tagrelay_proto::event::{Envelope, Event, FailureReason, Stalled};
use tagrelay_proto::names::{self, subject_token, Stage};
use tagrelay_proto::runtime::Readiness;
use tagrelay_proto::status::ObjectStatus;
use tagrelay_proto::telemetry::metrics;
use tokio::sync::RwLock;

use crate::deliver::{settings, Deliverer, DeliveryError};
use crate::flux_event::flux_event;
use crate::payload::request;
use crate::routing::{routes, Route};
use crate::stale::{is_policy, stalls, Limits};

/// A delivery's time limit when the Provider sets none (Flux's default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// How the notifier runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where Provider Secrets are mounted.
    pub secrets_dir: PathBuf,
    /// When policies and automations count as stuck.
    pub limits: Limits,
    /// How often the stuck-policy sweep runs.
    pub sweep_every: Duration,
}

/// One notifier instance.
pub struct Notifier {
    bus: Bus,
    store: ConfigStore,
    notifications: kv::Store,
    /// Every object's status, for the sweep: one request a sweep instead of
    /// one per repository and automation.
    statuses: RecordMirror<ObjectStatus>,
    /// The stalls last announced (`stalled.*` in the notifications bucket),
    /// for the sweep: O(stalls), not O(policies), a sweep.
    stall_records: RecordMirror<Stalled>,
    followers: [tokio::task::AbortHandle; 2],
    config: RwLock<Config>,
    deliverer: Deliverer,
    failures: Failures,
    settings: Settings,
}

/// The configuration as the notifier reads it: every object (for
/// `matchLabels` and the sweep), and the Alerts and Providers kept apart so
/// routing one event never walks the whole configuration.
#[derive(Default)]
struct Config {
    objects: BTreeMap<ObjectKey, Object>,
    alerts: BTreeMap<ObjectKey, Alert>,
    providers: BTreeMap<ObjectKey, Provider>,
}

impl Config {
    fn apply(&mut self, change: ConfigChange) {
        match change {
            ConfigChange::Applied(object) => {
                let key = object.key();
                match object.as_ref() {
                    Object::Alert(a) => {
                        self.alerts.insert(key.clone(), a.clone());
                    }
                    Object::Provider(p) => {
                        self.providers.insert(key.clone(), p.clone());
                    }
                    _ => {}
                }
                self.objects.insert(key, *object);
            }
            ConfigChange::Deleted(key) => {
                self.alerts.remove(&key);
                self.providers.remove(&key);
                self.objects.remove(&key);
            }
        }
    }
}

/// Runs the notifier until `shutdown` resolves: follows the configuration,
/// sweeps for stuck objects, and consumes every event through the one
/// consume loop, which finishes the delivery in hand before returning.
pub async fn run(
    bus: &Bus,
    readiness: Readiness,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), BusError> {
    let notifier = Arc::new(Notifier::new(bus, settings).await?);
    let watcher = tokio::spawn(follow_config(notifier.store.clone(), {
        let notifier = notifier.clone();
        move |change| {
            let notifier = notifier.clone();
            async move { notifier.on_config(change).await }
        }
    }));
    let sweeper = tokio::spawn({
        let notifier = notifier.clone();
        async move { notifier.sweep_forever().await }
    });
    let result = consume(
        bus,
        notifier,
        ConsumeSettings::new(Stage::Notify).with_concurrency(4),
        readiness,
        shutdown,
    )
    .await;
    watcher.abort();
    sweeper.abort();
    tracing::info!("notifier stopped");
    result
}

impl Handler for Notifier {
    type Item = Envelope;

    fn span(&self, envelope: &Envelope, delivery: &Delivery) -> tracing::Span {
        tracing::info_span!("notify", event = %envelope.id, r#type = %envelope.event_type(), attempt = delivery.attempt)
    }

    async fn handle(&self, envelope: Envelope, delivery: Delivery) -> Disposition {
        match self.notify(&envelope, delivery.attempt).await {
            Ok(true) => Disposition::Done,
            Ok(false) => Disposition::Retry(backoff(delivery.attempt)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot record a notification; the event will be redelivered");
                Disposition::Retry(backoff(delivery.attempt))
            }
        }
    }
}

/// The pause before an event whose delivery failed is handled again.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(6)).min(Duration::from_secs(60))
}

impl Notifier {
    /// Connects to the buckets and loads the configuration.
    pub async fn new(bus: &Bus, settings: Settings) -> Result<Self, BusError> {
        let store = bus.config_store().await?;
        let mut config = Config::default();
        for object in store.list(None).await? {
            config.apply(ConfigChange::Applied(Box::new(object)));
        }
        let notifications = bus.bucket(names::NOTIFICATIONS_BUCKET).await?;
        let statuses = RecordMirror::new(
            bus.bucket(names::STATUS_BUCKET).await?,
            names::STATUS_BUCKET,
        );
        let stall_records = RecordMirror::under(
            notifications.clone(),
            names::NOTIFICATIONS_BUCKET,
            STALL_PREFIX,
        );
        Ok(Self {
            bus: bus.clone(),
            followers: [
                tokio::spawn(statuses.clone().follow()).abort_handle(),
                tokio::spawn(stall_records.clone().follow()).abort_handle(),
            ],
            statuses,
            stall_records,
            notifications,
            failures: Failures::new(bus, &store, Stage::Notify),
            store,
            config: RwLock::new(config),
            deliverer: Deliverer::new().map_err(|e| BusError::Setup {
                what: "HTTP client".into(),
                reason: e.to_string(),
            })?,
            settings,
        })
    }

    async fn on_config(&self, change: ConfigChange) {
        self.config.write().await.apply(change);
    }

    /// Delivers `envelope` to every Provider its Alerts route it to and
    /// has not reached yet. `Ok(false)` when a delivery failed and will be
    /// tried again by redelivery.
    pub async fn notify(&self, envelope: &Envelope, attempt: u32) -> Result<bool, BusError> {
        let Some(event) = flux_event(envelope) else {
            return Ok(true);
        };
        let routed: Vec<(Route, Provider)> = {
            let config = self.config.read().await;
            let labels_of =
                |key: &ObjectKey| config.objects.get(key).map(|o| o.metadata().labels.clone());
            routes(&event, config.alerts.values(), &config.providers, labels_of)
                .into_iter()
                .filter_map(|route| {
                    let provider = config.providers.get(&route.provider)?.clone();
                    Some((route, provider))
                })
                .collect()
        };
        let mut all_done = true;
        for (route, provider) in routed {
            let provider = &provider;
            let record = sent_key(&route.provider, &envelope.id);
            if self.recorded(&record).await {
                continue;
            }
            match self.deliver(provider, &route, &envelope.id).await {
                Ok(()) => {
                    self.notifications
                        .put(&record, Utc::now().to_rfc3339().into())
                        .await
                        .map_err(|e| BusError::Setup {
                            what: format!("record {record}"),
                            reason: e.to_string(),
                        })?;
                    let latency = (Utc::now() - envelope.occurred_at)
                        .to_std()
                        .unwrap_or_default();
                    let kind = [KeyValue::new("type", provider.spec.provider_type.clone())];
                    metrics().notifications.add(1, &kind);
                    metrics()
                        .notification_latency
                        .record(latency.as_secs_f64(), &kind);
                    tracing::info!(provider = %route.provider, alert = %route.alert, "notification delivered");
                    self.mark_ready(&route.provider).await;
                }
                Err(e) => {
                    let will_retry =
                        e.transient && i64::from(attempt) < self.bus.settings().max_deliver;
                    all_done &= !will_retry;
                    let failed = Failed {
                        reason: FailureReason::ReceiverUnavailable,
                        error: format!(
                            "notification of {} not delivered: {e}",
                            envelope.event_type()
                        ),
                        will_retry,
                    };
                    self.failures
                        .record(&route.provider, Some(envelope), &failed, attempt, |_| {})
                        .await?;
                }
            }
        }
        Ok(all_done)
    }

    async fn deliver(
        &self,
        provider: &Provider,
        route: &Route,
        event_id: &str,
    ) -> Result<(), DeliveryError> {
        let object = &route.event.involved_object;
        let commit_status =
            format!("{}/{}/{}", object.kind, object.name, route.provider.name).to_lowercase();
        let settings = settings(provider, &self.settings.secrets_dir, commit_status)?;
        let request = request(&settings, &route.event).map_err(|e| DeliveryError {
            message: e.to_string(),
            transient: false,
        })?;
        let timeout = provider
            .spec
            .timeout
            .as_deref()
            .and_then(|t| parse_go_duration(t).ok())
            .unwrap_or(DEFAULT_TIMEOUT);
        self.deliverer.send(&request, event_id, timeout).await
    }

    /// Whether the notifications bucket holds `record`. A read that fails
    /// counts as absent: a delivery is then made again (at least once)
    /// rather than lost.
    async fn recorded(&self, record: &str) -> bool {
        self.notifications
            .get(record)
            .await
            .ok()
            .flatten()
            .is_some()
    }

    /// Marks a Provider ready again after a delivery, when a failure had
    /// marked it not ready (one status write per recovery, not per event).
    async fn mark_ready(&self, key: &ObjectKey) {
        let previous = self.store.last_status(key).await;
        if previous.ready {
            return;
        }
        let now = Utc::now();
        let status = ObjectStatus {
            ready: true,
            message: "notification delivered".into(),
            updated_at: Some(now),
            last_success_time: Some(now),
            ..Default::default()
        };
        self.store.record_status(key, &status).await;
    }

    async fn sweep_forever(&self) {
        loop {
            tokio::time::sleep(self.settings.sweep_every).await;
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "stuck-policy sweep failed; trying again");
            }
        }
    }

    /// Publishes each new stall once (`PolicyStale`, `AutomationStalled`)
    /// and forgets the stalls that ended, so the next one is announced.
    pub async fn sweep(&self) -> Result<usize, BusError> {
        let objects = self.config.read().await.objects.clone();
        let statuses: BTreeMap<ObjectKey, ObjectStatus> = {
            let mirrored = self.statuses.current().await?;
            objects
                .iter()
                .filter(|(_, object)| {
                    matches!(
                        object,
                        Object::ImageRepository(_) | Object::ImageUpdateAutomation(_)
                    )
                })
                .filter_map(|(key, _)| {
                    let status = mirrored.get(&key.bucket_key())?;
                    Some((key.clone(), status.clone()))
                })
                .collect()
        };
        let found = stalls(Utc::now(), &objects, &statuses, self.settings.limits);
        // New stalls (or a stall of the same object since another time or
        // for another reason), and the records of stalls that ended.
        let (fresh, ended) = {
            let recorded = self.stall_records.current().await?;
            let fresh: Vec<_> = found
                .iter()
                .filter(|stall| {
                    !recorded.get(&stall_key(&stall.key)).is_some_and(|known| {
                        known.since == stall.stalled.since && known.reason == stall.stalled.reason
                    })
                })
                .collect();
            let current: HashSet<String> = found.iter().map(|s| stall_key(&s.key)).collect();
            let ended: Vec<String> = recorded
                .keys()
                .filter(|record| !current.contains(*record))
                .map(str::to_string)
                .collect();
            (fresh, ended)
        };
        for stall in &fresh {
            let payload = if is_policy(stall) {
                Event::PolicyStale(stall.stalled.clone())
            } else {
                Event::AutomationStalled(stall.stalled.clone())
            };
            self.bus
                .publish(&Envelope::new(self.bus.source(), payload))
                .await?;
            tracing::warn!(object = %stall.key, reason = stall.stalled.reason.as_str(), message = %stall.stalled.message, "stuck");
            let value = serde_json::to_vec(&stall.stalled).unwrap_or_default();
            let _ = self
                .notifications
                .put(&stall_key(&stall.key), value.into())
                .await;
        }
        for record in ended {
            let _ = self.notifications.delete(&record).await;
        }
        Ok(fresh.len())
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        for follower in &self.followers {
            follower.abort();
        }
    }
}

/// `sent.<ns>.<provider>.<event id>`.
fn sent_key(provider: &ObjectKey, event_id: &str) -> String {
    format!(
        "sent.{}.{}.{}",
        subject_token(&provider.namespace),
        subject_token(&provider.name),
        subject_token(event_id)
    )
}

/// Where the stall records live in the notifications bucket.
const STALL_PREFIX: &str = "stalled.";

/// `stalled.<kind>.<ns>.<name>`: the stall last announced (a [`Stalled`]
/// as JSON), which `tagrelay get` shows.
pub fn stall_key(key: &ObjectKey) -> String {
    format!("{STALL_PREFIX}{}", key.bucket_key())
}
