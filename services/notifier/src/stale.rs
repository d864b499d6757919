//! Stuck-policy detection: which ImagePolicies have stopped following their
//! registry and which automations have stopped reaching Git, read from the
//! statuses the stages write (a failure run's length and start, the last
//! success) and the configuration.
//!
//! Pure: a snapshot in, the stalls out. The notifier sweeps with it and
//! publishes each stall once (`PolicyStale`, `AutomationStalled`).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tagrelay_proto::config::{parse_go_duration, Kind, Object, ObjectKey};
use tagrelay_proto::event::{ObjectRef, StallReason, Stalled};
use tagrelay_proto::status::ObjectStatus;

/// When an object counts as stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A policy is stale when its repository has had no successful scan
    /// for this many of its intervals.
    pub intervals: u32,
    /// A policy is stale when its repository's scans failed this many
    /// times in a row.
    pub failures: u32,
    /// An automation is stalled when it has failed for longer than this.
    pub stall_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            intervals: 3,
            failures: 3,
            stall_after: Duration::from_secs(600),
        }
    }
}

/// One stuck object: its kind (ImagePolicy or ImageUpdateAutomation) and
/// the event payload announcing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// The object's key.
    pub key: ObjectKey,
    /// What the event says.
    pub stalled: Stalled,
}

/// Every stall at `now` among `objects`, given their `statuses`.
pub fn stalls(
    now: DateTime<Utc>,
    objects: &BTreeMap<ObjectKey, Object>,
    statuses: &BTreeMap<ObjectKey, ObjectStatus>,
    limits: Limits,
) -> Vec<Stall> {
    let mut out = Vec::new();
    for (key, object) in objects {
        let stalled = match object {
            Object::ImagePolicy(policy) if !policy.spec.suspend => {
                let repository_key = policy.repository_key();
                match objects.get(&repository_key) {
                    Some(Object::ImageRepository(repository)) if !repository.spec.suspend => {
                        statuses.get(&repository_key).and_then(|status| {
                            policy_stall(
                                now,
                                &repository_key,
                                &repository.spec.interval,
                                status,
                                limits,
                            )
                        })
                    }
                    _ => None,
                }
            }
            Object::ImageUpdateAutomation(automation) if !automation.spec.suspend => statuses
                .get(key)
                .and_then(|status| automation_stall(now, status, limits)),
            _ => None,
        };
        if let Some((reason, message, since)) = stalled {
            out.push(Stall {
                key: key.clone(),
                stalled: Stalled {
                    object: ObjectRef::new(&key.namespace, &key.name),
                    reason,
                    message,
                    since,
                },
            });
        }
    }
    out
}

fn policy_stall(
    now: DateTime<Utc>,
    repository: &ObjectKey,
    interval: &str,
    status: &ObjectStatus,
    limits: Limits,
) -> Option<(StallReason, String, DateTime<Utc>)> {
    let last_error = status.last_error.as_deref().unwrap_or("unknown error");
    if status.failures >= limits.failures.max(1) {
        let since = status.failing_since.or(status.updated_at).unwrap_or(now);
        return Some((
            StallReason::ScansFailing,
            format!(
                "the last {} scans of {}/{} failed; last error: {last_error}",
                status.failures, repository.namespace, repository.name
            ),
            since,
        ));
    }
    let interval = parse_go_duration(interval).ok()?;
    let allowed = interval.checked_mul(limits.intervals.max(1))?;
    let last = status.last_success_time?;
    let quiet = (now - last).to_std().ok()?;
    (quiet > allowed).then(|| {
        (
            StallReason::NotScanned,
            format!(
                "no successful scan of {}/{} for {}s ({} intervals of {}s)",
                repository.namespace,
                repository.name,
                quiet.as_secs(),
                limits.intervals,
                interval.as_secs()
            ),
            last,
        )
    })
}

fn automation_stall(
    now: DateTime<Utc>,
    status: &ObjectStatus,
    limits: Limits,
) -> Option<(StallReason, String, DateTime<Utc>)> {
    let since = status.failing_since?;
    let failing = (now - since).to_std().ok()?;
    (failing > limits.stall_after).then(|| {
        (
            StallReason::CommitsFailing,
            format!(
                "failing for {}s ({} attempts): selections are not reaching Git; last error: {}",
                failing.as_secs(),
                status.failures,
                status.last_error.as_deref().unwrap_or("unknown error")
            ),
            since,
        )
    })
}

/// The kind a stall's event is about.
pub fn is_policy(stall: &Stall) -> bool {
    stall.key.kind == Kind::ImagePolicy
}

#[cfg(test)]
mod tests {
    use super::*;
    use tagrelay_proto::config::load_documents;

    const CONFIG: &str = r#"
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata: {name: app, namespace: apps}
spec: {image: ghcr.io/org/app, interval: 1m}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata: {name: app, namespace: apps}
spec: {imageRepositoryRef: {name: app}, policy: {semver: {range: 1.x}}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata: {name: fleet, namespace: apps}
spec:
  interval: 1m
  sourceRef: {kind: GitRepository, name: fleet}
  git: {commit: {author: {email: bot@example.com}}}
"#;

    fn objects(config: &str) -> BTreeMap<ObjectKey, Object> {
        load_documents(config)
            .unwrap()
            .iter()
            .map(|d| Object::decode(&d.value).unwrap())
            .map(|o| (o.key(), o))
            .collect()
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn repository() -> ObjectKey {
        ObjectKey::new(Kind::ImageRepository, "apps", "app")
    }

    fn automation() -> ObjectKey {
        ObjectKey::new(Kind::ImageUpdateAutomation, "apps", "fleet")
    }

    fn found(now: i64, statuses: &[(ObjectKey, ObjectStatus)]) -> Vec<(String, StallReason)> {
        stalls(
            at(now),
            &objects(CONFIG),
            &statuses.iter().cloned().collect(),
            Limits::default(),
        )
        .into_iter()
        .map(|s| (s.key.to_string(), s.stalled.reason))
        .collect()
    }

    #[test]
    fn a_policy_is_stale_after_n_failed_scans_in_a_row_not_before() {
        let failing = |n| ObjectStatus {
            failures: n,
            failing_since: Some(at(0)),
            last_error: Some("registry down".into()),
            last_success_time: Some(at(0)),
            ..Default::default()
        };
        assert!(found(30, &[(repository(), failing(2))]).is_empty());
        assert_eq!(
            found(30, &[(repository(), failing(3))]),
            [(
                "ImagePolicy/apps/app".to_string(),
                StallReason::ScansFailing
            )]
        );
    }

    #[test]
    fn a_policy_is_stale_after_n_intervals_without_a_successful_scan() {
        let quiet = ObjectStatus {
            ready: true,
            last_success_time: Some(at(0)),
            ..Default::default()
        };
        assert!(found(180, &[(repository(), quiet.clone())]).is_empty());
        assert_eq!(
            found(181, &[(repository(), quiet)]),
            [("ImagePolicy/apps/app".to_string(), StallReason::NotScanned)]
        );
    }

    #[test]
    fn an_automation_is_stalled_once_it_has_failed_for_longer_than_the_limit() {
        let failing = ObjectStatus {
            failures: 4,
            failing_since: Some(at(0)),
            last_error: Some("push rejected".into()),
            ..Default::default()
        };
        assert!(found(600, &[(automation(), failing.clone())]).is_empty());
        let stalls = stalls(
            at(601),
            &objects(CONFIG),
            &BTreeMap::from([(automation(), failing)]),
            Limits::default(),
        );
        assert_eq!(stalls.len(), 1);
        assert_eq!(stalls[0].stalled.reason, StallReason::CommitsFailing);
        assert_eq!(stalls[0].stalled.since, at(0));
        assert!(stalls[0].stalled.message.contains("push rejected"));
    }

    #[test]
    fn suspended_objects_and_healthy_ones_are_never_stuck() {
        let healthy = ObjectStatus {
            ready: true,
            last_success_time: Some(at(100)),
            ..Default::default()
        };
        assert!(found(
            120,
            &[(repository(), healthy.clone()), (automation(), healthy)]
        )
        .is_empty());
        let suspended = CONFIG.replace("interval: 1m}", "interval: 1m, suspend: true}");
        let failing = ObjectStatus {
            failures: 9,
            failing_since: Some(at(0)),
            ..Default::default()
        };
        let none = stalls(
            at(10_000),
            &objects(&suspended),
            &BTreeMap::from([(repository(), failing)]),
            Limits::default(),
        );
        assert!(none.is_empty(), "{none:?}");
    }
}
