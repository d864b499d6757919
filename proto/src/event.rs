//! The events: one versioned envelope around the payloads.
//!
//! Other teams' programs read these (notifications, chat bots, compliance
//! archives), so the JSON shape is a public API. Each payload has a JSON
//! Schema under `proto/schema/`, checked against these types in a test; a
//! change that would make an existing reader misread an event must bump that
//! event's version, and a reader refuses versions it does not know instead of
//! guessing ([`DecodeError::UnsupportedVersion`]).
//!
//! Wire shape:
//! ```json
//! { "id": "01J…", "type": "TagsDiscovered", "version": 1,
//!   "occurred_at": "2026-11-21T10:00:00Z", "source": "scanner/host-1",
//!   "causation_id": null, "correlation_id": "01J…", "payload": { … } }
//! ```

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::names::{self, Stage};

/// A namespaced object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl ObjectRef {
    /// Builds a reference.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What made the scanner look at a repository: shown by `tagrelay why`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanTrigger {
    /// The repository's interval elapsed.
    Schedule,
    /// A registry push notification.
    Webhook,
    /// `tagrelay reconcile`.
    Reconcile,
    /// The ImageRepository was applied or changed.
    Config,
}

/// Digest and creation time of one tag's image, fetched only for policies
/// that need them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMetadata {
    /// The manifest (or index) digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The image config's `created` time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
}

/// Where a tag list too large for one message is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagsRef {
    /// The bucket: the `tagrelay-tag-lists` object store.
    pub bucket: String,
    /// The key within it: the tag-set digest.
    pub key: String,
}

/// The scanner found a tag set different from the last one it published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagsDiscovered {
    /// The ImageRepository scanned.
    pub repository: ObjectRef,
    /// The image repository as configured (`ghcr.io/org/app`).
    pub image: String,
    /// The complete, sorted, de-duplicated tag list, when it fits a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Where the list is kept when it is too large to travel inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags_ref: Option<TagsRef>,
    /// How many tags the set holds.
    pub tag_count: usize,
    /// [`tag_set_digest`] of the set.
    pub tag_set_digest: String,
    /// The digest of the set published before, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_tag_set_digest: Option<String>,
    /// When the registry was listed.
    pub scanned_at: DateTime<Utc>,
    /// What triggered the scan.
    pub trigger: ScanTrigger,
    /// Digest / creation time per tag, for policies that need them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, ImageMetadata>,
}

/// One policy's chosen image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectedImage {
    /// The tag, exactly as the registry spells it.
    pub tag: String,
    /// The digest, when the policy reflects digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl fmt::Display for SelectedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tag)?;
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Why the resolver evaluated a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolveCause {
    /// Its repository's tag set changed.
    TagsChanged,
    /// The policy itself was applied or changed.
    PolicyChanged,
}

/// A policy's selected image changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyResolved {
    /// The ImagePolicy.
    pub policy: ObjectRef,
    /// The ImageRepository it reads.
    pub repository: ObjectRef,
    /// The image repository (`ghcr.io/org/app`).
    pub image: String,
    /// The selection before, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<SelectedImage>,
    /// The selection now.
    pub current: SelectedImage,
    /// Why it was evaluated.
    pub cause: ResolveCause,
    /// The tag set it was evaluated against.
    pub tag_set_digest: String,
}

/// A lint check found a manifest under an automation's path that silently
/// does nothing (a near-miss marker, a marker naming an unknown policy, an
/// unmarked image a policy covers, a Flux v1 annotation that cannot take
/// effect, a file the committer skips). Published once per finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestWarning {
    /// The ImageUpdateAutomation whose path holds the file.
    pub automation: ObjectRef,
    /// The remote URL, without credentials.
    pub remote: String,
    /// The commit whose tree was checked.
    pub commit: String,
    /// Path relative to the repository root.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The check's stable name (`near-miss-marker`, `unknown-policy`, …).
    pub check: String,
    /// What is wrong.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
    /// The finding's stable identity (file, check and problem, not the
    /// line), the same as `tagrelay lint -o json` prints.
    pub finding: String,
}

/// One value rewritten in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    /// Path relative to the repository root.
    pub file: String,
    /// The value before.
    pub old: String,
    /// The value after.
    pub new: String,
    /// The setter (`ns:policy`) or, for Flux v1 annotations, the container.
    pub setter: String,
}

/// A commit reached the remote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitPushed {
    /// The ImageUpdateAutomation.
    pub automation: ObjectRef,
    /// The remote URL, without credentials.
    pub remote: String,
    /// The branch pushed to.
    pub branch: String,
    /// The new commit id.
    pub commit: String,
    /// Its parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Every change in the commit.
    pub changes: Vec<FileChange>,
    /// Ids of the `PolicyResolved` events that caused it.
    pub causes: Vec<String>,
    /// The key the commit is signed with (`spec.git.commit.signingKey`);
    /// absent for an automation that does not sign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_with: Option<CommitSignature>,
}

/// The key a commit was signed with, so an auditor can tell which key
/// vouches for each bot commit without fetching the commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSignature {
    /// OpenPGP or SSH.
    pub format: SignatureFormat,
    /// The signing key's fingerprint: 40 upper-case hex digits (OpenPGP,
    /// as `gpg --fingerprint` prints it) or `SHA256:…` (SSH, as
    /// `ssh-keygen -l` prints it).
    pub fingerprint: String,
}

/// The two signature formats Git verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureFormat {
    /// An OpenPGP signature (`gpg.format=openpgp`).
    Openpgp,
    /// An SSH signature (`gpg.format=ssh`), namespace `git`.
    Ssh,
}

/// The one pull (merge) request of an automation's review branch, as it
/// stands after the review stage opened or updated it for a `CommitPushed`
/// (the event's cause).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// The ImageUpdateAutomation whose review branch it is.
    pub automation: ObjectRef,
    /// The forge: `github`, `gitlab` or `gitea`.
    pub provider: String,
    /// The request's web page.
    pub url: String,
    /// Its number on the forge (GitLab's `iid`).
    pub number: u64,
    /// The review branch (the automation's push branch).
    pub head: String,
    /// The branch it asks to merge into (the checkout branch).
    pub base: String,
    /// The review branch's commit it now shows.
    pub commit: String,
    /// Its title.
    pub title: String,
    /// Every change it carries, across the bot commits it holds.
    pub changes: Vec<FileChange>,
}

/// Why an object has stopped following its registry, as one stable word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StallReason {
    /// The policy's ImageRepository failed its last scans in a row.
    ScansFailing,
    /// The policy's ImageRepository has had no successful scan for
    /// several of its intervals (the scanner is down or stuck).
    NotScanned,
    /// The automation has failed to commit or push for longer than the
    /// limit: selections are not reaching Git.
    CommitsFailing,
}

impl StallReason {
    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            StallReason::ScansFailing => "ScansFailing",
            StallReason::NotScanned => "NotScanned",
            StallReason::CommitsFailing => "CommitsFailing",
        }
    }
}

/// An ImagePolicy (`PolicyStale`) or ImageUpdateAutomation
/// (`AutomationStalled`) that has stopped doing its job without anyone
/// running a command: published once per episode by the notifier's
/// stuck-policy detection, and routed by Alerts like any event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stalled {
    /// The ImagePolicy or ImageUpdateAutomation.
    pub object: ObjectRef,
    /// Why, as one word.
    pub reason: StallReason,
    /// Why, in words an operator can act on (the last error, the limit).
    pub message: String,
    /// Since when: the last success, or the first failure of the run.
    pub since: DateTime<Utc>,
}

/// A configuration object named by a configuration event. The kind is a
/// string, not [`crate::config::Kind`], so that a reader built before a kind
/// was added still reads the event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConfigObject {
    /// The kind, as written in `kind:` (`ImagePolicy`).
    pub kind: String,
    /// The namespace (a Namespace's own name for a Namespace).
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl From<&crate::config::ObjectKey> for ConfigObject {
    fn from(key: &crate::config::ObjectKey) -> Self {
        Self {
            kind: key.kind.as_str().to_string(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        }
    }
}

impl fmt::Display for ConfigObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// One problem with (or note about) one document of a configuration
/// commit, where it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigProblem {
    /// The file, relative to the repository root.
    pub file: String,
    /// The 1-based line of the field, or of the document.
    pub line: usize,
    /// `Kind/namespace/name` of the document, when it decoded that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// The field path (`spec.policy.semver.range`); absent for the whole
    /// document.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
    /// Why, in words an operator can act on.
    pub reason: String,
}

/// A configuration source made the configuration bucket equal to the
/// documents of one Git commit. Sources publish it only when something
/// changed (an object written or deleted, or the set it owns changed), so
/// an image-update commit into the same repository never produces one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigSynced {
    /// The source's name (`--name`), also the last token of the subject.
    pub source: String,
    /// The Git remote, without credentials.
    pub repository: String,
    /// The branch read.
    pub branch: String,
    /// The configuration commit.
    pub commit: String,
    /// The paths read, relative to the repository root ("" for the root).
    pub paths: Vec<String>,
    /// Objects created or changed by this commit.
    pub applied: Vec<ConfigObject>,
    /// Objects the source had written before and the commit no longer has.
    pub deleted: Vec<ConfigObject>,
    /// Objects of the commit already stored as written. With `applied`, the
    /// set the source owns from now on.
    pub unchanged: Vec<ConfigObject>,
    /// Documents not stored: Secrets, and kinds tagrelay does not read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<ConfigProblem>,
}

impl ConfigSynced {
    /// Every object the source owns after this sync.
    pub fn owned(&self) -> impl Iterator<Item = &ConfigObject> {
        self.applied.iter().chain(&self.unchanged)
    }
}

/// A configuration commit was refused as a whole because at least one of
/// its documents is invalid; nothing was written, and the configuration of
/// the last `ConfigSynced` stays in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigRejected {
    /// The source's name, also the last token of the subject.
    pub source: String,
    /// The Git remote, without credentials.
    pub repository: String,
    /// The branch read.
    pub branch: String,
    /// The refused commit.
    pub commit: String,
    /// The paths read.
    pub paths: Vec<String>,
    /// Every problem found, each with its file, line and field.
    pub errors: Vec<ConfigProblem>,
    /// The commit whose configuration stays in force, if one was synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_commit: Option<String>,
}

/// A stage could not do its work for one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The object that failed (repository, policy or automation).
    pub object: ObjectRef,
    /// The error, in words an operator can act on; never credentials.
    pub error: String,
    /// Whether the stage will try again by itself.
    pub will_retry: bool,
    /// Which attempt failed, from 1.
    pub attempt: u32,
    /// The kind of failure, for alert rules and scripts. Left out on the
    /// wire when it is [`FailureReason::Other`], so events written before
    /// reasons existed read, and validate, the same as new ones.
    #[serde(default, skip_serializing_if = "FailureReason::is_other")]
    pub reason: FailureReason,
}

/// Why a stage failed, as one stable word. `error` is prose for people and
/// its wording may change; alert rules, dashboards and scripts group and
/// match on this instead, as they do on the `reason` of a Flux condition.
/// A reader meets a word it does not know (from a newer writer) as
/// [`FailureReason::Other`], so adding one never breaks an older reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum FailureReason {
    /// The registry could not be reached, timed out or answered 5xx.
    RegistryUnavailable,
    /// The registry kept answering 429 (Too Many Requests).
    RateLimited,
    /// Credentials were refused, or the secret holding them is missing or
    /// unusable (registry or Git).
    AuthenticationFailed,
    /// The cloud (`spec.provider: aws | gcp | azure`) would not give a
    /// registry credential: its identity endpoint was unreachable or
    /// refused the workload's identity, or that identity is not configured.
    /// A credential the cloud gave and the registry refused is
    /// `AuthenticationFailed`.
    CloudCredentialsUnavailable,
    /// The image repository does not exist on its registry.
    RepositoryNotFound,
    /// The registry answered something that cannot be read: malformed,
    /// over the size limit, or paging that does not end.
    InvalidResponse,
    /// The object cannot work as written: a bad image reference,
    /// exclusion pattern, policy, commit template, ref or update path.
    InvalidSpec,
    /// An object this one refers to does not exist (yet).
    DependencyNotReady,
    /// There are tags, but the policy can choose none of them.
    NoTagSelected,
    /// The Git remote could not be reached, or fetching or pushing failed
    /// before the server answered.
    GitUnavailable,
    /// The Git server refused the push (a hook, a protected branch).
    PushRejected,
    /// Someone else pushed to the branch before every attempt.
    BranchMoved,
    /// The commit could not be signed with the automation's signing key
    /// (missing, locked, unusable), so nothing was pushed.
    SigningFailed,
    /// The forge (GitHub, GitLab, Gitea) could not be reached, or answered
    /// an error, while opening or updating a pull request.
    ForgeUnavailable,
    /// A notification receiver (webhook, chat, Alertmanager, forge, NATS)
    /// could not be reached, timed out or answered an error.
    ReceiverUnavailable,
    /// Anything else (a local fault such as the Git cache), or a word this
    /// reader does not know.
    #[default]
    #[serde(other)]
    Other,
}

impl FailureReason {
    /// Every reason, for the schemas' test and for dashboards.
    pub const ALL: [FailureReason; 16] = [
        FailureReason::RegistryUnavailable,
        FailureReason::RateLimited,
        FailureReason::AuthenticationFailed,
        FailureReason::CloudCredentialsUnavailable,
        FailureReason::RepositoryNotFound,
        FailureReason::InvalidResponse,
        FailureReason::InvalidSpec,
        FailureReason::DependencyNotReady,
        FailureReason::NoTagSelected,
        FailureReason::GitUnavailable,
        FailureReason::PushRejected,
        FailureReason::BranchMoved,
        FailureReason::SigningFailed,
        FailureReason::ForgeUnavailable,
        FailureReason::ReceiverUnavailable,
        FailureReason::Other,
    ];

    /// Whether this is the catch-all, which is not written out.
    pub fn is_other(&self) -> bool {
        *self == FailureReason::Other
    }

    /// The word on the wire, as a metric attribute and in `audit`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::RegistryUnavailable => "RegistryUnavailable",
            FailureReason::RateLimited => "RateLimited",
            FailureReason::AuthenticationFailed => "AuthenticationFailed",
            FailureReason::CloudCredentialsUnavailable => "CloudCredentialsUnavailable",
            FailureReason::RepositoryNotFound => "RepositoryNotFound",
            FailureReason::InvalidResponse => "InvalidResponse",
            FailureReason::InvalidSpec => "InvalidSpec",
            FailureReason::DependencyNotReady => "DependencyNotReady",
            FailureReason::NoTagSelected => "NoTagSelected",
            FailureReason::GitUnavailable => "GitUnavailable",
            FailureReason::PushRejected => "PushRejected",
            FailureReason::BranchMoved => "BranchMoved",
            FailureReason::SigningFailed => "SigningFailed",
            FailureReason::ForgeUnavailable => "ForgeUnavailable",
            FailureReason::ReceiverUnavailable => "ReceiverUnavailable",
            FailureReason::Other => "Other",
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// See [`TagsDiscovered`].
    TagsDiscovered,
    /// See [`PolicyResolved`].
    PolicyResolved,
    /// See [`CommitPushed`].
    CommitPushed,
    /// A scan failed.
    ScanFailed,
    /// A resolution failed.
    ResolveFailed,
    /// A commit or push failed.
    CommitFailed,
    /// See [`ManifestWarning`].
    ManifestWarning,
    /// See [`PullRequest`]: a request opened.
    PullRequestOpened,
    /// See [`PullRequest`]: a request brought up to date.
    PullRequestUpdated,
    /// Opening or updating a pull request failed.
    ReviewFailed,
    /// See [`Stalled`]: an ImagePolicy.
    PolicyStale,
    /// See [`Stalled`]: an ImageUpdateAutomation.
    AutomationStalled,
    /// Delivering a notification to a Provider failed.
    NotificationFailed,
    /// See [`ConfigSynced`].
    ConfigSynced,
    /// See [`ConfigRejected`].
    ConfigRejected,
    /// A configuration source could not read its repository.
    ConfigFailed,
}

impl EventType {
    /// Every type.
    pub const ALL: [EventType; 16] = [
        EventType::TagsDiscovered,
        EventType::PolicyResolved,
        EventType::CommitPushed,
        EventType::ScanFailed,
        EventType::ResolveFailed,
        EventType::CommitFailed,
        EventType::ManifestWarning,
        EventType::PullRequestOpened,
        EventType::PullRequestUpdated,
        EventType::ReviewFailed,
        EventType::PolicyStale,
        EventType::AutomationStalled,
        EventType::NotificationFailed,
        EventType::ConfigSynced,
        EventType::ConfigRejected,
        EventType::ConfigFailed,
    ];

    /// The version this build writes and the only one it reads.
    pub fn current_version(self) -> u32 {
        1
    }

    /// The type's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TagsDiscovered => "TagsDiscovered",
            EventType::PolicyResolved => "PolicyResolved",
            EventType::CommitPushed => "CommitPushed",
            EventType::ScanFailed => "ScanFailed",
            EventType::ResolveFailed => "ResolveFailed",
            EventType::CommitFailed => "CommitFailed",
            EventType::ManifestWarning => "ManifestWarning",
            EventType::PullRequestOpened => "PullRequestOpened",
            EventType::PullRequestUpdated => "PullRequestUpdated",
            EventType::ReviewFailed => "ReviewFailed",
            EventType::PolicyStale => "PolicyStale",
            EventType::AutomationStalled => "AutomationStalled",
            EventType::NotificationFailed => "NotificationFailed",
            EventType::ConfigSynced => "ConfigSynced",
            EventType::ConfigRejected => "ConfigRejected",
            EventType::ConfigFailed => "ConfigFailed",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payload of any type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    /// See [`TagsDiscovered`].
    TagsDiscovered(TagsDiscovered),
    /// See [`PolicyResolved`].
    PolicyResolved(PolicyResolved),
    /// See [`CommitPushed`].
    CommitPushed(CommitPushed),
    /// A scan failed.
    ScanFailed(Failure),
    /// A resolution failed.
    ResolveFailed(Failure),
    /// A commit or push failed.
    CommitFailed(Failure),
    /// See [`ManifestWarning`].
    ManifestWarning(ManifestWarning),
    /// See [`PullRequest`].
    PullRequestOpened(PullRequest),
    /// See [`PullRequest`].
    PullRequestUpdated(PullRequest),
    /// Opening or updating a pull request failed.
    ReviewFailed(Failure),
    /// See [`Stalled`].
    PolicyStale(Stalled),
    /// See [`Stalled`].
    AutomationStalled(Stalled),
    /// Delivering a notification failed; the object is the Provider.
    NotificationFailed(Failure),
    /// See [`ConfigSynced`].
    ConfigSynced(ConfigSynced),
    /// See [`ConfigRejected`].
    ConfigRejected(ConfigRejected),
    /// A configuration source could not read its repository (fetch,
    /// credentials, the bus); the object is `config/<source>`.
    ConfigFailed(Failure),
}

impl Event {
    /// The payload's type.
    pub fn event_type(&self) -> EventType {
        match self {
            Event::TagsDiscovered(_) => EventType::TagsDiscovered,
            Event::PolicyResolved(_) => EventType::PolicyResolved,
            Event::CommitPushed(_) => EventType::CommitPushed,
            Event::ScanFailed(_) => EventType::ScanFailed,
            Event::ResolveFailed(_) => EventType::ResolveFailed,
            Event::CommitFailed(_) => EventType::CommitFailed,
            Event::ManifestWarning(_) => EventType::ManifestWarning,
            Event::PullRequestOpened(_) => EventType::PullRequestOpened,
            Event::PullRequestUpdated(_) => EventType::PullRequestUpdated,
            Event::ReviewFailed(_) => EventType::ReviewFailed,
            Event::PolicyStale(_) => EventType::PolicyStale,
            Event::AutomationStalled(_) => EventType::AutomationStalled,
            Event::NotificationFailed(_) => EventType::NotificationFailed,
            Event::ConfigSynced(_) => EventType::ConfigSynced,
            Event::ConfigRejected(_) => EventType::ConfigRejected,
            Event::ConfigFailed(_) => EventType::ConfigFailed,
        }
    }

    /// The subject the event is published on.
    pub fn subject(&self) -> String {
        match self {
            Event::TagsDiscovered(e) => {
                names::tags_subject(&e.repository.namespace, &e.repository.name)
            }
            Event::PolicyResolved(e) => names::policy_subject(&e.policy.namespace, &e.policy.name),
            Event::CommitPushed(e) => {
                names::commit_subject(&e.automation.namespace, &e.automation.name)
            }
            Event::ScanFailed(f) => {
                names::failed_subject(Stage::Scan, &f.object.namespace, &f.object.name)
            }
            Event::ResolveFailed(f) => {
                names::failed_subject(Stage::Resolve, &f.object.namespace, &f.object.name)
            }
            Event::CommitFailed(f) => {
                names::failed_subject(Stage::Commit, &f.object.namespace, &f.object.name)
            }
            Event::ManifestWarning(w) => {
                names::warning_subject(&w.automation.namespace, &w.automation.name)
            }
            Event::PullRequestOpened(e) | Event::PullRequestUpdated(e) => {
                names::pull_request_subject(&e.automation.namespace, &e.automation.name)
            }
            Event::ReviewFailed(f) => {
                names::failed_subject(Stage::Review, &f.object.namespace, &f.object.name)
            }
            Event::PolicyStale(e) | Event::AutomationStalled(e) => {
                names::stale_subject(&e.object.namespace, &e.object.name)
            }
            Event::NotificationFailed(f) => {
                names::failed_subject(Stage::Notify, &f.object.namespace, &f.object.name)
            }
            Event::ConfigSynced(e) => names::config_synced_subject(&e.source),
            Event::ConfigRejected(e) => names::config_rejected_subject(&e.source),
            Event::ConfigFailed(f) => names::config_failed_subject(&f.object.name),
        }
    }

    /// What makes two publications "the same fact": the same tag-set change
    /// of a repository, the same move of a policy, the same commit. Anything
    /// that varies between a retry and the original (time, instance, event
    /// id) is left out, so retries and parallel instances collapse. A
    /// failure is only part of its fact: see [`Envelope::msg_id`].
    fn identity(&self) -> String {
        match self {
            // The same tag set published again means its images changed
            // (a tag pushed again, seen by `digestReflectionPolicy: Always`):
            // the images are then part of the fact, so each re-push is one.
            Event::TagsDiscovered(e)
                if e.previous_tag_set_digest.as_deref() == Some(e.tag_set_digest.as_str()) =>
            {
                let images = serde_json::to_string(&e.images).unwrap_or_default();
                format!(
                    "{}|{}|{}|{:x}",
                    e.repository,
                    e.tag_set_digest,
                    e.tag_set_digest,
                    Sha256::digest(images.as_bytes())
                )
            }
            Event::TagsDiscovered(e) => format!(
                "{}|{}|{}",
                e.repository,
                e.previous_tag_set_digest.as_deref().unwrap_or("-"),
                e.tag_set_digest
            ),
            Event::PolicyResolved(e) => format!(
                "{}|{}|{}",
                e.policy,
                e.previous
                    .as_ref()
                    .map_or("-".to_string(), ToString::to_string),
                e.current
            ),
            Event::CommitPushed(e) => format!("{}|{}|{}", e.automation, e.branch, e.commit),
            Event::PullRequestOpened(e) | Event::PullRequestUpdated(e) => {
                format!("{}|{}|{}", e.automation, e.number, e.commit)
            }
            Event::ScanFailed(f)
            | Event::ResolveFailed(f)
            | Event::CommitFailed(f)
            | Event::ReviewFailed(f)
            | Event::NotificationFailed(f)
            | Event::ConfigFailed(f) => {
                format!("{}|{}|{}", f.object, f.attempt, f.error)
            }
            // Once per episode: the same stall seen by every instance and
            // every sweep is one fact.
            Event::PolicyStale(e) | Event::AutomationStalled(e) => {
                format!(
                    "{}|{}|{}",
                    e.object,
                    e.reason.as_str(),
                    e.since.to_rfc3339()
                )
            }
            // Once per finding, whichever commit or instance found it.
            Event::ManifestWarning(w) => format!("{}|{}", w.automation, w.finding),
            // One sync of one commit to one outcome: a source polling the
            // same commit again after a drift repair publishes a new fact.
            Event::ConfigSynced(e) => {
                let outcome = serde_json::to_string(&(&e.applied, &e.deleted, &e.unchanged))
                    .unwrap_or_default();
                format!(
                    "{}|{}|{:x}",
                    e.source,
                    e.commit,
                    Sha256::digest(outcome.as_bytes())
                )
            }
            Event::ConfigRejected(e) => {
                let errors = serde_json::to_string(&e.errors).unwrap_or_default();
                format!(
                    "{}|{}|{:x}",
                    e.source,
                    e.commit,
                    Sha256::digest(errors.as_bytes())
                )
            }
        }
    }
}

/// Digest of a tag set, independent of order and duplicates: what
/// `TagsDiscovered` compares to decide whether anything changed.
pub fn tag_set_digest<'a>(tags: impl IntoIterator<Item = &'a str>) -> String {
    let mut sorted: Vec<&str> = tags.into_iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut hasher = Sha256::new();
    for tag in sorted {
        hasher.update(tag.as_bytes());
        hasher.update(b"\n");
    }
    format!("sha256:{:x}", hasher.finalize())
}

/// One event with its envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// A ULID, unique per publication.
    pub id: String,
    /// When the fact happened.
    pub occurred_at: DateTime<Utc>,
    /// `service/instance` that published it.
    pub source: String,
    /// The id of the event that caused this one.
    pub causation_id: Option<String>,
    /// The id shared by every event of one chain (the root's id).
    pub correlation_id: String,
    /// The payload.
    pub payload: Event,
}

impl Envelope {
    /// Starts a new chain.
    pub fn new(source: impl Into<String>, payload: Event) -> Self {
        let id = ulid::Ulid::new().to_string();
        Self {
            correlation_id: id.clone(),
            id,
            occurred_at: Utc::now(),
            source: source.into(),
            causation_id: None,
            payload,
        }
    }

    /// Continues `cause`'s chain.
    pub fn caused_by(cause: &Envelope, source: impl Into<String>, payload: Event) -> Self {
        let mut envelope = Self::new(source, payload);
        envelope.causation_id = Some(cause.id.clone());
        envelope.correlation_id = cause.correlation_id.clone();
        envelope
    }

    /// The payload's type.
    pub fn event_type(&self) -> EventType {
        self.payload.event_type()
    }

    /// The `Nats-Msg-Id`: a hash of the event's type and identity, so the
    /// stream's duplicate window drops a retried or parallel publication of
    /// the same fact.
    ///
    /// A failure is an observation, not a state: the same error met again by
    /// a later attempt is another fact, and the audit log must show every
    /// one (a registry failing every few seconds for a minute is not one
    /// failure). So a failure's identity also holds the event whose handling
    /// failed (handling it again with the same outcome collapses), or, when
    /// nothing caused it (a scheduled scan, an interval reconcile), this
    /// publication's own id (only a republication of this very envelope
    /// collapses).
    pub fn msg_id(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.event_type().as_str().as_bytes());
        hasher.update(b"|");
        hasher.update(self.payload.identity().as_bytes());
        if let Event::ScanFailed(_)
        | Event::ResolveFailed(_)
        | Event::CommitFailed(_)
        | Event::ReviewFailed(_)
        | Event::NotificationFailed(_)
        | Event::ConfigFailed(_) = &self.payload
        {
            hasher.update(b"|");
            hasher.update(self.causation_id.as_deref().unwrap_or(&self.id).as_bytes());
        }
        let digest = format!("{:x}", hasher.finalize());
        format!("{}-{}", self.event_type().as_str(), &digest[..40])
    }

    /// Serialises to the wire shape.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Wire {
            id: &self.id,
            event_type: self.event_type(),
            version: self.event_type().current_version(),
            occurred_at: self.occurred_at,
            source: &self.source,
            causation_id: self.causation_id.as_ref(),
            correlation_id: &self.correlation_id,
            payload: &self.payload,
        })
    }

    /// Parses the wire shape, refusing unknown types and versions.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let wire: Wire<String, &serde_json::value::RawValue> =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        let event_type = wire.event_type;
        let supported = event_type.current_version();
        if wire.version != supported {
            return Err(DecodeError::UnsupportedVersion {
                event_type,
                version: wire.version,
                supported,
            });
        }
        let raw = wire.payload.get();
        let bad = |e: serde_json::Error| DecodeError::Payload {
            event_type,
            reason: e.to_string(),
        };
        let payload = match event_type {
            EventType::TagsDiscovered => {
                Event::TagsDiscovered(serde_json::from_str(raw).map_err(bad)?)
            }
            EventType::PolicyResolved => {
                Event::PolicyResolved(serde_json::from_str(raw).map_err(bad)?)
            }
            EventType::CommitPushed => Event::CommitPushed(serde_json::from_str(raw).map_err(bad)?),
            EventType::ScanFailed => Event::ScanFailed(serde_json::from_str(raw).map_err(bad)?),
            EventType::ResolveFailed => {
                Event::ResolveFailed(serde_json::from_str(raw).map_err(bad)?)
            }
            EventType::CommitFailed => Event::CommitFailed(serde_json::from_str(raw).map_err(bad)?),
            EventType::ManifestWarning => {
                Event::ManifestWarning(serde_json::from_str(raw).map_err(bad)?)
            }
            EventType::PullRequestOpened => {
                Event::PullRequestOpened(serde_json::from_str(raw).map_err(bad)?)
            }
            EventType::PullRequestUpdated => {
                Event::PullRequestUpdated(serde_json::from_str(raw).map_err(bad)?)
            }
            EventType::ReviewFailed => Event::ReviewFailed(serde_json::from_str(raw).map_err(bad)?),
            EventType::PolicyStale => Event::PolicyStale(serde_json::from_str(raw).map_err(bad)?),
            EventType::AutomationStalled => {
                Event::AutomationStalled(serde_json::from_str(raw).map_err(bad)?)
            }
            EventType::NotificationFailed => {
                Event::NotificationFailed(serde_json::from_str(raw).map_err(bad)?)
            }
            EventType::ConfigSynced => Event::ConfigSynced(serde_json::from_str(raw).map_err(bad)?),
            EventType::ConfigRejected => {
                Event::ConfigRejected(serde_json::from_str(raw).map_err(bad)?)
            }
            EventType::ConfigFailed => Event::ConfigFailed(serde_json::from_str(raw).map_err(bad)?),
        };
        Ok(Self {
            id: wire.id,
            occurred_at: wire.occurred_at,
            source: wire.source,
            causation_id: wire.causation_id,
            correlation_id: wire.correlation_id,
            payload,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Wire<S, P> {
    id: S,
    #[serde(rename = "type")]
    event_type: EventType,
    version: u32,
    occurred_at: DateTime<Utc>,
    source: S,
    causation_id: Option<S>,
    correlation_id: S,
    payload: P,
}

/// Why bytes read from the bus are not an event this build understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not an envelope, or an unknown `type`.
    #[error("not a tagrelay event: {0}")]
    Malformed(String),
    /// A version this build does not know: refused rather than misread.
    #[error("{event_type} version {version} is not supported (this build reads version {supported}); upgrade this reader")]
    UnsupportedVersion {
        /// The event's type.
        event_type: EventType,
        /// The version it carries.
        version: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The payload does not match its type's shape.
    #[error("{event_type} payload does not match its schema: {reason}")]
    Payload {
        /// The event's type.
        event_type: EventType,
        /// The mismatch.
        reason: String,
    },
}

#[cfg(test)]
pub(crate) mod samples {
    use super::*;

    /// One representative payload per event type, every optional field set.
    pub fn all() -> Vec<Event> {
        let at = DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let failure = Failure {
            object: ObjectRef::new("flux-system", "app"),
            error: "registry answered 503".into(),
            will_retry: true,
            attempt: 2,
            reason: FailureReason::RegistryUnavailable,
        };
        let pull_request = PullRequest {
            automation: ObjectRef::new("flux-system", "apps"),
            provider: "github".into(),
            url: "https://github.com/org/fleet/pull/7".into(),
            number: 7,
            head: "image-updates".into(),
            base: "main".into(),
            commit: "b".repeat(40),
            title: "Update app to 1.1.0".into(),
            changes: vec![FileChange {
                file: "apps/app.yaml".into(),
                old: "ghcr.io/org/app:1.0.0".into(),
                new: "ghcr.io/org/app:1.1.0".into(),
                setter: "flux-system:app".into(),
            }],
        };
        vec![
            Event::TagsDiscovered(TagsDiscovered {
                repository: ObjectRef::new("flux-system", "app"),
                image: "ghcr.io/org/app".into(),
                tags: Some(vec!["1.0.0".into(), "1.1.0".into()]),
                tags_ref: Some(TagsRef {
                    bucket: "tagrelay-tag-sets".into(),
                    key: "k".into(),
                }),
                tag_count: 2,
                tag_set_digest: tag_set_digest(["1.0.0", "1.1.0"]),
                previous_tag_set_digest: Some(tag_set_digest(["1.0.0"])),
                scanned_at: at,
                trigger: ScanTrigger::Webhook,
                images: BTreeMap::from([(
                    "1.1.0".to_string(),
                    ImageMetadata {
                        digest: Some(format!("sha256:{}", "a".repeat(64))),
                        created: Some(at),
                    },
                )]),
            }),
            Event::PolicyResolved(PolicyResolved {
                policy: ObjectRef::new("flux-system", "app"),
                repository: ObjectRef::new("flux-system", "app"),
                image: "ghcr.io/org/app".into(),
                previous: Some(SelectedImage {
                    tag: "1.0.0".into(),
                    digest: None,
                }),
                current: SelectedImage {
                    tag: "1.1.0".into(),
                    digest: Some(format!("sha256:{}", "a".repeat(64))),
                },
                cause: ResolveCause::TagsChanged,
                tag_set_digest: tag_set_digest(["1.0.0", "1.1.0"]),
            }),
            Event::CommitPushed(CommitPushed {
                automation: ObjectRef::new("flux-system", "apps"),
                remote: "https://git.example/org/fleet.git".into(),
                branch: "main".into(),
                commit: "b".repeat(40),
                parent: Some("c".repeat(40)),
                changes: vec![FileChange {
                    file: "apps/app.yaml".into(),
                    old: "ghcr.io/org/app:1.0.0".into(),
                    new: "ghcr.io/org/app:1.1.0".into(),
                    setter: "flux-system:app".into(),
                }],
                causes: vec!["01JABCDEF".into()],
                signed_with: Some(CommitSignature {
                    format: SignatureFormat::Openpgp,
                    fingerprint: "0123456789ABCDEF0123456789ABCDEF01234567".into(),
                }),
            }),
            Event::ManifestWarning(ManifestWarning {
                automation: ObjectRef::new("flux-system", "apps"),
                remote: "https://git.example/org/fleet.git".into(),
                commit: "b".repeat(40),
                file: "apps/app.yaml".into(),
                line: 12,
                check: "near-miss-marker".into(),
                problem: "# {\"imagepolicy\": \"flux-system:app\"} is not read as a marker: the key must be \"$imagepolicy\", with the $".into(),
                fix: "write # {\"$imagepolicy\": \"flux-system:app\"}".into(),
                finding: "0123456789abcdef0123456789abcdef".into(),
            }),
            Event::PullRequestOpened(pull_request.clone()),
            Event::PullRequestUpdated(pull_request),
            Event::ConfigSynced(ConfigSynced {
                source: "fleet".into(),
                repository: "https://git.example/org/fleet.git".into(),
                branch: "main".into(),
                commit: "d".repeat(40),
                paths: vec!["clusters/prod/images".into()],
                applied: vec![ConfigObject {
                    kind: "ImagePolicy".into(),
                    namespace: "flux-system".into(),
                    name: "app".into(),
                }],
                deleted: vec![ConfigObject {
                    kind: "ImageRepository".into(),
                    namespace: "flux-system".into(),
                    name: "old".into(),
                }],
                unchanged: vec![ConfigObject {
                    kind: "Namespace".into(),
                    namespace: "apps".into(),
                    name: "apps".into(),
                }],
                skipped: vec![ConfigProblem {
                    file: "clusters/prod/images/secret.yaml".into(),
                    line: 1,
                    object: Some("Secret/flux-system/creds".into()),
                    field: "kind".into(),
                    reason: "Secrets are never stored on the bus; skipped".into(),
                }],
            }),
            Event::ConfigRejected(ConfigRejected {
                source: "fleet".into(),
                repository: "https://git.example/org/fleet.git".into(),
                branch: "main".into(),
                commit: "e".repeat(40),
                paths: vec!["clusters/prod/images".into()],
                errors: vec![ConfigProblem {
                    file: "clusters/prod/images/app.yaml".into(),
                    line: 9,
                    object: Some("ImagePolicy/flux-system/app".into()),
                    field: "spec.policy.semver.range".into(),
                    reason: "invalid range".into(),
                }],
                kept_commit: Some("d".repeat(40)),
            }),
            Event::ScanFailed(failure.clone()),
            Event::ResolveFailed(failure.clone()),
            Event::CommitFailed(failure.clone()),
            Event::ReviewFailed(failure.clone()),
            Event::NotificationFailed(failure.clone()),
            Event::ConfigFailed(Failure {
                object: ObjectRef::new("config", "fleet"),
                reason: FailureReason::GitUnavailable,
                ..failure
            }),
            Event::PolicyStale(Stalled {
                object: ObjectRef::new("flux-system", "app"),
                reason: StallReason::ScansFailing,
                message: "3 scans in a row failed: registry unreachable".into(),
                since: "2026-11-21T10:00:00Z".parse().unwrap(),
            }),
            Event::AutomationStalled(Stalled {
                object: ObjectRef::new("flux-system", "apps"),
                reason: StallReason::CommitsFailing,
                message: "failing for 10m: push rejected".into(),
                since: "2026-11-21T10:00:00Z".parse().unwrap(),
            }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips_through_json() {
        for payload in samples::all() {
            let cause = Envelope::new("scanner/a", payload.clone());
            let envelope = Envelope::caused_by(&cause, "resolver/b", payload);
            let bytes = envelope.to_json().unwrap();
            let back = Envelope::from_json(&bytes).unwrap();
            assert_eq!(back, envelope);
            assert_eq!(back.causation_id.as_deref(), Some(cause.id.as_str()));
            assert_eq!(back.correlation_id, cause.correlation_id);
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(json["type"], envelope.event_type().as_str());
            assert_eq!(json["version"], 1);
        }
    }

    #[test]
    fn unknown_versions_and_types_are_refused_not_misread() {
        let envelope = Envelope::new("scanner/a", samples::all().remove(0));
        let mut json: serde_json::Value =
            serde_json::from_slice(&envelope.to_json().unwrap()).unwrap();
        json["version"] = 2.into();
        let err = Envelope::from_json(json.to_string().as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::UnsupportedVersion {
                    version: 2,
                    supported: 1,
                    ..
                }
            ),
            "{err}"
        );
        json["version"] = 1.into();
        json["type"] = "TagsDeleted".into();
        assert!(matches!(
            Envelope::from_json(json.to_string().as_bytes()),
            Err(DecodeError::Malformed(_))
        ));
        json["type"] = "PolicyResolved".into();
        assert!(matches!(
            Envelope::from_json(json.to_string().as_bytes()),
            Err(DecodeError::Payload { .. })
        ));
    }

    #[test]
    fn a_failure_reason_missing_or_unknown_reads_as_other_and_each_known_one_round_trips() {
        let failure = samples::all()
            .into_iter()
            .find(|e| matches!(e, Event::ScanFailed(_)))
            .unwrap();
        let envelope = Envelope::new("scanner/a", failure);
        let mut json: serde_json::Value =
            serde_json::from_slice(&envelope.to_json().unwrap()).unwrap();
        let reason_of =
            |json: &serde_json::Value| match Envelope::from_json(json.to_string().as_bytes())
                .unwrap()
                .payload
            {
                Event::ScanFailed(f) => f.reason,
                other => panic!("not a failure: {other:?}"),
            };
        assert_eq!(reason_of(&json), FailureReason::RegistryUnavailable);
        json["payload"].as_object_mut().unwrap().remove("reason");
        assert_eq!(
            reason_of(&json),
            FailureReason::Other,
            "an event from before reasons"
        );
        json["payload"]["reason"] = "QuotaExceeded".into();
        assert_eq!(
            reason_of(&json),
            FailureReason::Other,
            "a word from a newer writer"
        );
        for reason in FailureReason::ALL {
            json["payload"]["reason"] = reason.as_str().into();
            assert_eq!(reason_of(&json), reason);
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
    }

    #[test]
    fn the_same_tags_published_again_with_new_images_is_a_new_fact() {
        let Event::TagsDiscovered(mut scan) = samples::all().remove(0) else {
            unreachable!()
        };
        scan.previous_tag_set_digest = Some(scan.tag_set_digest.clone());
        let mut repushed = scan.clone();
        repushed.images.insert(
            "9.9.9".into(),
            ImageMetadata {
                digest: Some("sha256:other".into()),
                created: None,
            },
        );
        let first = Envelope::new("scanner/a", Event::TagsDiscovered(scan.clone()));
        assert_ne!(
            first.msg_id(),
            Envelope::new("scanner/a", Event::TagsDiscovered(repushed)).msg_id()
        );
        assert_eq!(
            first.msg_id(),
            Envelope::new("scanner/b", Event::TagsDiscovered(scan)).msg_id(),
            "the same images twice are one fact"
        );
    }

    #[test]
    fn msg_id_depends_on_the_fact_not_on_the_publication() {
        let payload = samples::all().remove(1);
        let first = Envelope::new("resolver/a", payload.clone());
        let second = Envelope::new("resolver/b", payload.clone());
        assert_ne!(first.id, second.id);
        assert_eq!(first.msg_id(), second.msg_id());
        let Event::PolicyResolved(mut moved) = payload else {
            unreachable!()
        };
        moved.current.tag = "1.2.0".into();
        assert_ne!(
            Envelope::new("resolver/a", Event::PolicyResolved(moved)).msg_id(),
            first.msg_id()
        );
    }

    #[test]
    fn a_failure_is_one_observation_or_the_failed_handling_of_one_event() {
        let failure = samples::all()
            .into_iter()
            .find(|e| matches!(e, Event::CommitFailed(_)))
            .unwrap();
        let seen = Envelope::new("committer/a", failure.clone());
        assert_eq!(
            seen.msg_id(),
            seen.clone().msg_id(),
            "a republication collapses"
        );
        let seen_again = Envelope::new("committer/a", failure.clone());
        assert_ne!(
            seen_again.msg_id(),
            seen.msg_id(),
            "the same error met again later is another fact"
        );
        let cause = Envelope::new("resolver/a", samples::all().remove(1));
        let handled = Envelope::caused_by(&cause, "committer/a", failure.clone());
        let handled_again = Envelope::caused_by(&cause, "committer/b", failure.clone());
        assert_eq!(
            handled.msg_id(),
            handled_again.msg_id(),
            "handling the same event again with the same outcome collapses"
        );
        let other = Envelope::new("resolver/a", samples::all().remove(1));
        assert_ne!(
            Envelope::caused_by(&other, "committer/a", failure).msg_id(),
            handled.msg_id()
        );
    }

    #[test]
    fn tag_set_digest_ignores_order_and_duplicates() {
        assert_eq!(tag_set_digest(["b", "a", "a"]), tag_set_digest(["a", "b"]));
        assert_ne!(tag_set_digest(["a"]), tag_set_digest(["a", "b"]));
        assert_ne!(tag_set_digest(["ab"]), tag_set_digest(["a", "b"]));
    }
}
