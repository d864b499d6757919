//! The committer service: keeps every ImageUpdateAutomation's branch at the
//! state its policies ask for, and says so on the bus.
//!
//! A `PolicyResolved` (durable consumer of the commit stage), an
//! automation's `interval`, or a configuration change makes the committer
//! *reconcile* the automation: fetch the branch, compute from the current
//! policy state what its files should hold, and commit only if they do not
//! hold it yet. Events are triggers, not instructions, so a redelivered or
//! replayed event finds nothing to do.
//!
//! No duplicate or conflicting commit, whatever runs twice:
//! - the commit is a pure function of the parent and the state (tree from
//!   the rewrite, message from the template and trailers, author time from
//!   the causing events), so two instances, or one instance before and
//!   after a restart, make the *same* commit id;
//! - the push is a compare-and-swap on the remote (never forced): of two
//!   pushes from the same parent one lands, the other is rejected, fetches,
//!   finds the branch already holding the state and stops;
//! - a push that landed but was never announced (crash between push and
//!   publish) is found on the next reconcile from the commit's trailers and
//!   announced then;
//! - `CommitPushed` is published conditionally on the automation subject's
//!   last sequence, so it is announced once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use gix::ObjectId;
use tagrelay_proto::bus::{
    Bus, BusError, ConfigChange, ConfigMirror, ConfigStore, MirroredConfig, PublishFailure,
    RecordMirror,
};
use tagrelay_proto::config::{GitRepository, ImageUpdateAutomation, Kind, Object, ObjectKey};
use tagrelay_proto::consume::{
    consume, ConsumeSettings, Delivery, Disposition, Failed, Failures, Handler,
};
use tagrelay_proto::event::{
    CommitPushed, Envelope, Event, FailureReason, ManifestWarning, ObjectRef,
};
use tagrelay_proto::names::{self, Stage};
use tagrelay_proto::reference::ImageReference;
use tagrelay_proto::runtime::Readiness;
use tagrelay_proto::state::PolicySelection;
use tagrelay_proto::status::{ObjectStatus, Warning};

use crate::credentials::{self, redact_url, GitAccess, GitAuth, GitTls};
use crate::derive;
use crate::git::{self, BlobScreens, CommitSpec, GitError, Skipped};
use crate::plan::{self, plan, Plan, Scan};
use crate::push::{self, PushError};
use crate::review::Reviewer;
use crate::signing::{self, Signer};
use tagrelay_rewrite::lint::{lint_file, lint_unread, Finding, KnownPolicies};
use tagrelay_rewrite::message;
use tagrelay_rewrite::{self as rewrite, Cause, RewriteError, UpdateSet, V1Discovery, V1Update};
use tagrelay_validate::automation::{highest_tag_in_range, Automation, Checkout};

/// How many times one reconcile re-applies its change on a moved branch tip
/// before giving up until the next trigger.
pub const MAX_PUSH_ATTEMPTS: usize = 5;
/// How soon a failed automation is tried again when its interval is longer.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// How far back along the branch to look for a pushed but unannounced commit.
const RECOVERY_DEPTH: usize = 20;
/// How long after a policy moved the committer waits before it reconciles
/// for it, so that the moves of one burst (a release pushed to many
/// repositories at once) land as one commit instead of one each; longer
/// while the burst goes on (see `Committer::settle`).
pub const COMMIT_WINDOW: Duration = Duration::from_millis(750);
/// How often a `PolicyResolved` whose selection has not reached the state
/// bucket yet (the resolver writes it just after publishing) is looked at
/// again before the committer leaves it to the automation's interval.
const STATE_LAG_RETRIES: u32 = 10;
/// How many `PolicyResolved` one committer handles at once: automations of
/// different Git repositories are reconciled side by side (one Git
/// repository's cache is still used by one reconcile at a time), and the
/// moves of one automation take turns, so a later one usually finds its
/// selection already committed.
const MOVES_IN_HAND: usize = 4;
/// The longest a move waits for its burst to end, in commit windows.
const SETTLE_CAP_WINDOWS: u32 = 4;
/// How many causes of one commit are read back from the log at once.
const CAUSE_READS_IN_FLIGHT: usize = 32;

/// Where the committer keeps its clones and finds Secrets.
#[derive(Debug, Clone)]
pub struct Settings {
    /// One bare clone per remote lives here.
    pub cache_dir: PathBuf,
    /// Secrets: `<secrets_dir>/<namespace>/<name>/<key>`.
    pub secrets_dir: PathBuf,
    /// See [`COMMIT_WINDOW`]; zero reconciles on every move at once.
    pub commit_window: Duration,
}

/// Why a reconcile could not finish; the trigger is retried.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A blocking task died.
    #[error("internal task failed: {0}")]
    Task(String),
}

/// What one reconcile did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The automation (or its source) is suspended.
    Suspended,
    /// The branch already holds what the policies ask for.
    UpToDate,
    /// A commit was pushed and announced.
    Pushed(CommitPushed),
    /// The automation could not be carried out; `CommitFailed` published.
    Failed(String),
}

/// The state of the remote at one fetch.
#[derive(Debug, Clone)]
struct Tips {
    /// The commit whose tree the change is written over.
    base: ObjectId,
    /// The push branch's tip, when the branch exists.
    push_tip: Option<ObjectId>,
    /// A separate push branch the new commit also descends from, bringing
    /// the checkout branch in (see `git::push_base`).
    merged_into: Option<ObjectId>,
    /// The separate push branch holds commits that are not the
    /// automation's: the change goes on top of them.
    foreign_commits: bool,
}

/// One committer instance. [`run`] drives it; tests may call
/// [`Committer::reconcile`] directly.
pub struct Committer {
    bus: Bus,
    store: ConfigStore,
    mirror: ConfigMirror,
    follower: tokio::task::AbortHandle,
    /// Every policy's recorded selection, in memory.
    selections: RecordMirror<PolicySelection>,
    selections_follower: tokio::task::AbortHandle,
    config_changes: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<ConfigChange>>>,
    known_policies: Mutex<Option<(u64, Arc<KnownPolicies>)>>,
    reflected: Mutex<HashMap<ObjectKey, BTreeMap<ObjectKey, u64>>>,
    settings: Settings,
    askpass: PathBuf,
    screens: Arc<BlobScreens>,
    discoveries: Arc<Mutex<HashMap<ObjectId, Result<V1Discovery, RewriteError>>>>,
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    /// One move at a time per automation, so that of several moves in hand
    /// for it the later ones find their selection already read.
    turns: Mutex<HashMap<ObjectKey, Arc<tokio::sync::Mutex<()>>>>,
    failures: Failures,
}

/// Runs the committer until `shutdown` resolves: consumes `PolicyResolved`
/// on the shared durable consumer through the one consume loop
/// (`tagrelay_proto::consume`, which heartbeats while a reconcile runs its
/// fetch + push cycles and sets `readiness`), reconciles each automation
/// every `interval`, and at once when it or its source is applied.
///
/// On shutdown the message in hand and the scheduled reconcile in hand are
/// finished first.
pub async fn run(
    bus: &Bus,
    settings: Settings,
    readiness: Readiness,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), BusError> {
    let committer = Arc::new(Committer::new(bus, settings).await?);
    let changed = committer.take_config_changes();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(schedule(committer.clone(), changed, stopped.clone()));
    // The review stage: its own consumer, stopped by the same signal.
    let reviewer = Arc::new(Reviewer::new(bus, committer.settings.secrets_dir.clone()).await?);
    let review = {
        let (bus, readiness, mut stopped) = (bus.clone(), readiness.clone(), stopped);
        tokio::spawn(async move {
            let settings = ConsumeSettings::new(Stage::Review);
            let stopping = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            consume(&bus, reviewer, settings, readiness, stopping).await
        })
    };
    let result = consume(
        bus,
        committer,
        ConsumeSettings::new(Stage::Commit).with_concurrency(MOVES_IN_HAND),
        readiness,
        shutdown,
    )
    .await;
    let _ = stop.send(true);
    match review.await {
        Ok(Err(e)) => tracing::error!(error = %e, "the review stage stopped"),
        Err(e) => tracing::error!(error = %e, "the review stage panicked"),
        Ok(Ok(())) => {}
    }
    if let Err(e) = scheduler.await {
        tracing::error!(error = %e, "the reconcile scheduler panicked");
    }
    tracing::info!("committer stopped");
    result
}

/// Reconciles automations when they fall due: at once when they (or their
/// GitRepository) are applied, then every `interval` (sooner after a
/// failure). Stops between reconciles once `stopped` turns true.
async fn schedule(
    committer: Arc<Committer>,
    changes: Option<tokio::sync::mpsc::UnboundedReceiver<ConfigChange>>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let Some(mut changes) = changes else {
        tracing::error!("the configuration changes were taken before the scheduler started");
        return;
    };
    let mut due: BTreeMap<ObjectKey, Instant> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            change = changes.recv() => {
                let Some(change) = change else { break };
                match &change {
                    ConfigChange::Applied(object) => match object.as_ref() {
                        Object::ImageUpdateAutomation(_) => {
                            due.insert(object.key(), Instant::now());
                        }
                        Object::GitRepository(_) => {
                            for key in committer.automations_of_source(&object.key()) {
                                due.insert(key, Instant::now());
                            }
                        }
                        _ => {}
                    },
                    ConfigChange::Deleted(key) => {
                        due.remove(key);
                    }
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                let ready: Vec<ObjectKey> = due
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in ready {
                    if *stopped.borrow() {
                        break;
                    }
                    let next = match committer.reconcile(&key, None).await {
                        Ok(Outcome::Failed(_)) => committer
                            .interval_of(&key)
                            .map(|i| i.min(RETRY_AFTER_FAILURE)),
                        Ok(_) => committer.interval_of(&key),
                        Err(e) => {
                            tracing::warn!(automation = %key, error = %e, "reconcile failed; retrying soon");
                            Some(Duration::from_secs(5))
                        }
                    };
                    match next {
                        Some(after) => due.insert(key, Instant::now() + after),
                        None => due.remove(&key),
                    };
                }
            }
        }
    }
}

/// An automation as the configuration holds it, resolved against its
/// GitRepository.
pub(crate) enum Loaded {
    /// No such automation (deleted): nothing to do.
    Missing,
    /// Its source is missing or its spec cannot work: the failure to record.
    Unusable(Failed),
    /// Ready to act on.
    Ready(Box<Automation>),
}

/// Reads the automation `key` and its GitRepository from the bucket and
/// resolves them: for a stage that reads one automation per event.
pub(crate) async fn load_automation(
    store: &ConfigStore,
    key: &ObjectKey,
) -> Result<Loaded, BusError> {
    let Some(Object::ImageUpdateAutomation(automation)) = store.get(key).await? else {
        return Ok(Loaded::Missing);
    };
    let source_key = source_key(key, &automation);
    let source = match store.get(&source_key).await? {
        Some(Object::GitRepository(source)) => Some(source),
        _ => None,
    };
    Ok(loaded(&automation, source.as_ref(), &source_key))
}

/// [`load_automation`] from the mirrored configuration.
fn load_mirrored(config: &MirroredConfig, key: &ObjectKey) -> Loaded {
    let Some(Object::ImageUpdateAutomation(automation)) = config.get(key) else {
        return Loaded::Missing;
    };
    let source_key = source_key(key, automation);
    let source = match config.get(&source_key) {
        Some(Object::GitRepository(source)) => Some(source),
        _ => None,
    };
    loaded(automation, source, &source_key)
}

fn source_key(key: &ObjectKey, automation: &ImageUpdateAutomation) -> ObjectKey {
    let r = &automation.spec.source_ref;
    ObjectKey::new(
        Kind::GitRepository,
        r.namespace.clone().unwrap_or_else(|| key.namespace.clone()),
        &r.name,
    )
}

fn loaded(
    automation: &ImageUpdateAutomation,
    source: Option<&GitRepository>,
    source_key: &ObjectKey,
) -> Loaded {
    let Some(source) = source else {
        let error = format!("source {source_key} not found");
        let reason = FailureReason::DependencyNotReady;
        return Loaded::Unusable(Failed::transient(reason, error));
    };
    match Automation::resolve(automation, source) {
        Ok(resolved) => Loaded::Ready(Box::new(resolved)),
        Err(e) => Loaded::Unusable(Failed::permanent(FailureReason::InvalidSpec, e.to_string())),
    }
}

impl Handler for Committer {
    type Item = Envelope;

    fn span(&self, envelope: &Envelope, delivery: &Delivery) -> tracing::Span {
        tracing::info_span!("commit", event = %envelope.id, attempt = delivery.attempt)
    }

    async fn handle(&self, envelope: Envelope, delivery: Delivery) -> Disposition {
        self.handle_resolved(&envelope, &delivery).await
    }
}

impl Committer {
    /// Connects to the buckets and prepares the cache directory.
    pub async fn new(bus: &Bus, settings: Settings) -> Result<Self, BusError> {
        let askpass =
            credentials::ensure_askpass(&settings.cache_dir).map_err(|e| BusError::Setup {
                what: format!("cache directory {}", settings.cache_dir.display()),
                reason: e.to_string(),
            })?;
        let store = bus.config_store().await?;
        let mirror = ConfigMirror::new(store.clone());
        let (changes, config_changes) = tokio::sync::mpsc::unbounded_channel();
        let follower = tokio::spawn(mirror.clone().follow(move |change| {
            let _ = changes.send(change);
            std::future::ready(())
        }))
        .abort_handle();
        let selections = RecordMirror::new(
            bus.bucket(names::POLICY_STATE_BUCKET).await?,
            names::POLICY_STATE_BUCKET,
        );
        Ok(Self {
            bus: bus.clone(),
            failures: Failures::new(bus, &store, Stage::Commit),
            store,
            mirror,
            follower,
            config_changes: Mutex::new(Some(config_changes)),
            known_policies: Mutex::new(None),
            reflected: Mutex::new(HashMap::new()),
            selections_follower: tokio::spawn(selections.clone().follow()).abort_handle(),
            selections,
            settings,
            askpass,
            screens: Arc::new(BlobScreens::default()),
            discoveries: Arc::new(Mutex::new(HashMap::new())),
            locks: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
        })
    }

    /// How many blob verdicts are cached (read once, never again).
    pub fn screened_blobs(&self) -> usize {
        self.screens.len()
    }

    /// The configuration changes as the mirror applies them, for the
    /// scheduler; `None` once taken.
    fn take_config_changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<ConfigChange>> {
        lock(&self.config_changes).take()
    }

    fn interval_of(&self, key: &ObjectKey) -> Option<Duration> {
        match self.mirror.read().get(key) {
            Some(Object::ImageUpdateAutomation(a)) => Some(
                tagrelay_proto::config::parse_go_duration(&a.spec.interval)
                    .unwrap_or(Duration::from_secs(60))
                    .max(Duration::from_secs(1)),
            ),
            _ => None,
        }
    }

    fn automations_of_source(&self, source: &ObjectKey) -> Vec<ObjectKey> {
        self.mirror
            .read()
            .of_kind(Kind::ImageUpdateAutomation)
            .filter_map(|(key, object)| match object {
                Object::ImageUpdateAutomation(a) => {
                    (source_key(key, a) == *source).then(|| key.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// The automations a policy move concerns: those of its namespace whose
    /// selector matches it, or the one that derived it.
    pub async fn automations_for_policy(
        &self,
        policy: &ObjectRef,
    ) -> Result<Vec<ObjectKey>, BusError> {
        let key = ObjectKey::new(Kind::ImagePolicy, &policy.namespace, &policy.name);
        let config = self.mirror.current().await?;
        Ok(automations_for(&config, &key))
    }
    /// Reconciles every automation a `PolicyResolved` concerns and has not
    /// already carried it (a reconcile for an earlier move of the same burst
    /// read this move's state too); any that could not be reconciled leaves
    /// the event for redelivery.
    async fn handle_resolved(&self, envelope: &Envelope, delivery: &Delivery) -> Disposition {
        let Event::PolicyResolved(resolved) = &envelope.payload else {
            return Disposition::Done;
        };
        let policy = ObjectKey::new(
            Kind::ImagePolicy,
            &resolved.policy.namespace,
            &resolved.policy.name,
        );
        let sequence = delivery.stream_sequence;
        let keys = match self.automations_for_policy(&resolved.policy).await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell which automations the move concerns");
                return Disposition::Retry(Duration::from_secs(2));
            }
        };
        let pending: Vec<ObjectKey> = keys
            .into_iter()
            .filter(|automation| !self.reflects(automation, &policy, sequence))
            .collect();
        if pending.is_empty() {
            return Disposition::Done;
        }
        self.settle(envelope.occurred_at).await;
        let (mut failed, mut lagging) = (false, false);
        for key in pending {
            let turn = lock(&self.turns).entry(key.clone()).or_default().clone();
            let _turn = turn.lock().await;
            if self.reflects(&key, &policy, sequence) {
                continue;
            }
            match self.reconcile(&key, Some(envelope)).await {
                Ok(Outcome::UpToDate | Outcome::Pushed(_)) => {
                    lagging |= !self.reflects(&key, &policy, sequence);
                }
                Ok(Outcome::Suspended | Outcome::Failed(_)) => {}
                Err(e) => {
                    tracing::warn!(automation = %key, error = %e, "reconcile failed; the event will be redelivered");
                    failed = true;
                }
            }
        }
        if failed {
            Disposition::Retry(Duration::from_secs(2))
        } else if lagging && delivery.attempt < STATE_LAG_RETRIES {
            // The resolver publishes a move just before it records it.
            tracing::debug!(policy = %policy, sequence, "the move is not in the state yet; looking again");
            Disposition::Retry(Duration::from_millis(200))
        } else {
            Disposition::Done
        }
    }

    /// Whether the last completed reconcile of `automation` read a selection
    /// of `policy` at least as new as the move at stream `sequence`.
    fn reflects(&self, automation: &ObjectKey, policy: &ObjectKey, sequence: u64) -> bool {
        lock(&self.reflected)
            .get(automation)
            .and_then(|policies| policies.get(policy))
            .is_some_and(|seen| *seen >= sequence)
    }

    fn record_reflected(
        &self,
        automation: &ObjectKey,
        selections: &BTreeMap<String, (ObjectKey, PolicySelection)>,
    ) {
        let seen = selections
            .values()
            .map(|(policy, selection)| (policy.clone(), selection.resolved_sequence))
            .collect();
        lock(&self.reflected).insert(automation.clone(), seen);
    }

    /// Waits until the move made at `occurred_at` is one commit window old
    /// and no selection has been written for a third of a window (the burst
    /// it belongs to is over), or four windows have passed since it: so a
    /// burst that takes longer than the window to resolve (a thousand
    /// repositories scanned under a registry's rate limit) still lands as
    /// one commit, and constant churn elsewhere cannot hold a move back for
    /// long. A move older than that (a backlog) is reconciled at once.
    async fn settle(&self, occurred_at: DateTime<Utc>) {
        let window = self.settings.commit_window;
        let cap = window * SETTLE_CAP_WINDOWS;
        loop {
            let age = (Utc::now() - occurred_at).to_std().unwrap_or_default();
            let quiet = self.selections.quiet_for();
            let wait = window
                .saturating_sub(age)
                .max((window / 3).saturating_sub(quiet))
                .min(cap.saturating_sub(age));
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    fn lock_for(&self, path: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.locks.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        locks.entry(path.to_path_buf()).or_default().clone()
    }

    /// Brings one automation's branch to the state its policies ask for.
    /// `trigger` is the event that asked, if any (for the causal chain).
    pub async fn reconcile(
        &self,
        key: &ObjectKey,
        trigger: Option<&Envelope>,
    ) -> Result<Outcome, ReconcileError> {
        let loaded = {
            let config = self.mirror.current().await?;
            load_mirrored(&config, key)
        };
        let resolved = match loaded {
            Loaded::Missing => return Ok(Outcome::UpToDate),
            Loaded::Ready(resolved) => resolved,
            Loaded::Unusable(failed) => return self.fail(key, trigger, failed, 1).await,
        };
        if resolved.suspend {
            self.status(key, true, "suspended".into(), None).await;
            return Ok(Outcome::Suspended);
        }
        let secrets = &self.settings.secrets_dir;
        let loaded = match &resolved.secret {
            Some((ns, name)) => credentials::load(secrets, ns, name)
                .and_then(|auth| Ok((auth, credentials::load_tls(secrets, ns, name)?))),
            None => Ok((GitAuth::Anonymous, GitTls::default())),
        };
        let (auth, tls) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                let reason = FailureReason::AuthenticationFailed;
                return self
                    .fail(key, trigger, Failed::transient(reason, e.to_string()), 1)
                    .await;
            }
        };
        let proxy = match &resolved.proxy_secret {
            Some((ns, name)) => {
                match credentials::load_proxy(&self.settings.secrets_dir, ns, name) {
                    Ok(proxy) => Some(proxy),
                    Err(e) => {
                        let failed = Failed::transient(
                            FailureReason::AuthenticationFailed,
                            format!("GitRepository spec.proxySecretRef: {e}"),
                        );
                        return self.fail(key, trigger, failed, 1).await;
                    }
                }
            }
            None => None,
        };
        let signer = match &resolved.signing_key {
            Some(k) => match Signer::load(secrets, &k.namespace, &k.name, k.key_type.as_deref()) {
                Ok(signer) => Some(Arc::new(signer)),
                Err(e) => {
                    let failed = Failed::transient(
                        FailureReason::SigningFailed,
                        format!("spec.git.commit.signingKey: {e}"),
                    );
                    return self.fail(key, trigger, failed, 1).await;
                }
            },
            None => None,
        };
        let access = GitAccess {
            auth,
            proxy,
            tls,
            askpass: self.askpass.clone(),
        };
        let cache = git::cache_path(&self.settings.cache_dir, &resolved.url);
        let lock = self.lock_for(&cache);
        let _guard = lock.lock().await;
        let lease = {
            let cache = cache.clone();
            blocking(move || git::lease_cache(&cache)).await?
        };
        let _lease = match lease {
            Ok(lease) => lease,
            Err(e) => {
                let (reason, error) = (e.reason(), e.to_string());
                return self
                    .fail(key, trigger, Failed::transient(reason, error), 1)
                    .await;
            }
        };
        self.reconcile_locked(key, &resolved, &access, signer, &cache, trigger)
            .await
    }

    async fn reconcile_locked(
        &self,
        key: &ObjectKey,
        a: &Automation,
        access: &GitAccess,
        signer: Option<Arc<Signer>>,
        cache: &Path,
        trigger: Option<&Envelope>,
    ) -> Result<Outcome, ReconcileError> {
        let remote = redact_url(&a.url);
        for attempt in 1..=MAX_PUSH_ATTEMPTS as u32 {
            // 1. Fetch and find the commit to build on.
            let tips = match self.fetch(a, access, cache, &remote).await? {
                Ok(tips) => tips,
                Err(e) => {
                    let (reason, error) = (e.reason(), e.to_string());
                    return self
                        .fail(key, trigger, Failed::transient(reason, error), attempt)
                        .await;
                }
            };
            // A push that landed unannounced is announced before anything
            // new is built on top of it.
            if attempt == 1 {
                self.announce_landed(key, a, cache, &remote, tips.push_tip)
                    .await?;
            }
            // 2. Read the tree: candidate blobs, v1 discovery, lint findings.
            let known = self.known_policies().await?;
            let scan = match self.scan(cache, tips.base, &a.path, known).await? {
                Ok(scan) => scan,
                Err(e) => {
                    let (reason, error) = (e.reason(), e.to_string());
                    return self
                        .fail(key, trigger, Failed::permanent(reason, error), attempt)
                        .await;
                }
            };
            if attempt == 1 {
                self.report_findings(key, &remote, tips.base, &scan.findings, trigger)
                    .await?;
            }
            // 3. Derived v1 objects, then the desired state from policy state.
            let containers: Vec<(String, rewrite::V1Container)> = scan
                .v1
                .iter()
                .flat_map(|(path, d)| d.containers.iter().map(move |c| (path.clone(), c.clone())))
                .collect();
            let plain: Vec<rewrite::V1Container> =
                containers.iter().map(|(_, c)| c.clone()).collect();
            let policy_names = self.sync_derived(a, &plain).await?;
            let mut scan = scan;
            let (updates, selections) = self
                .desired(a, &plain, &policy_names, &mut scan.problems)
                .await?;
            // 4. The decision: which files change, and the commit for them.
            let planned = plan(&scan, &updates, &selections);
            for problem in planned.problems() {
                tracing::warn!(automation = %key, %problem, "file not updated");
            }
            let rewrite = match planned {
                Plan::UpToDate { problems } => {
                    let message = with_problems("repository up-to-date".into(), &problems);
                    self.status(key, true, message, None).await;
                    self.record_reflected(key, &selections);
                    return Ok(Outcome::UpToDate);
                }
                Plan::Rewrite(rewrite) => rewrite,
            };
            let problems = rewrite.problems.clone();
            let causes = self.causes(&rewrite.cause_policies(), &selections).await?;
            let planned = match rewrite.commit(a, &causes) {
                Ok(planned) => planned,
                Err(failed) => return self.fail(key, trigger, failed, attempt).await,
            };
            // 5. The commit, deterministic from parent and state.
            let commit = {
                let cache = cache.to_path_buf();
                let signer = signer.clone();
                let (base, merged_into) = (tips.base, tips.merged_into);
                let (name, email) = (a.author_name.clone(), a.author_email.clone());
                let (message, files, cause_times) = (
                    planned.message.clone(),
                    planned.files.clone(),
                    planned.cause_times.clone(),
                );
                blocking(move || {
                    let repo = git::open_or_init(&cache)?.to_thread_local();
                    let mut parent = git::commit_info(&repo, base)?;
                    if let Some(tip) = merged_into {
                        parent.time = parent.time.max(git::commit_info(&repo, tip)?.time);
                    }
                    let spec = CommitSpec {
                        parent: base,
                        merged_into,
                        name,
                        email,
                        time: commit_time(parent.time, &cause_times),
                        message,
                    };
                    let (commit, _) = git::write_commit(&repo, &spec, &files, signer.as_deref())?;
                    Ok::<_, GitError>((commit, parent.time))
                })
                .await?
            };
            let commit = match commit {
                Ok((commit, parent_time)) => {
                    tracing::debug!(automation = %key, %commit, parent_time, "commit written");
                    commit
                }
                Err(e @ GitError::Signing(_)) => {
                    let failed = Failed::transient(e.reason(), e.to_string());
                    return self.fail(key, trigger, failed, attempt).await;
                }
                Err(e) => return Err(ReconcileError::Task(e.to_string())),
            };
            // 6. Push: a compare-and-swap on the remote, never forced.
            let mut refspecs = vec![format!("{commit}:refs/heads/{}", a.push_branch)];
            let request = |refspecs: Vec<String>| push::Push {
                repository: cache,
                url: &a.url,
                access,
                refspecs,
                options: &a.push_options,
                timeout: a.timeout,
            };
            match push::push(&request(std::mem::take(&mut refspecs)), &self.askpass).await {
                Ok(_) => {}
                Err(PushError::Rejected { target, reason }) => {
                    // Stale (the branch moved) or refused for good?
                    let error = format!("push to {target} rejected: {reason}");
                    let error = match self.fetch(a, access, cache, &remote).await? {
                        Ok(now) if now.push_tip != tips.push_tip => {
                            tracing::info!(automation = %key, attempt, "branch moved during push; re-applying on the new tip");
                            continue;
                        }
                        Ok(_) => error,
                        // The remote went away right after refusing: whether
                        // the refusal was a moved branch cannot be told yet.
                        Err(e) => format!(
                            "{error}; the branch could not be fetched again to tell whether it moved: {e}"
                        ),
                    };
                    let reason = FailureReason::PushRejected;
                    return self
                        .fail(key, trigger, Failed::transient(reason, error), attempt)
                        .await;
                }
                Err(e) => {
                    let (reason, error) = (e.reason(), e.to_string());
                    return self
                        .fail(key, trigger, Failed::transient(reason, error), attempt)
                        .await;
                }
            }
            if let Some(target) = &a.refspec_target {
                let spec = vec![format!("{commit}:{target}")];
                if let Err(e) = push::push(&request(spec), &self.askpass).await {
                    let error =
                        format!("pushed to {} but not to refspec target: {e}", a.push_branch);
                    self.fail(key, trigger, Failed::transient(e.reason(), error), attempt)
                        .await?;
                }
            }
            // 7. Announce.
            let pushed = CommitPushed {
                automation: ObjectRef::new(&a.namespace, &a.name),
                remote: remote.clone(),
                branch: a.push_branch.clone(),
                commit: commit.to_string(),
                parent: Some(tips.merged_into.unwrap_or(tips.base).to_string()),
                changes: planned.changes.clone(),
                causes: planned.causes.clone(),
                signed_with: signer.as_ref().map(|s| s.id().clone()),
            };
            let cause = trigger.cloned().or_else(|| causes.last().cloned());
            self.announce(key, &pushed, cause.as_ref()).await?;
            let mut problems = problems;
            if tips.foreign_commits {
                problems.push(format!(
                    "branch '{}' holds commits that are not this automation's: the update went on top of them, without the checkout's newer commits",
                    a.push_branch
                ));
            }
            let message = with_problems(
                format!(
                    "pushed commit '{}' to branch '{}'",
                    &pushed.commit[..7.min(pushed.commit.len())],
                    a.push_branch
                ),
                &problems,
            );
            self.status(key, true, message, Some(&pushed.commit)).await;
            self.record_reflected(key, &selections);
            return Ok(Outcome::Pushed(pushed));
        }
        let error = format!(
            "the branch kept moving: gave up after {MAX_PUSH_ATTEMPTS} attempts; will try again"
        );
        let reason = FailureReason::BranchMoved;
        self.fail(
            key,
            trigger,
            Failed::transient(reason, error),
            MAX_PUSH_ATTEMPTS as u32,
        )
        .await
    }

    async fn fetch(
        &self,
        a: &Automation,
        access: &GitAccess,
        cache: &Path,
        remote: &str,
    ) -> Result<Result<Tips, GitError>, ReconcileError> {
        let (cache, url, remote, access) = (
            cache.to_path_buf(),
            a.url.clone(),
            remote.to_string(),
            access.clone(),
        );
        let (checkout, push_branch, timeout) =
            (a.checkout.clone(), a.push_branch.clone(), a.timeout);
        let own_trailer = format!(
            "{}: {}/{}",
            message::AUTOMATION_TRAILER,
            a.namespace,
            a.name
        );
        blocking(move || {
            let repo = git::open_or_init(&cache)?.to_thread_local();
            let tags = matches!(checkout, Checkout::Tag(_) | Checkout::Semver(_));
            let refs = git::fetch(&repo, &url, &remote, &access, tags, timeout)?;
            let checkout_commit = match &checkout {
                Checkout::Semver(range) => {
                    let names = refs.keys().filter_map(|r| r.strip_prefix("refs/tags/"));
                    highest_tag_in_range(range, names)
                        .and_then(|tag| refs.get(&format!("refs/tags/{tag}")).copied())
                        .ok_or_else(|| GitError::MissingRef {
                            what: format!("a tag in semver range {range:?}"),
                            remote: remote.clone(),
                        })?
                }
                Checkout::Commit(id) => {
                    ObjectId::from_hex(id.as_bytes()).map_err(|_| GitError::MissingRef {
                        what: format!("commit {id}"),
                        remote: remote.clone(),
                    })?
                }
                other => {
                    let name = other.remote_ref().unwrap_or_default();
                    *refs.get(&name).ok_or_else(|| GitError::MissingRef {
                        what: name.clone(),
                        remote: remote.clone(),
                    })?
                }
            };
            let push_tip = refs.get(&format!("refs/heads/{push_branch}")).copied();
            let separate = checkout != Checkout::Branch(push_branch.clone());
            let base = match push_tip {
                Some(tip) if separate => git::push_base(&repo, checkout_commit, tip, &own_trailer)?,
                Some(tip) => git::PushBase {
                    tree_from: tip,
                    merged_into: None,
                    foreign_commits: false,
                },
                None => git::PushBase {
                    tree_from: checkout_commit,
                    merged_into: None,
                    foreign_commits: false,
                },
            };
            Ok(Tips {
                base: base.tree_from,
                push_tip,
                merged_into: base.merged_into,
                foreign_commits: base.foreign_commits,
            })
        })
        .await
    }

    async fn scan(
        &self,
        cache: &Path,
        base: ObjectId,
        path: &str,
        known: Arc<KnownPolicies>,
    ) -> Result<Result<Scan, GitError>, ReconcileError> {
        let (cache, path) = (cache.to_path_buf(), path.to_string());
        let screens = self.screens.clone();
        let discoveries = self.discoveries.clone();
        blocking(move || {
            let repo = git::open_or_init(&cache)?.to_thread_local();
            let walk = git::walk(&repo, base, &path)?;
            let mut scan = Scan {
                problems: walk.skipped.iter().map(describe_skip).collect(),
                findings: walk
                    .skipped
                    .iter()
                    .map(|s| lint_unread(&s.path, &s.reason))
                    .collect(),
                ..Default::default()
            };
            for entry in walk.files {
                let (screen, data) = screens.screen(&repo, entry.blob)?;
                let Some(data) = data else { continue };
                scan.findings
                    .extend(lint_file(&entry.path, &data, Some(known.as_ref())));
                if !screen.interesting() {
                    continue;
                }
                if screen.v1 && rewrite::is_v1_candidate(&entry.path) {
                    let cached = discoveries
                        .lock()
                        .ok()
                        .and_then(|d| d.get(&entry.blob).cloned());
                    let found = cached.unwrap_or_else(|| rewrite::discover_v1(&data));
                    if let Ok(mut d) = discoveries.lock() {
                        d.insert(entry.blob, found.clone());
                    }
                    match found {
                        Ok(d) => scan.v1.push((entry.path.clone(), d)),
                        Err(e) => scan.problems.push(format!("{}: skipped: {e}", entry.path)),
                    }
                }
                scan.files.push((entry, screen, data));
            }
            Ok(scan)
        })
        .await
    }

    /// Writes the derived v1 objects of `containers` and deletes this
    /// automation's derived objects that are no longer wanted. Returns the
    /// policy name of each container.
    async fn sync_derived(
        &self,
        a: &Automation,
        containers: &[rewrite::V1Container],
    ) -> Result<Vec<Option<String>>, BusError> {
        let (names, unwanted, changed) = {
            let config = self.mirror.current().await?;
            let repositories: Vec<Object> = config
                .of_kind(Kind::ImageRepository)
                .filter(|(key, _)| key.namespace == a.namespace)
                .map(|(_, object)| object.clone())
                .collect();
            let access = derive::registry_access(a, &repositories);
            let (wanted, names) = derive::derive(a, containers, &access);
            let owner = derive::owner(a);
            let unwanted: Vec<ObjectKey> = config
                .objects()
                .filter(|object| {
                    derive::is_owned_by(object, &owner)
                        && !wanted.contains_key(&object.key().bucket_key())
                })
                .map(Object::key)
                .collect();
            let changed: Vec<Object> = wanted
                .into_values()
                .filter(|object| config.get(&object.key()) != Some(object))
                .collect();
            (names, unwanted, changed)
        };
        for key in unwanted {
            self.store.delete(&key).await?;
            tracing::info!(object = %key, "deleted derived Flux v1 object");
        }
        for object in changed {
            self.store.put(&object).await?;
            tracing::info!(object = %object.key(), "derived Flux v1 object");
        }
        Ok(names)
    }

    /// The recorded selection of each of `keys` that has one, read at once
    /// from the mirror (as of now: one request, not one per policy).
    async fn selections_of(
        &self,
        keys: impl IntoIterator<Item = ObjectKey>,
    ) -> Result<HashMap<ObjectKey, PolicySelection>, BusError> {
        let recorded = self.selections.current().await?;
        Ok(keys
            .into_iter()
            .filter_map(|key| {
                let selection = recorded.get(&key.bucket_key())?.clone();
                Some((key, selection))
            })
            .collect())
    }

    /// What the files should hold: every selected policy of the automation
    /// (its namespace, its selector, not derived), and the chosen tag of
    /// each v1 container. Also each policy's selection, for causes.
    async fn desired(
        &self,
        a: &Automation,
        containers: &[rewrite::V1Container],
        policy_names: &[Option<String>],
        problems: &mut Vec<String>,
    ) -> Result<(UpdateSet, BTreeMap<String, (ObjectKey, PolicySelection)>), BusError> {
        let mut updates = UpdateSet::default();
        let mut selections = BTreeMap::new();
        let policies: Vec<ObjectKey> = {
            let config = self.mirror.current().await?;
            config
                .of_kind(Kind::ImagePolicy)
                .filter(|(key, object)| {
                    key.namespace == a.namespace
                        && !object
                            .metadata()
                            .annotations
                            .contains_key(derive::OWNER_ANNOTATION)
                        && a.selector.matches(&object.metadata().labels)
                })
                .map(|(key, _)| key.clone())
                .collect()
        };
        let v1_policies = policy_names
            .iter()
            .flatten()
            .map(|name| ObjectKey::new(Kind::ImagePolicy, &a.namespace, name));
        let recorded = self
            .selections_of(policies.iter().cloned().chain(v1_policies))
            .await?;
        for key in policies {
            let Some(selection) = recorded.get(&key).cloned() else {
                continue;
            };
            match ImageReference::parse(&selection.reference()) {
                Ok(reference) => {
                    let setter = format!("{}:{}", key.namespace, key.name);
                    updates.policies.insert(setter.clone(), reference);
                    selections.insert(setter, (key, selection));
                }
                Err(e) => {
                    tracing::warn!(policy = %key, error = %e, "selected image is not a valid reference; ignored")
                }
            }
        }
        let mut listings: BTreeMap<u64, Option<Vec<String>>> = BTreeMap::new();
        for (container, name) in containers.iter().zip(policy_names) {
            let Some(name) = name else { continue };
            let key = ObjectKey::new(Kind::ImagePolicy, &a.namespace, name);
            let Some(selection) = recorded.get(&key).cloned() else {
                continue;
            };
            if container.current_tag.as_deref() != Some(selection.selected.tag.as_str()) {
                let listed = match listings.entry(selection.source_sequence) {
                    std::collections::btree_map::Entry::Occupied(known) => known.into_mut(),
                    std::collections::btree_map::Entry::Vacant(unread) => {
                        unread.insert(self.listed_tags(selection.source_sequence).await?)
                    }
                };
                let unlisted = listed
                    .as_deref()
                    .and_then(|listed| plan::unlisted_current_tag(container, listed));
                if let Some(problem) = unlisted {
                    problems.push(problem);
                    continue;
                }
            }
            updates.v1.push(V1Update {
                workload: container.workload.clone(),
                container: container.container.clone(),
                tag: selection.selected.tag.clone(),
            });
            selections.insert(
                v1_setter(&container.workload, &container.container),
                (key, selection),
            );
        }
        Ok((updates, selections))
    }

    /// The tags of the `TagsDiscovered` at stream `sequence`, the set a
    /// selection was made from; `None` when it is no longer in the log (or
    /// the sequence is not a scan), so nothing is decided on it.
    async fn listed_tags(&self, sequence: u64) -> Result<Option<Vec<String>>, BusError> {
        match self.bus.event_at(sequence).await?.map(|e| e.payload) {
            Some(Event::TagsDiscovered(discovered)) => self.bus.tag_list(&discovered).await,
            _ => Ok(None),
        }
    }

    /// The `PolicyResolved` events behind the rewritten values, oldest
    /// first, read back from the log by the sequences recorded in the
    /// selections the rewrite was planned from (a few requests in flight at
    /// once: a cold start's first commit has a cause per policy).
    async fn causes(
        &self,
        policies: &BTreeSet<ObjectKey>,
        selections: &BTreeMap<String, (ObjectKey, PolicySelection)>,
    ) -> Result<Vec<Envelope>, BusError> {
        let sequences: BTreeSet<u64> = selections
            .values()
            .filter(|(key, selection)| policies.contains(key) && selection.resolved_sequence > 0)
            .map(|(_, selection)| selection.resolved_sequence)
            .collect();
        let read: Vec<Option<Envelope>> = futures::stream::iter(sequences)
            .map(|sequence| self.bus.event_at(sequence))
            .buffered(CAUSE_READS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut causes: Vec<Envelope> = read.into_iter().flatten().collect();
        causes.sort_by_key(|e| e.occurred_at);
        Ok(causes)
    }

    /// Announces commits this automation pushed to the branch but never
    /// announced (the process died between push and publish): found by
    /// their trailers, newer than the last announced commit.
    async fn announce_landed(
        &self,
        key: &ObjectKey,
        a: &Automation,
        cache: &Path,
        remote: &str,
        tip: Option<ObjectId>,
    ) -> Result<(), ReconcileError> {
        let Some(tip) = tip else { return Ok(()) };
        let subject = names::commit_subject(&a.namespace, &a.name);
        let last = self.bus.last_event(&subject).await?;
        let announced = last.as_ref().and_then(|(e, _)| match &e.payload {
            Event::CommitPushed(c) => Some(c.commit.clone()),
            _ => None,
        });
        let cache = cache.to_path_buf();
        let me = format!("{}/{}", a.namespace, a.name);
        let pending = blocking(move || {
            let repo = git::open_or_init(&cache)?.to_thread_local();
            let mut pending = Vec::new();
            let mut at = Some(tip);
            for _ in 0..RECOVERY_DEPTH {
                let Some(id) = at else { break };
                if announced.as_deref() == Some(id.to_string().as_str()) {
                    break;
                }
                let info = git::commit_info(&repo, id)?;
                if let Some(t) = message::parse_trailers(&info.message) {
                    if t.automation == me {
                        let signed_with = info.signature.as_deref().and_then(signing::signed_with);
                        pending.push((id, info.parent, t, signed_with));
                    }
                }
                at = info.parent;
            }
            pending.reverse();
            Ok::<_, GitError>(pending)
        })
        .await?
        .map_err(|e| ReconcileError::Task(e.to_string()))?;
        for (commit, parent, trailers, signed_with) in pending {
            let pushed = CommitPushed {
                automation: ObjectRef::new(&a.namespace, &a.name),
                remote: remote.to_string(),
                branch: a.push_branch.clone(),
                commit: commit.to_string(),
                parent: parent.map(|p| p.to_string()),
                changes: trailers.changes,
                causes: trailers.causes,
                signed_with,
            };
            tracing::info!(automation = %key, commit = %pushed.commit, "announcing a commit that landed without being announced");
            self.announce(key, &pushed, None).await?;
            self.status(
                key,
                true,
                "repository up-to-date".into(),
                Some(&pushed.commit),
            )
            .await;
        }
        Ok(())
    }

    /// Publishes `CommitPushed` once: conditional on the subject's last
    /// sequence, and skipped when the last event already announces it.
    async fn announce(
        &self,
        key: &ObjectKey,
        pushed: &CommitPushed,
        cause: Option<&Envelope>,
    ) -> Result<(), BusError> {
        let subject = names::commit_subject(&pushed.automation.namespace, &pushed.automation.name);
        let event = Event::CommitPushed(pushed.clone());
        let envelope = match cause {
            Some(cause) => Envelope::caused_by(cause, self.bus.source(), event),
            None => Envelope::new(self.bus.source(), event),
        };
        for _ in 0..16 {
            let last = self.bus.last_event(&subject).await?;
            if let Some((
                Envelope {
                    payload: Event::CommitPushed(c),
                    ..
                },
                _,
            )) = &last
            {
                if c.commit == pushed.commit {
                    return Ok(());
                }
            }
            let sequence = last.map_or(0, |(_, s)| s);
            match self.bus.publish_after(&envelope, sequence).await {
                Ok(_) => {
                    tracing::info!(automation = %key, commit = %pushed.commit, branch = %pushed.branch, "commit pushed");
                    let metrics = tagrelay_proto::telemetry::metrics();
                    metrics.commits.add(1, &[]);
                    if let Some(started) = chain_start(&envelope) {
                        let latency = (Utc::now() - started).num_milliseconds() as f64 / 1000.0;
                        metrics.push_to_commit.record(latency.max(0.0), &[]);
                    }
                    return Ok(());
                }
                Err(PublishFailure::Conflict) => continue,
                Err(PublishFailure::Bus(e)) => return Err(e),
            }
        }
        Err(BusError::Publish {
            subject,
            reason: "lost 16 races announcing the commit".into(),
        })
    }

    /// What the lint checks compare markers and images with, built from
    /// the current ImagePolicies and ImageRepositories once per change of
    /// the configuration, not once per reconcile.
    async fn known_policies(&self) -> Result<Arc<KnownPolicies>, BusError> {
        let config = self.mirror.current().await?;
        let mut cached = lock(&self.known_policies);
        if let Some((generation, known)) = cached.as_ref() {
            if *generation == config.generation() {
                return Ok(known.clone());
            }
        }
        let images: BTreeMap<&ObjectKey, &str> = config
            .of_kind(Kind::ImageRepository)
            .filter_map(|(key, object)| match object {
                Object::ImageRepository(r) => Some((key, r.spec.image.as_str())),
                _ => None,
            })
            .collect();
        let mut known = KnownPolicies::default();
        for (key, object) in config.of_kind(Kind::ImagePolicy) {
            if let Object::ImagePolicy(policy) = object {
                let image = images.get(&policy.repository_key()).copied();
                known.insert(&key.namespace, &key.name, image);
            }
        }
        let known = Arc::new(known);
        *cached = Some((config.generation(), known.clone()));
        Ok(known)
    }

    /// Publishes each finding not reported before as a `ManifestWarning`
    /// (its `Nats-Msg-Id` is the automation and the finding, so two
    /// instances publish it once), and keeps the current findings in the
    /// automation's status, which is what "reported before" reads.
    async fn report_findings(
        &self,
        key: &ObjectKey,
        remote: &str,
        commit: ObjectId,
        findings: &[Finding],
        trigger: Option<&Envelope>,
    ) -> Result<(), BusError> {
        let previous = self.store.last_status(key).await;
        let mut warnings: Vec<Warning> = Vec::new();
        for finding in findings {
            let id = finding.id();
            if warnings.iter().any(|w| w.finding == id) {
                continue;
            }
            if !previous.warnings.iter().any(|w| w.finding == id) {
                tracing::warn!(automation = %key, %finding, "manifest warning");
                let payload = Event::ManifestWarning(ManifestWarning {
                    automation: ObjectRef::new(&key.namespace, &key.name),
                    remote: remote.to_string(),
                    commit: commit.to_string(),
                    file: finding.file.clone(),
                    line: finding.line,
                    check: finding.check.as_str().to_string(),
                    problem: finding.problem.clone(),
                    fix: finding.fix.clone(),
                    finding: id.clone(),
                });
                let envelope = match trigger {
                    Some(cause) => Envelope::caused_by(cause, self.bus.source(), payload),
                    None => Envelope::new(self.bus.source(), payload),
                };
                self.bus.publish(&envelope).await?;
            }
            warnings.push(Warning {
                finding: id,
                text: finding.to_string(),
            });
        }
        if warnings != previous.warnings {
            let status = ObjectStatus {
                warnings,
                ..previous
            };
            self.store.record_status(key, &status).await;
        }
        Ok(())
    }

    async fn status(&self, key: &ObjectKey, ready: bool, message: String, pushed: Option<&str>) {
        let previous = self.store.last_status(key).await;
        let (commit, time) = match pushed {
            Some(c) => (Some(c.to_string()), Some(Utc::now())),
            None => (previous.last_push_commit, previous.last_push_time),
        };
        let now = Utc::now();
        // A status that is not ready without a failure event (a checkout
        // that never appears) is not a success either: keep the old one.
        let (last_success_time, failures, failing_since) = if ready {
            (Some(now), 0, None)
        } else {
            (
                previous.last_success_time,
                previous.failures,
                previous.failing_since,
            )
        };
        let status = ObjectStatus {
            ready,
            message,
            updated_at: Some(now),
            last_push_commit: commit,
            last_push_time: time,
            warnings: previous.warnings,
            last_success_time,
            failures,
            failing_since,
            ..Default::default()
        };
        self.store.record_status(key, &status).await;
    }

    async fn fail(
        &self,
        key: &ObjectKey,
        trigger: Option<&Envelope>,
        failed: Failed,
        attempt: u32,
    ) -> Result<Outcome, ReconcileError> {
        self.failures
            .record(key, trigger, &failed, attempt, |_| {})
            .await?;
        Ok(Outcome::Failed(failed.error))
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.follower.abort();
        self.selections_follower.abort();
    }
}

/// The automations a move of `policy` concerns: those of its namespace
/// whose selector matches it, or the one that derived it.
fn automations_for(config: &MirroredConfig, policy: &ObjectKey) -> Vec<ObjectKey> {
    let Some(Object::ImagePolicy(p)) = config.get(policy) else {
        return Vec::new();
    };
    let owner = p.metadata.annotations.get(derive::OWNER_ANNOTATION);
    config
        .of_kind(Kind::ImageUpdateAutomation)
        .filter(|(automation, object)| {
            let Object::ImageUpdateAutomation(a) = object else {
                return false;
            };
            match owner {
                Some(owner) => {
                    *owner
                        == format!(
                            "ImageUpdateAutomation/{}/{}",
                            automation.namespace, automation.name
                        )
                }
                None => {
                    automation.namespace == policy.namespace
                        && a.spec
                            .policy_selector
                            .clone()
                            .unwrap_or_default()
                            .matches(&p.metadata.labels)
                }
            }
        })
        .map(|(automation, _)| automation.clone())
        .collect()
}

/// Waits until `window` has passed since a move `occurred_at`, so the other
/// moves of its burst are in the state when the reconcile reads it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// When the chain an event belongs to began: its correlation id is the
/// root event's ULID, whose timestamp is when the scan published it.
fn chain_start(envelope: &Envelope) -> Option<DateTime<Utc>> {
    let root = ulid::Ulid::from_string(&envelope.correlation_id).ok()?;
    DateTime::from_timestamp_millis(i64::try_from(root.timestamp_ms()).ok()?)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ReconcileError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| ReconcileError::Task(e.to_string()))
}

fn describe_skip(skip: &Skipped) -> String {
    format!("{}: {}", skip.path, skip.reason)
}

fn with_problems(message: String, problems: &[String]) -> String {
    if problems.is_empty() {
        message
    } else {
        format!("{message}; not updated: {}", problems.join("; "))
    }
}

/// The setter text of a v1 container's change, as `Cause::V1` displays it.
fn v1_setter(workload: &rewrite::WorkloadId, container: &str) -> String {
    Cause::V1 {
        workload: workload.clone(),
        container: container.to_string(),
    }
    .to_string()
}

/// When the fact happened, for commit times: the newest cause, never before
/// the parent.
pub fn commit_time(parent: i64, causes: &[DateTime<Utc>]) -> i64 {
    causes
        .iter()
        .map(DateTime::timestamp)
        .max()
        .unwrap_or(parent)
        .max(parent)
}
