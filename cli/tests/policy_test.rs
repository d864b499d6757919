//! `tagrelay policy test`: the offline contract (stdout, exit codes).

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
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const TAGS: &str = "1.0.0\n1.2.0\nv1.10.0\n1.11.0-rc.1\n2.0.0\nlatest\n1.9.9.sig\n";

fn policy(spec: &str) -> String {
    format!("apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  imageRepositoryRef:\n    name: app\n{spec}")
}

#[test]
fn prints_the_chosen_tag_alone() {
    let dir = tempfile::tempdir().unwrap();
    let tags = write(dir.path(), "tags.txt", TAGS);
    let cases = [
        ("  policy:\n    semver:\n      range: '>=1.0.0 <2.0.0'\n", "v1.10.0"),
        ("  policy:\n    semver:\n      range: '>=1.0.0-0 <2.0.0'\n", "1.11.0-rc.1"),
        ("  policy:\n    alphabetical:\n      order: asc\n", "v1.10.0"),
        ("  policy:\n    alphabetical:\n      order: desc\n", "1.0.0"),
        (
            "  filterTags:\n    pattern: '^1\\.(?P<minor>[0-9]+)\\.0$'\n    extract: '$minor'\n  policy:\n    numerical:\n      order: asc\n",
            "1.2.0",
        ),
    ];
    for (spec, expected) in cases {
        let file = write(dir.path(), "policy.yaml", &policy(spec));
        let out = run(&["policy", "test", "--policy", &file, "--tags", &tags]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{spec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{expected}\n"),
            "{spec}"
        );
    }
}

#[test]
fn flux_v1_filters_and_creation_times() {
    let dir = tempfile::tempdir().unwrap();
    let tags = write(
        dir.path(),
        "tags.txt",
        "main-abc\t2026-01-01T00:00:00Z\nmain-def\t2026-03-01T00:00:00Z\nlatest\t2026-05-01T00:00:00Z\n1.0.1\t2025-01-01T00:00:00Z\n1.0.9\t2024-01-01T00:00:00Z\n",
    );
    for (filter, expected) in [
        ("glob:main-*", "main-def"),
        ("semver:~1.0", "1.0.9"),
        ("", "main-def"),
        ("regex:^main-a", "main-abc"),
    ] {
        let out = run(&["policy", "test", "--filter", filter, "--tags", &tags]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{filter}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{expected}\n"),
            "{filter}"
        );
    }
}

#[test]
fn exit_1_when_nothing_qualifies_and_2_when_the_policy_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let tags = write(dir.path(), "tags.txt", TAGS);
    let none = write(
        dir.path(),
        "none.yaml",
        &policy("  policy:\n    semver:\n      range: '>=3.0.0'\n"),
    );
    let out = run(&["policy", "test", "--policy", &none, "--tags", &tags]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains(">=3.0.0"));

    let numeric = write(
        dir.path(),
        "numeric.yaml",
        &policy("  policy:\n    numerical: {}\n"),
    );
    let out = run(&["policy", "test", "--policy", &numeric, "--tags", &tags]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a non-number fails the whole numerical policy"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1.0.0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for bad in [
        "  policy:\n    semver:\n      range: '>=1.0 <<2'\n",
        "  policy:\n    alphabetical:\n      order: up\n",
        "  policy:\n    semver:\n      range: 1.x\n  unknownField: true\n",
    ] {
        let file = write(dir.path(), "bad.yaml", &policy(bad));
        let out = run(&["policy", "test", "--policy", &file, "--tags", &tags]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn repeat_times_the_selection_on_stderr_and_keeps_stdout_the_tag_alone() {
    let dir = tempfile::tempdir().unwrap();
    let many: String = (0..5_000)
        .map(|i| format!("{}.{}.{}\n", i % 7, i % 13, i))
        .collect();
    let tags = write(dir.path(), "tags.txt", &many);
    let file = write(
        dir.path(),
        "policy.yaml",
        &policy("  policy:\n    semver:\n      range: '>=1.0.0 <6.0.0'\n"),
    );
    let out = run(&[
        "policy", "test", "--policy", &file, "--tags", &tags, "--repeat", "7",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5.12.4926\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.trim();
    assert!(
        line.starts_with("selection over 5000 tags, 7 runs (filter included): best "),
        "{line}"
    );
    let numbers: Vec<f64> = line
        .split(' ')
        .filter_map(|word| word.parse::<f64>().ok())
        .collect();
    // 5000, 7, best ns/tag, median ns/tag.
    assert_eq!(numbers.len(), 4, "{line}");
    assert!(numbers[2] > 0.0 && numbers[2] <= numbers[3], "{line}");
    let without = run(&["policy", "test", "--policy", &file, "--tags", &tags]);
    assert!(without.stderr.is_empty(), "no timing unless asked");
    let zero = run(&[
        "policy", "test", "--policy", &file, "--tags", &tags, "--repeat", "0",
    ]);
    assert_eq!(zero.status.code(), Some(2), "--repeat 0 is refused");
}
