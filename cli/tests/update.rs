//! `tagrelay update`: the offline rewrite contract.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tagrelay"))
        .args(args)
        .output()
        .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: podinfo # the app\nspec:\n  template:\n    spec:\n      containers:\n        - name: podinfo\n          image: \"127.0.0.1:5000/demo/podinfo:1.0.0\" # {\"$imagepolicy\": \"flux-system:podinfo\"}\n";
const KUSTOMIZATION: &str = "images:\r\n  - name: podinfo\r\n    newName: 127.0.0.1:5000/demo/podinfo # {\"$imagepolicy\": \"flux-system:podinfo:name\"}\r\n    newTag: 1.0.0 # {\"$imagepolicy\": \"flux-system:podinfo:tag\"}\r\n  - name: other\r\n    newTag: 9.9.9 # {\"$imagepolicy\": \"apps:other:tag\"}\r\n";
const BROKEN: &str = "image: [unclosed # {\"$imagepolicy\": \"flux-system:podinfo\"}\n";

fn fixture(dir: &Path) -> (String, String) {
    let root = dir.join("repo");
    write(&root, "apps/podinfo/deployment.yaml", DEPLOYMENT);
    write(&root, "apps/podinfo/kustomization.yaml", KUSTOMIZATION);
    write(&root, "apps/broken.yaml", BROKEN);
    let outside = write(dir, "outside.yaml", DEPLOYMENT);
    std::os::unix::fs::symlink(&outside, root.join("apps/escape.yaml")).unwrap();
    let latest = write(
        dir,
        "latest.json",
        r#"{"flux-system:podinfo": "127.0.0.1:5000/demo/podinfo:1.10", "apps:other": "registry.example/other:10.0.0"}"#,
    );
    (root.display().to_string(), latest)
}

#[test]
fn setters_are_rewritten_byte_exactly_and_reported_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let (root, latest) = fixture(dir.path());
    let out = run(&["update", "--path", &root, "--policies", &latest]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "apps/podinfo/deployment.yaml: 127.0.0.1:5000/demo/podinfo:1.0.0 -> 127.0.0.1:5000/demo/podinfo:1.10 (flux-system:podinfo)\n\
         apps/podinfo/kustomization.yaml: 1.0.0 -> 1.10 (flux-system:podinfo:tag)\n"
    );
    let read = |p: &str| std::fs::read_to_string(Path::new(&root).join(p)).unwrap();
    assert_eq!(
        read("apps/podinfo/deployment.yaml"),
        DEPLOYMENT.replace(":1.0.0", ":1.10")
    );
    assert_eq!(
        read("apps/podinfo/kustomization.yaml"),
        KUSTOMIZATION.replace("newTag: 1.0.0 ", "newTag: \"1.10\" "),
        "a tag that would read as a number is quoted; CRLF and the other namespace's marker are kept"
    );
    assert_eq!(read("apps/broken.yaml"), BROKEN);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("apps/broken.yaml: skipped:"), "{stderr}");
    assert!(
        stderr.contains("apps/escape.yaml: skipped: symlink to"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("outside.yaml")).unwrap(),
        DEPLOYMENT
    );
}

#[test]
fn diff_prints_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (root, latest) = fixture(dir.path());
    let out = run(&["update", "--path", &root, "--policies", &latest, "--diff"]);
    assert_eq!(out.status.code(), Some(0));
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(
        diff.contains("--- a/apps/podinfo/deployment.yaml"),
        "{diff}"
    );
    assert!(
        diff.contains("-          image: \"127.0.0.1:5000/demo/podinfo:1.0.0\""),
        "{diff}"
    );
    assert!(
        diff.contains("+          image: \"127.0.0.1:5000/demo/podinfo:1.10\""),
        "{diff}"
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(&root).join("apps/podinfo/deployment.yaml")).unwrap(),
        DEPLOYMENT
    );
}

#[test]
fn flux_v1_annotations_follow_their_filters() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\n  annotations:\n    fluxcd.io/automated: \"true\"\n    fluxcd.io/tag.app: semver:~1.0\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: registry.example/web:1.0.0\n        - name: sidecar\n          image: registry.example/sidecar:old\n";
    write(&root, "web.yaml", manifest);
    let available = write(
        dir.path(),
        "available.json",
        r#"{"registry.example/web": [{"tag": "1.0.3", "created": "2026-01-01T00:00:00Z"}, {"tag": "1.1.0"}, {"tag": "1.0.2"}],
            "registry.example/sidecar": [{"tag": "new", "created": "2026-02-01T00:00:00Z"}, {"tag": "older", "created": "2026-01-01T00:00:00Z"}, {"tag": "latest", "created": "2026-03-01T00:00:00Z"}]}"#,
    );
    let out = run(&[
        "update",
        "--path",
        &root.display().to_string(),
        "--available",
        &available,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("web.yaml: registry.example/web:1.0.0 -> registry.example/web:1.0.3 (shop:deployment/web container app)\n"),
        "{stdout}"
    );
    let after = std::fs::read_to_string(root.join("web.yaml")).unwrap();
    assert_eq!(
        after,
        manifest
            .replace("web:1.0.0", "web:1.0.3")
            .replace("sidecar:old", "sidecar:new"),
        "semver filter for app; newest by creation time (never latest) for sidecar"
    );
}

#[test]
fn bad_input_exits_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (root, _) = fixture(dir.path());
    for (name, json) in [
        ("not-json.json", "{"),
        (
            "bad-key.json",
            r#"{"podinfo": "127.0.0.1:5000/demo/podinfo:1.1.0"}"#,
        ),
        (
            "bad-tag.json",
            r#"{"flux-system:podinfo": "127.0.0.1:5000/demo/podinfo:bad tag"}"#,
        ),
    ] {
        let file = write(dir.path(), name, json);
        let out = run(&["update", "--path", &root, "--policies", &file]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(out.stdout.is_empty());
    }
    assert_eq!(
        std::fs::read_to_string(Path::new(&root).join("apps/podinfo/deployment.yaml")).unwrap(),
        DEPLOYMENT
    );
    let out = run(&[
        "update",
        "--path",
        "/nonexistent/dir",
        "--policies",
        "x.json",
    ]);
    assert_eq!(out.status.code(), Some(2));
}
