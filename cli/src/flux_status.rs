//! The status `get -o yaml|json` prints, shaped as Flux's controllers write
//! it (`conditions`, `lastScanResult`, `latestRef`, `observedPreviousRef`,
//! `observedPolicies`, `lastPushCommit`, `lastHandledReconcileAt`…), so
//! scripts and dashboards written against Flux's objects read tagrelay's.
//! Pure: `get` gathers what it needs from the bus and hands it here.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use tagrelay_proto::config::{Object, DEFAULT_EXCLUSION};
use tagrelay_proto::event::SelectedImage;
use tagrelay_proto::reference::Repository;
use tagrelay_proto::status::ObjectStatus;

/// The annotation `flux reconcile` (and `tagrelay reconcile`) sets.
pub const REQUESTED_AT_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";

/// What the bus knows beyond the status record, for the fields Flux has.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// For a policy: the selection before the current one.
    pub previous: Option<SelectedImage>,
    /// For an automation: each policy it applies, with its image and
    /// selection.
    pub policies: BTreeMap<String, (String, SelectedImage)>,
    /// For an automation: the branch it pushes to.
    pub push_branch: Option<String>,
}

/// Flux's status of `object`, from tagrelay's record and what was observed.
pub fn flux_status(object: &Object, status: Option<&ObjectStatus>, observed: &Observed) -> Value {
    let mut out = Map::new();
    out.insert("conditions".into(), conditions(status));
    let Some(status) = status else {
        return Value::Object(out);
    };
    let handled = match object {
        Object::ImageRepository(_) => status.last_scan_time,
        _ => status.updated_at,
    };
    if let Some(requested) = object.metadata().annotations.get(REQUESTED_AT_ANNOTATION) {
        let answered = DateTime::parse_from_rfc3339(requested)
            .ok()
            .zip(handled)
            .is_some_and(|(asked, at)| at >= asked);
        if answered {
            out.insert("lastHandledReconcileAt".into(), json!(requested));
        }
    }
    match object {
        Object::ImageRepository(o) => {
            if let Ok(repository) = Repository::parse(&o.spec.image) {
                out.insert("canonicalImageName".into(), json!(repository.canonical()));
            }
            out.insert(
                "observedExclusionList".into(),
                json!(o
                    .spec
                    .exclusion_list
                    .clone()
                    .unwrap_or_else(|| vec![DEFAULT_EXCLUSION.to_string()])),
            );
            if let Some(scanned) = status.last_scan_time {
                out.insert(
                    "lastScanResult".into(),
                    json!({
                        "scanTime": time(scanned),
                        "tagCount": status.tag_count.unwrap_or(0),
                        "latestTags": status.latest_tags,
                    }),
                );
            }
        }
        Object::ImagePolicy(_) => {
            if let Some(latest) = &status.latest_image {
                out.insert("latestImage".into(), json!(latest));
                if let Some(reference) = latest_ref(latest) {
                    out.insert("latestRef".into(), reference);
                }
            }
            if let (Some(previous), Some(latest)) = (&observed.previous, &status.latest_image) {
                let name = latest_ref(latest)
                    .and_then(|r| r["name"].as_str().map(str::to_string))
                    .unwrap_or_default();
                out.insert("observedPreviousRef".into(), image_ref(&name, previous));
            }
            // tagrelay's release-age gate: the tag waiting, and until when.
            if let Some(held_back) = &status.held_back {
                out.insert("heldBack".into(), json!(held_back));
            }
        }
        Object::ImageUpdateAutomation(_) => {
            if let Some(run) = status.updated_at {
                out.insert("lastAutomationRunTime".into(), json!(time(run)));
            }
            if let Some(commit) = &status.last_push_commit {
                out.insert("lastPushCommit".into(), json!(commit));
                if let Some(branch) = &observed.push_branch {
                    out.insert(
                        "observedSourceRevision".into(),
                        json!(format!("{branch}@sha1:{commit}")),
                    );
                }
            }
            if let Some(pushed) = status.last_push_time {
                out.insert("lastPushTime".into(), json!(time(pushed)));
            }
            let policies: Map<String, Value> = observed
                .policies
                .iter()
                .map(|(policy, (image, selected))| (policy.clone(), image_ref(image, selected)))
                .collect();
            out.insert("observedPolicies".into(), Value::Object(policies));
            // tagrelay's lint checks over the automation's manifests.
            if !status.warnings.is_empty() {
                let warnings: Vec<&str> = status.warnings.iter().map(|w| w.text.as_str()).collect();
                out.insert("manifestWarnings".into(), json!(warnings));
            }
        }
        Object::GitRepository(_)
        | Object::Namespace(_)
        | Object::Provider(_)
        | Object::Alert(_) => {}
    }
    Value::Object(out)
}

/// Flux's `Ready` condition (and `Reconciling` before the first result).
fn conditions(status: Option<&ObjectStatus>) -> Value {
    match status {
        None => json!([
            {"type": "Reconciling", "status": "True", "reason": "Progressing", "message": "waiting for its service"},
            {"type": "Ready", "status": "Unknown", "reason": "Progressing", "message": "waiting for its service"},
        ]),
        Some(status) => {
            let mut ready = json!({
                "type": "Ready",
                "status": if status.ready { "True" } else { "False" },
                "reason": if status.ready { "Succeeded" } else { "ReconciliationFailed" },
                "message": status.message,
            });
            if let (Some(at), Some(map)) = (status.updated_at, ready.as_object_mut()) {
                map.insert("lastTransitionTime".into(), json!(time(at)));
            }
            json!([ready])
        }
    }
}

/// `{name, tag, digest}` of `image:tag[@digest]`.
fn latest_ref(latest: &str) -> Option<Value> {
    let (rest, digest) = match latest.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (latest, None),
    };
    let (name, tag) = tagrelay_proto::reference::split_tag(rest);
    let mut reference = json!({"name": name, "tag": tag?});
    if let (Some(digest), Some(map)) = (digest, reference.as_object_mut()) {
        map.insert("digest".into(), json!(digest));
    }
    Some(reference)
}

/// Flux's `ImageRef`: `{name, tag, digest}`.
fn image_ref(name: &str, selected: &SelectedImage) -> Value {
    let mut reference = json!({"name": name, "tag": selected.tag});
    if let (Some(digest), Some(map)) = (&selected.digest, reference.as_object_mut()) {
        map.insert("digest".into(), json!(digest));
    }
    reference
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tagrelay_proto::config::load_documents;

    fn object(yaml: &str) -> Object {
        Object::decode(&load_documents(yaml).unwrap()[0].value).unwrap()
    }

    #[test]
    fn a_policy_reads_as_flux_writes_it() {
        let policy = object("apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: app\n  annotations:\n    reconcile.fluxcd.io/requestedAt: '2026-12-01T10:00:00Z'\nspec:\n  imageRepositoryRef: {name: app}\n");
        let at = DateTime::parse_from_rfc3339("2026-12-01T10:00:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let status = ObjectStatus {
            ready: true,
            message: "Latest image tag for ghcr.io/org/app resolved to 1.2.0".into(),
            updated_at: Some(at),
            latest_image: Some("ghcr.io/org/app:1.2.0@sha256:abc".into()),
            ..Default::default()
        };
        let observed = Observed {
            previous: Some(SelectedImage {
                tag: "1.1.0".into(),
                digest: None,
            }),
            ..Default::default()
        };
        let got = flux_status(&policy, Some(&status), &observed);
        assert_eq!(
            got["latestRef"],
            json!({"name": "ghcr.io/org/app", "tag": "1.2.0", "digest": "sha256:abc"})
        );
        assert_eq!(
            got["observedPreviousRef"],
            json!({"name": "ghcr.io/org/app", "tag": "1.1.0"})
        );
        assert_eq!(got["conditions"][0]["type"], "Ready");
        assert_eq!(got["conditions"][0]["status"], "True");
        assert_eq!(got["conditions"][0]["reason"], "Succeeded");
        assert_eq!(got["lastHandledReconcileAt"], "2026-12-01T10:00:00Z");

        let earlier = ObjectStatus {
            updated_at: DateTime::parse_from_rfc3339("2026-12-01T09:00:00Z")
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            ready: false,
            message: "no tag qualifies".into(),
            ..status
        };
        let got = flux_status(&policy, Some(&earlier), &observed);
        assert!(
            got.get("lastHandledReconcileAt").is_none(),
            "a request made after the last run is not handled yet"
        );
        assert_eq!(got["conditions"][0]["status"], "False");
        assert_eq!(got["conditions"][0]["message"], "no tag qualifies");
    }

    #[test]
    fn repositories_and_automations_carry_flux_fields_and_a_new_object_is_reconciling() {
        let repository = object("apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata: {name: app}\nspec: {image: nginx, interval: 1m}\n");
        let got = flux_status(&repository, None, &Observed::default());
        assert_eq!(got["conditions"][0]["type"], "Reconciling");
        assert_eq!(got["conditions"][1]["status"], "Unknown");
        let scanned = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let status = ObjectStatus {
            ready: true,
            message: "successful scan: found 2 tags".into(),
            last_scan_time: Some(scanned),
            tag_count: Some(2),
            latest_tags: vec!["1.1".into(), "1.0".into()],
            ..Default::default()
        };
        let got = flux_status(&repository, Some(&status), &Observed::default());
        assert_eq!(got["canonicalImageName"], "docker.io/library/nginx");
        assert_eq!(got["observedExclusionList"], json!(["^.*\\.sig$"]));
        assert_eq!(
            got["lastScanResult"],
            json!({"scanTime": "2026-12-01T10:00:00Z", "tagCount": 2, "latestTags": ["1.1", "1.0"]})
        );

        let automation = object("apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageUpdateAutomation\nmetadata: {name: fleet}\nspec:\n  interval: 1m\n  sourceRef: {kind: GitRepository, name: fleet}\n  git: {commit: {author: {email: bot@example.com}}}\n");
        let status = ObjectStatus {
            ready: true,
            message: "pushed commit 'abc1234' to branch 'main'".into(),
            updated_at: Some(scanned),
            last_push_commit: Some("abc1234def".into()),
            last_push_time: Some(scanned),
            ..Default::default()
        };
        let mut observed = Observed {
            push_branch: Some("main".into()),
            ..Default::default()
        };
        observed.policies.insert(
            "app".into(),
            (
                "ghcr.io/org/app".into(),
                SelectedImage {
                    tag: "1.2.0".into(),
                    digest: None,
                },
            ),
        );
        let got = flux_status(&automation, Some(&status), &observed);
        assert_eq!(got["lastPushCommit"], "abc1234def");
        assert_eq!(got["observedSourceRevision"], "main@sha1:abc1234def");
        assert_eq!(
            got["observedPolicies"],
            json!({"app": {"name": "ghcr.io/org/app", "tag": "1.2.0"}})
        );
        assert_eq!(got["lastAutomationRunTime"], "2026-12-01T10:00:00Z");
    }
}
