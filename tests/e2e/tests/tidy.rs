//! The layout rules ARCHITECTURE.md states, held by a test instead of by
//! review (in the style of rust-analyzer's `tidy`): a service never depends
//! on another service, and a pure crate never gains an I/O or async
//! dependency, directly or through another crate.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The service crates: each may depend on `tagrelay-proto` and the pure
/// crates, never on one another.
const SERVICES: &[&str] = &[
    "tagrelay-scanner",
    "tagrelay-resolver",
    "tagrelay-committer",
    "tagrelay-configsource",
];

/// The crates that must do no I/O: selection, rewriting, references.
const PURE: &[&str] = &[
    "tagrelay-reference",
    "tagrelay-policy",
    "tagrelay-rewrite",
    "tagrelay-validate",
];

/// Crates whose presence means network, process, file-system-watching or
/// async I/O. A pure crate reaching any of them, even transitively, has
/// stopped being pure.
const IO_CRATES: &[&str] = &[
    "tokio",
    "async-nats",
    "futures",
    "gix",
    "reqwest",
    "hyper",
    "oci-client",
    "axum",
    "opentelemetry",
    "rustls",
    "mio",
];

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
}

fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Every package `package` needs at run time, with the features a user of
/// that package alone would build (`cargo tree -p`, normal edges only).
fn runtime_dependencies(package: &str) -> BTreeSet<String> {
    cargo(&[
        "tree",
        "--offline",
        "--locked",
        "-p",
        package,
        "-e",
        "normal",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ])
    .lines()
    .filter_map(|line| line.split_whitespace().next())
    .map(str::to_string)
    .collect()
}

#[test]
fn no_service_depends_on_another_service() {
    for service in SERVICES {
        let dependencies = runtime_dependencies(service);
        for other in SERVICES.iter().filter(|other| *other != service) {
            assert!(
                !dependencies.contains(*other),
                "{service} depends on {other}: services share only tagrelay-proto and the pure crates"
            );
        }
    }
}

#[test]
fn pure_crates_reach_no_io_crate() {
    for package in PURE {
        let dependencies = runtime_dependencies(package);
        assert!(
            dependencies.contains(*package),
            "cargo tree did not list {package} itself: {dependencies:?}"
        );
        let io: Vec<&str> = IO_CRATES
            .iter()
            .copied()
            .filter(|io| dependencies.contains(*io))
            .collect();
        assert!(io.is_empty(), "{package} reaches I/O crates {io:?}");
        for service in SERVICES {
            assert!(
                !dependencies.contains(*service),
                "{package} depends on the service {service}"
            );
        }
    }
}

#[test]
fn the_io_check_sees_io_where_there_is_some() {
    let dependencies = runtime_dependencies("tagrelay-proto");
    for io in ["tokio", "async-nats"] {
        assert!(
            dependencies.contains(io),
            "tagrelay-proto with its default features should reach {io}; the tidy check would be blind"
        );
    }
}
