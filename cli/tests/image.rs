//! `scripts/image` end to end: the images are assembled with umoci from the
//! binaries of this build, pushed with skopeo to a real registry (Debian's
//! `docker-registry` on loopback), and read back from it: `skopeo inspect`
//! gives each image's entrypoint, user and ports; the committer's image,
//! pulled back and unpacked, runs its binary, git, ssh and sh with only the
//! files it carries, and the other services' images carry no shell.
//! (`cargo test --workspace` builds every binary the images hold.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tagrelay_testkit::registry::Registry;

const SERVICES: [&str; 5] = [
    "tagrelay-scanner",
    "tagrelay-resolver",
    "tagrelay-committer",
    "tagrelay-notifier",
    "tagrelay-configsource",
];

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn run(command: &mut Command) -> String {
    let out = command.output().expect("spawn");
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn inspect_config(reference: &str) -> Value {
    let text =
        run(Command::new("skopeo").args(["inspect", "--config", "--tls-verify=false", reference]));
    serde_json::from_str(&text).expect("skopeo inspect --config prints JSON")
}

/// Runs `argv` inside `root` as its root directory, with the `/dev/null` a
/// container runtime provides: a user and mount namespace map this user to
/// root there, so no privilege is needed.
fn run_inside(root: &Path, argv: &[&str]) -> String {
    std::fs::create_dir_all(root.join("dev")).unwrap();
    std::fs::write(root.join("dev/null"), "").unwrap();
    run(Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(r#"mount --bind /dev/null "$0/dev/null" && exec chroot "$0" "$@""#)
        .arg(root)
        .args(argv))
}

#[test]
fn images_are_built_pushed_to_a_registry_and_run_as_a_non_root_user() {
    let binaries = Path::new(env!("CARGO_BIN_EXE_tagrelay"))
        .parent()
        .expect("binary directory")
        .to_path_buf();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    let registry = Registry::start();
    let prefix = format!("{}/tagrelay", registry.host());

    run(Command::new(repository_root().join("scripts/image"))
        .args(["--tag", "0.0.0-test", "--insecure", "--push", &prefix])
        .arg("--binaries")
        .arg(&binaries)
        .arg("--layout")
        .arg(&layout));

    for program in SERVICES.iter().chain(&["tagrelay"]) {
        let config = inspect_config(&format!("docker://{prefix}/{program}:0.0.0-test"));
        let config = &config["config"];
        assert_eq!(
            config["Entrypoint"],
            serde_json::json!([format!("/usr/local/bin/{program}")]),
            "{program}: {config}"
        );
        assert_eq!(config["User"], "65532:65532", "{program}: {config}");
        if SERVICES.contains(program) {
            assert!(
                config["ExposedPorts"]["8080/tcp"].is_object(),
                "{program} declares its HTTP port: {config}"
            );
        }
    }

    let pulled = work.path().join("pulled");
    let unpack = |program: &str| -> PathBuf {
        run(Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{prefix}/{program}:0.0.0-test"))
            .arg(format!("oci:{}:{program}", pulled.display())));
        let bundle = work.path().join(program);
        run(Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:{program}", pulled.display()))
            .arg(&bundle));
        bundle.join("rootfs")
    };

    let committer = unpack("tagrelay-committer");
    assert!(
        run_inside(&committer, &["/usr/local/bin/tagrelay-committer", "--help"])
            .contains("--cache-dir"),
        "the committer runs with only the libraries its image carries"
    );
    assert!(run_inside(&committer, &["/usr/bin/git", "--version"]).starts_with("git version"));
    assert_eq!(
        run_inside(&committer, &["/bin/sh", "-c", "echo pushed | /bin/cat"]),
        "pushed\n",
        "the askpass script's sh and cat run"
    );
    let passwd = std::fs::read_to_string(committer.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains("tagrelay:x:65532:65532:"),
        "ssh needs a passwd entry for the user: {passwd}"
    );

    let scanner = unpack("tagrelay-scanner");
    assert!(
        run_inside(&scanner, &["/usr/local/bin/tagrelay-scanner", "--help"]).contains("--listen"),
        "the scanner runs with only the libraries its image carries"
    );
    for absent in ["bin/sh", "usr/bin/git", "usr/bin/ssh"] {
        assert!(
            !scanner.join(absent).exists(),
            "the scanner's image carries no {absent}"
        );
    }
}
