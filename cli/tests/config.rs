//! `tagrelay apply / get / delete` against a real nats-server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

mod common;

use std::path::Path;
use std::process::{Command, Output};

use tagrelay_testkit::NatsServer;

const ALL_KINDS: &str = r#"apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: fleet
  namespace: apps
spec:
  url: https://git.example/org/fleet.git
  interval: 5m
  ref:
    branch: main
  secretRef:
    name: git-auth
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata:
  name: podinfo
  namespace: apps
spec:
  image: ghcr.io/stefanprodan/podinfo
  interval: 1m0s
  exclusionList:
    - "^.*\\.sig$"
    - "^dev-"
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata:
  name: podinfo
  namespace: apps
  labels:
    team: web
spec:
  imageRepositoryRef:
    name: podinfo
  filterTags:
    pattern: '^main-[a-f0-9]+-(?P<ts>[0-9]+)'
    extract: '$ts'
  policy:
    numerical:
      order: asc
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageUpdateAutomation
metadata:
  name: fleet
  namespace: apps
spec:
  interval: 30m
  sourceRef:
    kind: GitRepository
    name: fleet
  git:
    commit:
      author:
        email: fluxcdbot@users.noreply.github.com
        name: fluxcdbot
      messageTemplate: '{{range .Changed.Changes}}{{print .OldValue}} -> {{println .NewValue}}{{end}}'
    push:
      branch: main
  policySelector:
    matchLabels:
      team: web
  update:
    path: ./clusters/prod
    strategy: Setters
"#;

fn tagrelay(server: &NatsServer, args: &[&str], stdin: Option<&str>) -> Output {
    common::tagrelay(&server.url(), args, stdin)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn every_kind_round_trips_through_apply_and_get() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "all.yaml", ALL_KINDS);
    let out = tagrelay(&server, &["apply", "-f", &file], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "GitRepository/apps/fleet created\nImageRepository/apps/podinfo created\nImagePolicy/apps/podinfo created\nImageUpdateAutomation/apps/fleet created\n"
    );

    let expected = tagrelay_proto::config::load_documents(ALL_KINDS).unwrap();
    for (args, index) in [
        (vec!["get", "source", "git", "-n", "apps", "-o", "json"], 0),
        (
            vec!["get", "image", "repository", "-n", "apps", "-o", "json"],
            1,
        ),
        (
            vec!["get", "image", "policy", "-n", "apps", "-o", "json"],
            2,
        ),
        (
            vec!["get", "image", "update", "-n", "apps", "-o", "json"],
            3,
        ),
    ] {
        let out = tagrelay(&server, &args, None);
        assert!(out.status.success(), "{}", stderr(&out));
        let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{args:?}");
        assert_eq!(items[0]["spec"], expected[index].value["spec"], "{args:?}");
        assert_eq!(
            items[0]["metadata"]["name"],
            expected[index].value["metadata"]["name"]
        );
    }

    let out = tagrelay(&server, &["get", "image", "all", "-n", "apps"], None);
    let table = stdout(&out);
    for name in [
        "imagerepository/podinfo",
        "imagepolicy/podinfo",
        "imageupdateautomation/fleet",
    ] {
        assert!(table.contains(name), "{table}");
    }
    for header in [
        "NAME                     LAST SCAN  SUSPENDED  READY    MESSAGE",
        "NAME                 LATEST IMAGE  READY    MESSAGE",
        "NAME                         LAST RUN  SUSPENDED  READY    MESSAGE",
    ] {
        let wanted: Vec<&str> = header
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert!(
            table.lines().any(|line| {
                let got: Vec<&str> = line
                    .split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect();
                got == wanted
            }),
            "Flux's columns {wanted:?} in {table}"
        );
    }

    let out = tagrelay(&server, &["get", "image", "all"], None);
    assert!(
        !stdout(&out).contains("podinfo"),
        "-n defaults to flux-system"
    );
    let out = tagrelay(
        &server,
        &["get", "image", "policy", "-A", "-o", "yaml"],
        None,
    );
    let back = tagrelay_proto::config::load_documents(&stdout(&out)).unwrap();
    assert_eq!(back[0].value["items"][0]["spec"], expected[2].value["spec"]);

    let again = tagrelay(&server, &["apply", "-f", &file], None);
    assert!(
        stdout(&again).lines().all(|l| l.ends_with("unchanged")),
        "{}",
        stdout(&again)
    );
}

#[test]
fn an_invalid_document_among_valid_ones_stores_nothing() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a-good.yaml", ALL_KINDS);
    write(
        dir.path(),
        "b-bad.yaml",
        "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: broken\n  namespace: apps\nspec:\n  imageRepositoryRef:\n    name: missing-repo\n  policy:\n    alphabetical:\n      order: sideways\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: typo\nspec:\n  image: ghcr.io/org/app\n  intervall: 5m\n",
    );
    let out = tagrelay(
        &server,
        &["apply", "-f", &dir.path().display().to_string()],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let errors = stderr(&out);
    assert!(
        errors.contains("b-bad.yaml:11: ImagePolicy/apps/broken: spec.policy.alphabetical.order: \"sideways\" is not one of asc, desc"),
        "{errors}"
    );
    assert!(
        errors.contains(
            "b-bad.yaml:19: ImageRepository/flux-system/typo: spec.intervall: unknown field"
        ),
        "{errors}"
    );
    assert!(errors.contains("nothing was applied"), "{errors}");
    assert_eq!(stdout(&out), "");

    let out = tagrelay(&server, &["get", "image", "all", "-A", "-o", "json"], None);
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "nothing stored");
}

#[test]
fn an_unknown_reference_is_refused_at_apply_time() {
    let server = NatsServer::start();
    let policy = "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  imageRepositoryRef:\n    name: nowhere\n  policy:\n    semver:\n      range: 1.x\n";
    let out = tagrelay(&server, &["apply", "-f", "-"], Some(policy));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("<stdin>:1: ImagePolicy/flux-system/app: spec.imageRepositoryRef.name: refers to ImageRepository/flux-system/nowhere"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn delete_removes_one_object_and_reports_missing_ones() {
    let server = NatsServer::start();
    let out = tagrelay(&server, &["apply", "-f", "-"], Some(ALL_KINDS));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = tagrelay(
        &server,
        &["delete", "image", "policy", "podinfo", "-n", "apps"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = tagrelay(
        &server,
        &["get", "image", "all", "-n", "apps", "-o", "json"],
        None,
    );
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let kinds: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ImageRepository", "ImageUpdateAutomation"]);
    let out = tagrelay(
        &server,
        &["delete", "source", "git", "fleet", "-n", "apps"],
        None,
    );
    assert!(out.status.success());
    let out = tagrelay(
        &server,
        &["delete", "image", "policy", "podinfo", "-n", "apps"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not found"));
}

#[test]
fn an_unreachable_server_is_reported_not_a_panic() {
    let out = Command::new(env!("CARGO_BIN_EXE_tagrelay"))
        .args(["get", "image", "all", "--nats-url"])
        .arg(format!(
            "nats://127.0.0.1:{}",
            tagrelay_testkit::free_port()
        ))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("cannot reach NATS") && !message.contains("panicked"),
        "{message}"
    );
}

#[test]
fn a_range_the_resolver_cannot_parse_is_refused_with_its_field() {
    let server = NatsServer::start();
    let docs = "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app\n  interval: 1m\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    semver:\n      range: '>= 1.0 <<2'\n";
    let out = tagrelay(&server, &["apply", "-f", "-"], Some(docs));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "<stdin>:18: ImagePolicy/flux-system/app: spec.policy.semver.range: invalid range"
        ),
        "{}",
        stderr(&out)
    );
    let out = tagrelay(&server, &["get", "image", "all", "-o", "json"], None);
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(list["items"].as_array().unwrap().is_empty());
}
