//! Every name on the bus, defined once: subjects, streams, durable consumers
//! and buckets. A service that needs a name takes it from here, so two
//! services can never disagree on where an event goes.

/// The stream holding every event: the audit log, replayable.
pub const EVENTS_STREAM: &str = "TAGRELAY_EVENTS";
/// The work-queue stream of scan requests (schedule, reconcile, webhooks).
pub const SCAN_REQUESTS_STREAM: &str = "TAGRELAY_SCAN_REQUESTS";

/// Prefix of every tagrelay subject.
pub const SUBJECT_PREFIX: &str = "tagrelay";
/// Filter matching every `TagsDiscovered`.
pub const TAGS_FILTER: &str = "tagrelay.tags.>";
/// Filter matching every `PolicyResolved`.
pub const POLICY_FILTER: &str = "tagrelay.policy.>";
/// Filter matching every `CommitPushed`.
pub const COMMIT_FILTER: &str = "tagrelay.commit.>";
/// Filter matching every `PullRequestOpened` / `PullRequestUpdated`.
pub const PULL_REQUEST_FILTER: &str = "tagrelay.pullrequest.>";
/// Filter matching every failure event.
pub const FAILED_FILTER: &str = "tagrelay.failed.>";
/// Every lint warning about an automation's manifests.
pub const WARNING_FILTER: &str = "tagrelay.warning.>";
/// Filter matching every `ConfigSynced` / `ConfigRejected`.
pub const CONFIG_FILTER: &str = "tagrelay.config.>";
/// Every `PolicyStale` / `AutomationStalled`.
pub const STALE_FILTER: &str = "tagrelay.stale.>";
/// Every event on [`EVENTS_STREAM`]: what the notifier reads.
pub const EVENTS_FILTER: &str = "tagrelay.>";
/// Filter matching every scan request.
pub const SCAN_REQUEST_FILTER: &str = "tagrelay.scan.>";

/// Durable consumer of the scanner on [`SCAN_REQUESTS_STREAM`].
pub const SCANNER_CONSUMER: &str = "scanner";
/// Durable consumer of the resolver on `TagsDiscovered`.
pub const RESOLVER_CONSUMER: &str = "resolver";
/// Durable consumer of the committer on `PolicyResolved`.
pub const COMMITTER_CONSUMER: &str = "committer";
/// Durable consumer of the committer's review stage on `CommitPushed`.
pub const REVIEW_CONSUMER: &str = "review";
/// Durable consumer of the notifier on every event.
pub const NOTIFIER_CONSUMER: &str = "notifier";

/// KV bucket of applied configuration objects, keyed by `ObjectKey::bucket_key`.
pub const CONFIG_BUCKET: &str = "tagrelay-config";
/// KV bucket of per-object status records, shown by `tagrelay get`.
pub const STATUS_BUCKET: &str = "tagrelay-status";
/// KV bucket of the latest selection per ImagePolicy (resolver state).
pub const POLICY_STATE_BUCKET: &str = "tagrelay-policy-state";
/// KV bucket of the last good tag set per ImageRepository (scanner state).
pub const TAG_SETS_BUCKET: &str = "tagrelay-tag-sets";
/// KV bucket caching image digests and creation times, keyed by digest.
pub const IMAGE_METADATA_BUCKET: &str = "tagrelay-image-metadata";
/// KV bucket of the pull request each automation keeps open, keyed by the
/// automation's bucket key (review stage state).
pub const PULL_REQUESTS_BUCKET: &str = "tagrelay-pull-requests";
/// KV bucket of the notifier: which event each Provider has been sent
/// (`sent.<ns>.<provider>.<event id>`, kept as long as the events) and which
/// stall episodes were announced (`stalled.<kind>.<ns>.<name>`).
pub const NOTIFICATIONS_BUCKET: &str = "tagrelay-notifications";
/// Object store of tag lists too large to travel inside a `TagsDiscovered`,
/// keyed by the tag-set digest (so an entry never changes once written).
pub const TAG_LISTS_BUCKET: &str = "tagrelay-tag-lists";

/// The pipeline stages, as they appear in failure subjects and sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Lists registry tags.
    Scan,
    /// Selects the latest tag per policy.
    Resolve,
    /// Writes Git.
    Commit,
    /// Opens and updates the pull request of a review branch.
    Review,
    /// Delivers notifications to Alerts' Providers.
    Notify,
}

impl Stage {
    /// The stage's subject token.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Scan => "scan",
            Stage::Resolve => "resolve",
            Stage::Commit => "commit",
            Stage::Review => "review",
            Stage::Notify => "notify",
        }
    }

    /// The stage's durable consumer: its name in metrics and errors.
    pub fn consumer(self) -> &'static str {
        match self {
            Stage::Scan => SCANNER_CONSUMER,
            Stage::Resolve => RESOLVER_CONSUMER,
            Stage::Commit => COMMITTER_CONSUMER,
            Stage::Review => REVIEW_CONSUMER,
            Stage::Notify => NOTIFIER_CONSUMER,
        }
    }
}

/// Makes a name safe as one subject token (and one KV key token): Kubernetes
/// names may contain dots, which NATS reads as token separators. `_` cannot
/// occur in a Kubernetes name, so the mapping is reversible.
pub fn subject_token(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() => '_',
            c => c,
        })
        .collect()
}

/// `tagrelay.tags.<ns>.<repository>`.
pub fn tags_subject(namespace: &str, repository: &str) -> String {
    subject("tags", namespace, repository)
}

/// `tagrelay.policy.<ns>.<policy>`.
pub fn policy_subject(namespace: &str, policy: &str) -> String {
    subject("policy", namespace, policy)
}

/// `tagrelay.commit.<ns>.<automation>`.
pub fn commit_subject(namespace: &str, automation: &str) -> String {
    subject("commit", namespace, automation)
}

/// `tagrelay.warning.<ns>.<automation>`.
pub fn warning_subject(namespace: &str, automation: &str) -> String {
    subject("warning", namespace, automation)
}

/// `tagrelay.pullrequest.<ns>.<automation>`.
pub fn pull_request_subject(namespace: &str, automation: &str) -> String {
    subject("pullrequest", namespace, automation)
}

/// `tagrelay.stale.<ns>.<name>`: an ImagePolicy's or automation's stall.
pub fn stale_subject(namespace: &str, name: &str) -> String {
    subject("stale", namespace, name)
}

/// `tagrelay.failed.<stage>.<ns>.<name>`.
pub fn failed_subject(stage: Stage, namespace: &str, name: &str) -> String {
    format!(
        "{SUBJECT_PREFIX}.failed.{}.{}.{}",
        stage.as_str(),
        subject_token(namespace),
        subject_token(name)
    )
}

/// `tagrelay.config.synced.<source>`: the last event here is the source's
/// memory of what it owns.
pub fn config_synced_subject(source: &str) -> String {
    format!("{SUBJECT_PREFIX}.config.synced.{}", subject_token(source))
}

/// `tagrelay.config.rejected.<source>`.
pub fn config_rejected_subject(source: &str) -> String {
    format!("{SUBJECT_PREFIX}.config.rejected.{}", subject_token(source))
}

/// `tagrelay.config.failed.<source>`.
pub fn config_failed_subject(source: &str) -> String {
    format!("{SUBJECT_PREFIX}.config.failed.{}", subject_token(source))
}

/// `tagrelay.scan.<ns>.<repository>`.
pub fn scan_request_subject(namespace: &str, repository: &str) -> String {
    subject("scan", namespace, repository)
}

fn subject(kind: &str, namespace: &str, name: &str) -> String {
    format!(
        "{SUBJECT_PREFIX}.{kind}.{}.{}",
        subject_token(namespace),
        subject_token(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_have_fixed_token_counts_whatever_the_names() {
        assert_eq!(
            tags_subject("flux-system", "app"),
            "tagrelay.tags.flux-system.app"
        );
        assert_eq!(policy_subject("ns", "my.app"), "tagrelay.policy.ns.my_app");
        assert_eq!(
            failed_subject(Stage::Commit, "ns", "a.b"),
            "tagrelay.failed.commit.ns.a_b"
        );
        for subject in [
            commit_subject("a.b", "c*d >e"),
            scan_request_subject("x", "y.z"),
            pull_request_subject("a", "b.c"),
            config_synced_subject("fleet.prod"),
            config_rejected_subject("fleet"),
        ] {
            assert_eq!(subject.split('.').count(), 4, "{subject}");
        }
    }
}
