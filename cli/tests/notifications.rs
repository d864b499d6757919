//! Flux's notification kinds through the CLI: `apply` takes Providers and
//! Alerts and refuses what tagrelay cannot honour with the field and the
//! reason; `get alerts`, `get alert-providers`; `suspend alert`; a stuck
//! policy shows in `get image all`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

mod common;

use std::process::Output;

use tagrelay_proto::bus::{Bus, BusSettings};
use tagrelay_proto::config::{Kind, ObjectKey};
use tagrelay_proto::event::{ObjectRef, StallReason, Stalled};
use tagrelay_proto::names;
use tagrelay_testkit::NatsServer;

const NOTIFICATIONS: &str = r#"apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata:
  name: slack
  namespace: apps
spec:
  type: slack
  channel: general
  secretRef:
    name: slack-url
---
apiVersion: notification.toolkit.fluxcd.io/v1beta2
kind: Provider
metadata:
  name: status
  namespace: apps
spec:
  type: github
  address: https://github.com/org/fleet
  secretRef:
    name: github-token
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata:
  name: images
  namespace: apps
spec:
  providerRef:
    name: slack
  eventSeverity: info
  eventSources:
    - kind: ImagePolicy
      name: '*'
      matchLabels:
        team: web
    - kind: ImageUpdateAutomation
      name: fleet
  exclusionList:
    - "^Latest image tag for .*-rc"
  eventMetadata:
    cluster: prod
"#;

fn tagrelay(server: &NatsServer, args: &[&str], stdin: Option<&str>) -> Output {
    common::tagrelay(&server.url(), args, stdin)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn providers_and_alerts_apply_list_and_suspend_as_with_the_flux_cli() {
    let server = NatsServer::start();
    let out = tagrelay(&server, &["apply", "-f", "-"], Some(NOTIFICATIONS));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("notification.toolkit.fluxcd.io/v1beta2 is deprecated"),
        "{}",
        text(&out.stderr)
    );
    let out = tagrelay(&server, &["get", "alert-providers", "-n", "apps"], None);
    let table = text(&out.stdout);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("slack") && table.contains("github"),
        "{table}"
    );
    let out = tagrelay(&server, &["get", "alerts", "-n", "apps"], None);
    let table = text(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("images") && l.contains("slack") && l.contains("False")),
        "{table}"
    );
    let out = tagrelay(&server, &["suspend", "alert", "images", "-n", "apps"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = tagrelay(
        &server,
        &["get", "alerts", "-n", "apps", "-o", "json"],
        None,
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["items"][0]["spec"]["suspend"], true);
    assert_eq!(list["items"][0]["spec"]["eventMetadata"]["cluster"], "prod");
}

#[test]
fn what_tagrelay_cannot_honour_is_refused_with_field_and_reason() {
    let server = NatsServer::start();
    let bad = r#"apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: pager}
spec: {type: pagerduty, address: "https://events.pagerduty.com"}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: hook}
spec: {type: generic, address: "https://hooks.example/x", proxy: "http://proxy:3128", certSecretRef: {name: ca}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: signed}
spec: {type: generic-hmac, address: "https://hooks.example/y"}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: broken}
spec:
  providerRef: {name: nowhere}
  eventSeverity: warning
  eventSources:
    - {kind: Kustomization, name: '*'}
    - {kind: ImagePolicy, name: app, matchLabels: {a: b}}
  inclusionList: ["(unclosed"]
"#;
    let out = tagrelay(&server, &["apply", "-f", "-"], Some(bad));
    assert_eq!(out.status.code(), Some(2));
    let errors = text(&out.stderr);
    for expected in [
        "Provider/flux-system/pager: spec.type: \"pagerduty\" is not one of generic, generic-hmac, slack",
        "Provider/flux-system/hook: spec.proxy: not supported",
        "Provider/flux-system/hook: spec.certSecretRef: custom CAs",
        "Provider/flux-system/signed: spec.secretRef: required by generic-hmac",
        "Alert/flux-system/broken: spec.eventSeverity: \"warning\" is not one of info, error",
        "Alert/flux-system/broken: spec.eventSources[0].kind: \"Kustomization\" is not one of",
        "Alert/flux-system/broken: spec.eventSources[1].matchLabels: only allowed with name: '*'",
        "Alert/flux-system/broken: spec.inclusionList[0]: invalid regular expression",
    ] {
        assert!(errors.contains(expected), "missing {expected:?} in:\n{errors}");
    }
    assert!(errors.contains("nothing was applied"), "{errors}");
    let dangling = "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {name: dangling}\nspec: {providerRef: {name: nowhere}, eventSources: [{kind: ImagePolicy, name: '*'}]}\n";
    let out = tagrelay(&server, &["apply", "-f", "-"], Some(dangling));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "Alert/flux-system/dangling: spec.providerRef.name: refers to Provider/flux-system/nowhere"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_policy_shows_in_get_image_all() {
    let server = NatsServer::start();
    let config = "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata: {name: app, namespace: apps}\nspec: {image: ghcr.io/org/app, interval: 1m}\n---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata: {name: app, namespace: apps}\nspec: {imageRepositoryRef: {name: app}, policy: {semver: {range: 1.x}}}\n";
    let out = tagrelay(&server, &["apply", "-f", "-"], Some(config));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bus = Bus::connect(&server.url(), "test/get", BusSettings::default())
        .await
        .unwrap();
    let stalled = Stalled {
        object: ObjectRef::new("apps", "app"),
        reason: StallReason::ScansFailing,
        message: "the last 3 scans of apps/app failed".into(),
        since: "2026-12-05T10:00:00Z".parse().unwrap(),
    };
    let key = ObjectKey::new(Kind::ImagePolicy, "apps", "app");
    bus.bucket(names::NOTIFICATIONS_BUCKET)
        .await
        .unwrap()
        .put(
            tagrelay_notifier::service::stall_key(&key),
            serde_json::to_vec(&stalled).unwrap().into(),
        )
        .await
        .unwrap();
    let out = tagrelay(&server, &["get", "image", "all", "-n", "apps"], None);
    let table = text(&out.stdout);
    let line = table
        .lines()
        .find(|l| l.starts_with("imagepolicy/app"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("False"), "{line}");
    assert!(
        line.contains(
            "stale since 2026-12-05T10:00:00Z (ScansFailing): the last 3 scans of apps/app failed"
        ),
        "{line}"
    );
    let repository = table
        .lines()
        .find(|l| l.starts_with("imagerepository/app"))
        .unwrap();
    assert!(!repository.contains("stale"), "{repository}");
}
