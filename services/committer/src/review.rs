//! The review stage: after a `CommitPushed` to an automation's review
//! branch, open (or bring up to date) the one pull request from that branch
//! into the checkout branch, and announce it.
//!
//! It is a stage of its own (the durable consumer `review` on
//! `CommitPushed`), running in the committer's process: a forge that is
//! down delays the request, never a commit, and is retried with back-off
//! by redelivery, each failed attempt a `ReviewFailed`.
//!
//! What it keeps (`tagrelay-pull-requests`, per automation): the request's
//! number, the review branch commit it last showed, and the changes and
//! causes it carries. So:
//! - one open request per automation and branch: a request already open
//!   (ours, or found on the forge after a crash) is updated, never doubled;
//! - a `CommitPushed` already shown (a redelivery, a replay) changes
//!   nothing, so a request a person closed is not reopened for the same
//!   change; a later change opens a new one;
//! - a merged request starts the list of changes afresh.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tagrelay_proto::bus::{Bus, BusError, CasBucket, ConfigStore};
use tagrelay_proto::config::{Kind, ObjectKey};
use tagrelay_proto::consume::{Delivery, Disposition, Failed, Failures, Handler};
use tagrelay_proto::event::{
    CommitPushed, Envelope, Event, FailureReason, FileChange, ObjectRef, PullRequest, ScanTrigger,
};
use tagrelay_proto::names::{self, Stage};
use tagrelay_proto::state::PolicySelection;
use tagrelay_rewrite::message::{MessageChange, ObjectId};
use tagrelay_rewrite::review::{self as text, CauseLink};

use crate::credentials::{self, ForgeCredentials};
use crate::forge::{self, Forge, ForgeError, RequestState, RequestText};
use crate::service::{load_automation, Loaded};
use tagrelay_validate::automation::Review;

/// A claim older than this was left by a process that died mid-sync.
const STALE_CLAIM: Duration = Duration::from_secs(120);
/// A GitHub App token is renewed when it has less than this left.
const TOKEN_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// What the stage keeps per automation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRecord {
    /// The request's number, once opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    /// The review branch commit it last showed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Every change it carries.
    #[serde(default)]
    pub changes: Vec<FileChange>,
    /// Why, one per policy move.
    #[serde(default)]
    pub causes: Vec<CauseLink>,
    /// The commit an instance is syncing now, and since when: a second
    /// instance waits rather than open a second request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<(String, DateTime<Utc>)>,
}

/// `changes` with `newer` laid over them: one entry per file and setter,
/// the newest value winning, the original `old` kept (the request shows
/// the move from what the base branch holds).
pub fn merge_changes(changes: &[FileChange], newer: &[FileChange]) -> Vec<FileChange> {
    let mut merged: BTreeMap<(String, String), FileChange> = changes
        .iter()
        .map(|c| ((c.file.clone(), c.setter.clone()), c.clone()))
        .collect();
    for change in newer {
        merged
            .entry((change.file.clone(), change.setter.clone()))
            .and_modify(|kept| kept.new = change.new.clone())
            .or_insert_with(|| change.clone());
    }
    merged.into_values().filter(|c| c.old != c.new).collect()
}

/// `causes` with `newer` laid over them, one per policy.
fn merge_causes(causes: &[CauseLink], newer: Vec<CauseLink>) -> Vec<CauseLink> {
    let mut merged: BTreeMap<String, CauseLink> = causes
        .iter()
        .map(|c| (c.policy.clone(), c.clone()))
        .collect();
    for cause in newer {
        merged
            .entry(cause.policy.clone())
            .and_modify(|kept| {
                kept.new = cause.new.clone();
                kept.discovered = cause.discovered.clone();
                kept.trigger = cause.trigger.clone();
                kept.resolved = cause.resolved.clone();
            })
            .or_insert(cause);
    }
    merged.into_values().collect()
}

/// A GitHub App installation on one forge: API base, App id, installation
/// id; the key of a cached installation token.
type AppInstallation = (String, String, String);

/// The review stage's handler.
pub struct Reviewer {
    bus: Bus,
    store: ConfigStore,
    records: CasBucket,
    selections: CasBucket,
    failures: Failures,
    secrets_dir: PathBuf,
    app_tokens: tokio::sync::Mutex<HashMap<AppInstallation, (String, DateTime<Utc>)>>,
}

/// Why one sync did not finish.
enum SyncError {
    Bus(BusError),
    Failed(Failed),
    /// Another instance is syncing this automation now.
    Busy,
}

impl From<BusError> for SyncError {
    fn from(e: BusError) -> Self {
        SyncError::Bus(e)
    }
}

impl From<ForgeError> for SyncError {
    fn from(e: ForgeError) -> Self {
        SyncError::Failed(Failed::transient(e.reason(), e.to_string()))
    }
}

impl Handler for Reviewer {
    type Item = Envelope;

    fn span(&self, envelope: &Envelope, delivery: &Delivery) -> tracing::Span {
        tracing::info_span!("review", event = %envelope.id, attempt = delivery.attempt)
    }

    async fn handle(&self, envelope: Envelope, delivery: Delivery) -> Disposition {
        let Event::CommitPushed(pushed) = &envelope.payload else {
            return Disposition::Done;
        };
        let key = ObjectKey::new(
            Kind::ImageUpdateAutomation,
            &pushed.automation.namespace,
            &pushed.automation.name,
        );
        let backoff = Duration::from_secs(2u64.saturating_pow(delivery.attempt.min(6)));
        match self.sync(&key, pushed, &envelope).await {
            Ok(()) => Disposition::Done,
            Err(SyncError::Busy) => Disposition::Retry(Duration::from_secs(1)),
            Err(SyncError::Bus(e)) => {
                tracing::warn!(automation = %key, error = %e, "pull request not synced; the event will be redelivered");
                Disposition::Retry(backoff)
            }
            Err(SyncError::Failed(failed)) => {
                let recorded = self
                    .failures
                    .record(&key, Some(&envelope), &failed, delivery.attempt, |_| {})
                    .await;
                match (recorded, failed.will_retry) {
                    (Err(_), _) | (Ok(()), true) => Disposition::Retry(backoff),
                    (Ok(()), false) => Disposition::Done,
                }
            }
        }
    }
}

impl Reviewer {
    /// Connects to the buckets the stage reads and writes.
    pub async fn new(bus: &Bus, secrets_dir: PathBuf) -> Result<Self, BusError> {
        let store = bus.config_store().await?;
        Ok(Self {
            bus: bus.clone(),
            failures: Failures::new(bus, &store, Stage::Review),
            store,
            records: CasBucket::new(
                bus.bucket(names::PULL_REQUESTS_BUCKET).await?,
                names::PULL_REQUESTS_BUCKET,
            ),
            selections: CasBucket::new(
                bus.bucket(names::POLICY_STATE_BUCKET).await?,
                names::POLICY_STATE_BUCKET,
            ),
            secrets_dir,
            app_tokens: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// What the stage keeps for the automation `key`.
    pub async fn record(&self, key: &ObjectKey) -> Result<Option<ReviewRecord>, BusError> {
        self.records.get(&key.bucket_key()).await
    }

    async fn sync(
        &self,
        key: &ObjectKey,
        pushed: &CommitPushed,
        cause: &Envelope,
    ) -> Result<(), SyncError> {
        let (review, values) = match load_automation(&self.store, key).await? {
            Loaded::Ready(a) => match &a.pull_request {
                Some(review) if review.head == pushed.branch => {
                    (review.clone(), a.message_values.clone())
                }
                _ => return Ok(()),
            },
            Loaded::Missing | Loaded::Unusable(_) => return Ok(()),
        };
        let bucket_key = key.bucket_key();
        let (record, revision) = self.records.read::<ReviewRecord>(&bucket_key).await?;
        let record = record.unwrap_or_default();
        if record.commit.as_deref() == Some(pushed.commit.as_str()) {
            return Ok(());
        }
        if let Some((commit, since)) = &record.claim {
            let fresh =
                Utc::now() - *since < chrono::Duration::from_std(STALE_CLAIM).unwrap_or_default();
            if commit != &pushed.commit && fresh {
                return Err(SyncError::Busy);
            }
        }
        let mut claimed = record.clone();
        claimed.claim = Some((pushed.commit.clone(), Utc::now()));
        if !self.records.write(&bucket_key, &claimed, revision).await? {
            return Err(SyncError::Busy);
        }
        let (_, revision) = self.records.read::<ReviewRecord>(&bucket_key).await?;

        let forge = self.forge(&review).await?;
        let known = match record.number {
            Some(number) => Some(forge.get(number).await?),
            None => None,
        };
        let merged = known
            .as_ref()
            .is_some_and(|r| r.state == RequestState::Merged);
        let open = match known {
            Some(request) if request.state == RequestState::Open => Some(request),
            _ => forge.find_open(&review.head, &review.base).await?,
        };
        let (base_changes, base_causes) = if merged || open.is_none() && record.number.is_some() {
            // Merged, or closed by a person: this change starts a new list.
            (Vec::new(), Vec::new())
        } else {
            (record.changes.clone(), record.causes.clone())
        };
        let changes = merge_changes(&base_changes, &pushed.changes);
        let causes = merge_causes(&base_causes, self.causes(pushed).await?);
        let (title, body) = render(key, &review, &values, &changes, &causes)?;
        let text = RequestText {
            title: &title,
            body: &body,
        };
        let (request, opened) = match open {
            Some(request) => {
                forge.retitle(request.number, &text).await?;
                forge.label(request.number, &review.spec.labels).await?;
                let opened = record.number != Some(request.number);
                (request, opened)
            }
            None => {
                let request = forge.open(&review.head, &review.base, &text).await?;
                forge.label(request.number, &review.spec.labels).await?;
                forge
                    .request_reviews(request.number, &review.spec.reviewers)
                    .await?;
                if let Some(method) = review.spec.auto_merge {
                    forge.auto_merge(&request, method).await?;
                }
                (request, true)
            }
        };
        let done = ReviewRecord {
            number: Some(request.number),
            commit: Some(pushed.commit.clone()),
            changes: changes.clone(),
            causes,
            claim: None,
        };
        if !self.records.write(&bucket_key, &done, revision).await? {
            return Err(SyncError::Busy);
        }
        let payload = PullRequest {
            automation: ObjectRef::new(&key.namespace, &key.name),
            provider: review.spec.provider.as_str().to_string(),
            url: request.url.clone(),
            number: request.number,
            head: review.head.clone(),
            base: review.base.clone(),
            commit: pushed.commit.clone(),
            title,
            changes,
        };
        let event = if opened {
            Event::PullRequestOpened(payload)
        } else {
            Event::PullRequestUpdated(payload)
        };
        self.bus
            .publish(&Envelope::caused_by(cause, self.bus.source(), event))
            .await?;
        tracing::info!(automation = %key, number = request.number, url = %request.url, opened, "pull request synced");
        Ok(())
    }

    /// A client for the review's forge with its credentials (a GitHub App
    /// installation token is asked for, and kept until shortly before it
    /// expires).
    async fn forge(&self, review: &Review) -> Result<Forge, SyncError> {
        let (namespace, name) = &review.secret;
        let credentials =
            credentials::load_forge(&self.secrets_dir, namespace, name).map_err(|e| {
                SyncError::Failed(Failed::transient(
                    FailureReason::AuthenticationFailed,
                    format!("pull request secret: {e}"),
                ))
            })?;
        let token = match credentials {
            ForgeCredentials::Token(token) => token,
            ForgeCredentials::GithubApp {
                app_id,
                installation_id,
                private_key,
            } => {
                let cache_key = (
                    review.api_url.clone(),
                    app_id.clone(),
                    installation_id.clone(),
                );
                let mut tokens = self.app_tokens.lock().await;
                match tokens.get(&cache_key) {
                    Some((token, expires)) if *expires - Utc::now() > TOKEN_MARGIN => token.clone(),
                    _ => {
                        let jwt =
                            forge::github_app_jwt(&app_id, &private_key, Utc::now().timestamp())
                                .map_err(|e| {
                                    SyncError::Failed(Failed::transient(
                                        FailureReason::AuthenticationFailed,
                                        format!("pull request secret {namespace}/{name}: {e}"),
                                    ))
                                })?;
                        let (token, expires) = forge::github_installation_token(
                            &review.api_url,
                            &installation_id,
                            &jwt,
                        )
                        .await?;
                        // An expiry that does not parse is treated as now:
                        // the token serves this sync and is asked for again.
                        let expires = DateTime::parse_from_rfc3339(&expires)
                            .map(|t| t.with_timezone(&Utc))
                            .unwrap_or_else(|_| Utc::now());
                        tokens.insert(cache_key, (token.clone(), expires));
                        token
                    }
                }
            }
        };
        Ok(Forge::new(
            review.spec.provider,
            &review.api_url,
            &review.repository,
            token,
        )?)
    }

    /// The policy moves behind `pushed`, from each Setters change's policy:
    /// its selection's `PolicyResolved` and the `TagsDiscovered` that
    /// caused it.
    async fn causes(&self, pushed: &CommitPushed) -> Result<Vec<CauseLink>, BusError> {
        let mut causes = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for change in &pushed.changes {
            let mut parts = change.setter.split(':');
            let (Some(namespace), Some(policy)) = (parts.next(), parts.next()) else {
                continue;
            };
            if !seen.insert((namespace.to_string(), policy.to_string())) {
                continue;
            }
            let key = ObjectKey::new(Kind::ImagePolicy, namespace, policy).bucket_key();
            let Some(selection) = self.selections.get::<PolicySelection>(&key).await? else {
                continue;
            };
            let resolved = self.bus.event_at(selection.resolved_sequence).await?;
            let discovered = self.bus.event_at(selection.source_sequence).await?;
            let (old, new, resolved_at) =
                match resolved.as_ref().map(|e| (&e.payload, e.occurred_at)) {
                    Some((Event::PolicyResolved(r), at)) => (
                        r.previous
                            .as_ref()
                            .map_or("(none)".to_string(), ToString::to_string),
                        r.current.to_string(),
                        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    ),
                    _ => (
                        "(unknown)".into(),
                        selection.selected.to_string(),
                        String::new(),
                    ),
                };
            let (discovered_at, trigger) =
                match discovered.as_ref().map(|e| (&e.payload, e.occurred_at)) {
                    Some((Event::TagsDiscovered(t), at)) => (
                        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        trigger_words(&t.trigger).to_string(),
                    ),
                    _ => (String::new(), String::new()),
                };
            causes.push(CauseLink {
                policy: format!("{namespace}/{policy}"),
                image: selection.image.clone(),
                old,
                new,
                discovered: discovered_at,
                trigger,
                resolved: resolved_at,
            });
        }
        Ok(causes)
    }
}

/// What made a scan happen, as `why` says it.
fn trigger_words(trigger: &ScanTrigger) -> &'static str {
    match trigger {
        ScanTrigger::Schedule => "the interval schedule",
        ScanTrigger::Webhook => "a registry webhook",
        ScanTrigger::Reconcile => "tagrelay reconcile",
        ScanTrigger::Config => "a configuration change",
    }
}

/// The request's title and body from the annotation's templates.
fn render(
    key: &ObjectKey,
    review: &Review,
    values: &BTreeMap<String, String>,
    changes: &[FileChange],
    causes: &[CauseLink],
) -> Result<(String, String), SyncError> {
    let changes: Vec<MessageChange> = changes
        .iter()
        .map(|change| MessageChange {
            change: change.clone(),
            object: ObjectId::default(),
            updated: None,
        })
        .collect();
    let data = text::review_data(&key.namespace, &key.name, &changes, values, causes);
    text::render(
        review.spec.title.as_deref(),
        review.spec.body.as_deref(),
        &data,
    )
    .map_err(|e| {
        SyncError::Failed(Failed::permanent(
            FailureReason::InvalidSpec,
            format!("pull request template: {e}"),
        ))
    })
}
