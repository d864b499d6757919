//! Hostile input, end to end through the real pipeline (`tagrelay run
//! --all` against a real registry, NATS and Git remote):
//!
//! - tags a registry lists but the OCI grammar forbids (newline, `#`,
//!   quotes, 129 characters, unicode, control characters) are never written,
//!   even when the policy would rank them first, while the 128-character
//!   tag just inside the grammar is; and a 100,000-tag list does not blow
//!   the pipeline's memory (its peak RSS is printed and bounded);
//! - an update path that is a symlink, or that climbs out with `..`, writes
//!   nothing: the first is a `CommitFailed` naming the symlink, the second is
//!   refused by `apply` naming the field.
//!
//! Giant manifests and endless registry bodies are covered next to the code
//! that bounds them (`services/committer/tests/service.rs`,
//! `services/scanner/tests/scanner.rs`); an unauthenticated webhook in
//! `services/scanner/src/webhook/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

mod common;

use std::process::{Child, Command, Stdio};

use common::tagrelay;
use std::time::{Duration, Instant};

use tagrelay_testkit::git::{BareRepo, Seed};
use tagrelay_testkit::registry::Registry;
use tagrelay_testkit::NatsServer;

/// `tagrelay run --all`, stopped (SIGTERM) when dropped.
struct Pipeline {
    child: Child,
    _dirs: tempfile::TempDir,
}

impl Pipeline {
    fn start(nats: &str) -> Self {
        let dirs = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tagrelay"))
            .args(["run", "--all"])
            .env("NATS_URL", nats)
            .env(
                "TAGRELAY_LISTEN",
                format!("127.0.0.1:{}", tagrelay_testkit::free_port()),
            )
            .env("TAGRELAY_CACHE_DIR", dirs.path().join("cache"))
            .env("TAGRELAY_SECRETS_DIR", dirs.path().join("secrets"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, _dirs: dirs }
    }

    /// The process's peak resident set (`VmHWM`), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        tagrelay_testkit::stop_gracefully(&mut self.child);
    }
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn automation(git_url: &str, path: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: fleet\nspec:\n  url: {git_url}\n  interval: 1m\n  ref:\n    branch: main\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageUpdateAutomation\nmetadata:\n  name: fleet\nspec:\n  interval: 1h\n  sourceRef:\n    kind: GitRepository\n    name: fleet\n  git:\n    commit:\n      author:\n        name: tagrelay\n        email: tagrelay@example.com\n    push:\n      branch: main\n  update:\n    path: {path}\n    strategy: Setters\n"
    )
}

fn image_objects(image: &str, policy: &str) -> String {
    format!(
        "---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: app\nspec:\n  image: {image}\n  interval: 1h\n  insecure: true\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n{policy}"
    )
}

fn manifest(image: &str, tag: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {image}:{tag} # {{\"$imagepolicy\": \"flux-system:app\"}}\n"
    )
}

fn apply(nats: &str, yaml: &str) {
    let out = tagrelay(nats, &["apply", "-f", "-"], Some(yaml));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tags_outside_the_grammar_are_never_written_and_a_huge_list_stays_in_bounds() {
    let nats = NatsServer::start();
    let registry = Registry::start();
    let image = format!("{}/hostile/app", registry.host());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(registry.push_tags("hostile/app", &["a0"]));
    // Every one of these sorts above every valid tag, so an alphabetical
    // policy would pick it if anything let it through.
    let longest = format!("y{}", "a".repeat(127));
    let hostile: Vec<String> = vec![
        "z\nimage: evil".into(),
        "z\n".into(),
        "z#comment".into(),
        "z\"quoted".into(),
        "z'quoted".into(),
        "z {json}".into(),
        "zé".into(),
        "z\u{202e}lrt".into(),
        "z\ttab".into(),
        "z\r".into(),
        format!("y{}", "a".repeat(128)),
    ];
    assert_eq!(longest.len(), 128);
    let mut tags: Vec<String> = (0..100_000).map(|i| format!("a{i:06}")).collect();
    tags.push(longest.clone());
    tags.extend(hostile.iter().cloned());
    registry.add_tags_in_storage("hostile/app", "a0", &tags);

    let repo = BareRepo::seeded(
        "main",
        &[Seed::file("apps/app.yaml", &manifest(&image, "a0"))],
    );
    let seed = repo.tip("main").unwrap();
    apply(
        &nats.url(),
        &(automation(&repo.url(), "./apps")
            + &image_objects(&image, "    alphabetical:\n      order: asc\n")),
    );
    let pipeline = Pipeline::start(&nats.url());
    wait_until("the commit", Duration::from_secs(60), || {
        repo.tip("main").unwrap() != seed
    });
    std::thread::sleep(Duration::from_secs(2));

    assert_eq!(
        repo.read_text("main", "apps/app.yaml").unwrap(),
        manifest(&image, &longest),
        "the highest tag inside the grammar, byte for byte"
    );
    assert_eq!(repo.log("main").len(), 2, "one commit on top of the seed");
    let listed = tagrelay(
        &nats.url(),
        &["get", "image", "repository", "-o", "json"],
        None,
    );
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&format!("{} tag(s) dropped", hostile.len())),
        "{listed}"
    );
    let peak = pipeline.peak_rss_kib();
    println!(
        "hostile tags: {} refused; {} tags listed; pipeline peak RSS {} MiB",
        hostile.len(),
        tags.len(),
        peak / 1024
    );
    assert!(
        peak < 256 * 1024,
        "the pipeline peaked at {} MiB over a 100,000-tag list",
        peak / 1024
    );
}

#[test]
fn an_update_path_through_a_symlink_or_out_with_dotdot_writes_nothing() {
    let nats = NatsServer::start();
    let registry = Registry::start();
    let image = format!("{}/hostile/app", registry.host());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(registry.push_tags("hostile/app", &["1.0.0", "1.1.0"]));
    let repo = BareRepo::seeded(
        "main",
        &[
            Seed::file("real/app.yaml", &manifest(&image, "1.0.0")),
            Seed::symlink("apps", "real"),
            Seed::symlink("up", ".."),
        ],
    );
    let seed = repo.tip("main").unwrap();

    let escaping = automation(&repo.url(), "./apps/../..");
    let refused = tagrelay(&nats.url(), &["apply", "-f", "-"], Some(&escaping));
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("spec.update.path"), "{stderr}");
    assert!(stderr.contains(".."), "{stderr}");

    apply(
        &nats.url(),
        &(automation(&repo.url(), "./apps")
            + &image_objects(&image, "    semver:\n      range: '>=1.0.0'\n")),
    );
    let _pipeline = Pipeline::start(&nats.url());
    wait_until("CommitFailed", Duration::from_secs(60), || {
        let audit = tagrelay(&nats.url(), &["audit", "-o", "json"], None);
        String::from_utf8_lossy(&audit.stdout).contains("CommitFailed")
    });
    let audit = tagrelay(&nats.url(), &["audit", "-o", "json"], None);
    let audit = String::from_utf8_lossy(&audit.stdout);
    let failure = audit
        .lines()
        .find(|line| line.contains("CommitFailed"))
        .unwrap();
    assert!(
        failure.contains("apps is a symlink, which is never followed"),
        "{failure}"
    );
    let failure: serde_json::Value = serde_json::from_str(failure).unwrap();
    assert_eq!(failure["payload"]["reason"], "InvalidSpec", "{failure}");
    assert_eq!(repo.tip("main").unwrap(), seed, "nothing was committed");
    assert_eq!(
        repo.read_text("main", "real/app.yaml").unwrap(),
        manifest(&image, "1.0.0")
    );
}
