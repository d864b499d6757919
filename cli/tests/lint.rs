//! `tagrelay lint`: one case of each finding in a fixture tree, a clean
//! tree, text and JSON output, exit codes, and the configuration read from
//! Flux YAML and from a real nats-server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

mod common;

use std::path::Path;
use std::process::Output;

use tagrelay_testkit::NatsServer;

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
}

const CONFIG: &str = "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata:\n  name: app\n  namespace: apps\nspec:\n  image: ghcr.io/org/app\n  interval: 5m\n---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: app\n  namespace: apps\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    semver:\n      range: '>=1.0.0'\n";

const CLEAN: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n  namespace: apps\n  annotations:\n    fluxcd.io/tag.app: semver:~1.0\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: ghcr.io/org/app:1.0.0 # {\"$imagepolicy\": \"apps:app\"}\n      - name: sidecar\n        image: other.io/sidecar:2.0\n";

/// One file per finding, each named after its check.
fn dirty_tree(root: &Path) {
    write(root, "clean.yaml", CLEAN);
    write(
        root,
        "near-miss-marker.yaml",
        "image: ghcr.io/org/app:1.0.0 # {\"imagepolicy\": \"apps:app\"}\n",
    );
    write(
        root,
        "unknown-policy.yaml",
        "image: ghcr.io/org/app:1.0.0 # {\"$imagepolicy\": \"apps:ap\"}\n",
    );
    write(
        root,
        "unmarked-image.yaml",
        "spec:\n  containers:\n  - name: app\n    image: ghcr.io/org/app:1.0.0\n",
    );
    write(root, "v1/boolean-automated.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: b\n  annotations:\n    fluxcd.io/automated: true\nspec:\n  template:\n    spec:\n      containers:\n      - name: b\n        image: other.io/b:1.0\n");
    write(root, "v1/unknown-container.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: c\n  annotations:\n    fluxcd.io/automated: 'true'\n    fluxcd.io/tag.web: semver:~1.0\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n        image: other.io/c:1.0\n");
    write(root, "v1/invalid-filter.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: f\n  annotations:\n    fluxcd.io/automated: 'true'\n    fluxcd.io/tag.f: 'semver:>>1'\nspec:\n  template:\n    spec:\n      containers:\n      - name: f\n        image: other.io/f:1.0\n");
    write(root, "v1/dangling-alias.yaml", "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: h\n  annotations:\n    fluxcd.io/automated: 'true'\n    repository.fluxcd.io/api: api.image.name\nspec:\n  values:\n    api:\n      image:\n        repository: other.io/api\n        tag: '1.0'\n");
    write(
        root,
        "skipped/unparseable.yaml",
        "image: [ghcr.io/org/app:1.0.0 # {\"$imagepolicy\": \"apps:app\"}\n",
    );
    let giant = "# padding\n".repeat((16 << 20) / 10 + 1);
    write(root, "skipped/too-large.yaml", &giant);
    std::os::unix::fs::symlink("../../outside.yaml", root.join("skipped/symlink.yaml")).unwrap();
}

fn lint(nats: &str, args: &[&str]) -> Output {
    common::tagrelay(nats, &[&["lint"], args].concat(), None)
}

/// The URL of no server: the offline runs must not need one.
const NO_BUS: &str = "nats://127.0.0.1:1";

#[test]
fn every_finding_is_reported_with_file_line_and_fix_and_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    dirty_tree(&root);
    let config = dir.path().join("flux.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let root_arg = root.display().to_string();
    let config_arg = config.display().to_string();

    let out = lint(NO_BUS, &["--path", &root_arg, "--config", &config_arg]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = [
        (
            "near-miss-marker.yaml:1: near-miss-marker: ",
            "(fix: write # {\"$imagepolicy\": \"apps:app\"})",
        ),
        (
            "skipped/symlink.yaml:1: skipped-file: ",
            "(fix: replace the symlink with the file itself)",
        ),
        (
            "skipped/too-large.yaml:1: skipped-file: ",
            "(fix: split it, or move it out of the automation's path)",
        ),
        (
            "skipped/unparseable.yaml:2: skipped-file: ",
            "(fix: fix the YAML so that it parses (yamllint shows where))",
        ),
        (
            "unknown-policy.yaml:1: unknown-policy: ",
            "(fix: name one of apps:app)",
        ),
        (
            "unmarked-image.yaml:4: unmarked-image: ",
            "(fix: end the line with # {\"$imagepolicy\": \"apps:app\"})",
        ),
        (
            "v1/boolean-automated.yaml:6: boolean-automated: ",
            "(fix: quote it: fluxcd.io/automated: \"true\")",
        ),
        ("v1/dangling-alias.yaml:7: dangling-alias: ", ""),
        ("v1/invalid-filter.yaml:7: invalid-filter: ", ""),
        (
            "v1/unknown-container.yaml:7: unknown-container: ",
            "(fix: name one of its containers: fluxcd.io/tag.c)",
        ),
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{stdout}");
    for (line, (start, end)) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(start) && line.ends_with(end),
            "{line:?} is not {start}…{end}"
        );
    }

    let out = lint(
        NO_BUS,
        &["--path", &root_arg, "--config", &config_arg, "-o", "json"],
    );
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = json.as_array().unwrap();
    let mut checks: Vec<&str> = findings
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    checks.dedup();
    assert_eq!(
        checks,
        [
            "near-miss-marker",
            "skipped-file",
            "unknown-policy",
            "unmarked-image",
            "boolean-automated",
            "dangling-alias",
            "invalid-filter",
            "unknown-container"
        ]
    );
    let unmarked = &findings[5];
    assert_eq!(unmarked["file"], "unmarked-image.yaml");
    assert_eq!(unmarked["line"], 4);
    assert_eq!(unmarked["id"].as_str().unwrap().len(), 32);

    // Without the configuration, the checks that need policies are off.
    let out = lint(NO_BUS, &["--path", &root_arg]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !stdout.contains("unknown-policy") && !stdout.contains("unmarked-image"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), expected.len() - 2);
}

#[test]
fn a_clean_tree_passes_with_the_configuration_from_yaml_or_the_bus() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    write(&root, "apps/app.yaml", CLEAN);
    write(&root, "flux/policy.yaml", CONFIG);
    let root_arg = root.display().to_string();
    let flux = root.join("flux").display().to_string();
    let out = lint(
        NO_BUS,
        &["--path", &root_arg, "--config", &flux, "-o", "json"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );

    let server = NatsServer::start();
    let url = server.url();
    let applied = common::tagrelay(&url, &["apply", "-f", "-"], Some(CONFIG));
    assert_eq!(
        applied.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let out = lint(&url, &["--path", &root_arg, "--config", "bus"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The same tree against a bus where the policy has another name: the
    // marker now names a policy that does not exist.
    let deleted = common::tagrelay(
        &url,
        &["delete", "image", "policy", "app", "-n", "apps"],
        None,
    );
    assert_eq!(
        deleted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let out = lint(&url, &["--path", &root_arg, "--config", "bus"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with("apps/app.yaml:13: unknown-policy: marker names policy apps:app"),
        "{stdout}"
    );
}
