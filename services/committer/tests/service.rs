//! The committer against real Git remotes (`file://` bare repositories and
//! smart HTTP through `git http-backend`) and a real nats-server.
//!
//! Policy state is written the way the resolver writes it (a
//! `PolicySelection` in the policy-state bucket, announced by a
//! `PolicyResolved` whose stream sequence the selection records): that
//! record is the contract between the two stages.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tagrelay_committer::git::MAX_MANIFEST_BYTES;
use tagrelay_committer::service::{Committer, Outcome, Settings};
use tagrelay_proto::bus::{Bus, BusSettings, ConfigStore};
use tagrelay_proto::config::{load_documents, Kind, Object, ObjectKey, FLUX_V1_FILTER_ANNOTATION};
use tagrelay_proto::event::{
    CommitPushed, Envelope, Event, Failure, FailureReason, ObjectRef, PolicyResolved, ResolveCause,
    SelectedImage,
};
use tagrelay_proto::names;
use tagrelay_proto::state::PolicySelection;
use tagrelay_testkit::git::{BareRepo, HttpRemote, Seed, SshRemote};
use tagrelay_testkit::NatsServer;

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  namespace: apps
spec:
  template:
    spec:
      containers:
        - name: app
          # the tag moves; the comment stays
          image: registry.example/app:1.0.0 # {\"$imagepolicy\": \"flux-system:app\"}
          ports: [{containerPort: 80}]
";

const KUSTOMIZATION: &str = "\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
images:
- name: app
  newTag: \"1.0.0\" # {\"$imagepolicy\": \"flux-system:app:tag\"}
";

struct Env {
    _server: NatsServer,
    url: String,
    bus: Bus,
    store: ConfigStore,
    dirs: tempfile::TempDir,
}

async fn env() -> Env {
    let server = NatsServer::start();
    let url = server.url();
    let bus = Bus::connect(&url, "test", BusSettings::default())
        .await
        .unwrap();
    let store = bus.config_store().await.unwrap();
    Env {
        _server: server,
        url,
        bus,
        store,
        dirs: tempfile::tempdir().unwrap(),
    }
}

impl Env {
    fn settings(&self, instance: &str) -> Settings {
        Settings {
            cache_dir: self.dirs.path().join(instance).join("cache"),
            secrets_dir: self.dirs.path().join("secrets"),
            commit_window: tagrelay_committer::service::COMMIT_WINDOW,
        }
    }

    async fn committer(&self, instance: &str) -> Committer {
        let bus = Bus::connect(
            &self.url,
            format!("committer/{instance}"),
            BusSettings::default(),
        )
        .await
        .unwrap();
        Committer::new(&bus, self.settings(instance)).await.unwrap()
    }

    async fn apply(&self, yaml: &str) {
        for doc in load_documents(yaml).unwrap() {
            self.store
                .put(&Object::decode(&doc.value).unwrap())
                .await
                .unwrap();
        }
    }

    /// Does what the resolver does when a policy moves: publishes
    /// `PolicyResolved` and records the selection with its sequence.
    async fn resolve(&self, namespace: &str, policy: &str, image: &str, tag: &str) -> Envelope {
        let (envelope, record) = self.announce_move(namespace, policy, image, tag).await;
        record.await;
        envelope
    }

    /// The two halves of [`Env::resolve`]: the `PolicyResolved` is published
    /// now; the selection is written when the returned future runs, so a
    /// test can let the committer see the event before the state, as it may
    /// from the real resolver.
    async fn announce_move(
        &self,
        namespace: &str,
        policy: &str,
        image: &str,
        tag: &str,
    ) -> (Envelope, impl std::future::Future<Output = ()> + use<>) {
        let state = self.bus.bucket(names::POLICY_STATE_BUCKET).await.unwrap();
        let key = ObjectKey::new(Kind::ImagePolicy, namespace, policy).bucket_key();
        let previous: Option<PolicySelection> = state
            .get(&key)
            .await
            .unwrap()
            .map(|b| serde_json::from_slice(&b).unwrap());
        let envelope = Envelope::new(
            "resolver/test",
            Event::PolicyResolved(PolicyResolved {
                policy: ObjectRef::new(namespace, policy),
                repository: ObjectRef::new(namespace, policy),
                image: image.into(),
                previous: previous.as_ref().map(|p| p.selected.clone()),
                current: SelectedImage {
                    tag: tag.into(),
                    digest: None,
                },
                cause: ResolveCause::TagsChanged,
                tag_set_digest: "sha256:test".into(),
            }),
        );
        let published = self.bus.publish(&envelope).await.unwrap();
        let selection = PolicySelection {
            image: image.into(),
            selected: SelectedImage {
                tag: tag.into(),
                digest: None,
            },
            source_sequence: published.sequence,
            rules_hash: "test".into(),
            resolved_sequence: published.sequence,
            updated_at: chrono::Utc::now(),
            held_back: None,
            recheck_at: None,
        };
        let record = async move {
            state
                .put(&key, serde_json::to_vec(&selection).unwrap().into())
                .await
                .unwrap();
        };
        (envelope, record)
    }

    /// Runs the committer service until the returned sender is used.
    async fn service(
        &self,
        settings: Settings,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let bus = Bus::connect(&self.url, "committer/svc", BusSettings::default())
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = tokio::spawn(async move {
            tagrelay_committer::run(&bus, settings, Default::default(), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        (stop, service)
    }

    /// Waits (up to 30 s) for `count` `CommitPushed`, then a little longer
    /// for any that should not come.
    async fn wait_pushed(&self, count: usize) -> Vec<CommitPushed> {
        self.wait_for_pushed(count).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.pushed().await
    }

    /// Waits (up to 30 s) for `count` `CommitPushed`, and no longer.
    async fn wait_for_pushed(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.pushed().await.len() < count {
            assert!(
                Instant::now() < deadline,
                "{} of {count} CommitPushed; failures: {:?}",
                self.pushed().await.len(),
                self.failed().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn events(&self, filter: &str) -> Vec<Envelope> {
        tagrelay_testkit::events(&self.bus, filter).await
    }

    async fn pushed(&self) -> Vec<CommitPushed> {
        self.events(names::COMMIT_FILTER)
            .await
            .into_iter()
            .filter_map(|e| match e.payload {
                Event::CommitPushed(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    async fn failed(&self) -> Vec<Failure> {
        self.events(names::FAILED_FILTER)
            .await
            .into_iter()
            .filter_map(|e| match e.payload {
                Event::CommitFailed(f) => Some(f),
                _ => None,
            })
            .collect()
    }
}

fn config(url: &str, extra_git: &str, path: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: fleet, namespace: flux-system}}
spec:
  url: {url}
  interval: 1m
  ref: {{branch: main}}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata: {{name: app, namespace: flux-system}}
spec: {{image: registry.example/app, interval: 1m}}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata: {{name: app, namespace: flux-system}}
spec:
  imageRepositoryRef: {{name: app}}
  policy: {{semver: {{range: '>=1.0.0'}}}}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageUpdateAutomation
metadata: {{name: fleet, namespace: flux-system}}
spec:
  interval: 1h
  sourceRef: {{kind: GitRepository, name: fleet}}
  update: {{path: {path}}}
  git:
    commit:
      author: {{name: tagrelay, email: bot@example.com}}
{extra_git}"
    )
}

fn automation_key() -> ObjectKey {
    ObjectKey::new(Kind::ImageUpdateAutomation, "flux-system", "fleet")
}

fn seeded() -> BareRepo {
    BareRepo::seeded(
        "main",
        &[
            Seed::file("apps/app.yaml", DEPLOYMENT),
            Seed::file("apps/kustomization.yaml", KUSTOMIZATION),
            Seed::file("apps/other.yaml", "kind: ConfigMap\ndata: {a: b}\n"),
            Seed::file("outside/app.yaml", DEPLOYMENT),
            Seed::file(
                "README.md",
                "not a manifest # {\"$imagepolicy\": \"flux-system:app\"}\n",
            ),
        ],
    )
}

#[tokio::test]
async fn a_policy_move_becomes_exactly_one_commit_with_the_right_bytes_and_event() {
    let env = env().await;
    let repo = seeded();
    env.apply(&config(&repo.url(), "", "./apps")).await;
    let seed_tip = repo.tip("main").unwrap();
    let cause = env
        .resolve("flux-system", "app", "registry.example/app", "1.2.0")
        .await;

    let committer = env.committer("a").await;
    let outcome = committer
        .reconcile(&automation_key(), Some(&cause))
        .await
        .unwrap();
    let Outcome::Pushed(pushed) = outcome else {
        panic!("expected a push, got {outcome:?}")
    };

    assert_eq!(
        repo.read_text("main", "apps/app.yaml").unwrap(),
        DEPLOYMENT.replace("app:1.0.0 #", "app:1.2.0 #")
    );
    assert_eq!(
        repo.read_text("main", "apps/kustomization.yaml").unwrap(),
        KUSTOMIZATION.replace("\"1.0.0\"", "\"1.2.0\"")
    );
    assert_eq!(
        repo.read_text("main", "outside/app.yaml").unwrap(),
        DEPLOYMENT,
        "files outside update.path are never touched"
    );
    assert_eq!(
        repo.log("main"),
        vec![pushed.commit.clone(), seed_tip.clone()],
        "exactly one commit on top of the seed"
    );

    assert_eq!(pushed.remote, repo.url());
    assert_eq!(pushed.branch, "main");
    assert_eq!(pushed.parent.as_deref(), Some(seed_tip.as_str()));
    assert_eq!(pushed.causes, vec![cause.id.clone()]);
    let changes: Vec<(String, String, String, String)> = pushed
        .changes
        .iter()
        .map(|c| {
            (
                c.file.clone(),
                c.old.clone(),
                c.new.clone(),
                c.setter.clone(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            (
                "apps/app.yaml".into(),
                "registry.example/app:1.0.0".into(),
                "registry.example/app:1.2.0".into(),
                "flux-system:app".into()
            ),
            (
                "apps/kustomization.yaml".into(),
                "1.0.0".into(),
                "1.2.0".into(),
                "flux-system:app:tag".into()
            ),
        ]
    );
    let announced = env.events(names::COMMIT_FILTER).await;
    assert_eq!(announced.len(), 1);
    assert_eq!(announced[0].payload, Event::CommitPushed(pushed.clone()));
    assert_eq!(
        announced[0].causation_id.as_deref(),
        Some(cause.id.as_str())
    );
    assert_eq!(announced[0].correlation_id, cause.correlation_id);

    let message = repo.message(&pushed.commit);
    assert!(
        message.starts_with("Update from image update automation\n\n"),
        "{message}"
    );
    assert!(
        message.contains("Tagrelay-Automation: flux-system/fleet\n"),
        "{message}"
    );
    assert!(message.contains("Tagrelay-Change: apps/app.yaml registry.example/app:1.0.0 -> registry.example/app:1.2.0 (flux-system:app)\n"), "{message}");
    assert!(
        message.contains(&format!("Tagrelay-Cause: {}\n", cause.id)),
        "{message}"
    );
    let author = repo.git(&["log", "-1", "--format=%an <%ae>", &pushed.commit]);
    assert_eq!(author.trim(), "tagrelay <bot@example.com>");

    let status = env.store.status(&automation_key()).await.unwrap().unwrap();
    assert!(status.ready, "{status:?}");
    assert_eq!(
        status.last_push_commit.as_deref(),
        Some(pushed.commit.as_str())
    );
    assert!(status.last_push_time.is_some());

    // The same trigger again (a redelivery), and a fresh instance: nothing.
    for instance in ["a", "b"] {
        let again = env.committer(instance).await;
        assert_eq!(
            again
                .reconcile(&automation_key(), Some(&cause))
                .await
                .unwrap(),
            Outcome::UpToDate
        );
    }
    assert_eq!(repo.log("main").len(), 2);
    assert_eq!(env.pushed().await.len(), 1);
}

#[tokio::test]
async fn the_service_commits_on_policy_resolved_over_smart_http_with_basic_auth() {
    tagrelay_proto::runtime::install_crypto_provider();
    let env = env().await;
    let repo = seeded();
    let server = HttpRemote::serve(&repo.scratch(), Some(("bot", "s3cret-pw")));
    let secret = env.dirs.path().join("secrets/flux-system/git-auth");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("username"), "bot\n").unwrap();
    std::fs::write(secret.join("password"), "s3cret-pw\n").unwrap();
    let body = "Automated image update\n\nAutomation name: {{ .AutomationObject }}\n\nFiles:\n{{ range $filename, $_ := .Changed.FileChanges -}}\n- {{ $filename }}\n{{ end -}}\n\nObjects:\n{{ range $resource, $changes := .Changed.Objects -}}\n- {{ $resource.Kind }} {{ $resource.Name }}\n  Changes:\n{{- range $_, $change := $changes }}\n    - {{ $change.OldValue }} -> {{ $change.NewValue }}\n{{ end -}}\n{{ end -}}\n";
    // Flux's documented template, as a YAML literal block under commit.
    let template: String = std::iter::once("      messageTemplate: |\n".to_string())
        .chain(body.lines().map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("        {l}\n")
            }
        }))
        .collect();
    let yaml = config(&server.url("remote.git"), &template, "apps").replace(
        "  ref: {branch: main}\n",
        "  ref: {branch: main}\n  secretRef: {name: git-auth}\n",
    );
    env.apply(&yaml).await;

    let bus = Bus::connect(&env.url, "committer/svc", BusSettings::default())
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let settings = env.settings("svc");
    let service = tokio::spawn(async move {
        tagrelay_committer::run(&bus, settings, Default::default(), async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let cause = env
        .resolve("flux-system", "app", "registry.example/app", "1.3.0")
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let pushed = loop {
        let pushed = env.pushed().await;
        if let Some(p) = pushed.first() {
            break p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no CommitPushed; failures: {:?}",
            env.failed().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = stop.send(());
    service.await.unwrap();

    assert_eq!(repo.tip("main").as_deref(), Some(pushed.commit.as_str()));
    assert!(pushed.causes.contains(&cause.id));
    assert_eq!(pushed.remote, server.url("remote.git"));
    let message = repo.message(&pushed.commit);
    let expected = "Automated image update\n\nAutomation name: flux-system/fleet\n\nFiles:\n- apps/app.yaml\n- apps/kustomization.yaml\nObjects:\n- Deployment app\n  Changes:\n    - registry.example/app:1.0.0 -> registry.example/app:1.3.0\n- Kustomization \n  Changes:\n    - 1.0.0 -> 1.3.0\n\nTagrelay-Automation: flux-system/fleet\n";
    assert!(message.starts_with(expected), "{message}");
    // The password is nowhere but in the Secret: not in events, not in the
    // cache's configuration or refs.
    let all_events = env.events("tagrelay.>").await;
    for e in &all_events {
        assert!(!String::from_utf8_lossy(&e.to_json().unwrap()).contains("s3cret-pw"));
    }
    let cache = env.settings("svc").cache_dir;
    for entry in walk_files(&cache) {
        if entry.extension().is_some_and(|e| e == "pack" || e == "idx") {
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("s3cret-pw"),
            "secret leaked into {}",
            entry.display()
        );
    }
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk_files(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// A pre-receive hook that, the first time a push arrives, lands a human
/// commit on `main` first, so the bot's compare-and-swap fails exactly as
/// it does when a person pushes between the bot's fetch and its push.
const RACING_HOOK: &str = "#!/bin/sh
if [ ! -e \"$GIT_DIR/raced\" ]; then
  touch \"$GIT_DIR/raced\"
  unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
  parent=$(git rev-parse refs/heads/main)
  blob=$(echo 'human: true' | git hash-object -w --stdin)
  export GIT_INDEX_FILE=\"$GIT_DIR/race-index\"
  git read-tree \"$parent\"
  git update-index --add --cacheinfo 100644,\"$blob\",apps/human.yaml
  tree=$(git write-tree)
  c=$(GIT_AUTHOR_NAME=Human GIT_AUTHOR_EMAIL=h@example.com GIT_COMMITTER_NAME=Human GIT_COMMITTER_EMAIL=h@example.com git commit-tree \"$tree\" -p \"$parent\" -m 'human edit')
  git update-ref refs/heads/main \"$c\" \"$parent\"
fi
exit 0
";

#[tokio::test]
async fn a_human_commit_racing_the_bot_is_kept_and_the_change_reapplied_on_top() {
    let env = env().await;
    let repo = seeded();
    repo.install_hook("pre-receive", RACING_HOOK);
    env.apply(&config(&repo.url(), "", "apps")).await;
    let seed_tip = repo.tip("main").unwrap();
    env.resolve("flux-system", "app", "registry.example/app", "1.4.0")
        .await;

    let committer = env.committer("a").await;
    let Outcome::Pushed(pushed) = committer.reconcile(&automation_key(), None).await.unwrap()
    else {
        panic!("expected a push; failures: {:?}", env.failed().await)
    };
    let log = repo.log("main");
    assert_eq!(log.len(), 3, "seed, human, bot: {log:?}");
    assert_eq!(log[0], pushed.commit);
    assert_eq!(log[2], seed_tip);
    assert_eq!(
        pushed.parent.as_deref(),
        Some(log[1].as_str()),
        "re-applied on the human commit"
    );
    assert_eq!(repo.message(&log[1]).trim(), "human edit");
    assert_eq!(
        repo.read_text("main", "apps/human.yaml").as_deref(),
        Some("human: true\n")
    );
    assert!(repo
        .read_text("main", "apps/app.yaml")
        .unwrap()
        .contains("app:1.4.0 #"));
    assert_eq!(env.pushed().await.len(), 1);
}

#[tokio::test]
async fn two_committers_at_once_make_one_commit_and_one_announcement() {
    let env = env().await;
    let repo = seeded();
    env.apply(&config(&repo.url(), "", "apps")).await;
    let seed_tip = repo.tip("main").unwrap();
    let cause = env
        .resolve("flux-system", "app", "registry.example/app", "2.0.0")
        .await;
    let (a, b) = (env.committer("a").await, env.committer("b").await);
    let key = automation_key();
    let (ra, rb) = tokio::join!(
        a.reconcile(&key, Some(&cause)),
        b.reconcile(&key, Some(&cause))
    );
    let outcomes = [ra.unwrap(), rb.unwrap()];
    assert!(
        outcomes.iter().any(|o| matches!(o, Outcome::Pushed(_))),
        "{outcomes:?}"
    );
    let log = repo.log("main");
    assert_eq!(log.len(), 2, "one commit: {log:?}");
    assert_eq!(log[1], seed_tip);
    let pushed = env.pushed().await;
    assert_eq!(pushed.len(), 1, "{pushed:#?}");
    assert_eq!(pushed[0].commit, log[0]);
    assert!(env.failed().await.is_empty());
}

/// A pre-receive hook that holds the push until the test says how it ends:
/// it touches `started`, then waits for `accept` or `reject`.
const HOLDING_HOOK: &str = "#!/bin/sh
touch \"$GIT_DIR/started\"
while true; do
  [ -e \"$GIT_DIR/accept\" ] && exit 0
  [ -e \"$GIT_DIR/reject\" ] && { echo 'held and refused'; touch \"$GIT_DIR/refused\"; exit 1; }
  sleep 0.05
done
";

fn start_binary(env: &Env, instance: &str) -> Child {
    let settings = env.settings(instance);
    Command::new(env!("CARGO_BIN_EXE_tagrelay-committer"))
        .args(["--nats-url", &env.url, "--instance", instance])
        .args(["--http-addr", "127.0.0.1:0"])
        .arg("--cache-dir")
        .arg(&settings.cache_dir)
        .arg("--secrets-dir")
        .arg(&settings.secrets_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn killed_mid_push(end: &str) -> (Env, BareRepo, String, Envelope) {
    let env = env().await;
    let repo = seeded();
    repo.install_hook("pre-receive", HOLDING_HOOK);
    env.apply(&config(&repo.url(), "", "apps")).await;
    let seed_tip = repo.tip("main").unwrap();
    let cause = env
        .resolve("flux-system", "app", "registry.example/app", "3.0.0")
        .await;
    let mut first = start_binary(&env, "one");
    wait_for_file(&repo.path().join("started")).await;
    first.kill().unwrap();
    first.wait().unwrap();
    std::fs::remove_file(repo.path().join("started")).unwrap();
    std::fs::write(repo.path().join(end), "").unwrap();
    (env, repo, seed_tip, cause)
}

#[tokio::test]
async fn killed_after_commit_before_push_lands_the_same_single_commit_after_restart() {
    let (env, repo, seed_tip, cause) = killed_mid_push("reject").await;
    // The push the dead process started was refused: nothing landed, and
    // its commit sits unreferenced in the dead process's cache.
    wait_for_file(&repo.path().join("refused")).await;
    assert_eq!(repo.log("main"), vec![seed_tip.clone()]);
    let cache = std::fs::read_dir(env.settings("one").cache_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "git"))
        .unwrap();
    let fsck = tagrelay_testkit::git::git(&cache, &["fsck", "--unreachable", "--no-reflogs"]);
    let orphan: Vec<&str> = fsck
        .lines()
        .filter_map(|l| l.strip_prefix("unreachable commit "))
        .collect();
    assert_eq!(orphan.len(), 1, "{fsck}");
    let orphan = orphan[0].to_string();
    std::fs::remove_file(repo.path().join("reject")).unwrap();
    std::fs::write(repo.path().join("accept"), "").unwrap();
    let mut second = start_binary(&env, "one");
    env.wait_for_pushed(1).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let log = repo.log("main");
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        log[0], orphan,
        "the restarted process made the very same commit"
    );
    let pushed = env.pushed().await;
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].commit, log[0]);
    assert_eq!(pushed[0].causes, vec![cause.id]);
}

#[tokio::test]
async fn killed_after_the_push_landed_announces_it_once_after_restart_without_a_second_commit() {
    let (env, repo, seed_tip, cause) = killed_mid_push("accept").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while repo.log("main").len() < 2 {
        assert!(Instant::now() < deadline, "the orphaned push never landed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        env.pushed().await.is_empty(),
        "the dead process announced nothing"
    );
    let landed = repo.tip("main").unwrap();
    let committer = env.committer("one").await;
    assert_eq!(
        committer.reconcile(&automation_key(), None).await.unwrap(),
        Outcome::UpToDate
    );
    assert_eq!(repo.log("main"), vec![landed.clone(), seed_tip.clone()]);
    let pushed = env.pushed().await;
    assert_eq!(pushed.len(), 1, "{pushed:#?}");
    assert_eq!(pushed[0].commit, landed);
    assert_eq!(pushed[0].parent.as_deref(), Some(seed_tip.as_str()));
    assert_eq!(pushed[0].causes, vec![cause.id]);
    assert_eq!(pushed[0].changes.len(), 2);
    // Again: still once.
    committer.reconcile(&automation_key(), None).await.unwrap();
    assert_eq!(env.pushed().await.len(), 1);
}

/// Sends SIGTERM, the way Kubernetes stops a pod.
fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_during_a_push_finishes_the_push_announces_it_and_exits_cleanly() {
    let env = env().await;
    let repo = seeded();
    repo.install_hook("pre-receive", HOLDING_HOOK);
    env.apply(&config(&repo.url(), "", "apps")).await;
    let seed_tip = repo.tip("main").unwrap();
    let cause = env
        .resolve("flux-system", "app", "registry.example/app", "3.0.0")
        .await;
    let mut committer = start_binary(&env, "one");
    wait_for_file(&repo.path().join("started")).await;
    terminate(&committer);
    // The push is in hand: the process must wait for it, not exit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        committer.try_wait().unwrap().is_none(),
        "exited with a push in hand"
    );
    std::fs::write(repo.path().join("accept"), "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = committer.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "never exited after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    let log = repo.log("main");
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[1], seed_tip);
    let pushed = env.pushed().await;
    assert_eq!(pushed.len(), 1, "announced before exiting: {pushed:#?}");
    assert_eq!(pushed[0].commit, log[0]);
    assert_eq!(pushed[0].causes, vec![cause.id]);
    let mut consumer = env
        .bus
        .consumer(tagrelay_proto::names::Stage::Commit)
        .await
        .unwrap();
    assert_eq!(
        consumer.info().await.unwrap().num_ack_pending,
        0,
        "the PolicyResolved in hand was acknowledged before exiting"
    );
}

#[tokio::test]
async fn a_symlink_out_of_the_repository_and_a_malformed_file_are_skipped_and_reported() {
    let env = env().await;
    let repo = BareRepo::seeded(
        "main",
        &[
            Seed::file("apps/app.yaml", DEPLOYMENT),
            Seed::symlink("apps/escape.yaml", "../../../etc/hostname"),
            Seed::symlink("apps/alias.yaml", "app.yaml"),
            Seed::file(
                "apps/broken.yaml",
                "image: registry.example/app:1.0.0 # {\"$imagepolicy\": \"flux-system:app\"}\n  bad: [indent\n",
            ),
        ],
    );
    env.apply(&config(&repo.url(), "", "apps")).await;
    env.resolve("flux-system", "app", "registry.example/app", "1.5.0")
        .await;
    let committer = env.committer("a").await;
    let Outcome::Pushed(pushed) = committer.reconcile(&automation_key(), None).await.unwrap()
    else {
        panic!("expected a push")
    };
    let files: Vec<&str> = pushed.changes.iter().map(|c| c.file.as_str()).collect();
    assert_eq!(files, vec!["apps/app.yaml"]);
    assert!(repo
        .read_text("main", "apps/app.yaml")
        .unwrap()
        .contains("app:1.5.0 #"));
    assert_eq!(
        repo.git(&["cat-file", "-p", "main:apps/escape.yaml"]),
        "../../../etc/hostname",
        "the symlink itself is untouched"
    );
    assert!(repo
        .read_text("main", "apps/broken.yaml")
        .unwrap()
        .contains("app:1.0.0"));
    let status = env.store.status(&automation_key()).await.unwrap().unwrap();
    assert!(
        status.message.contains("apps/escape.yaml: symlink"),
        "{}",
        status.message
    );
    assert!(
        status.message.contains("points outside the repository"),
        "{}",
        status.message
    );
    assert!(
        status
            .message
            .contains("apps/broken.yaml: skipped: YAML syntax error"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn a_giant_manifest_is_skipped_unread_and_every_other_file_still_updated() {
    let env = env().await;
    let line = "image: registry.example/app:1.0.0 # {\"$imagepolicy\": \"flux-system:app\"}\n";
    let giant = line.repeat((MAX_MANIFEST_BYTES as usize / line.len()) + 1);
    let repo = BareRepo::seeded(
        "main",
        &[
            Seed::file("apps/app.yaml", DEPLOYMENT),
            Seed::file("apps/giant.yaml", &giant),
        ],
    );
    env.apply(&config(&repo.url(), "", "apps")).await;
    env.resolve("flux-system", "app", "registry.example/app", "1.5.0")
        .await;
    let committer = env.committer("a").await;
    let Outcome::Pushed(pushed) = committer.reconcile(&automation_key(), None).await.unwrap()
    else {
        panic!("expected a push")
    };
    let files: Vec<&str> = pushed.changes.iter().map(|c| c.file.as_str()).collect();
    assert_eq!(files, vec!["apps/app.yaml"]);
    assert_eq!(
        repo.read_text("main", "apps/giant.yaml").unwrap(),
        giant,
        "the giant file is untouched"
    );
    let status = env.store.status(&automation_key()).await.unwrap().unwrap();
    assert!(
        status.message.contains(&format!(
            "apps/giant.yaml: {} bytes, more than the 16 MiB a manifest may be",
            giant.len()
        )),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn lock_files_left_by_a_process_killed_mid_fetch_do_not_wedge_the_cache() {
    // A committer SIGKILLed while Git updates a ref leaves `<ref>.lock`
    // behind; the next process must not fail every fetch on it for good.
    let env = env().await;
    let repo = seeded();
    env.apply(&config(&repo.url(), "", "apps")).await;
    env.resolve("flux-system", "app", "registry.example/app", "1.5.0")
        .await;
    let first = env.committer("a").await;
    assert!(matches!(
        first.reconcile(&automation_key(), None).await.unwrap(),
        Outcome::Pushed(_)
    ));
    drop(first);
    let cache = tagrelay_committer::git::cache_path(&env.settings("a").cache_dir, &repo.url());
    let left_behind = [
        cache.join("refs/remotes/origin/main.lock"),
        cache.join("packed-refs.lock"),
    ];
    for lock in &left_behind {
        std::fs::write(lock, format!("{}\n", "0".repeat(40))).unwrap();
    }

    env.resolve("flux-system", "app", "registry.example/app", "1.6.0")
        .await;
    let restarted = env.committer("a").await;
    let outcome = restarted.reconcile(&automation_key(), None).await.unwrap();
    assert!(
        matches!(outcome, Outcome::Pushed(_)),
        "{outcome:?}; failures: {:?}",
        env.failed().await
    );
    assert!(repo
        .read_text("main", "apps/app.yaml")
        .unwrap()
        .contains("registry.example/app:1.6.0"));
    for lock in &left_behind {
        assert!(!lock.exists(), "{} is still there", lock.display());
    }
}

#[tokio::test]
async fn a_remote_gone_right_after_refusing_a_push_is_said_so_in_the_failure() {
    // The hook refuses the push and takes the repository away, as a server
    // going down just after answering does: the committer cannot fetch to
    // tell a moved branch from a refusal, and says both.
    let env = env().await;
    let repo = seeded();
    let away = repo.scratch().join("away.git");
    repo.install_hook(
        "pre-receive",
        &format!(
            "#!/bin/sh\necho 'down for maintenance'\nmv \"$(git rev-parse --absolute-git-dir)\" '{}'\nexit 1\n",
            away.display()
        ),
    );
    env.apply(&config(&repo.url(), "", "apps")).await;
    env.resolve("flux-system", "app", "registry.example/app", "1.7.0")
        .await;
    let committer = env.committer("a").await;
    let outcome = committer.reconcile(&automation_key(), None).await.unwrap();
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    let failed = env.failed().await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let error = &failed[0].error;
    assert!(error.contains("down for maintenance"), "{error}");
    assert!(
        error.contains("the branch could not be fetched again to tell whether it moved"),
        "{error}"
    );
    assert!(failed[0].will_retry);
    assert_eq!(failed[0].reason, FailureReason::PushRejected);
    std::fs::rename(&away, repo.path()).unwrap();
    assert_eq!(repo.log("main").len(), 1, "nothing landed");
}

#[tokio::test]
async fn a_protected_branch_is_commit_failed_with_the_servers_words_and_nothing_lands() {
    let env = env().await;
    let repo = seeded();
    repo.install_hook(
        "pre-receive",
        "#!/bin/sh\necho 'GL-HOOK-ERR: You are not allowed to push code to protected branches on this project.'\nexit 1\n",
    );
    env.apply(&config(&repo.url(), "", "apps")).await;
    let seed_tip = repo.tip("main").unwrap();
    let cause = env
        .resolve("flux-system", "app", "registry.example/app", "1.6.0")
        .await;
    let committer = env.committer("a").await;
    let outcome = committer
        .reconcile(&automation_key(), Some(&cause))
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    assert_eq!(repo.log("main"), vec![seed_tip]);
    let failed = env.failed().await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].error.contains("pre-receive hook declined"),
        "{}",
        failed[0].error
    );
    assert_eq!(failed[0].reason, FailureReason::PushRejected);
    assert!(
        failed[0]
            .error
            .contains("not allowed to push code to protected branches"),
        "{}",
        failed[0].error
    );
    assert!(failed[0].will_retry);
    assert!(env.pushed().await.is_empty());
    let status = env.store.status(&automation_key()).await.unwrap().unwrap();
    assert!(!status.ready);
}

#[tokio::test]
async fn a_missing_push_branch_is_created_from_the_checkout_branch() {
    let env = env().await;
    let repo = seeded();
    env.apply(&config(
        &repo.url(),
        "    push: {branch: image-updates}\n",
        "apps",
    ))
    .await;
    let main = repo.tip("main").unwrap();
    env.resolve("flux-system", "app", "registry.example/app", "1.7.0")
        .await;
    let committer = env.committer("a").await;
    let Outcome::Pushed(pushed) = committer.reconcile(&automation_key(), None).await.unwrap()
    else {
        panic!("expected a push")
    };
    assert_eq!(pushed.branch, "image-updates");
    assert_eq!(
        repo.tip("main").as_deref(),
        Some(main.as_str()),
        "main untouched"
    );
    assert_eq!(repo.log("image-updates"), vec![pushed.commit.clone(), main]);
    // The next move builds on the push branch, not on main again.
    env.resolve("flux-system", "app", "registry.example/app", "1.8.0")
        .await;
    let Outcome::Pushed(next) = committer.reconcile(&automation_key(), None).await.unwrap() else {
        panic!("expected a second push")
    };
    assert_eq!(next.parent.as_deref(), Some(pushed.commit.as_str()));
}

const V1_DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: apps
  annotations:
    fluxcd.io/automated: \"true\"
    fluxcd.io/tag.web: semver:~1.0
spec:
  template:
    spec:
      containers:
      - name: web
        image: registry.example/web:1.0.0
";

#[tokio::test]
async fn flux_v1_workloads_get_derived_objects_their_tags_written_and_cleanup() {
    let env = env().await;
    let repo = BareRepo::seeded("main", &[Seed::file("apps/web.yaml", V1_DEPLOYMENT)]);
    env.apply(&config(&repo.url(), "", "apps")).await;
    let committer = env.committer("a").await;
    assert_eq!(
        committer.reconcile(&automation_key(), None).await.unwrap(),
        Outcome::UpToDate
    );
    let derived: BTreeMap<Kind, Object> = env
        .store
        .list(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.metadata().name.starts_with("fluxv1-"))
        .map(|o| (o.kind(), o))
        .collect();
    assert_eq!(derived.len(), 2, "{derived:#?}");
    let Some(Object::ImagePolicy(policy)) = derived.get(&Kind::ImagePolicy) else {
        panic!("no derived policy")
    };
    assert_eq!(
        policy.metadata.annotations[FLUX_V1_FILTER_ANNOTATION],
        "semver:~1.0"
    );
    let Some(Object::ImageRepository(repository)) = derived.get(&Kind::ImageRepository) else {
        panic!("no derived repository")
    };
    assert_eq!(repository.spec.image, "registry.example/web");

    env.resolve(
        "flux-system",
        &policy.metadata.name,
        "registry.example/web",
        "1.0.7",
    )
    .await;
    let Outcome::Pushed(pushed) = committer.reconcile(&automation_key(), None).await.unwrap()
    else {
        panic!("expected a push")
    };
    assert_eq!(
        repo.read_text("main", "apps/web.yaml").unwrap(),
        V1_DEPLOYMENT.replace("web:1.0.0", "web:1.0.7")
    );
    assert_eq!(
        pushed.changes[0].setter,
        "apps:deployment/web container web"
    );

    repo.human_commit(
        "main",
        "apps/web.yaml",
        &V1_DEPLOYMENT.replace("    fluxcd.io/automated: \"true\"\n", ""),
        "stop automation",
    );
    committer.reconcile(&automation_key(), None).await.unwrap();
    let left: Vec<String> = env
        .store
        .list(None)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.metadata().name.clone())
        .filter(|n| n.starts_with("fluxv1-"))
        .collect();
    assert!(left.is_empty(), "derived objects left behind: {left:?}");
}

#[tokio::test]
async fn a_push_refspec_gets_the_commit_too_and_a_suspended_automation_commits_nothing() {
    let env = env().await;
    let repo = seeded();
    let push = "    push:\n      refspec: refs/heads/main:refs/heads/mirror\n      options: {ci.skip: '', topic: images}\n";
    repo.git(&["config", "receive.advertisePushOptions", "true"]);
    repo.install_hook(
        "pre-receive",
        "#!/bin/sh\nenv | grep '^GIT_PUSH_OPTION_[0-9]' | cut -d= -f2- | sort >> \"$GIT_DIR/push-options\"\n",
    );
    env.apply(&config(&repo.url(), push, "apps")).await;
    env.resolve("flux-system", "app", "registry.example/app", "1.9.0")
        .await;
    let committer = env.committer("a").await;
    let Outcome::Pushed(pushed) = committer.reconcile(&automation_key(), None).await.unwrap()
    else {
        panic!("expected a push; failures {:?}", env.failed().await)
    };
    assert_eq!(repo.tip("main").as_deref(), Some(pushed.commit.as_str()));
    assert_eq!(repo.tip("mirror").as_deref(), Some(pushed.commit.as_str()));
    let options = std::fs::read_to_string(repo.path().join("push-options")).unwrap();
    assert!(
        options.starts_with("ci.skip\ntopic=images\n"),
        "{options:?}"
    );

    let tip = repo.tip("main").unwrap();
    env.apply(
        &config(&repo.url(), push, "apps")
            .replace("  interval: 1h\n", "  interval: 1h\n  suspend: true\n"),
    )
    .await;
    env.resolve("flux-system", "app", "registry.example/app", "1.10.0")
        .await;
    assert_eq!(
        committer.reconcile(&automation_key(), None).await.unwrap(),
        Outcome::Suspended
    );
    assert_eq!(repo.tip("main"), Some(tip));
}

#[tokio::test]
async fn a_template_go_would_refuse_is_commit_failed_and_not_retried() {
    let env = env().await;
    let repo = seeded();
    // `.Updated` is gone from `image.toolkit.fluxcd.io/v1`'s data, as in Flux
    // (apply refuses it; this object was stored around apply).
    let template = "      messageTemplate: '{{ range .Updated.Images }}{{ . }}{{ end }}'\n";
    env.apply(&config(&repo.url(), template, "apps").replace(
        "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageUpdateAutomation",
        "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageUpdateAutomation",
    ))
    .await;
    let seed_tip = repo.tip("main").unwrap();
    env.resolve("flux-system", "app", "registry.example/app", "1.9.0")
        .await;
    let committer = env.committer("a").await;
    let outcome = committer.reconcile(&automation_key(), None).await.unwrap();
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    let failed = env.failed().await;
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].error.contains("messageTemplate"),
        "{}",
        failed[0].error
    );
    assert!(
        failed[0].error.contains("can't evaluate field Updated"),
        "{}",
        failed[0].error
    );
    assert!(!failed[0].will_retry);
    assert_eq!(failed[0].reason, FailureReason::InvalidSpec);
    assert_eq!(repo.log("main"), vec![seed_tip]);
}

#[tokio::test]
async fn an_ssh_remote_with_identity_and_known_hosts_from_the_secret() {
    let env = env().await;
    let repo = seeded();
    let sshd = SshRemote::serve();
    let secret = env.dirs.path().join("secrets/flux-system/ssh-auth");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::copy(sshd.identity(), secret.join("identity")).unwrap();
    std::fs::copy(sshd.known_hosts(), secret.join("known_hosts")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let private = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(secret.join("identity"), private).unwrap();
    }
    let yaml = config(&sshd.url(&repo.path()), "", "apps").replace(
        "  ref: {branch: main}\n",
        "  ref: {branch: main}\n  secretRef: {name: ssh-auth}\n",
    );
    env.apply(&yaml).await;
    env.resolve("flux-system", "app", "registry.example/app", "1.11.0")
        .await;
    let committer = env.committer("a").await;
    let Outcome::Pushed(pushed) = committer.reconcile(&automation_key(), None).await.unwrap()
    else {
        panic!("expected a push; failures {:?}", env.failed().await)
    };
    assert_eq!(repo.tip("main").as_deref(), Some(pushed.commit.as_str()));
    assert!(repo
        .read_text("main", "apps/app.yaml")
        .unwrap()
        .contains("app:1.11.0 #"));

    // A known_hosts that does not hold the server's key is refused: host
    // keys are checked, never accepted blindly.
    std::fs::write(secret.join("known_hosts"), "[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEM8Yc2pCyYnLDqWNxdzm0vDk7YTjeN+QVF8GoqjjGCi\n").unwrap();
    env.resolve("flux-system", "app", "registry.example/app", "1.12.0")
        .await;
    let outcome = committer.reconcile(&automation_key(), None).await.unwrap();
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    assert_eq!(repo.tip("main").as_deref(), Some(pushed.commit.as_str()));
}

#[tokio::test]
async fn a_bearer_token_secret_authenticates_fetch_and_push_over_http() {
    let env = env().await;
    let repo = seeded();
    let server = HttpRemote::serve_bearer(&repo.scratch(), "tok-123");
    let secret = env.dirs.path().join("secrets/flux-system/token");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("bearerToken"), "tok-123\n").unwrap();
    let yaml = config(&server.url("remote.git"), "", "apps").replace(
        "  ref: {branch: main}\n",
        "  ref: {branch: main}\n  secretRef: {name: token}\n",
    );
    env.apply(&yaml).await;
    env.resolve("flux-system", "app", "registry.example/app", "1.13.0")
        .await;
    let committer = env.committer("a").await;
    let Outcome::Pushed(pushed) = committer.reconcile(&automation_key(), None).await.unwrap()
    else {
        panic!("expected a push; failures {:?}", env.failed().await)
    };
    assert_eq!(repo.tip("main").as_deref(), Some(pushed.commit.as_str()));

    // A wrong token: the fetch is refused, nothing is pushed.
    std::fs::write(secret.join("bearerToken"), "wrong\n").unwrap();
    env.resolve("flux-system", "app", "registry.example/app", "1.14.0")
        .await;
    let outcome = committer.reconcile(&automation_key(), None).await.unwrap();
    assert!(
        matches!(&outcome, Outcome::Failed(e) if e.contains("fetch")),
        "{outcome:?}"
    );
    assert_eq!(repo.tip("main").as_deref(), Some(pushed.commit.as_str()));
}

#[tokio::test]
async fn an_unannounced_landed_push_is_announced_before_the_next_change_is_built_on_it() {
    let (env, repo, seed_tip, cause) = killed_mid_push("accept").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while repo.log("main").len() < 2 {
        assert!(Instant::now() < deadline, "the orphaned push never landed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let landed = repo.tip("main").unwrap();
    let next = env
        .resolve("flux-system", "app", "registry.example/app", "3.1.0")
        .await;
    let committer = env.committer("two").await;
    let Outcome::Pushed(pushed) = committer
        .reconcile(&automation_key(), Some(&next))
        .await
        .unwrap()
    else {
        panic!("expected a push")
    };
    assert_eq!(pushed.parent.as_deref(), Some(landed.as_str()));
    assert_eq!(
        repo.log("main"),
        vec![pushed.commit.clone(), landed.clone(), seed_tip]
    );
    let announced: Vec<(String, Vec<String>)> = env
        .pushed()
        .await
        .into_iter()
        .map(|p| (p.commit, p.causes))
        .collect();
    assert_eq!(
        announced,
        vec![(landed, vec![cause.id]), (pushed.commit, vec![next.id])],
        "the orphan first, then the new commit, each once"
    );
}

#[tokio::test]
async fn a_v1beta1_automation_renders_the_guides_updated_images_template_into_the_commit() {
    let env = env().await;
    let repo = seeded();
    let yaml = config(
        &repo.url(),
        "      messageTemplate: '{{range .Updated.Images}}{{println .}}{{end}}'\n",
        "./apps",
    )
    .replace(
        "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageUpdateAutomation",
        "apiVersion: image.toolkit.fluxcd.io/v1beta1\nkind: ImageUpdateAutomation",
    );
    assert!(yaml.contains("v1beta1\nkind: ImageUpdateAutomation"));
    env.apply(&yaml).await;
    let cause = env
        .resolve("flux-system", "app", "registry.example/app", "1.2.0")
        .await;
    let outcome = env
        .committer("a")
        .await
        .reconcile(&automation_key(), Some(&cause))
        .await
        .unwrap();
    let Outcome::Pushed(pushed) = outcome else {
        panic!("expected a push, got {outcome:?}")
    };
    let message = repo.message(&pushed.commit);
    assert!(
        message.starts_with("registry.example/app:1.2.0\n\nTagrelay-Automation: flux-system/fleet\n"),
        "the policy's image once (two markers of one policy), as Flux v1beta1 printed it: {message:?}"
    );
}

#[tokio::test]
async fn a_v1_container_ordered_by_time_whose_tag_is_not_listed_is_left_alone() {
    let env = env().await;
    let deployment = V1_DEPLOYMENT
        .replace("    fluxcd.io/tag.web: semver:~1.0\n", "")
        .replace("web:1.0.0", "web:hotfix");
    let repo = BareRepo::seeded("main", &[Seed::file("apps/web.yaml", &deployment)]);
    env.apply(&config(&repo.url(), "", "apps")).await;
    let committer = env.committer("a").await;
    committer.reconcile(&automation_key(), None).await.unwrap();
    let policy = env
        .store
        .list(Some(Kind::ImagePolicy))
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.metadata().name.starts_with("fluxv1-"))
        .expect("a derived policy");
    // The scan the selection comes from lists 1.0.0 and 2.0.0, not hotfix.
    let tags = vec!["1.0.0".to_string(), "2.0.0".to_string()];
    let scan = env
        .bus
        .publish(&Envelope::new(
            "scanner/test",
            Event::TagsDiscovered(tagrelay_proto::event::TagsDiscovered {
                repository: ObjectRef::new("flux-system", "web"),
                image: "registry.example/web".into(),
                tag_count: tags.len(),
                tag_set_digest: tagrelay_proto::event::tag_set_digest(
                    tags.iter().map(String::as_str),
                ),
                tags: Some(tags),
                tags_ref: None,
                previous_tag_set_digest: None,
                scanned_at: chrono::Utc::now(),
                trigger: tagrelay_proto::event::ScanTrigger::Schedule,
                images: BTreeMap::new(),
            }),
        ))
        .await
        .unwrap();
    let select = |tag: &str| PolicySelection {
        image: "registry.example/web".into(),
        selected: SelectedImage {
            tag: tag.into(),
            digest: None,
        },
        source_sequence: scan.sequence,
        rules_hash: "test".into(),
        resolved_sequence: 0,
        updated_at: chrono::Utc::now(),
        held_back: None,
        recheck_at: None,
    };
    let state = env.bus.bucket(names::POLICY_STATE_BUCKET).await.unwrap();
    state
        .put(
            policy.key().bucket_key(),
            serde_json::to_vec(&select("2.0.0")).unwrap().into(),
        )
        .await
        .unwrap();
    assert_eq!(
        committer.reconcile(&automation_key(), None).await.unwrap(),
        Outcome::UpToDate,
        "an image of unknown age is never replaced"
    );
    assert_eq!(repo.read_text("main", "apps/web.yaml").unwrap(), deployment);
    let status = env.store.status(&automation_key()).await.unwrap().unwrap();
    assert!(
        status
            .message
            .contains("current tag hotfix is not listed by the registry; left alone"),
        "{}",
        status.message
    );

    repo.human_commit(
        "main",
        "apps/web.yaml",
        &deployment.replace("web:hotfix", "web:1.0.0"),
        "back to a listed tag",
    );
    let Outcome::Pushed(_) = committer.reconcile(&automation_key(), None).await.unwrap() else {
        panic!("a listed tag moves to the newest image")
    };
    assert_eq!(
        repo.read_text("main", "apps/web.yaml").unwrap(),
        deployment.replace("web:hotfix", "web:2.0.0")
    );
}

#[tokio::test]
async fn a_semver_checkout_builds_on_the_highest_tag_in_range() {
    let env = env().await;
    let repo = seeded();
    let first = repo.tip("main").unwrap();
    repo.git(&["tag", "v1.0.0", &first]);
    let second = repo.human_commit("main", "apps/notes.yaml", "a: 1\n", "second");
    repo.git(&["tag", "v1.1.0", &second]);
    let third = repo.human_commit("main", "apps/notes.yaml", "a: 2\n", "third");
    repo.git(&["tag", "v2.0.0", &third]);
    let git =
        "    checkout:\n      ref:\n        semver: 1.x\n    push:\n      branch: release-1\n";
    env.apply(&config(&repo.url(), git, "apps")).await;
    env.resolve("flux-system", "app", "registry.example/app", "1.2.0")
        .await;
    let Outcome::Pushed(pushed) = env
        .committer("a")
        .await
        .reconcile(&automation_key(), None)
        .await
        .unwrap()
    else {
        panic!("expected a push")
    };
    assert_eq!(pushed.branch, "release-1");
    assert_eq!(
        pushed.parent.as_deref(),
        Some(second.as_str()),
        "built on v1.1.0, the highest tag in 1.x"
    );
    assert_eq!(repo.tip("release-1"), Some(pushed.commit));
    assert_eq!(
        repo.tip("main"),
        Some(third),
        "the checkout is never pushed to"
    );
}

#[tokio::test]
async fn a_proxy_secret_sends_fetch_and_push_through_the_proxy() {
    tagrelay_proto::runtime::install_crypto_provider();
    let env = env().await;
    let repo = seeded();
    let server = HttpRemote::serve(&repo.scratch(), None);
    let proxy = tagrelay_testkit::proxy::Tinyproxy::start("committer", "proxy-pw");
    let write_secret = |name: &str, password: &str| {
        let dir = env.dirs.path().join("secrets/flux-system").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("address"), proxy.address()).unwrap();
        std::fs::write(dir.join("username"), "committer").unwrap();
        std::fs::write(dir.join("password"), password).unwrap();
    };
    write_secret("git-proxy", "proxy-pw");
    write_secret("bad-proxy", "wrong-pw");
    let with_proxy = |secret: &str| {
        config(&server.url("remote.git"), "", "apps").replace(
            "  ref: {branch: main}\n",
            &format!("  ref: {{branch: main}}\n  proxySecretRef: {{name: {secret}}}\n"),
        )
    };
    env.apply(&with_proxy("git-proxy")).await;
    env.resolve("flux-system", "app", "registry.example/app", "1.4.0")
        .await;
    let committer = env.committer("a").await;
    let Outcome::Pushed(pushed) = committer.reconcile(&automation_key(), None).await.unwrap()
    else {
        panic!("expected a push through the proxy")
    };
    assert_eq!(repo.tip("main"), Some(pushed.commit.clone()));
    let log = proxy.log();
    let remote = server.url("remote.git");
    assert!(
        log.contains(&format!("GET {remote}/info/refs?service=git-upload-pack")),
        "the fetch went through the proxy:\n{log}"
    );
    assert!(
        log.contains(&format!("POST {remote}/git-receive-pack")),
        "the push went through the proxy:\n{log}"
    );

    env.apply(&with_proxy("bad-proxy")).await;
    env.resolve("flux-system", "app", "registry.example/app", "1.5.0")
        .await;
    let outcome = committer.reconcile(&automation_key(), None).await.unwrap();
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    let failures = env.failed().await;
    let last = failures.last().unwrap();
    assert!(!last.error.contains("wrong-pw"), "{}", last.error);
    assert_eq!(
        repo.tip("main"),
        Some(pushed.commit.clone()),
        "nothing lands without the proxy"
    );
}

#[tokio::test]
async fn an_https_remote_with_a_private_ca_and_a_client_certificate_from_the_secret() {
    tagrelay_proto::runtime::install_crypto_provider();
    let env = env().await;
    let repo = seeded();
    let server = HttpRemote::serve(&repo.scratch(), None);
    let pki = tagrelay_testkit::pki::Pki::make(&env.dirs.path().join("pki"));
    let front = tagrelay_testkit::pki::TlsFront::start(server.port(), &pki);
    let secret = env.dirs.path().join("secrets/flux-system/git-tls");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::copy(&pki.ca, secret.join("ca.crt")).unwrap();
    let yaml = |secret_name: &str| {
        config(&front.url("remote.git"), "", "apps").replace(
            "  ref: {branch: main}\n",
            &format!("  ref: {{branch: main}}\n  secretRef: {{name: {secret_name}}}\n"),
        )
    };
    env.apply(&yaml("git-tls")).await;
    env.resolve("flux-system", "app", "registry.example/app", "1.6.0")
        .await;
    let committer = env.committer("a").await;
    let outcome = committer.reconcile(&automation_key(), None).await.unwrap();
    assert!(
        matches!(outcome, Outcome::Failed(_)),
        "the server wants a client certificate the Secret lacks: {outcome:?}"
    );

    std::fs::copy(&pki.client.0, secret.join("tls.crt")).unwrap();
    std::fs::copy(&pki.client.1, secret.join("tls.key")).unwrap();
    let outcome = committer.reconcile(&automation_key(), None).await.unwrap();
    let Outcome::Pushed(pushed) = outcome else {
        panic!(
            "expected a push over mutual TLS: {outcome:?} {:#?}",
            env.failed().await
        )
    };
    assert_eq!(repo.tip("main"), Some(pushed.commit));
    assert!(
        pushed.remote.starts_with("https://127.0.0.1:"),
        "{}",
        pushed.remote
    );
}

#[tokio::test]
async fn an_ssh_key_with_a_passphrase_is_unlocked_with_the_secrets_password() {
    let env = env().await;
    let repo = seeded();
    let sshd = SshRemote::serve();
    let secret = env.dirs.path().join("secrets/flux-system/ssh-locked");
    std::fs::create_dir_all(&secret).unwrap();
    let identity = secret.join("identity");
    std::fs::copy(sshd.identity(), &identity).unwrap();
    std::fs::copy(sshd.known_hosts(), secret.join("known_hosts")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let private = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(&identity, private).unwrap();
    }
    let locked = std::process::Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "the key's passphrase", "-f"])
        .arg(&identity)
        .status()
        .unwrap();
    assert!(locked.success(), "ssh-keygen could not set a passphrase");
    let yaml = config(&sshd.url(&repo.path()), "", "apps").replace(
        "  ref: {branch: main}\n",
        "  ref: {branch: main}\n  secretRef: {name: ssh-locked}\n",
    );
    env.apply(&yaml).await;
    env.resolve("flux-system", "app", "registry.example/app", "1.13.0")
        .await;
    let committer = env.committer("a").await;

    std::fs::write(secret.join("password"), "not the passphrase\n").unwrap();
    let outcome = committer.reconcile(&automation_key(), None).await.unwrap();
    assert!(
        matches!(outcome, Outcome::Failed(_)),
        "a wrong passphrase cannot unlock the key: {outcome:?}"
    );

    std::fs::write(secret.join("password"), "the key's passphrase\n").unwrap();
    let outcome = committer.reconcile(&automation_key(), None).await.unwrap();
    let Outcome::Pushed(pushed) = outcome else {
        panic!("expected a push: {outcome:?} {:#?}", env.failed().await)
    };
    assert_eq!(repo.tip("main").as_deref(), Some(pushed.commit.as_str()));
    let errors: Vec<String> = env.failed().await.into_iter().map(|f| f.error).collect();
    assert!(
        errors
            .iter()
            .all(|e| !e.contains("passphrase\n") && !e.contains("the key's")),
        "no passphrase in any failure: {errors:?}"
    );
}

#[tokio::test]
async fn a_review_branch_shows_the_checkout_branch_and_the_update_and_keeps_a_persons_commits() {
    let env = env().await;
    let repo = seeded();
    let git = "    checkout:\n      ref: {branch: main}\n    push:\n      branch: image-updates\n";
    env.apply(&config(&repo.url(), git, "apps")).await;
    let committer = env.committer("a").await;
    env.resolve("flux-system", "app", "registry.example/app", "1.1.0")
        .await;
    let Outcome::Pushed(first) = committer.reconcile(&automation_key(), None).await.unwrap() else {
        panic!("expected the first review commit")
    };

    // main moves on; the next update brings it into the review branch with a
    // merge, so the branch is main + the update, pushed as a fast-forward.
    let main_tip = repo.human_commit(
        "main",
        "apps/other.yaml",
        "b: 1\n",
        "a person's work on main",
    );
    env.resolve("flux-system", "app", "registry.example/app", "1.2.0")
        .await;
    let Outcome::Pushed(second) = committer.reconcile(&automation_key(), None).await.unwrap()
    else {
        panic!("expected the second review commit")
    };
    let parents = repo.git(&["rev-list", "--parents", "-n", "1", &second.commit]);
    assert_eq!(
        parents.split_whitespace().skip(1).collect::<Vec<_>>(),
        vec![first.commit.as_str(), main_tip.as_str()],
        "a merge of the review branch and main: no force-push"
    );
    assert_eq!(
        repo.read_text("image-updates", "apps/other.yaml")
            .as_deref(),
        Some("b: 1\n"),
        "main's new commit is in the review branch"
    );
    assert!(repo
        .read_text("image-updates", "apps/app.yaml")
        .unwrap()
        .contains("app:1.2.0 #"));
    let diff = repo.git(&["diff", "--name-only", "main", "image-updates"]);
    assert_eq!(
        diff.lines().collect::<Vec<_>>(),
        vec!["apps/app.yaml", "apps/kustomization.yaml"],
        "against main the review branch holds only the update"
    );
    assert_eq!(
        committer.reconcile(&automation_key(), None).await.unwrap(),
        Outcome::UpToDate,
        "one commit per change"
    );

    // A person commits to the review branch: it is never rewritten; the next
    // update goes on top of their commit, and the status says main was not
    // brought in.
    repo.human_commit(
        "image-updates",
        "apps/review-note.yaml",
        "c: 1\n",
        "a reviewer's fix",
    );
    repo.human_commit("main", "apps/later.yaml", "d: 1\n", "more work on main");
    env.resolve("flux-system", "app", "registry.example/app", "1.3.0")
        .await;
    let Outcome::Pushed(third) = committer.reconcile(&automation_key(), None).await.unwrap() else {
        panic!("expected the third review commit")
    };
    assert_eq!(
        repo.read_text("image-updates", "apps/review-note.yaml")
            .as_deref(),
        Some("c: 1\n"),
        "the reviewer's commit is kept"
    );
    assert_eq!(repo.read_text("image-updates", "apps/later.yaml"), None);
    assert_eq!(repo.tip("image-updates"), Some(third.commit));
    let status = env.store.status(&automation_key()).await.unwrap().unwrap();
    assert!(
        status
            .message
            .contains("holds commits that are not this automation's"),
        "{}",
        status.message
    );
}

fn warnings(events: &[Envelope]) -> Vec<tagrelay_proto::event::ManifestWarning> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Event::ManifestWarning(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn each_lint_finding_is_published_once_and_kept_in_the_status() {
    let env = env().await;
    let near_miss = DEPLOYMENT.replace("{\"$imagepolicy\"", "{\"imagepolicy\"");
    let repo = BareRepo::seeded(
        "main",
        &[
            Seed::file("apps/app.yaml", DEPLOYMENT),
            Seed::file("apps/copied.yaml", &near_miss),
        ],
    );
    env.apply(&config(&repo.url(), "", "./apps")).await;
    let committer = env.committer("a").await;
    let key = automation_key();
    committer.reconcile(&key, None).await.unwrap();
    let found = warnings(&env.events(names::WARNING_FILTER).await);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        (
            found[0].file.as_str(),
            found[0].line,
            found[0].check.as_str()
        ),
        ("apps/copied.yaml", 12, "near-miss-marker")
    );
    assert_eq!(
        found[0].fix,
        "write # {\"$imagepolicy\": \"flux-system:app\"}"
    );
    assert_eq!(found[0].commit, repo.tip("main").unwrap());

    // Again, and from another instance: nothing new is published.
    committer.reconcile(&key, None).await.unwrap();
    env.committer("b")
        .await
        .reconcile(&key, None)
        .await
        .unwrap();
    assert_eq!(warnings(&env.events(names::WARNING_FILTER).await).len(), 1);
    let status = env.store.last_status(&key).await;
    assert_eq!(status.warnings.len(), 1);
    assert!(status.warnings[0]
        .text
        .starts_with("apps/copied.yaml:12: near-miss-marker: "));

    // A second finding is published on its own; a fixed one leaves the status.
    repo.human_commit(
        "main",
        "apps/copied.yaml",
        &DEPLOYMENT.replace("flux-system:app", "flux-system:nope"),
        "a marker naming a policy that does not exist",
    );
    committer.reconcile(&key, None).await.unwrap();
    let found = warnings(&env.events(names::WARNING_FILTER).await);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(found[1].check, "unknown-policy");
    let status = env.store.last_status(&key).await;
    assert_eq!(status.warnings.len(), 1, "{:#?}", status.warnings);
    assert!(status.warnings[0].text.contains("unknown-policy"));
}

#[tokio::test]
async fn every_commit_is_signed_with_the_automations_key_or_none_is_pushed() {
    use tagrelay_testkit::signing::{GpgKey, SshKey};
    let env = env().await;
    let repo = seeded();
    let gpg = GpgKey::generate("Bot <bot@example.com>", "ed25519", "the passphrase");
    let secret = env.dirs.path().join("secrets/flux-system/signing");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("git.asc"), gpg.armored_secret_key()).unwrap();
    std::fs::write(secret.join("passphrase"), "not the passphrase\n").unwrap();
    let signing = "      signingKey:\n        secretRef: {name: signing}\n";
    let yaml = config(&repo.url(), "", "apps").replace(
        "      author: {name: tagrelay, email: bot@example.com}\n",
        &format!("      author: {{name: tagrelay, email: bot@example.com}}\n{signing}"),
    );
    env.apply(&yaml).await;
    env.resolve("flux-system", "app", "registry.example/app", "1.2.0")
        .await;
    let committer = env.committer("a").await;
    let seed_tip = repo.tip("main").unwrap();

    // A key the passphrase does not unlock: a CommitFailed, nothing pushed.
    let outcome = committer.reconcile(&automation_key(), None).await.unwrap();
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    assert_eq!(repo.tip("main").as_deref(), Some(seed_tip.as_str()));
    let failure = env.failed().await.pop().expect("a CommitFailed");
    assert_eq!(failure.reason, FailureReason::SigningFailed, "{failure:?}");
    assert!(failure.error.contains("flux-system/signing"), "{failure:?}");
    assert!(!failure.error.contains("not the passphrase"), "{failure:?}");

    // Unlocked: the commit is signed, git verifies it with the signer's
    // key only, and the announcement names the key.
    std::fs::write(secret.join("passphrase"), "the passphrase\n").unwrap();
    let Outcome::Pushed(pushed) = committer.reconcile(&automation_key(), None).await.unwrap()
    else {
        panic!("expected a push: {:#?}", env.failed().await)
    };
    let signed = pushed.signed_with.clone().expect("signed_with");
    assert_eq!(signed.fingerprint, gpg.fingerprint);
    let (verified, said) = gpg.verify_commit(&repo.path(), &pushed.commit);
    assert!(verified, "{said}");
    let stranger = GpgKey::generate("Stranger <s@example.com>", "ed25519", "");
    assert!(!stranger.verify_commit(&repo.path(), &pushed.commit).0);

    // Switched to an SSH key (type: ssh, Flux's identity + password keys).
    let ssh = SshKey::generate("ed25519", "");
    std::fs::copy(ssh.private_key(), secret.join("identity")).unwrap();
    let yaml = yaml.replace(
        "        secretRef: {name: signing}\n",
        "        secretRef: {name: signing}\n        type: ssh\n",
    );
    env.apply(&yaml).await;
    env.resolve("flux-system", "app", "registry.example/app", "1.3.0")
        .await;
    let Outcome::Pushed(pushed) = committer.reconcile(&automation_key(), None).await.unwrap()
    else {
        panic!("expected a push: {:#?}", env.failed().await)
    };
    assert_eq!(
        pushed.signed_with.as_ref().map(|s| s.fingerprint.as_str()),
        Some(ssh.fingerprint.as_str())
    );
    let (verified, said) = ssh.verify_commit(&repo.path(), &pushed.commit);
    assert!(verified, "{said}");
    let other = SshKey::generate("ed25519", "");
    let (verified, said) = other.verify_commit(&repo.path(), &pushed.commit);
    assert!(!verified && said.contains("No principal matched"), "{said}");
    let announced = env.pushed().await;
    assert_eq!(announced.len(), 2);
    assert!(announced.iter().all(|p| p.signed_with.is_some()));
}

/// An automation with a review branch and the `tagrelay.dev/pull-request`
/// annotation pointing at `forge`, and its forge token in the Secret.
async fn review_env(
    flavour: tagrelay_testkit::forge::Flavour,
    provider: &str,
) -> (Env, BareRepo, tagrelay_testkit::forge::ForgeServer, String) {
    use tagrelay_testkit::forge::ForgeServer;
    let env = env().await;
    let repo = seeded();
    let forge = ForgeServer::start(flavour, "org/fleet", "s3cret-forge-token").await;
    let secret = env.dirs.path().join("secrets/flux-system/forge");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("token"), "s3cret-forge-token\n").unwrap();
    let annotation = format!(
        "provider: {provider}\nsecretRef: {{name: forge}}\napiURL: {}\nrepository: org/fleet\nlabels: [image-update]\nreviewers: [alice]\nautoMerge: squash\n",
        forge.api_url()
    );
    let git = "    checkout:\n      ref: {branch: main}\n    push:\n      branch: image-updates\n";
    let yaml = config(&repo.url(), git, "apps").replace(
        "kind: ImageUpdateAutomation\nmetadata: {name: fleet, namespace: flux-system}\n",
        &format!(
            "kind: ImageUpdateAutomation\nmetadata:\n  name: fleet\n  namespace: flux-system\n  annotations:\n    tagrelay.dev/pull-request: {}\n",
            serde_json::to_string(&annotation).unwrap()
        ),
    );
    env.apply(&yaml).await;
    (env, repo, forge, yaml)
}

impl Env {
    async fn reviewer(&self) -> tagrelay_committer::review::Reviewer {
        let bus = Bus::connect(&self.url, "committer/review", BusSettings::default())
            .await
            .unwrap();
        tagrelay_committer::review::Reviewer::new(&bus, self.settings("a").secrets_dir)
            .await
            .unwrap()
    }

    /// Moves the policy to `tag`, commits, and returns the `CommitPushed`.
    async fn push_update(&self, committer: &Committer, tag: &str) -> Envelope {
        self.resolve("flux-system", "app", "registry.example/app", tag)
            .await;
        let outcome = committer.reconcile(&automation_key(), None).await.unwrap();
        let Outcome::Pushed(pushed) = outcome else {
            panic!("expected a push: {outcome:?} {:#?}", self.failed().await)
        };
        self.events(names::COMMIT_FILTER)
            .await
            .into_iter()
            .find(|e| matches!(&e.payload, Event::CommitPushed(c) if c.commit == pushed.commit))
            .unwrap()
    }

    async fn pull_requests(
        &self,
    ) -> Vec<(String, tagrelay_proto::event::PullRequest, Option<String>)> {
        self.events(names::PULL_REQUEST_FILTER)
            .await
            .into_iter()
            .filter_map(|e| match e.payload {
                Event::PullRequestOpened(p) => Some(("opened".to_string(), p, e.causation_id)),
                Event::PullRequestUpdated(p) => Some(("updated".to_string(), p, e.causation_id)),
                _ => None,
            })
            .collect()
    }
}

async fn review(
    reviewer: &tagrelay_committer::review::Reviewer,
    pushed: &Envelope,
    attempt: u32,
) -> tagrelay_proto::consume::Disposition {
    use tagrelay_proto::consume::{Delivery, Handler};
    let delivery = Delivery {
        subject: pushed.payload.subject(),
        msg_id: None,
        traceparent: None,
        stream_sequence: 0,
        attempt,
        pending: 0,
    };
    reviewer.handle(pushed.clone(), delivery).await
}

#[tokio::test]
async fn a_review_branch_keeps_one_pull_request_up_to_date_on_every_forge() {
    use tagrelay_proto::consume::Disposition;
    use tagrelay_testkit::forge::Flavour;
    for (flavour, provider, label, reviewer_asked) in [
        (Flavour::Github, "github", "image-update", "alice"),
        (Flavour::Gitlab, "gitlab", "image-update", "505"),
        (Flavour::Gitea, "gitea", "label-7", "alice"),
    ] {
        let (env, _repo, forge, _) = review_env(flavour, provider).await;
        let committer = env.committer("a").await;
        let reviewer = env.reviewer().await;

        // The first update opens the request, labelled, with a reviewer
        // and auto-merge, its body naming the cause and the change.
        let first = env.push_update(&committer, "1.2.0").await;
        let done = review(&reviewer, &first, 1).await;
        assert!(
            matches!(done, Disposition::Done),
            "{provider}: {done:?} {:#?}",
            env.events(names::FAILED_FILTER).await
        );
        let requests = forge.requests();
        assert_eq!(requests.len(), 1, "{provider}");
        let request = &requests[0];
        assert_eq!(
            (
                request.head.as_str(),
                request.base.as_str(),
                request.state.as_str()
            ),
            ("image-updates", "main", "open")
        );
        assert_eq!(
            request.title, "Update images from flux-system/fleet",
            "{provider}"
        );
        assert!(
            request
                .body
                .contains("`registry.example/app:1.0.0` -> `registry.example/app:1.2.0`"),
            "{provider}: {}",
            request.body
        );
        assert!(
            request.body.contains("`flux-system/app` selected `1.2.0`"),
            "{provider}: {}",
            request.body
        );
        assert_eq!(request.labels, vec![label.to_string()], "{provider}");
        assert_eq!(
            request.reviewers,
            vec![reviewer_asked.to_string()],
            "{provider}"
        );
        assert_eq!(request.auto_merge.as_deref(), Some("squash"), "{provider}");
        let announced = env.pull_requests().await;
        assert_eq!(announced.len(), 1, "{provider}");
        assert_eq!(announced[0].0, "opened");
        assert_eq!(announced[0].1.number, 1);
        assert_eq!(
            announced[0].2.as_deref(),
            Some(first.id.as_str()),
            "caused by the CommitPushed"
        );

        // A later update lands on the same request.
        let second = env.push_update(&committer, "1.3.0").await;
        assert!(matches!(
            review(&reviewer, &second, 1).await,
            Disposition::Done
        ));
        let requests = forge.requests();
        assert_eq!(requests.len(), 1, "{provider}: never a second request");
        assert!(
            requests[0]
                .body
                .contains("`registry.example/app:1.0.0` -> `registry.example/app:1.3.0`"),
            "{provider}: {}",
            requests[0].body
        );
        let announced = env.pull_requests().await;
        assert_eq!(
            (announced[1].0.as_str(), announced[1].1.number),
            ("updated", 1)
        );

        // A redelivery changes nothing; a request a person closed is not
        // reopened for the same change.
        let calls = forge.calls().len();
        assert!(matches!(
            review(&reviewer, &second, 2).await,
            Disposition::Done
        ));
        assert_eq!(
            forge.calls().len(),
            calls,
            "{provider}: a redelivery calls nothing"
        );
        forge.close(1);
        assert!(matches!(
            review(&reviewer, &second, 3).await,
            Disposition::Done
        ));
        assert_eq!(
            forge.requests().len(),
            1,
            "{provider}: not reopened for the same change"
        );

        // A new change opens a new request; after a merge the list starts
        // afresh.
        let third = env.push_update(&committer, "1.4.0").await;
        assert!(matches!(
            review(&reviewer, &third, 1).await,
            Disposition::Done
        ));
        let requests = forge.requests();
        assert_eq!(requests.len(), 2, "{provider}");
        assert_eq!(requests[1].state, "open");
        forge.merge(2);
        let fourth = env.push_update(&committer, "1.5.0").await;
        assert!(matches!(
            review(&reviewer, &fourth, 1).await,
            Disposition::Done
        ));
        let requests = forge.requests();
        assert_eq!(requests.len(), 3, "{provider}");
        assert!(
            requests[2]
                .body
                .contains("`registry.example/app:1.4.0` -> `registry.example/app:1.5.0`"),
            "{provider}: {}",
            requests[2].body
        );
        assert!(
            !requests[2].body.contains("1.3.0"),
            "{provider}: {}",
            requests[2].body
        );
        let opened: Vec<u64> = env
            .pull_requests()
            .await
            .into_iter()
            .filter(|(what, _, _)| what == "opened")
            .map(|(_, p, _)| p.number)
            .collect();
        assert_eq!(opened, vec![1, 2, 3], "{provider}");
    }
}

#[tokio::test]
async fn a_forge_that_refuses_the_token_is_review_failed_and_retried_and_nothing_leaks() {
    use tagrelay_proto::consume::Disposition;
    use tagrelay_testkit::forge::Flavour;
    let (env, _repo, forge, _) = review_env(Flavour::Github, "github").await;
    let secret = env.dirs.path().join("secrets/flux-system/forge/token");
    std::fs::write(&secret, "a-wrong-token\n").unwrap();
    let committer = env.committer("a").await;
    let reviewer = env.reviewer().await;
    let pushed = env.push_update(&committer, "1.2.0").await;
    assert!(matches!(
        review(&reviewer, &pushed, 1).await,
        Disposition::Retry(_)
    ));
    assert!(forge.requests().is_empty());
    let failures: Vec<Failure> = env
        .events(names::FAILED_FILTER)
        .await
        .into_iter()
        .filter_map(|e| match e.payload {
            Event::ReviewFailed(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].reason, FailureReason::AuthenticationFailed);
    assert!(failures[0].error.contains("401"), "{failures:?}");
    assert!(!failures[0].error.contains("a-wrong-token"), "{failures:?}");

    std::fs::write(&secret, "s3cret-forge-token\n").unwrap();
    assert!(matches!(
        review(&reviewer, &pushed, 2).await,
        Disposition::Done
    ));
    assert_eq!(forge.requests().len(), 1);
    for event in env.events("tagrelay.>").await {
        let json = String::from_utf8(event.to_json().unwrap()).unwrap();
        assert!(!json.contains("s3cret-forge-token"), "{json}");
    }
}

#[tokio::test]
async fn a_github_app_installation_token_is_asked_for_with_a_signed_jwt_and_reused() {
    use tagrelay_proto::consume::Disposition;
    use tagrelay_testkit::forge::Flavour;
    let (env, _repo, forge, _) = review_env(Flavour::Github, "github").await;
    let keys = tempfile::tempdir().unwrap();
    let make_key = |name: &str| {
        let path = keys.path().join(name);
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let public = Command::new("ssh-keygen")
            .args(["-e", "-m", "PEM", "-f"])
            .arg(path.with_extension("pub"))
            .output()
            .unwrap();
        (
            std::fs::read_to_string(&path).unwrap(),
            String::from_utf8(public.stdout).unwrap(),
        )
    };
    let (private_key, public_key) = make_key("app");
    let (other_key, _) = make_key("other");
    forge.allow_github_app("4242", "77", &public_key);
    let secret = env.dirs.path().join("secrets/flux-system/forge");
    std::fs::remove_file(secret.join("token")).unwrap();
    std::fs::write(secret.join("githubAppID"), "4242").unwrap();
    std::fs::write(secret.join("githubAppInstallationID"), "77").unwrap();
    std::fs::write(secret.join("githubAppPrivateKey"), &other_key).unwrap();
    let committer = env.committer("a").await;
    let reviewer = env.reviewer().await;

    // A JWT signed by another key is refused by the forge.
    let first = env.push_update(&committer, "1.2.0").await;
    assert!(matches!(
        review(&reviewer, &first, 1).await,
        Disposition::Retry(_)
    ));
    assert_eq!(forge.issued_tokens(), 0);
    assert!(forge.requests().is_empty());

    // The App's key: one installation token, kept for the next sync.
    std::fs::write(secret.join("githubAppPrivateKey"), &private_key).unwrap();
    assert!(matches!(
        review(&reviewer, &first, 2).await,
        Disposition::Done
    ));
    let second = env.push_update(&committer, "1.3.0").await;
    assert!(matches!(
        review(&reviewer, &second, 1).await,
        Disposition::Done
    ));
    assert_eq!(
        forge.issued_tokens(),
        1,
        "the token is reused until it nears expiry"
    );
    assert_eq!(forge.requests().len(), 1);
}

/// `count` deployments under `apps/`, each marked for its own policy
/// `flux-system:app-<i>`, and the configuration for them.
fn fleet_of(count: usize) -> (BareRepo, String) {
    let files: Vec<Seed> = (0..count)
        .map(|i| {
            Seed::file(
                &format!("apps/app-{i}.yaml"),
                &DEPLOYMENT
                    .replace(
                        "registry.example/app:",
                        &format!("registry.example/app-{i}:"),
                    )
                    .replace("flux-system:app\"", &format!("flux-system:app-{i}\"")),
            )
        })
        .collect();
    let repo = BareRepo::seeded("main", &files);
    let mut yaml = config(&repo.url(), "", "./apps");
    for i in 0..count {
        yaml += &format!(
            "---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata: {{name: app-{i}, namespace: flux-system}}\nspec: {{image: registry.example/app-{i}, interval: 1m}}\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata: {{name: app-{i}, namespace: flux-system}}\nspec:\n  imageRepositoryRef: {{name: app-{i}}}\n  policy: {{semver: {{range: '>=1.0.0'}}}}\n"
        );
    }
    (repo, yaml)
}

#[tokio::test]
async fn a_burst_of_moves_in_one_repository_lands_as_one_commit_naming_every_cause() {
    let env = env().await;
    let (repo, yaml) = fleet_of(6);
    env.apply(&yaml).await;
    let (stop, service) = env.service(env.settings("svc")).await;
    // The service is up when its first reconcile (on the applied
    // automation) has run: nothing to commit yet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(env.pushed().await.is_empty());

    // A release reaching six images over half a second, as scans of
    // separate repositories report it: inside the commit window.
    let mut causes = Vec::new();
    for i in 0..6 {
        let image = format!("registry.example/app-{i}");
        causes.push(
            env.resolve("flux-system", &format!("app-{i}"), &image, "2.0.0")
                .await,
        );
        tokio::time::sleep(Duration::from_millis(90)).await;
    }
    let pushed = env.wait_pushed(1).await;
    let _ = stop.send(());
    service.await.unwrap();

    assert_eq!(pushed.len(), 1, "one commit for the burst: {pushed:?}");
    assert_eq!(repo.log("main").len(), 2, "the seed and one update");
    for (i, cause) in causes.iter().enumerate() {
        assert!(pushed[0].causes.contains(&cause.id), "cause {i} missing");
        assert!(repo
            .read_text("main", &format!("apps/app-{i}.yaml"))
            .unwrap()
            .contains(&format!("registry.example/app-{i}:2.0.0 #")));
    }
}

#[tokio::test]
async fn a_burst_longer_than_the_commit_window_still_lands_as_one_commit() {
    let env = env().await;
    let (repo, yaml) = fleet_of(10);
    env.apply(&yaml).await;
    let settings = Settings {
        commit_window: Duration::from_millis(600),
        ..env.settings("svc")
    };
    let (stop, service) = env.service(settings).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(env.pushed().await.is_empty());

    // Ten moves 120 ms apart: the burst lasts about twice the window (a
    // release scanned under a registry's rate limit), with no pause as
    // long as a third of the window until it is over.
    let mut causes = Vec::new();
    for i in 0..10 {
        let image = format!("registry.example/app-{i}");
        causes.push(
            env.resolve("flux-system", &format!("app-{i}"), &image, "2.0.0")
                .await,
        );
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    let pushed = env.wait_pushed(1).await;
    // A second commit would follow within a window or two.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pushed_after = env.pushed().await;
    let _ = stop.send(());
    service.await.unwrap();

    assert_eq!(
        pushed_after.len(),
        1,
        "one commit for the burst: {pushed_after:?}"
    );
    assert_eq!(repo.log("main").len(), 2, "the seed and one update");
    for (i, cause) in causes.iter().enumerate() {
        assert!(pushed[0].causes.contains(&cause.id), "cause {i} missing");
    }
}

#[tokio::test]
async fn a_move_seen_before_its_selection_is_recorded_still_lands() {
    let env = env().await;
    let (repo, yaml) = fleet_of(1);
    env.apply(&yaml).await;
    let settings = Settings {
        commit_window: Duration::ZERO,
        ..env.settings("svc")
    };
    let (stop, service) = env.service(settings).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The resolver publishes a move just before it writes the selection:
    // the committer may reconcile in between and find nothing to do yet.
    let (cause, record) = env
        .announce_move("flux-system", "app-0", "registry.example/app-0", "2.0.0")
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(env.pushed().await.is_empty());
    record.await;
    let pushed = env.wait_pushed(1).await;
    let _ = stop.send(());
    service.await.unwrap();

    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert!(pushed[0].causes.contains(&cause.id));
    assert!(repo
        .read_text("main", "apps/app-0.yaml")
        .unwrap()
        .contains("registry.example/app-0:2.0.0 #"));
}

/// [`config`] for an automation in namespace `stuck` whose Git remote, at
/// `url`, gets `timeout` as its `GitRepository.spec.timeout`.
fn stuck_config(url: &str, timeout: &str) -> String {
    let yaml = config(url, "", "./apps")
        .replace("namespace: flux-system", "namespace: stuck")
        .replace("name: fleet", "name: stuck")
        .replace(
            "  interval: 1m\n  ref:",
            &format!("  interval: 1m\n  timeout: {timeout}\n  ref:"),
        );
    assert!(yaml.contains("timeout: "), "config() changed shape");
    yaml
}

#[tokio::test]
async fn a_git_remote_that_never_answers_fails_at_its_timeout_and_holds_back_no_other_repository() {
    let env = env().await;
    // A remote that accepts connections (the kernel completes them on the
    // listener's backlog) and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/fleet.git", silent.local_addr().unwrap());
    let repo = seeded();
    env.apply(&config(&repo.url(), "", "./apps")).await;
    env.apply(&stuck_config(&silent_url, "12s")).await;
    let started = Instant::now();
    let (stop, service) = env.service(env.settings("svc")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The stuck automation's move first, then the healthy one's: the
    // healthy one lands while the other still waits on its remote.
    env.resolve("stuck", "app", "registry.example/app", "2.0.0")
        .await;
    let cause = env
        .resolve("flux-system", "app", "registry.example/app", "1.2.0")
        .await;
    env.wait_for_pushed(1).await;
    let failed_meanwhile = env.failed().await;
    // The stuck remote fails at its 12 s timeout, not at a client's own
    // default (30 s) and not never.
    let mut stuck_failure = None;
    while stuck_failure.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "no CommitFailed for the silent remote within 25 s of a 12 s timeout"
        );
        stuck_failure = env
            .failed()
            .await
            .into_iter()
            .find(|f| f.object.namespace == "stuck");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    service.await.unwrap();
    drop(silent);

    assert!(
        failed_meanwhile.is_empty(),
        "the healthy repository's commit came after the silent remote failed: {failed_meanwhile:?}"
    );
    let pushed = env.pushed().await;
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert!(pushed[0].causes.contains(&cause.id));
    assert!(repo
        .read_text("main", "apps/app.yaml")
        .unwrap()
        .contains("registry.example/app:1.2.0 #"));
    let stuck_failure = stuck_failure.unwrap();
    assert_eq!(
        stuck_failure.reason,
        FailureReason::GitUnavailable,
        "{stuck_failure:?}"
    );
    assert!(stuck_failure.will_retry, "{stuck_failure:?}");
    assert!(
        stuck_failure.error.contains(&silent_url),
        "{stuck_failure:?}"
    );
    assert!(
        stuck_failure
            .error
            .ends_with("no answer within 12s (GitRepository spec.timeout)"),
        "{stuck_failure:?}"
    );
}

#[tokio::test]
async fn an_ssh_remote_that_never_answers_fails_at_its_timeout() {
    let env = env().await;
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("ssh://git@{}/fleet.git", silent.local_addr().unwrap());
    env.apply(&stuck_config(&silent_url, "3s")).await;
    let started = Instant::now();
    let (stop, service) = env.service(env.settings("svc")).await;
    let failure = loop {
        // Without a bound, ssh waits for the server's banner for hours.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no CommitFailed for the silent SSH remote within 20 s of a 3 s timeout"
        );
        if let Some(failure) = env.failed().await.into_iter().next() {
            break failure;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = stop.send(());
    service.await.unwrap();
    drop(silent);

    assert_eq!(failure.object.namespace, "stuck", "{failure:?}");
    assert_eq!(failure.reason, FailureReason::GitUnavailable, "{failure:?}");
    assert!(failure.will_retry, "{failure:?}");
    assert!(failure.error.contains("timed out"), "{failure:?}");
}

#[tokio::test]
async fn a_push_held_past_its_timeout_is_stopped_and_failed_and_lands_once_when_released() {
    let env = env().await;
    let repo = seeded();
    repo.install_hook("pre-receive", HOLDING_HOOK);
    let yaml = config(&repo.url(), "", "./apps").replace(
        "  interval: 1m\n  ref:",
        "  interval: 1m\n  timeout: 2s\n  ref:",
    );
    assert!(yaml.contains("timeout: 2s"), "config() changed shape");
    env.apply(&yaml).await;
    let cause = env
        .resolve("flux-system", "app", "registry.example/app", "3.0.0")
        .await;
    let (stop, service) = env.service(env.settings("svc")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let failure = loop {
        assert!(
            Instant::now() < deadline,
            "no CommitFailed for the held push"
        );
        if let Some(failure) = env.failed().await.into_iter().next() {
            break failure;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failure.reason, FailureReason::GitUnavailable, "{failure:?}");
    assert!(
        failure
            .error
            .ends_with("git push: no answer within 2s (GitRepository spec.timeout)"),
        "{failure:?}"
    );
    // The `git push` given up on is stopped, not left running.
    let ours = env.dirs.path().to_string_lossy().into_owned();
    let running_pushes = || {
        let listing = Command::new("ps").args(["-eo", "args"]).output().unwrap();
        String::from_utf8_lossy(&listing.stdout)
            .lines()
            .filter(|l| l.contains(&ours) && l.contains("push --porcelain"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while running_pushes() > 0 {
        assert!(Instant::now() < deadline, "a git push outlived its timeout");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Released, the update lands once, announced once.
    std::fs::write(repo.path().join("accept"), "").unwrap();
    // The retry comes after the failure's back-off, later on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(120);
    while env.pushed().await.is_empty() {
        assert!(Instant::now() < deadline, "never pushed after the release");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pushed = env.wait_pushed(1).await;
    let _ = stop.send(());
    service.await.unwrap();
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert!(pushed[0].causes.contains(&cause.id));
    assert_eq!(repo.log("main").len(), 2, "the seed and one update");
    assert!(repo
        .read_text("main", "apps/app.yaml")
        .unwrap()
        .contains("registry.example/app:3.0.0 #"));
}
