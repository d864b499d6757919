//! tagrelay's events as Flux's notification events (`eventv1.Event`), the
//! shape every Flux receiver already reads: the generic webhook's body, the
//! NATS provider's message, and what every other payload is built from.
//!
//! Pure: an envelope in, a Flux event out.

use std::collections::BTreeMap;

use chrono::SecondsFormat;
use serde::Serialize;
use tagrelay_proto::config::Kind;
use tagrelay_proto::event::{Envelope, Event, Failure, FailureReason, ObjectRef};

/// Flux's `info` severity: a success.
pub const INFO: &str = "info";
/// Flux's `error` severity: a failure or a warning.
pub const ERROR: &str = "error";
/// The metadata key carrying `<branch>@sha1:<commit>`, which commit status
/// providers read, as Flux's controllers write it.
pub const REVISION_KEY: &str = "revision";

/// The object an event is about, as Kubernetes' `ObjectReference`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvolvedObject {
    /// `ImageRepository`, `ImagePolicy` or `ImageUpdateAutomation`.
    pub kind: String,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// `image.toolkit.fluxcd.io/v1`.
    pub api_version: String,
}

/// One notification, field for field (and in field order) as Flux's
/// `eventv1.Event` marshals, so a receiver written for Flux reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxEvent {
    /// What the event is about.
    pub involved_object: InvolvedObject,
    /// `info` or `error`.
    pub severity: String,
    /// When it happened, RFC 3339 in whole seconds as `metav1.Time` writes.
    pub timestamp: String,
    /// What happened, for people.
    pub message: String,
    /// Why, as one CamelCase word.
    pub reason: String,
    /// Extra facts (`revision`, `summary`, an Alert's `eventMetadata`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// The tagrelay service that published the fact (`tagrelay-committer`).
    pub reporting_controller: String,
    /// The instance that published it (`committer/host-1`).
    pub reporting_instance: String,
}

impl FluxEvent {
    /// `<kind>/<name>.<namespace>`, lower-case kind: how Flux's chat
    /// providers name the object.
    pub fn object_name(&self) -> String {
        format!(
            "{}/{}.{}",
            self.involved_object.kind.to_lowercase(),
            self.involved_object.name,
            self.involved_object.namespace
        )
    }

    /// Whether the event is an error.
    pub fn is_error(&self) -> bool {
        self.severity == ERROR
    }

    /// The commit the event is about, from its `revision` metadata.
    pub fn commit(&self) -> Option<&str> {
        let revision = self.metadata.get(REVISION_KEY)?;
        let (_, hash) = revision.rsplit_once(':')?;
        (!hash.is_empty()).then_some(hash)
    }
}

/// The Flux event for `envelope`, or `None` for an event that is never
/// notified (the notifier's own delivery failures, which would loop, and
/// the configuration source's events, which name no Flux object).
pub fn flux_event(envelope: &Envelope) -> Option<FluxEvent> {
    let (kind, object, severity, reason, message, metadata) = match &envelope.payload {
        Event::TagsDiscovered(e) => (
            Kind::ImageRepository,
            &e.repository,
            INFO,
            "Succeeded".to_string(),
            format!("successful scan: found {} tags", e.tag_count),
            BTreeMap::new(),
        ),
        Event::PolicyResolved(e) => (
            Kind::ImagePolicy,
            &e.policy,
            INFO,
            "Succeeded".to_string(),
            match &e.previous {
                Some(previous) => format!(
                    "Latest image tag for '{}' updated from {} to {}",
                    e.image, previous, e.current
                ),
                None => format!(
                    "Latest image tag for '{}' resolved to {}",
                    e.image, e.current
                ),
            },
            BTreeMap::new(),
        ),
        Event::CommitPushed(e) => {
            let mut message = format!(
                "pushed commit '{}' to branch '{}'",
                short(&e.commit),
                e.branch
            );
            for change in &e.changes {
                message.push_str(&format!(
                    "\n- {}: {} -> {}",
                    change.file, change.old, change.new
                ));
            }
            let metadata = BTreeMap::from([(
                REVISION_KEY.to_string(),
                format!("{}@sha1:{}", e.branch, e.commit),
            )]);
            (
                Kind::ImageUpdateAutomation,
                &e.automation,
                INFO,
                "Succeeded".to_string(),
                message,
                metadata,
            )
        }
        Event::ManifestWarning(w) => (
            Kind::ImageUpdateAutomation,
            &w.automation,
            ERROR,
            "ManifestWarning".to_string(),
            format!("{}:{}: {} (fix: {})", w.file, w.line, w.problem, w.fix),
            BTreeMap::new(),
        ),
        Event::PullRequestOpened(e) | Event::PullRequestUpdated(e) => (
            Kind::ImageUpdateAutomation,
            &e.automation,
            INFO,
            envelope.event_type().as_str().to_string(),
            format!(
                "{} pull request #{} {} ({} into {})",
                if matches!(envelope.payload, Event::PullRequestOpened(_)) {
                    "opened"
                } else {
                    "updated"
                },
                e.number,
                e.url,
                e.head,
                e.base
            ),
            BTreeMap::new(),
        ),
        Event::ScanFailed(f) => failure(Kind::ImageRepository, f),
        Event::ResolveFailed(f) => failure(Kind::ImagePolicy, f),
        Event::CommitFailed(f) | Event::ReviewFailed(f) => failure(Kind::ImageUpdateAutomation, f),
        Event::PolicyStale(e) => (
            Kind::ImagePolicy,
            &e.object,
            ERROR,
            e.reason.as_str().to_string(),
            e.message.clone(),
            BTreeMap::new(),
        ),
        Event::AutomationStalled(e) => (
            Kind::ImageUpdateAutomation,
            &e.object,
            ERROR,
            e.reason.as_str().to_string(),
            e.message.clone(),
            BTreeMap::new(),
        ),
        Event::NotificationFailed(_) => return None,
        // About a configuration source, not a Flux object an Alert's
        // eventSources could name: `tagrelay audit --kind config` and the
        // `tagrelay.config.polls` alerts report them.
        Event::ConfigSynced(_) | Event::ConfigRejected(_) | Event::ConfigFailed(_) => return None,
    };
    Some(FluxEvent {
        involved_object: InvolvedObject {
            kind: kind.as_str().to_string(),
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            api_version: kind.current_api_version().to_string(),
        },
        severity: severity.to_string(),
        timestamp: envelope
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        message,
        reason,
        metadata,
        reporting_controller: reporting_controller(&envelope.source),
        reporting_instance: envelope.source.clone(),
    })
}

/// The parts of a failure's Flux event.
fn failure(
    kind: Kind,
    f: &Failure,
) -> (
    Kind,
    &ObjectRef,
    &'static str,
    String,
    String,
    BTreeMap<String, String>,
) {
    let reason = match f.reason {
        FailureReason::Other => "ReconciliationFailed".to_string(),
        reason => reason.as_str().to_string(),
    };
    (
        kind,
        &f.object,
        ERROR,
        reason,
        f.error.clone(),
        BTreeMap::new(),
    )
}

/// `tagrelay-<service>` from an envelope's `service/instance` source.
fn reporting_controller(source: &str) -> String {
    let service = source.split('/').next().unwrap_or(source);
    format!("tagrelay-{service}")
}

fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tagrelay_proto::event::{CommitPushed, FileChange, SelectedImage};

    fn envelope(payload: Event) -> Envelope {
        let mut envelope = Envelope::new("committer/host-1", payload);
        envelope.occurred_at = "2026-12-05T10:00:00.123Z".parse().unwrap();
        envelope
    }

    #[test]
    fn a_commit_is_an_info_event_with_flux_field_order_and_revision() {
        let event = flux_event(&envelope(Event::CommitPushed(CommitPushed {
            automation: ObjectRef::new("apps", "podinfo"),
            remote: "https://example.invalid/fleet.git".into(),
            branch: "main".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            parent: None,
            changes: vec![FileChange {
                file: "apps/app.yaml".into(),
                old: "app:1.0.0".into(),
                new: "app:1.0.1".into(),
                setter: "apps:app".into(),
            }],
            causes: Vec::new(),
            signed_with: None,
        })))
        .unwrap();
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"involvedObject":{"kind":"ImageUpdateAutomation","namespace":"apps","name":"podinfo","apiVersion":"image.toolkit.fluxcd.io/v1"},"severity":"info","timestamp":"2026-12-05T10:00:00Z","message":"pushed commit '0123456' to branch 'main'\n- apps/app.yaml: app:1.0.0 -> app:1.0.1","reason":"Succeeded","metadata":{"revision":"main@sha1:0123456789abcdef0123456789abcdef01234567"},"reportingController":"tagrelay-committer","reportingInstance":"committer/host-1"}"#
        );
        assert_eq!(
            event.commit(),
            Some("0123456789abcdef0123456789abcdef01234567")
        );
        assert_eq!(event.object_name(), "imageupdateautomation/podinfo.apps");
    }

    #[test]
    fn failures_are_errors_named_by_their_reason_and_own_failures_are_not_notified() {
        let failed = Failure {
            object: ObjectRef::new("apps", "app"),
            error: "registry down".into(),
            will_retry: true,
            attempt: 1,
            reason: FailureReason::RegistryUnavailable,
        };
        let event = flux_event(&envelope(Event::ScanFailed(failed.clone()))).unwrap();
        assert_eq!(
            (event.severity.as_str(), event.reason.as_str()),
            (ERROR, "RegistryUnavailable")
        );
        assert_eq!(event.involved_object.kind, "ImageRepository");
        let other = Failure {
            reason: FailureReason::Other,
            ..failed.clone()
        };
        let event = flux_event(&envelope(Event::CommitFailed(other))).unwrap();
        assert_eq!(event.reason, "ReconciliationFailed");
        assert!(flux_event(&envelope(Event::NotificationFailed(failed))).is_none());
    }

    #[test]
    fn a_policy_move_reads_as_flux_says_it() {
        let event = flux_event(&envelope(Event::PolicyResolved(
            tagrelay_proto::event::PolicyResolved {
                policy: ObjectRef::new("apps", "app"),
                repository: ObjectRef::new("apps", "app"),
                image: "ghcr.io/org/app".into(),
                previous: Some(SelectedImage {
                    tag: "1.0.0".into(),
                    digest: None,
                }),
                current: SelectedImage {
                    tag: "1.0.1".into(),
                    digest: None,
                },
                cause: tagrelay_proto::event::ResolveCause::TagsChanged,
                tag_set_digest: "sha256:x".into(),
            },
        )))
        .unwrap();
        assert_eq!(
            event.message,
            "Latest image tag for 'ghcr.io/org/app' updated from 1.0.0 to 1.0.1"
        );
        assert_eq!(event.commit(), None);
    }
}
