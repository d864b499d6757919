//! The resolver service: consumes `TagsDiscovered`, watches the
//! configuration, and keeps every ImagePolicy's selection current.
//!
//! Exactly one `PolicyResolved` per change, however many instances run and
//! however often an event is delivered, comes from three mechanisms:
//! - the selection lives in the policy-state bucket, written with
//!   compare-and-set, and carries the stream sequence of the `TagsDiscovered`
//!   it came from: an event older than (or equal to) that is skipped, so
//!   nothing moves a policy back;
//! - `PolicyResolved` is published conditionally on the policy subject's
//!   last sequence (the event that announced the previous selection): of two
//!   instances computing a move from the same predecessor, one publishes, the
//!   other sees a conflict, re-reads and finds nothing left to do. A crash
//!   between publishing and writing the state is repaired from the log;
//! - a move is only published from the repository's newest tag set, so a
//!   late event can never move a policy back, even mid-repair.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tagrelay_proto::bus::{
    Bus, BusError, CasBucket, ConfigChange, ConfigIndex, ConfigStore, PublishFailure,
};
use tagrelay_proto::config::{ImagePolicy, Kind, Object, ObjectKey};
use tagrelay_proto::consume::{
    consume, follow_config, ConsumeSettings, Delivery, Disposition, Failed, Failures, Handler,
};
use tagrelay_proto::event::{
    Envelope, Event, FailureReason, ObjectRef, PolicyResolved, ResolveCause, SelectedImage,
    TagsDiscovered,
};
use tagrelay_proto::names::{self, Stage};
use tagrelay_proto::runtime::Readiness;
use tagrelay_proto::state::PolicySelection;
use tagrelay_proto::status::ObjectStatus;
use tagrelay_proto::telemetry::{attribute, metrics};
use tokio::sync::RwLock;

use tagrelay_policy::rules::{policy_rules, reflects_digest, rules_hash, PolicyCache};

/// How many times one evaluation re-reads state after losing a race before
/// leaving the message for redelivery.
const MAX_RACES: usize = 16;

/// What an evaluation did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The state already reflects this tag set and these rules.
    AlreadyCurrent,
    /// Evaluated; the selection did not change.
    Unchanged,
    /// The selection moved and `PolicyResolved` was published.
    Moved(SelectedImage),
    /// The tag set was empty or incomplete: a policy never changes on it.
    IgnoredEmpty,
    /// The policy is suspended (`spec.suspend`): nothing evaluated.
    Suspended,
    /// Nothing qualified or the policy is invalid; `ResolveFailed` published.
    Failed(String),
    /// A newer tag set of the repository exists; its evaluation decides.
    Superseded,
}

/// One resolver instance: its connections and the configuration it has
/// seen. [`run`] drives it from the consumer; tests and tools may call
/// [`Resolver::handle_tags`] directly.
pub struct Resolver {
    bus: Bus,
    store: ConfigStore,
    state: CasBucket,
    config: RwLock<ConfigIndex>,
    policies: PolicyCache,
    failures: Failures,
}

/// Runs the resolver until `shutdown` resolves: follows the configuration
/// and consumes `TagsDiscovered` on the shared durable consumer through
/// the one consume loop (`tagrelay_proto::consume`), which sets
/// `readiness` and finishes the message in hand before returning.
pub async fn run(
    bus: &Bus,
    readiness: Readiness,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), BusError> {
    let resolver = Arc::new(Resolver::new(bus).await?);
    let watcher = tokio::spawn(follow_config(resolver.store.clone(), {
        let resolver = resolver.clone();
        move |change| {
            let resolver = resolver.clone();
            async move { resolver.on_config_watch(change).await }
        }
    }));
    let result = consume(
        bus,
        resolver,
        ConsumeSettings::new(Stage::Resolve),
        readiness,
        shutdown,
    )
    .await;
    watcher.abort();
    tracing::info!("resolver stopped");
    result
}

impl Handler for Resolver {
    type Item = Envelope;

    fn span(&self, envelope: &Envelope, delivery: &Delivery) -> tracing::Span {
        tracing::info_span!("resolve", event = %envelope.id, attempt = delivery.attempt)
    }

    async fn handle(&self, envelope: Envelope, delivery: Delivery) -> Disposition {
        match self.handle_tags(&envelope, delivery.stream_sequence).await {
            Ok(_) => Disposition::Done,
            Err(e) => {
                tracing::warn!(error = %e, "evaluation failed; the event will be redelivered");
                Disposition::Retry(Duration::from_secs(1))
            }
        }
    }
}

impl Resolver {
    /// Connects to the buckets and loads the current configuration.
    pub async fn new(bus: &Bus) -> Result<Self, BusError> {
        let store = bus.config_store().await?;
        let resolver = Resolver {
            bus: bus.clone(),
            state: CasBucket::new(
                bus.bucket(names::POLICY_STATE_BUCKET).await?,
                names::POLICY_STATE_BUCKET,
            ),
            store: store.clone(),
            config: RwLock::new(ConfigIndex::default()),
            policies: PolicyCache::default(),
            failures: Failures::new(bus, &store, Stage::Resolve),
        };
        {
            let mut config = resolver.config.write().await;
            for object in store.list(None).await? {
                config.apply(&ConfigChange::Applied(Box::new(object)));
            }
        }
        Ok(resolver)
    }

    /// Evaluates every policy of the repository a `TagsDiscovered` is about,
    /// given the event's stream sequence.
    pub async fn handle_tags(
        &self,
        envelope: &Envelope,
        stream_sequence: u64,
    ) -> Result<Vec<(ObjectKey, Outcome)>, BusError> {
        let Event::TagsDiscovered(discovered) = &envelope.payload else {
            return Ok(Vec::new());
        };
        let repository = ObjectKey::new(
            Kind::ImageRepository,
            &discovered.repository.namespace,
            &discovered.repository.name,
        );
        let policies = self.config.read().await.policies_of(&repository);
        let mut outcomes = Vec::new();
        for (key, policy) in policies {
            let outcome = self
                .evaluate(
                    &key,
                    &policy,
                    discovered,
                    stream_sequence,
                    envelope,
                    ResolveCause::TagsChanged,
                )
                .await?;
            tracing::debug!(policy = %key, ?outcome, "evaluated");
            let label = match &outcome {
                Outcome::Moved(_) => "moved",
                Outcome::Failed(_) => "failed",
                _ => "unchanged",
            };
            metrics().resolutions.add(1, &attribute("outcome", label));
            outcomes.push((key, outcome));
        }
        Ok(outcomes)
    }

    /// Applies one configuration change and re-evaluates what it affects.
    async fn on_config_watch(&self, change: ConfigChange) {
        self.config.write().await.apply(&change);
        if let Err(e) = self.on_config_change(&change).await {
            tracing::warn!(error = %e, "re-evaluation after a configuration change failed");
        }
    }

    async fn on_config_change(&self, change: &ConfigChange) -> Result<(), BusError> {
        let policies = match change {
            ConfigChange::Applied(object) => match object.as_ref() {
                Object::ImagePolicy(p) => vec![(object.key(), p.clone())],
                Object::ImageRepository(_) => self.config.read().await.policies_of(&object.key()),
                // Its labels may grant or withdraw cross-namespace access.
                Object::Namespace(n) => {
                    let config = self.config.read().await;
                    config
                        .policies
                        .iter()
                        .filter(|(key, _)| key.namespace == n.metadata.name)
                        .map(|(key, policy)| (key.clone(), policy.clone()))
                        .collect()
                }
                _ => Vec::new(),
            },
            ConfigChange::Deleted(key) if key.kind == Kind::ImagePolicy => {
                self.state.purge(&key.bucket_key()).await?;
                return Ok(());
            }
            ConfigChange::Deleted(_) => Vec::new(),
        };
        for (key, policy) in policies {
            let repository = policy.repository_key();
            let subject = names::tags_subject(&repository.namespace, &repository.name);
            if let Some((envelope, sequence)) = self.bus.last_event(&subject).await? {
                if let Event::TagsDiscovered(discovered) = &envelope.payload {
                    let outcome = self
                        .evaluate(
                            &key,
                            &policy,
                            discovered,
                            sequence,
                            &envelope,
                            ResolveCause::PolicyChanged,
                        )
                        .await?;
                    // A changed object (`tagrelay reconcile image policy`
                    // among others) is answered with a fresh status even
                    // when the selection stands.
                    if matches!(outcome, Outcome::AlreadyCurrent | Outcome::Unchanged) {
                        if let Some(state) = self
                            .state
                            .read::<PolicySelection>(&key.bucket_key())
                            .await?
                            .0
                        {
                            self.ready(&key, &state, None).await;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Brings one policy's selection up to date with one tag set.
    #[tracing::instrument(name = "evaluate policy", skip_all, fields(policy = %key, sequence = source_sequence))]
    async fn evaluate(
        &self,
        key: &ObjectKey,
        policy: &ImagePolicy,
        discovered: &TagsDiscovered,
        source_sequence: u64,
        cause: &Envelope,
        why: ResolveCause,
    ) -> Result<Outcome, BusError> {
        if policy.spec.suspend {
            // Nothing is recorded, so resuming (a configuration change)
            // evaluates the repository's newest tag set at once.
            return Ok(Outcome::Suspended);
        }
        let tags = match self.bus.tag_list(discovered).await? {
            Some(tags) if !tags.is_empty() => tags,
            _ => return Ok(Outcome::IgnoredEmpty),
        };
        let (exclusion_list, access) = {
            let config = self.config.read().await;
            let repository = config.repositories.get(&policy.repository_key());
            (
                repository.and_then(|r| r.spec.exclusion_list.clone()),
                repository
                    .map(|r| r.admits(&key.namespace, &config.namespace_labels(&key.namespace))),
            )
        };
        if let Some(Err(denied)) = access {
            return self
                .fail(key, cause, FailureReason::InvalidSpec, denied)
                .await;
        }
        let reflect = reflects_digest(&policy.spec);
        let bucket_key = key.bucket_key();
        for _ in 0..MAX_RACES {
            let (current, revision) = self.state.read::<PolicySelection>(&bucket_key).await?;
            let rules = match policy_rules(&policy.metadata, &policy.spec, exclusion_list.clone()) {
                Ok(rules) => rules,
                Err(e) => {
                    let error = e.to_string();
                    return self
                        .fail(key, cause, FailureReason::InvalidSpec, error)
                        .await;
                }
            };
            let hash = rules_hash(&rules, reflect);
            if let Some(state) = &current {
                let seen = state.source_sequence > source_sequence
                    || (state.source_sequence == source_sequence && state.rules_hash == hash);
                if seen {
                    return Ok(Outcome::AlreadyCurrent);
                }
            }
            let new = match self
                .policies
                .select_image(&rules, reflect, &tags, &discovered.images)
            {
                Ok(new) => new,
                Err(e) => return self.fail(key, cause, e.reason(), e.to_string()).await,
            };
            let previous = current.as_ref().map(|s| s.selected.clone());
            let mut next = PolicySelection {
                image: discovered.image.clone(),
                selected: new.clone(),
                source_sequence,
                rules_hash: hash,
                resolved_sequence: current.as_ref().map_or(0, |s| s.resolved_sequence),
                updated_at: Utc::now(),
            };
            if previous.as_ref() == Some(&new) {
                if self.state.write(&bucket_key, &next, revision).await? {
                    self.ready(key, &next, None).await;
                    return Ok(Outcome::Unchanged);
                }
                continue;
            }
            let envelope = Envelope::caused_by(
                cause,
                self.bus.source(),
                Event::PolicyResolved(PolicyResolved {
                    policy: ObjectRef::new(&key.namespace, &key.name),
                    repository: discovered.repository.clone(),
                    image: discovered.image.clone(),
                    previous,
                    current: new.clone(),
                    cause: why.clone(),
                    tag_set_digest: discovered.tag_set_digest.clone(),
                }),
            );
            if self.superseded(discovered, source_sequence).await? {
                return Ok(Outcome::Superseded);
            }
            match self
                .bus
                .publish_after(&envelope, next.resolved_sequence)
                .await
            {
                Ok(published) => next.resolved_sequence = published.sequence,
                Err(PublishFailure::Conflict) => {
                    self.repair_from_log(key, &bucket_key, current.as_ref(), revision)
                        .await?;
                    continue;
                }
                Err(PublishFailure::Bus(e)) => return Err(e),
            }
            if self.state.write(&bucket_key, &next, revision).await? {
                let before = current.as_ref().map(|s| &s.selected);
                self.ready(key, &next, before).await;
                tracing::info!(policy = %key, tag = %new, "policy moved");
                return Ok(Outcome::Moved(new));
            }
        }
        Err(BusError::Bucket {
            bucket: names::POLICY_STATE_BUCKET.into(),
            key: bucket_key,
            reason: format!("lost {MAX_RACES} races in a row"),
        })
    }

    /// Whether a newer tag set than `source_sequence` has been published for
    /// the repository. Moves are only ever computed from the newest tag set,
    /// so an event delivered late (another instance, a redelivery) can never
    /// move a policy back, even while the state is being repaired.
    async fn superseded(
        &self,
        discovered: &TagsDiscovered,
        source_sequence: u64,
    ) -> Result<bool, BusError> {
        let subject = names::tags_subject(
            &discovered.repository.namespace,
            &discovered.repository.name,
        );
        Ok(self
            .bus
            .last_event(&subject)
            .await?
            .is_some_and(|(_, latest)| latest > source_sequence))
    }

    /// Another instance announced a move but may have died before writing
    /// the state: take the announced selection from the log, so the next
    /// round computes from the true predecessor.
    async fn repair_from_log(
        &self,
        key: &ObjectKey,
        bucket_key: &str,
        current: Option<&PolicySelection>,
        revision: u64,
    ) -> Result<(), BusError> {
        let subject = names::policy_subject(&key.namespace, &key.name);
        let Some((envelope, sequence)) = self.bus.last_event(&subject).await? else {
            return Ok(());
        };
        let Event::PolicyResolved(resolved) = envelope.payload else {
            return Ok(());
        };
        if current.is_some_and(|s| s.resolved_sequence >= sequence) {
            return Ok(());
        }
        let repaired = PolicySelection {
            image: resolved.image,
            selected: resolved.current,
            source_sequence: current.map_or(0, |s| s.source_sequence),
            rules_hash: String::new(),
            resolved_sequence: sequence,
            updated_at: Utc::now(),
        };
        self.state.write(bucket_key, &repaired, revision).await?;
        Ok(())
    }

    /// Writes the ready status with Flux's message: `resolved to` the tag,
    /// or `updated from` the `previous` one when the selection moved.
    async fn ready(
        &self,
        key: &ObjectKey,
        state: &PolicySelection,
        previous: Option<&SelectedImage>,
    ) {
        let message = match previous {
            Some(previous) if previous.tag != state.selected.tag => format!(
                "Latest image tag for '{}' updated from {} to {}",
                state.image, previous.tag, state.selected.tag
            ),
            _ => format!(
                "Latest image tag for '{}' resolved to {}",
                state.image, state.selected.tag
            ),
        };
        let status = ObjectStatus {
            ready: true,
            message,
            updated_at: Some(Utc::now()),
            latest_image: Some(state.reference()),
            ..Default::default()
        };
        self.store.record_status(key, &status).await;
    }

    async fn fail(
        &self,
        key: &ObjectKey,
        cause: &Envelope,
        reason: FailureReason,
        error: String,
    ) -> Result<Outcome, BusError> {
        let failed = Failed::permanent(reason, error);
        self.failures
            .record(key, Some(cause), &failed, 1, |_| {})
            .await?;
        Ok(Outcome::Failed(failed.error))
    }
}
