//! The committer on a large repository: 10,000 manifests, 100 of them with
//! a Setters marker, served over `file://`.
//!
//! Figures printed (wall clock, this machine):
//! - `git clone` of the repository (with checkout, and `--bare`), for
//!   comparison;
//! - cold: a fresh committer with an empty cache reconciles a policy move
//!   (full fetch, walk, screening of every blob, 100 rewrites, commit, push);
//! - warm: the same committer after a human commit and another policy move
//!   (incremental fetch, walk, only new or marked blobs read);
//! - warm, nothing to do: the branch already holds the state.
//!
//! Run with `cargo bench -p tagrelay-committer --bench git`. Timings are
//! reported, never asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::process::Command;
use std::time::{Duration, Instant};

use tagrelay_committer::service::{Committer, Outcome, Settings};
use tagrelay_proto::bus::{Bus, BusSettings};
use tagrelay_proto::config::{load_documents, Kind, Object, ObjectKey};
use tagrelay_proto::event::{
    Envelope, Event, ObjectRef, PolicyResolved, ResolveCause, SelectedImage,
};
use tagrelay_proto::names;
use tagrelay_proto::state::PolicySelection;
use tagrelay_testkit::git::{git, BareRepo, Seed};
use tagrelay_testkit::NatsServer;

const FILES: usize = 10_000;
const MARKED: usize = 100;
const DIRS: usize = 100;

fn manifest(i: usize, marked: bool) -> String {
    let marker = if marked {
        " # {\"$imagepolicy\": \"flux-system:app\"}"
    } else {
        ""
    };
    let image = if marked {
        "registry.example/app"
    } else {
        "registry.example/other"
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  namespace: team-{}\nspec:\n  replicas: 2\n  template:\n    metadata:\n      labels: {{app: app-{i}}}\n    spec:\n      containers:\n        - name: app\n          image: {image}:1.0.0{marker}\n          resources: {{limits: {{cpu: 100m, memory: 64Mi}}}}\n",
        i % DIRS
    )
}

async fn resolve(bus: &Bus, tag: &str) {
    let envelope = Envelope::new(
        "resolver/bench",
        Event::PolicyResolved(PolicyResolved {
            policy: ObjectRef::new("flux-system", "app"),
            repository: ObjectRef::new("flux-system", "app"),
            image: "registry.example/app".into(),
            previous: None,
            current: SelectedImage {
                tag: tag.into(),
                digest: None,
            },
            cause: ResolveCause::TagsChanged,
            tag_set_digest: "sha256:bench".into(),
        }),
    );
    let published = bus.publish(&envelope).await.expect("publish");
    let selection = PolicySelection {
        image: "registry.example/app".into(),
        selected: SelectedImage {
            tag: tag.into(),
            digest: None,
        },
        source_sequence: published.sequence,
        rules_hash: "bench".into(),
        resolved_sequence: published.sequence,
        updated_at: chrono::Utc::now(),
        held_back: None,
        recheck_at: None,
    };
    bus.bucket(names::POLICY_STATE_BUCKET)
        .await
        .expect("bucket")
        .put(
            ObjectKey::new(Kind::ImagePolicy, "flux-system", "app").bucket_key(),
            serde_json::to_vec(&selection).expect("json").into(),
        )
        .await
        .expect("put");
}

fn ms(d: Duration) -> String {
    format!("{:>8.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    tagrelay_proto::runtime::install_crypto_provider();
    let started = Instant::now();
    let seed: Vec<Seed> = (0..FILES)
        .map(|i| {
            let marked = i % (FILES / MARKED) == 0;
            Seed::file(
                &format!("apps/dir-{:03}/app-{i:05}.yaml", i % DIRS),
                &manifest(i, marked),
            )
        })
        .collect();
    let repo = BareRepo::seeded("main", &seed);
    git(&repo.path(), &["gc", "-q"]);
    println!(
        "repository: {FILES} manifests ({MARKED} marked) in {DIRS} directories, built in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let scratch = repo.scratch();
    let t = Instant::now();
    let status = Command::new("git")
        .current_dir(&scratch)
        .args(["clone", "-q", &repo.url(), "plain-clone"])
        .status()
        .expect("git clone");
    assert!(status.success());
    let clone = t.elapsed();
    let t = Instant::now();
    let status = Command::new("git")
        .current_dir(&scratch)
        .args(["clone", "-q", "--bare", &repo.url(), "plain-bare.git"])
        .status()
        .expect("git clone --bare");
    assert!(status.success());
    let bare_clone = t.elapsed();

    let server = NatsServer::start();
    let bus = Bus::connect(&server.url(), "bench", BusSettings::default())
        .await
        .expect("bus");
    let store = bus.config_store().await.expect("store");
    let yaml = format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {{name: fleet, namespace: flux-system}}\nspec: {{url: '{}', interval: 1m, ref: {{branch: main}}}}\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata: {{name: app, namespace: flux-system}}\nspec:\n  imageRepositoryRef: {{name: app}}\n  policy: {{semver: {{range: '>=1.0.0'}}}}\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageUpdateAutomation\nmetadata: {{name: fleet, namespace: flux-system}}\nspec:\n  interval: 1h\n  sourceRef: {{kind: GitRepository, name: fleet}}\n  update: {{path: ./apps}}\n  git:\n    commit:\n      author: {{name: tagrelay, email: bot@example.com}}\n",
        repo.url()
    );
    for doc in load_documents(&yaml).expect("yaml") {
        store
            .put(&Object::decode(&doc.value).expect("object"))
            .await
            .expect("put");
    }
    let key = ObjectKey::new(Kind::ImageUpdateAutomation, "flux-system", "fleet");
    let cache = tempfile::tempdir().expect("temp dir");
    let committer = Committer::new(
        &bus,
        Settings {
            cache_dir: cache.path().join("cache"),
            secrets_dir: cache.path().join("secrets"),
            commit_window: std::time::Duration::ZERO,
        },
    )
    .await
    .expect("committer");

    resolve(&bus, "1.1.0").await;
    let t = Instant::now();
    let cold = committer.reconcile(&key, None).await.expect("cold");
    let cold_time = t.elapsed();
    let Outcome::Pushed(first) = cold else {
        panic!("cold run did not push: {cold:?}")
    };
    let screened = committer.screened_blobs();

    repo.human_commit(
        "main",
        "apps/dir-007/app-00007.yaml",
        &manifest(7, false).replace("replicas: 2", "replicas: 3"),
        "scale",
    );
    resolve(&bus, "1.2.0").await;
    let t = Instant::now();
    let warm = committer.reconcile(&key, None).await.expect("warm");
    let warm_time = t.elapsed();
    let Outcome::Pushed(second) = warm else {
        panic!("warm run did not push: {warm:?}")
    };

    let t = Instant::now();
    let idle = committer.reconcile(&key, None).await.expect("idle");
    let idle_time = t.elapsed();
    assert_eq!(idle, Outcome::UpToDate);

    println!(
        "{:<58}{}",
        "plain `git clone` (file://, with checkout)",
        ms(clone)
    );
    println!(
        "{:<58}{}",
        "plain `git clone --bare` (file://)",
        ms(bare_clone)
    );
    println!(
        "{:<58}{}",
        format!(
            "cold: empty cache, {} changes committed and pushed",
            first.changes.len()
        ),
        ms(cold_time)
    );
    println!(
        "{:<58}{}",
        format!(
            "warm: after a human commit, {} changes",
            second.changes.len()
        ),
        ms(warm_time)
    );
    println!(
        "{:<58}{}",
        "warm: nothing to do (branch already current)",
        ms(idle_time)
    );
    println!("blob verdicts cached after the cold run: {screened}");
}
