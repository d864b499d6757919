//! The scanner service: schedules scans, takes scan requests from the work
//! queue, scans, and publishes `TagsDiscovered` / `ScanFailed` and status.
//!
//! **Once per interval, however many instances.** Every instance runs the
//! same scheduler: for each ImageRepository it computes the current interval
//! slot (phase-shifted per repository, see [`tagrelay_proto::scan`]) and puts
//! a request for it on the `TAGRELAY_SCAN_REQUESTS` work queue. Requests for
//! the same slot carry the same `Nats-Msg-Id`, so within the duplicate window
//! the queue holds one; one instance takes it. Because instances may start
//! late in a slot (outside the window), the scan itself then claims the slot
//! in the repository's record in `tagrelay-tag-sets` with compare-and-set: a
//! slot already claimed is skipped. A redelivered request (its scanner died
//! or the scan failed and will be retried) scans again.
//!
//! **Only changes are published.** The previous tag set is the last
//! `TagsDiscovered` on the repository's subject (the log is the state); an
//! equal set publishes nothing. A new set is published conditionally on the
//! subject's last sequence *read before listing*, so two instances scanning
//! at once publish one change, and a listing older than the last published
//! one never replaces it (the repository is listed again instead). Its
//! `Nats-Msg-Id` is [`Envelope::msg_id`] (repository, previous and new
//! digest). A set too large for a message goes to the tag-lists object
//! store ([`Bus::put_tag_list`]).
//!
//! **A failed scan keeps the last good set**: it publishes `ScanFailed` and
//! a not-ready status, never an empty list. Transient failures are retried
//! by redelivery with back-off, up to [`ScannerSettings::max_attempts`].

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tagrelay_proto::bus::{
    tags_json_size, Bus, BusError, CasBucket, ConfigChange, ConfigIndex, ConfigStore,
    PublishFailure, INLINE_TAGS_MAX_BYTES,
};
use tagrelay_proto::config::{
    parse_go_duration, AgeClock, ImagePolicy, ImageRepository, Kind, Object, ObjectKey,
    FLUX_V1_FILTER_ANNOTATION,
};
use tagrelay_proto::consume::{
    consume, follow_config, ConsumeSettings, Delivery, Disposition, Failed, Failures, Handler,
};
use tagrelay_proto::event::{
    tag_set_digest, Envelope, Event, FailureReason, ImageMetadata, ObjectRef, ScanTrigger,
    TagsDiscovered,
};
use tagrelay_proto::names::{self, Stage};
use tagrelay_proto::reference::Repository;
use tagrelay_proto::runtime::Readiness;
use tagrelay_proto::scan::{slot_offset, ScanRequest};
use tagrelay_proto::state::PolicySelection;
use tagrelay_proto::status::ObjectStatus;
use tokio::sync::RwLock;

use crate::backoff::backoff_delay;
use crate::credentials::{Credentials, DockerCredentials, SecretsDir, TlsMaterial};
use crate::helper::CredentialHelpers;
use crate::registry::{Registries, RegistryError, RegistrySettings, Target};
use crate::schedule::{Plan, ScanSchedule};
use crate::tags::{compile_exclusions, filter_tags, latest_tags};
use tagrelay_proto::reference::cloud::CloudProvider;

/// How a scanner instance behaves.
#[derive(Debug, Clone)]
pub struct ScannerSettings {
    /// Where Secrets named by `secretRef` / `certSecretRef` are mounted.
    pub secrets_dir: PathBuf,
    /// Scans run at once by this instance.
    pub concurrency: usize,
    /// How often the scheduler looks for due repositories.
    pub tick: Duration,
    /// Deliveries of one request before a transiently failing scan is given
    /// up until the next interval.
    pub max_attempts: u32,
    /// Registry behaviour (budget, retries, timeouts).
    pub registry: RegistrySettings,
    /// Concurrent metadata lookups within one scan.
    pub metadata_concurrency: usize,
    /// Docker credential helpers a config's `credHelpers` / `credsStore`
    /// name.
    pub credential_helpers: CredentialHelpers,
}

impl Default for ScannerSettings {
    fn default() -> Self {
        Self {
            secrets_dir: PathBuf::from("/var/run/tagrelay/secrets"),
            concurrency: 8,
            tick: Duration::from_secs(1),
            max_attempts: 5,
            registry: RegistrySettings::default(),
            metadata_concurrency: 4,
            credential_helpers: CredentialHelpers::default(),
        }
    }
}

/// The longest scan when the repository sets no `timeout` and its interval
/// is longer.
const DEFAULT_SCAN_TIMEOUT: Duration = Duration::from_secs(300);
/// Conditional publications lost in a row before giving up on a scan.
const MAX_RACES: usize = 8;

/// The scanner's record per repository in `tagrelay-tag-sets`: which
/// interval slot was last claimed and with which spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScanRecord {
    /// The last interval slot claimed by a scheduled scan.
    pub slot: u64,
    /// Hash of the spec the repository was last scanned with.
    pub spec_hash: String,
    /// When the claim was made.
    pub claimed_at: Option<DateTime<Utc>>,
    /// The instance that made it.
    pub claimed_by: String,
}

/// What handling one request did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No such ImageRepository (deleted since).
    UnknownRepository,
    /// The repository is suspended.
    Suspended,
    /// Its slot was already scanned by an instance.
    AlreadyScanned,
    /// Scanned; the tag set is the one already published.
    Unchanged {
        /// How many tags.
        tags: usize,
    },
    /// Scanned; `TagsDiscovered` published.
    Changed {
        /// How many tags.
        tags: usize,
    },
    /// The scan failed; `ScanFailed` published.
    Failed {
        /// The kind of failure.
        reason: FailureReason,
        /// The error.
        error: String,
        /// Whether the request will be redelivered.
        will_retry: bool,
        /// How long to wait before the retry.
        retry_in: Duration,
    },
}

/// What the policies of a repository need besides its tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct MetadataNeeds {
    /// Digests (a policy reflects them, or orders by creation time).
    digests: bool,
    /// Creation times (a policy orders by them).
    created: bool,
    /// Policies with `digestReflectionPolicy: Always` or a release-age
    /// gate: the digest of the tag each selects (and of the tag a gate
    /// holds back) is looked up again at every scan, so a tag pushed again
    /// to a new image is noticed (and its age starts again).
    always: Vec<ObjectKey>,
}

/// What the policies of `repository` need.
fn metadata_needs(config: &ConfigIndex, repository: &ObjectKey) -> MetadataNeeds {
    let mut needs = MetadataNeeds::default();
    for (key, policy) in config.policies_of(repository) {
        let reflection = policy.spec.digest_reflection_policy.as_deref();
        needs.digests |= matches!(reflection, Some("IfNotPresent" | "Always"));
        let gate = policy.age_gate().ok().flatten();
        needs.digests |= gate.is_some();
        needs.created |= gate.is_some_and(|g| g.clock == AgeClock::Created);
        if reflection == Some("Always") || gate.is_some() {
            needs.always.push(key);
        }
        needs.created |= match policy.metadata.annotations.get(FLUX_V1_FILTER_ANNOTATION) {
            Some(filter) => !filter.trim().starts_with("semver:"),
            None => policy.spec.policy.is_empty(),
        };
    }
    needs.digests |= needs.created;
    needs
}

/// One scanner instance.
pub struct Scanner {
    bus: Bus,
    store: ConfigStore,
    records: CasBucket,
    selections: CasBucket,
    metadata: kv::Store,
    registries: Arc<Registries>,
    secrets: SecretsDir,
    settings: ScannerSettings,
    config: RwLock<ConfigIndex>,
    schedule: std::sync::Mutex<ScanSchedule>,
    readiness: Readiness,
    failures: Failures,
}

/// Runs a scanner until `shutdown` resolves: configuration watch,
/// scheduler and the scan-request consumer (the one consume loop of
/// `tagrelay_proto::consume`: up to `concurrency` scans at once, every scan
/// in hand finished before returning). The scanner is built first so that
/// the webhook server can share it.
pub async fn run_scanner(
    scanner: Arc<Scanner>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BusError> {
    let watcher = tokio::spawn(follow_config(scanner.store.clone(), {
        let scanner = scanner.clone();
        move |change| {
            let scanner = scanner.clone();
            async move { scanner.on_config_change(change).await }
        }
    }));
    let scheduler = tokio::spawn(schedule(scanner.clone()));
    let settings = ConsumeSettings::new(Stage::Scan).with_concurrency(scanner.settings.concurrency);
    let bus = scanner.bus.clone();
    let readiness = scanner.readiness.clone();
    let result = consume(&bus, scanner, settings, readiness, shutdown).await;
    watcher.abort();
    scheduler.abort();
    tracing::info!("scanner stopped");
    result
}

impl Handler for Scanner {
    type Item = ScanRequest;

    fn span(&self, request: &ScanRequest, delivery: &Delivery) -> tracing::Span {
        tracing::info_span!("scan", repository = %request.repository, trigger = ?request.trigger, attempt = delivery.attempt)
    }

    async fn handle(&self, request: ScanRequest, delivery: Delivery) -> Disposition {
        let started = std::time::Instant::now();
        let result = self.handle_request(&request, delivery.attempt).await;
        record_scan(&request, &result, started.elapsed());
        match result {
            Ok(Outcome::Failed {
                will_retry: true,
                retry_in,
                ..
            }) => Disposition::Retry(retry_in),
            Ok(outcome) => {
                tracing::debug!(?outcome, "scan request handled");
                Disposition::Done
            }
            Err(e) => {
                tracing::warn!(error = %e, "scan request not handled; it will be redelivered");
                Disposition::Retry(Duration::from_secs(1))
            }
        }
    }
}

/// Puts a request on the queue for every repository whose current slot (or
/// spec) this instance has not asked for yet: those the schedule says are
/// due, so a tick over an idle fleet costs nothing per repository.
async fn schedule(scanner: Arc<Scanner>) {
    let mut tick = tokio::time::interval(scanner.settings.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let due = scanner.schedule().due(now_secs());
        for due in due {
            let object = ObjectRef::new(&due.repository.namespace, &due.repository.name);
            let mut request = ScanRequest::scheduled(object, due.slot);
            request.dedup = due.dedup.clone();
            match scanner.bus.request_scan(&request).await {
                Ok(_) => scanner.schedule().asked(&due),
                Err(e) => {
                    tracing::warn!(error = %e, repository = %due.repository, "cannot queue a scheduled scan")
                }
            }
        }
    }
}

fn now_secs() -> u64 {
    Utc::now().timestamp().max(0) as u64
}

/// How `key` is to be scheduled under `config`: `None` when it is gone or
/// suspended.
fn scan_plan(config: &ConfigIndex, key: &ObjectKey) -> Option<Plan> {
    let repository = config.repositories.get(key)?;
    if repository.spec.suspend {
        return None;
    }
    let interval = scan_interval_secs(config, key, repository);
    let object = ObjectRef::new(&key.namespace, &key.name);
    Some(Plan {
        interval,
        offset: slot_offset(&object, interval),
        hash: scan_hash(repository, interval),
    })
}

/// The repositories whose schedule `change` may move: the repository
/// itself, or the ones a policy reads (before and after), since a policy
/// reflecting digests `Always` shortens its repository's interval.
fn scheduled_by(config: &ConfigIndex, change: &ConfigChange) -> Vec<ObjectKey> {
    let (key, applied) = match change {
        ConfigChange::Applied(object) => (object.key(), Some(object.as_ref())),
        ConfigChange::Deleted(key) => (key.clone(), None),
    };
    match key.kind {
        Kind::ImageRepository => vec![key],
        Kind::ImagePolicy => {
            let before = config.policies.get(&key).map(ImagePolicy::repository_key);
            let after = match applied {
                Some(Object::ImagePolicy(p)) => Some(p.repository_key()),
                _ => None,
            };
            before.into_iter().chain(after).collect()
        }
        _ => Vec::new(),
    }
}

/// How often `repository` is scanned: its `interval`, or the shorter
/// `interval` of an ImagePolicy that reflects digests `Always`, whose
/// selected tag's digest is looked up again at every scan.
fn scan_interval_secs(config: &ConfigIndex, key: &ObjectKey, repository: &ImageRepository) -> u64 {
    config
        .policies_of(key)
        .iter()
        .filter(|(_, p)| p.spec.digest_reflection_policy.as_deref() == Some("Always"))
        .filter_map(|(_, p)| p.spec.interval.as_deref())
        .filter_map(|interval| parse_go_duration(interval).ok())
        .map(|d| d.as_secs().max(1))
        .fold(interval_secs(repository), u64::min)
}

/// What a scheduled scan is claimed under: the spec and the scan interval,
/// so a change of either starts the slots anew.
fn scan_hash(repository: &ImageRepository, interval: u64) -> String {
    format!("{}-{interval}", spec_hash(repository))
}

fn interval_secs(repository: &ImageRepository) -> u64 {
    parse_go_duration(&repository.spec.interval)
        .map(|d| d.as_secs().max(1))
        .unwrap_or(300)
}

fn spec_hash(repository: &ImageRepository) -> String {
    let bytes = serde_json::to_vec(&repository.spec).unwrap_or_default();
    format!("{:x}", Sha256::digest(&bytes))[..16].to_string()
}

impl Scanner {
    /// Connects to the buckets and loads the current configuration.
    pub async fn new(bus: &Bus, settings: ScannerSettings) -> Result<Self, BusError> {
        let store = bus.config_store().await?;
        let scanner = Scanner {
            bus: bus.clone(),
            records: CasBucket::new(
                bus.bucket(names::TAG_SETS_BUCKET).await?,
                names::TAG_SETS_BUCKET,
            ),
            selections: CasBucket::new(
                bus.bucket(names::POLICY_STATE_BUCKET).await?,
                names::POLICY_STATE_BUCKET,
            ),
            metadata: bus.bucket(names::IMAGE_METADATA_BUCKET).await?,
            registries: Arc::new(Registries::new(settings.registry.clone())),
            secrets: SecretsDir::new(settings.secrets_dir.clone()),
            store: store.clone(),
            settings,
            config: RwLock::new(ConfigIndex::default()),
            schedule: std::sync::Mutex::new(ScanSchedule::default()),
            readiness: Readiness::watching(bus),
            failures: Failures::new(bus, &store, Stage::Scan),
        };
        {
            let mut config = scanner.config.write().await;
            for object in store.list(None).await? {
                config.apply(&ConfigChange::Applied(Box::new(object)));
            }
            let now = now_secs();
            let mut schedule = scanner.schedule();
            for key in config.repositories.keys() {
                schedule.plan(key, scan_plan(&config, key), now);
            }
        }
        Ok(scanner)
    }

    fn schedule(&self) -> std::sync::MutexGuard<'_, ScanSchedule> {
        self.schedule
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The bus this scanner publishes on.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Whether the scanner takes work: its consumer is bound, it is not
    /// shutting down and NATS is connected (`/readyz`).
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Registry requests sent so far by this instance.
    pub fn registry_requests(&self) -> u64 {
        self.registries.requests()
    }

    /// The ImageRepositories a pushed `registry`/`repository` belongs to:
    /// those on that path whose registry is the one named, or every one on
    /// that path when the sender names no registry or none matches it
    /// (senders name hosts as they were addressed, which may differ from
    /// what the configuration says).
    pub async fn repositories_for(
        &self,
        registry: Option<&str>,
        repository: &str,
    ) -> Vec<ObjectRef> {
        let config = self.config.read().await;
        let on_path: Vec<(&ObjectKey, Repository)> = config
            .repositories
            .iter()
            .filter(|(_, r)| !r.spec.suspend)
            .filter_map(|(key, r)| Repository::parse(&r.spec.image).ok().map(|p| (key, p)))
            .filter(|(_, parsed)| parsed.path() == repository)
            .collect();
        let same_registry: Vec<&ObjectKey> = on_path
            .iter()
            .filter(|(_, parsed)| {
                registry.is_some_and(|r| r.eq_ignore_ascii_case(parsed.registry()))
            })
            .map(|(key, _)| *key)
            .collect();
        let chosen: Vec<&ObjectKey> = if same_registry.is_empty() {
            on_path.iter().map(|(key, _)| *key).collect()
        } else {
            same_registry
        };
        chosen
            .into_iter()
            .map(|key| ObjectRef::new(&key.namespace, &key.name))
            .collect()
    }

    /// Applies one configuration change; a deleted repository's scan
    /// record is purged.
    async fn on_config_change(&self, change: ConfigChange) {
        {
            let mut config = self.config.write().await;
            let moved = scheduled_by(&config, &change);
            config.apply(&change);
            let now = now_secs();
            let mut schedule = self.schedule();
            for key in moved {
                schedule.plan(&key, scan_plan(&config, &key), now);
            }
        }
        if let ConfigChange::Deleted(key) = &change {
            if key.kind == Kind::ImageRepository {
                if let Err(e) = self.records.purge(&key.bucket_key()).await {
                    tracing::warn!(error = %e, repository = %key, "cannot forget the scan record");
                }
            }
        }
    }

    /// Handles one scan request, `attempt` being its delivery count.
    pub async fn handle_request(
        &self,
        request: &ScanRequest,
        attempt: u32,
    ) -> Result<Outcome, BusError> {
        let key = ObjectKey::new(
            Kind::ImageRepository,
            &request.repository.namespace,
            &request.repository.name,
        );
        let (repository, needs, interval) = {
            let config = self.config.read().await;
            match config.repositories.get(&key) {
                Some(r) => (
                    r.clone(),
                    metadata_needs(&config, &key),
                    scan_interval_secs(&config, &key, r),
                ),
                None => return Ok(Outcome::UnknownRepository),
            }
        };
        if repository.spec.suspend {
            return Ok(Outcome::Suspended);
        }
        let hash = scan_hash(&repository, interval);
        let Some(trigger) = self.claim(&key, request, &hash, attempt).await? else {
            return Ok(Outcome::AlreadyScanned);
        };
        self.scan(&key, &repository, trigger, needs, attempt).await
    }

    /// Claims the scan in the repository's record; `None` when a scheduled
    /// request's slot was already scanned with this spec. Returns the
    /// trigger to report: `Config` when the spec changed since the last scan.
    async fn claim(
        &self,
        key: &ObjectKey,
        request: &ScanRequest,
        hash: &str,
        attempt: u32,
    ) -> Result<Option<ScanTrigger>, BusError> {
        let bucket_key = key.bucket_key();
        for _ in 0..MAX_RACES {
            let (record, revision) = self.records.read::<ScanRecord>(&bucket_key).await?;
            let spec_changed = record.as_ref().is_none_or(|r| r.spec_hash != hash);
            let slot = request.slot.unwrap_or(0);
            let already = record.as_ref().is_some_and(|r| r.slot >= slot);
            if request.trigger == ScanTrigger::Schedule && attempt == 1 && !spec_changed && already
            {
                return Ok(None);
            }
            // A changed spec (or scan interval) numbers slots anew: keeping
            // the old, larger number would skip every slot of a longer
            // interval.
            let next = ScanRecord {
                slot: match &record {
                    Some(r) if !spec_changed => r.slot.max(slot),
                    _ => slot,
                },
                spec_hash: hash.to_string(),
                claimed_at: Some(Utc::now()),
                claimed_by: self.bus.source().to_string(),
            };
            if self.records.write(&bucket_key, &next, revision).await? {
                let trigger = if spec_changed {
                    ScanTrigger::Config
                } else {
                    request.trigger.clone()
                };
                return Ok(Some(trigger));
            }
        }
        Err(BusError::Bucket {
            bucket: names::TAG_SETS_BUCKET.into(),
            key: bucket_key,
            reason: format!("lost {MAX_RACES} races in a row"),
        })
    }

    /// Lists the repository and publishes its tag set when it changed.
    ///
    /// What is published is read *before* listing, and the new set is
    /// published only if nothing was published since: a listing that
    /// started before the last publication may be older than it (a slow
    /// scan, a redelivered or webhook request running beside a scheduled
    /// one) and must not replace it, or a policy would move back. On such a
    /// race the repository is listed again, so each publication comes from a
    /// listing begun after the one before it was published.
    async fn scan(
        &self,
        key: &ObjectKey,
        repository: &ImageRepository,
        trigger: ScanTrigger,
        needs: MetadataNeeds,
        attempt: u32,
    ) -> Result<Outcome, BusError> {
        let object = ObjectRef::new(&key.namespace, &key.name);
        let target = match self.target(key, repository).await {
            Ok(target) => target,
            Err(problem) => return self.fail(key, Utc::now(), problem, attempt).await,
        };
        let exclusions = match compile_exclusions(&repository.spec.effective_exclusion_list()) {
            Ok(exclusions) => exclusions,
            Err(e) => {
                let problem = Problem::permanent(
                    FailureReason::InvalidSpec,
                    format!("spec.exclusionList: {e}"),
                );
                return self.fail(key, Utc::now(), problem, attempt).await;
            }
        };
        let limit = scan_timeout(repository);
        let subject = names::tags_subject(&key.namespace, &key.name);
        for _ in 0..MAX_RACES {
            let previous = self.bus.last_event(&subject).await?;
            let (previous_event, sequence) = match &previous {
                Some((envelope, sequence)) => match &envelope.payload {
                    Event::TagsDiscovered(d) => (Some(d), *sequence),
                    _ => (None, *sequence),
                },
                None => (None, 0),
            };
            let scanned_at = Utc::now();
            let listing = match within(
                limit,
                RegistryCall::TagList,
                self.registries.list_tags(&target),
            )
            .await
            {
                Ok(listing) => listing,
                Err(problem) => return self.fail(key, scanned_at, problem, attempt).await,
            };
            let filtered = filter_tags(listing.tags, &exclusions);
            if let Some(report) = filtered.invalid_report() {
                tracing::warn!(repository = %key, "{report}");
            }
            let digest = tag_set_digest(filtered.tags.iter().map(String::as_str));
            let recheck = self.selected_by(&needs.always, &filtered.tags).await?;
            let unchanged_set = previous_event.is_some_and(|p| p.tag_set_digest == digest);
            if unchanged_set && recheck.is_empty() {
                self.succeeded(key, scanned_at, &filtered.tags, filtered.invalid_report())
                    .await;
                return Ok(Outcome::Unchanged {
                    tags: filtered.tags.len(),
                });
            }
            let images = if needs.digests {
                let mut known = previous_event.map(|p| p.images.clone()).unwrap_or_default();
                known.retain(|tag, _| !recheck.contains(tag));
                let call = self.images(&target, &filtered.tags, Some(&known), needs.created);
                match within(limit, RegistryCall::ImageMetadata, call).await {
                    Ok(images) => images,
                    Err(problem) => return self.fail(key, scanned_at, problem, attempt).await,
                }
            } else {
                BTreeMap::new()
            };
            if unchanged_set && previous_event.is_some_and(|p| p.images == images) {
                self.succeeded(key, scanned_at, &filtered.tags, filtered.invalid_report())
                    .await;
                return Ok(Outcome::Unchanged {
                    tags: filtered.tags.len(),
                });
            }
            let (tags, tags_ref) = if tags_json_size(&filtered.tags) > INLINE_TAGS_MAX_BYTES {
                (None, Some(self.bus.put_tag_list(&filtered.tags).await?))
            } else {
                (Some(filtered.tags.clone()), None)
            };
            let envelope = Envelope::new(
                self.bus.source(),
                Event::TagsDiscovered(TagsDiscovered {
                    repository: object.clone(),
                    image: repository.spec.image.clone(),
                    tags,
                    tags_ref,
                    tag_count: filtered.tags.len(),
                    tag_set_digest: digest.clone(),
                    previous_tag_set_digest: previous_event.map(|p| p.tag_set_digest.clone()),
                    scanned_at,
                    trigger: trigger.clone(),
                    images,
                }),
            );
            match self.bus.publish_after(&envelope, sequence).await {
                Ok(_) => {
                    tracing::info!(repository = %key, tags = filtered.tags.len(), "tag set changed");
                    self.succeeded(key, scanned_at, &filtered.tags, filtered.invalid_report())
                        .await;
                    return Ok(Outcome::Changed {
                        tags: filtered.tags.len(),
                    });
                }
                Err(PublishFailure::Conflict) => {
                    tracing::debug!(repository = %key, "a tag set was published during the listing; listing again");
                    continue;
                }
                Err(PublishFailure::Bus(e)) => return Err(e),
            }
        }
        Err(BusError::Publish {
            subject,
            reason: format!("lost {MAX_RACES} races in a row"),
        })
    }

    /// The tags among `tags` that the `policies` (those reflecting digests
    /// `Always` or gated by age) currently select or hold back, read from
    /// the resolver's state.
    async fn selected_by(
        &self,
        policies: &[ObjectKey],
        tags: &[String],
    ) -> Result<BTreeSet<String>, BusError> {
        let mut selected = BTreeSet::new();
        for policy in policies {
            let (selection, _) = self
                .selections
                .read::<PolicySelection>(&policy.bucket_key())
                .await?;
            if let Some(selection) = selection {
                let held_back = selection.held_back.map(|h| h.image.tag);
                for tag in std::iter::once(selection.selected.tag).chain(held_back) {
                    if tags.contains(&tag) {
                        selected.insert(tag);
                    }
                }
            }
        }
        Ok(selected)
    }

    /// Digests (and creation times when `needs_created`) of `tags`: those
    /// of tags already in the previous set are taken from its event; new
    /// tags cost a `HEAD` each, and a config fetch only when the digest is
    /// not in the image-metadata cache.
    async fn images(
        &self,
        target: &Target,
        tags: &[String],
        known: Option<&BTreeMap<String, ImageMetadata>>,
        needs_created: bool,
    ) -> Result<BTreeMap<String, ImageMetadata>, RegistryError> {
        let mut images = BTreeMap::new();
        for tag in tags {
            let reusable = known
                .and_then(|k| k.get(tag))
                .filter(|m| m.digest.is_some() && (!needs_created || m.created.is_some()));
            if let Some(metadata) = reusable {
                images.insert(tag.clone(), metadata.clone());
            }
        }
        let missing: Vec<&String> = tags.iter().filter(|t| !images.contains_key(*t)).collect();
        let lookups: Vec<_> = missing
            .into_iter()
            .map(|tag| async move { (tag.clone(), self.image(target, tag, needs_created).await) })
            .collect();
        let lookups = futures::stream::iter(lookups)
            .buffer_unordered(self.settings.metadata_concurrency.max(1));
        let results: Vec<(String, Result<Option<ImageMetadata>, RegistryError>)> =
            lookups.collect().await;
        for (tag, result) in results {
            if let Some(metadata) = result? {
                images.insert(tag, metadata);
            }
        }
        Ok(images)
    }

    async fn image(
        &self,
        target: &Target,
        tag: &str,
        needs_created: bool,
    ) -> Result<Option<ImageMetadata>, RegistryError> {
        let digest = match self.registries.manifest_digest(target, tag).await {
            Ok(digest) => digest,
            Err(RegistryError::Status { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if !needs_created {
            return Ok(Some(ImageMetadata {
                digest: Some(digest),
                created: None,
            }));
        }
        let cache_key = digest.replace(':', "_");
        if let Ok(Some(bytes)) = self.metadata.get(&cache_key).await {
            if let Ok(cached) = serde_json::from_slice::<ImageMetadata>(&bytes) {
                if cached.created.is_some() {
                    return Ok(Some(cached));
                }
            }
        }
        let created = self.registries.created(target, &digest).await?;
        let metadata = ImageMetadata {
            digest: Some(digest),
            created,
        };
        if let Ok(bytes) = serde_json::to_vec(&metadata) {
            if let Err(e) = self.metadata.put(&cache_key, bytes.into()).await {
                tracing::warn!(error = %e, "cannot cache image metadata");
            }
        }
        Ok(Some(metadata))
    }

    /// How to reach the repository, with its credentials: from the docker
    /// config of `secretRef` (or the credential helper it names), or from
    /// the cloud of `spec.provider`.
    async fn target(
        &self,
        key: &ObjectKey,
        repository: &ImageRepository,
    ) -> Result<Target, Problem> {
        let unusable_secret = |field: &str, e: &dyn std::fmt::Display| {
            Problem::permanent(FailureReason::AuthenticationFailed, format!("{field}: {e}"))
        };
        let parsed = Repository::parse(&repository.spec.image).map_err(|e| {
            Problem::permanent(FailureReason::InvalidSpec, format!("spec.image: {e}"))
        })?;
        let credentials = match &repository.spec.secret_ref {
            Some(secret) => match self
                .secrets
                .credentials(&key.namespace, &secret.name, parsed.registry())
                .map_err(|e| unusable_secret("spec.secretRef", &e))?
            {
                DockerCredentials::Resolved(credentials) => credentials,
                DockerCredentials::Helper(name) => self
                    .settings
                    .credential_helpers
                    .get(&name, parsed.registry())
                    .await
                    .map_err(|e| unusable_secret("spec.secretRef", &e))?,
            },
            None => Credentials::Anonymous,
        };
        let cloud = repository
            .spec
            .provider
            .as_deref()
            .and_then(CloudProvider::from_spec);
        let tls = match &repository.spec.cert_secret_ref {
            Some(secret) => self
                .secrets
                .tls(&key.namespace, &secret.name)
                .map_err(|e| unusable_secret("spec.certSecretRef", &e))?,
            None => TlsMaterial::default(),
        };
        let proxy = match &repository.spec.proxy_secret_ref {
            Some(secret) => Some(
                self.secrets
                    .proxy(&key.namespace, &secret.name)
                    .map_err(|e| unusable_secret("spec.proxySecretRef", &e))?,
            ),
            None => None,
        };
        let mut target = Target {
            registry: parsed.registry().to_string(),
            path: parsed.path().to_string(),
            insecure: repository.spec.insecure,
            credentials,
            tls,
            proxy,
            cloud,
        };
        if let Some(provider) = cloud {
            if !provider.serves(&target.registry) {
                return Err(Problem::permanent(
                    FailureReason::InvalidSpec,
                    format!(
                        "spec.provider: {provider} credentials are only sent to {}, not to {}",
                        provider.expected_hosts(),
                        target.registry
                    ),
                ));
            }
            target.credentials = self
                .registries
                .cloud_credentials(provider, &target)
                .await
                .map_err(|e| Problem {
                    reason: FailureReason::CloudCredentialsUnavailable,
                    error: e.to_string(),
                    transient: e.is_transient(),
                    retry_after: None,
                })?;
        }
        Ok(target)
    }

    async fn succeeded(
        &self,
        key: &ObjectKey,
        scanned_at: DateTime<Utc>,
        tags: &[String],
        invalid: Option<String>,
    ) {
        let mut message = format!("successful scan: found {} tags", tags.len());
        if let Some(invalid) = invalid {
            message.push_str("; ");
            message.push_str(&invalid);
        }
        let status = ObjectStatus {
            ready: true,
            message,
            updated_at: Some(Utc::now()),
            last_scan_time: Some(scanned_at),
            last_success_time: Some(scanned_at),
            tag_count: Some(tags.len()),
            latest_tags: latest_tags(tags),
            ..Default::default()
        };
        self.store.record_status(key, &status).await;
    }

    async fn fail(
        &self,
        key: &ObjectKey,
        scanned_at: DateTime<Utc>,
        problem: Problem,
        attempt: u32,
    ) -> Result<Outcome, BusError> {
        let Problem {
            reason,
            error,
            transient,
            retry_after,
        } = problem;
        let will_retry = transient && attempt < self.settings.max_attempts;
        let backoff = backoff_delay(
            attempt,
            Duration::from_secs(2),
            Duration::from_secs(300),
            fastrand::f64(),
        );
        let retry_in = retry_after.map_or(backoff, |asked| asked.max(backoff));
        let failed = Failed {
            reason,
            error,
            will_retry,
        };
        self.failures
            .record(key, None, &failed, attempt, |status| {
                status.last_scan_time = Some(scanned_at)
            })
            .await?;
        let Failed { reason, error, .. } = failed;
        Ok(Outcome::Failed {
            reason,
            error,
            will_retry,
            retry_in,
        })
    }
}

/// Why a scan failed and whether and when to try again.
struct Problem {
    reason: FailureReason,
    error: String,
    transient: bool,
    retry_after: Option<Duration>,
}

impl Problem {
    /// Will not go away by itself (bad configuration, refused credentials).
    fn permanent(reason: FailureReason, error: String) -> Self {
        Self {
            reason,
            error,
            transient: false,
            retry_after: None,
        }
    }

    /// The registry took longer than the scan's time limit to answer:
    /// may go away by itself.
    fn timed_out(call: RegistryCall, limit: Duration) -> Self {
        let what = match call {
            RegistryCall::TagList => "scan",
            RegistryCall::ImageMetadata => "image metadata",
        };
        Self {
            reason: FailureReason::RegistryUnavailable,
            error: format!("{what} timed out after {}s", limit.as_secs()),
            transient: true,
            retry_after: None,
        }
    }

    /// A registry error, with the registry's `Retry-After` when it rate
    /// limited us, so the retry waits at least that long.
    fn registry(call: RegistryCall, error: &RegistryError) -> Self {
        let prefix = match call {
            RegistryCall::TagList => "",
            RegistryCall::ImageMetadata => "image metadata: ",
        };
        let retry_after = match error {
            RegistryError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        };
        Self {
            reason: error.reason(),
            error: format!("{prefix}{error}"),
            transient: error.is_transient(),
            retry_after,
        }
    }
}

/// The two registry calls of a scan, named in the words of their failures.
#[derive(Debug, Clone, Copy)]
enum RegistryCall {
    /// Listing the tags.
    TagList,
    /// Digests and creation times of the tags.
    ImageMetadata,
}

/// Runs a registry call under the scan's time limit; its error or its
/// timeout becomes the scan's [`Problem`].
async fn within<T>(
    limit: Duration,
    call: RegistryCall,
    request: impl Future<Output = Result<T, RegistryError>>,
) -> Result<T, Problem> {
    match tokio::time::timeout(limit, request).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(Problem::registry(call, &e)),
        Err(_) => Err(Problem::timed_out(call, limit)),
    }
}

/// The scan's time limit: `spec.timeout`, else the interval (Flux's
/// default), at most [`DEFAULT_SCAN_TIMEOUT`] when only the interval says.
fn scan_timeout(repository: &ImageRepository) -> Duration {
    match repository
        .spec
        .timeout
        .as_deref()
        .and_then(|t| parse_go_duration(t).ok())
    {
        Some(timeout) => timeout.max(Duration::from_secs(1)),
        None => Duration::from_secs(interval_secs(repository)).min(DEFAULT_SCAN_TIMEOUT),
    }
}

/// Scan metrics: count by outcome, duration and tag count of real scans.
fn record_scan(request: &ScanRequest, result: &Result<Outcome, BusError>, took: Duration) {
    use tagrelay_proto::telemetry::{attribute, metrics};
    let metrics = metrics();
    let (outcome, tags) = match result {
        Ok(Outcome::Changed { tags }) => ("changed", Some(*tags)),
        Ok(Outcome::Unchanged { tags }) => ("unchanged", Some(*tags)),
        Ok(Outcome::Failed { .. }) | Err(_) => ("failed", None),
        Ok(_) => return,
    };
    metrics.scans.add(1, &attribute("outcome", outcome));
    metrics.scan_duration.record(took.as_secs_f64(), &[]);
    match (tags, result) {
        (Some(tags), _) => metrics.tags.record(
            u64::try_from(tags).unwrap_or(u64::MAX),
            &attribute("repository", request.repository.to_string()),
        ),
        // A failure event is counted where it is published (`consume::fail`);
        // a bus error publishes none, so it is counted here.
        (None, Err(_)) => metrics.record_failure("scan", FailureReason::Other),
        (None, Ok(_)) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tagrelay_proto::config::{load_documents, Object};

    fn index(yaml: &str) -> ConfigIndex {
        let mut config = ConfigIndex::default();
        for document in load_documents(yaml).unwrap() {
            let object = Object::decode(&document.value).unwrap();
            config.apply(&ConfigChange::Applied(Box::new(object)));
        }
        config
    }

    const REPOSITORY: &str = "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata: {name: app, namespace: apps}\nspec: {image: ghcr.io/org/app, interval: 1h}\n";

    fn policy(name: &str, extra: &str) -> String {
        format!("---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata: {{name: {name}, namespace: apps}}\nspec:\n  imageRepositoryRef: {{name: app}}\n  policy: {{alphabetical: {{}}}}\n{extra}")
    }

    #[test]
    fn an_always_policy_with_a_shorter_interval_scans_its_repository_that_often() {
        let key = ObjectKey::new(Kind::ImageRepository, "apps", "app");
        let scan_interval = |yaml: &str| {
            let config = index(yaml);
            let repository = config.repositories[&key].clone();
            scan_interval_secs(&config, &key, &repository)
        };
        assert_eq!(scan_interval(REPOSITORY), 3600);
        let always = policy(
            "latest",
            "  digestReflectionPolicy: Always\n  interval: 5m\n",
        );
        assert_eq!(scan_interval(&format!("{REPOSITORY}{always}")), 300);
        let if_not_present = policy(
            "pinned",
            "  digestReflectionPolicy: IfNotPresent\n  interval: 1m\n",
        );
        assert_eq!(
            scan_interval(&format!("{REPOSITORY}{if_not_present}")),
            3600,
            "only Always looks digests up again"
        );
        assert_ne!(
            scan_hash(&index(REPOSITORY).repositories[&key], 3600),
            scan_hash(&index(REPOSITORY).repositories[&key], 300),
            "a new interval starts the slots anew"
        );
    }
}
