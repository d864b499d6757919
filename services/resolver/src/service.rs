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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
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
use tagrelay_proto::state::{HeldBack, PolicySelection};
use tagrelay_proto::status::ObjectStatus;
use tagrelay_proto::telemetry::{attribute, metrics};
use tokio::sync::{Notify, RwLock};

use tagrelay_policy::age::{Ages, FirstSeen};
use tagrelay_policy::rules::{policy_rules, reflects_digest, rules_hash, GatedImage, PolicyCache};

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
    /// Every tag the policy would take is younger than its release-age
    /// gate and it has selected nothing yet: it waits for one to come of age.
    Waiting(HeldBack),
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
    /// First sightings per ImageRepository, folded from its tag sets in the
    /// log up to the stream sequence kept beside them.
    first_seen: Mutex<HashMap<ObjectKey, (u64, FirstSeen)>>,
    /// Policies to evaluate again when a tag held back comes of age.
    recheck: Mutex<BTreeMap<ObjectKey, DateTime<Utc>>>,
    /// Wakes the recheck timer when an earlier time is scheduled.
    recheck_added: Notify,
}

/// How many `TagsDiscovered` one resolver evaluates at once. An evaluation
/// is a few round trips to NATS, so one at a time leaves a busy server's
/// latency as the resolver's throughput (a 10,000-repository cold start fell
/// a minute behind its scans); several in hand are as safe as several
/// instances, since every write is conditional (a selection by
/// compare-and-set, a move on the subject's last sequence) and an older tag
/// set is superseded by a newer one.
const EVALUATIONS_IN_HAND: usize = 4;

/// Runs the resolver until `shutdown` resolves: follows the configuration
/// and consumes `TagsDiscovered` on the shared durable consumer through
/// the one consume loop (`tagrelay_proto::consume`), which sets
/// `readiness` and finishes the messages in hand before returning.
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
    let timer = tokio::spawn({
        let resolver = resolver.clone();
        async move { resolver.recheck_when_of_age().await }
    });
    let result = consume(
        bus,
        resolver,
        ConsumeSettings::new(Stage::Resolve).with_concurrency(EVALUATIONS_IN_HAND),
        readiness,
        shutdown,
    )
    .await;
    watcher.abort();
    timer.abort();
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
            first_seen: Mutex::new(HashMap::new()),
            recheck: Mutex::new(BTreeMap::new()),
            recheck_added: Notify::new(),
        };
        {
            let mut config = resolver.config.write().await;
            for object in store.list(None).await? {
                config.apply(&ConfigChange::Applied(Box::new(object)));
            }
            // A gate's timer does not survive a restart: every gated policy
            // is looked at once at start-up, which schedules it again.
            let now = Utc::now();
            let mut recheck = resolver.recheck_times();
            for (key, policy) in &config.policies {
                if matches!(policy.age_gate(), Ok(Some(_))) {
                    recheck.insert(key.clone(), now);
                }
            }
        }
        Ok(resolver)
    }

    /// Evaluates gated policies again as their held-back tags come of age,
    /// for the life of the resolver. Every instance runs it; the state's
    /// compare-and-set and the conditional publication make one move of it.
    async fn recheck_when_of_age(&self) {
        loop {
            let next = self.recheck_times().values().min().copied();
            let wait = next.map_or(Duration::from_secs(60), |at| {
                (at - Utc::now()).to_std().unwrap_or(Duration::ZERO)
            });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.recheck_added.notified() => continue,
            }
            let now = Utc::now();
            let due: Vec<ObjectKey> = {
                let mut recheck = self.recheck_times();
                let due: Vec<ObjectKey> = recheck
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in &due {
                    recheck.remove(key);
                }
                due
            };
            for key in due {
                let policy = self.config.read().await.policies.get(&key).cloned();
                let Some(policy) = policy else { continue };
                if let Err(e) = self
                    .evaluate_latest(&key, &policy, ResolveCause::TagsChanged)
                    .await
                {
                    tracing::warn!(policy = %key, error = %e, "re-evaluation of a gated policy failed; trying again shortly");
                    self.schedule(&key, Utc::now() + chrono::Duration::seconds(5));
                }
            }
        }
    }

    fn recheck_times(&self) -> MutexGuard<'_, BTreeMap<ObjectKey, DateTime<Utc>>> {
        // A panic elsewhere while holding the lock leaves a valid map.
        self.recheck.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Evaluates `key` again at `at` (the earlier time wins).
    fn schedule(&self, key: &ObjectKey, at: DateTime<Utc>) {
        let mut recheck = self.recheck_times();
        let slot = recheck.entry(key.clone()).or_insert(at);
        *slot = (*slot).min(at);
        drop(recheck);
        self.recheck_added.notify_one();
    }

    /// First sightings of `repository`'s tags as of the tag set at
    /// `source_sequence`, folded from the repository's tag sets in the log
    /// (read again only when a newer set than the one folded is asked for).
    async fn first_seen(
        &self,
        repository: &ObjectKey,
        source_sequence: u64,
    ) -> Result<FirstSeen, BusError> {
        if let Some((through, seen)) = self.first_seen_cache().get(repository) {
            if *through >= source_sequence {
                return Ok(seen.clone());
            }
        }
        let subject = names::tags_subject(&repository.namespace, &repository.name);
        let log = self.bus.read_log(&subject, None, false).await?;
        let mut log = std::pin::pin!(log);
        let mut seen = FirstSeen::default();
        let mut through = 0;
        while let Some(logged) = log.next().await {
            through = logged.sequence;
            let Ok(envelope) = logged.envelope else {
                continue;
            };
            let Event::TagsDiscovered(discovered) = &envelope.payload else {
                continue;
            };
            if let Some(tags) = self.bus.tag_list(discovered).await? {
                seen.observe(&tags, &discovered.images, discovered.scanned_at);
            }
        }
        self.first_seen_cache()
            .insert(repository.clone(), (through, seen.clone()));
        Ok(seen)
    }

    fn first_seen_cache(&self) -> MutexGuard<'_, HashMap<ObjectKey, (u64, FirstSeen)>> {
        self.first_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
            outcomes.push((key, counted(outcome)));
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
            let outcome = self
                .evaluate_latest(&key, &policy, ResolveCause::PolicyChanged)
                .await?;
            // A changed object (`tagrelay reconcile image policy` among
            // others) is answered with a fresh status even when the
            // selection stands.
            if matches!(outcome, Some(Outcome::AlreadyCurrent | Outcome::Unchanged)) {
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
        Ok(())
    }

    /// Evaluates one policy against its repository's newest tag set, if
    /// the repository has one.
    async fn evaluate_latest(
        &self,
        key: &ObjectKey,
        policy: &ImagePolicy,
        why: ResolveCause,
    ) -> Result<Option<Outcome>, BusError> {
        let repository = policy.repository_key();
        let subject = names::tags_subject(&repository.namespace, &repository.name);
        let Some((envelope, sequence)) = self.bus.last_event(&subject).await? else {
            return Ok(None);
        };
        let Event::TagsDiscovered(discovered) = &envelope.payload else {
            return Ok(None);
        };
        let outcome = self
            .evaluate(key, policy, discovered, sequence, &envelope, why)
            .await?;
        Ok(Some(counted(outcome)))
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
        let gate = match policy.age_gate() {
            Ok(gate) => gate,
            Err(errors) => {
                let error = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                return self
                    .fail(key, cause, FailureReason::InvalidSpec, error)
                    .await;
            }
        };
        let first_seen = match gate {
            Some(_) => Some(
                self.first_seen(&policy.repository_key(), source_sequence)
                    .await?,
            ),
            None => None,
        };
        let bucket_key = key.bucket_key();
        for _ in 0..MAX_RACES {
            let now = Utc::now();
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
            let hash = match gate {
                Some(gate) => format!("{}|{gate:?}", rules_hash(&rules, reflect)),
                None => rules_hash(&rules, reflect),
            };
            if let Some(state) = &current {
                let seen = state.source_sequence > source_sequence
                    || (state.source_sequence == source_sequence
                        && state.rules_hash == hash
                        && state.recheck_at.is_none_or(|at| at > now));
                if seen {
                    if let Some(at) = state.recheck_at {
                        self.schedule(key, at);
                    }
                    return Ok(Outcome::AlreadyCurrent);
                }
            }
            let decision = match (gate, &first_seen) {
                (Some(gate), Some(first_seen)) => {
                    let ages = Ages {
                        gate,
                        first_seen,
                        images: &discovered.images,
                        selected: current.as_ref().map(|s| s.selected.tag.as_str()),
                        now,
                    };
                    self.policies.select_image_gated(
                        &rules,
                        reflect,
                        &tags,
                        &discovered.images,
                        &ages,
                    )
                }
                _ => self
                    .policies
                    .select_image(&rules, reflect, &tags, &discovered.images)
                    .map(|selected| GatedImage {
                        selected: Some(selected),
                        held_back: None,
                        recheck_at: None,
                    }),
            };
            let decision = match decision {
                Ok(decision) => decision,
                Err(e) => return self.fail(key, cause, e.reason(), e.to_string()).await,
            };
            if let Some(at) = decision.recheck_at {
                self.schedule(key, at);
            }
            let previous = current.as_ref().map(|s| s.selected.clone());
            let Some(new) = decision.selected.or_else(|| previous.clone()) else {
                // Nothing old enough: the gate holds back what the policy
                // would take (never absent, since the policy chose one).
                let Some(held_back) = decision.held_back else {
                    return Ok(Outcome::Unchanged);
                };
                self.waiting(key, &discovered.image, &held_back).await;
                return Ok(Outcome::Waiting(held_back));
            };
            let mut next = PolicySelection {
                image: discovered.image.clone(),
                selected: new.clone(),
                source_sequence,
                rules_hash: hash,
                resolved_sequence: current.as_ref().map_or(0, |s| s.resolved_sequence),
                updated_at: Utc::now(),
                held_back: decision.held_back,
                recheck_at: decision.recheck_at,
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
            held_back: None,
            recheck_at: None,
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
        let message = match &state.held_back {
            Some(held_back) => format!("{message}; {}", held_back_words(held_back)),
            None => message,
        };
        let status = ObjectStatus {
            ready: true,
            message,
            updated_at: Some(Utc::now()),
            latest_image: Some(state.reference()),
            held_back: state.held_back.clone(),
            ..Default::default()
        };
        self.store.record_status(key, &status).await;
    }

    /// Writes the status of a gated policy that has selected nothing yet.
    async fn waiting(&self, key: &ObjectKey, image: &str, held_back: &HeldBack) {
        let status = ObjectStatus {
            ready: false,
            message: format!(
                "No image tag for '{image}' is old enough yet; {}",
                held_back_words(held_back)
            ),
            updated_at: Some(Utc::now()),
            held_back: Some(held_back.clone()),
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

/// `1.2.0 is held back until 2026-12-04T20:00:00Z by its minimum age`.
/// Counts an evaluation in `tagrelay_resolutions_total`, whatever asked
/// for it (a scan, a changed policy, a release coming of age).
fn counted(outcome: Outcome) -> Outcome {
    let label = match &outcome {
        Outcome::Moved(_) => "moved",
        Outcome::Failed(_) => "failed",
        _ => "unchanged",
    };
    metrics().resolutions.add(1, &attribute("outcome", label));
    outcome
}

fn held_back_words(held_back: &HeldBack) -> String {
    match held_back.until {
        Some(until) => format!(
            "{} is held back until {} by its minimum age",
            held_back.image,
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => format!(
            "{} is held back by its minimum age: its image has no creation time",
            held_back.image
        ),
    }
}
