//! The Git configuration source against a real nats-server and real bare
//! Git repositories: configuration pushed to Git is applied, changed,
//! deleted and refused, and the bot's own commits cause nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::path::Path;
use std::time::{Duration, Instant};

use tagrelay_configsource::git::{Remote, SecretRef};
use tagrelay_configsource::service::{poll, run, Outcome, Settings};
use tagrelay_proto::bus::{Bus, BusSettings, ConfigStore};
use tagrelay_proto::config::{load_documents, Kind, Object, ObjectKey};
use tagrelay_proto::event::{
    tag_set_digest, ConfigObject, Envelope, Event, ObjectRef, ResolveCause, SelectedImage,
};
use tagrelay_proto::names;
use tagrelay_proto::runtime::Readiness;
use tagrelay_testkit::git::{git, BareRepo, HttpRemote, Seed};
use tagrelay_testkit::{events, NatsServer};

const REPO: &str = "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata:\n  name: app\n  namespace: apps\nspec:\n  image: registry.example/app\n  interval: 1m\n";

fn policy(name: &str, range: &str) -> String {
    format!("apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    semver:\n      range: '{range}'\n")
}

fn deployment(tag: &str) -> String {
    format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: apps\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: registry.example/app:{tag} # {{\"$imagepolicy\": \"apps:app\"}}\n")
}

fn key(kind: Kind, name: &str) -> ObjectKey {
    ObjectKey::new(kind, "apps", name)
}

fn object(kind: &str, name: &str) -> ConfigObject {
    ConfigObject {
        kind: kind.into(),
        namespace: "apps".into(),
        name: name.into(),
    }
}

/// A person's working clone of the configuration repository.
struct Clone {
    dir: tempfile::TempDir,
}

impl Clone {
    fn of(repo: &BareRepo) -> Self {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["clone", "-q", &repo.url(), "work"]);
        Self { dir }
    }

    fn work(&self) -> std::path::PathBuf {
        self.dir.path().join("work")
    }

    fn write(&self, path: &str, content: &str) -> &Self {
        let file = self.work().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
        self
    }

    fn remove(&self, path: &str) -> &Self {
        git(&self.work(), &["rm", "-q", path]);
        self
    }

    /// Commits everything and pushes; the new commit id.
    fn push(&self, message: &str) -> String {
        let work = self.work();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", message]);
        git(&work, &["push", "-q", "origin", "HEAD:main"]);
        git(&work, &["rev-parse", "HEAD"]).trim().to_string()
    }
}

async fn setup() -> (NatsServer, Bus, ConfigStore) {
    let server = NatsServer::start();
    let bus = Bus::connect(&server.url(), "configsource/test", BusSettings::default())
        .await
        .unwrap();
    let store = bus.config_store().await.unwrap();
    (server, bus, store)
}

fn settings(repo: &BareRepo, cache: &Path, paths: &[&str]) -> Settings {
    Settings {
        name: "fleet".into(),
        remote: Remote {
            url: repo.url(),
            branch: "main".into(),
            cache: cache.join("fleet.git"),
            timeout: Duration::from_secs(30),
            secret: None,
        },
        paths: paths.iter().map(|p| p.to_string()).collect(),
        interval: Duration::from_millis(200),
    }
}

/// Every bucket revision of every key: any write at all changes it.
async fn revisions(store: &ConfigStore, keys: &[ObjectKey]) -> Vec<usize> {
    let mut counts = Vec::new();
    for key in keys {
        counts.push(store.history(key).await.unwrap().len());
    }
    counts
}

async fn range_of(store: &ConfigStore, name: &str) -> Option<String> {
    match store.get(&key(Kind::ImagePolicy, name)).await.unwrap() {
        Some(Object::ImagePolicy(p)) => Some(p.spec.policy.semver.unwrap().range),
        Some(other) => panic!("{other:?}"),
        None => None,
    }
}

#[tokio::test]
async fn git_configuration_is_applied_changed_deleted_and_refused() {
    let (_server, bus, store) = setup().await;
    let repo = BareRepo::seeded(
        "main",
        &[
            Seed::file("clusters/images/repo.yaml", REPO),
            Seed::file("clusters/images/policy.yaml", &policy("app", "1.x")),
            Seed::file("README.md", "# fleet\n"),
        ],
    );
    let cache = tempfile::tempdir().unwrap();
    let settings = settings(&repo, cache.path(), &["clusters/images"]);
    // Applied by hand, not from Git: the source must never delete it.
    for doc in load_documents(&policy("manual", "2.x")).unwrap() {
        store
            .put(&Object::decode(&doc.value).unwrap())
            .await
            .unwrap();
    }

    // Applied.
    let first = repo.tip("main").unwrap();
    let Outcome::Synced(synced) = poll(&bus, &store, &settings).await.unwrap() else {
        panic!("the first commit was not synced")
    };
    assert_eq!(synced.commit, first);
    assert_eq!(synced.paths, ["clusters/images"]);
    assert_eq!(
        synced.applied,
        [
            object("ImageRepository", "app"),
            object("ImagePolicy", "app")
        ]
    );
    assert!(synced.deleted.is_empty() && synced.unchanged.is_empty());
    assert_eq!(range_of(&store, "app").await.as_deref(), Some("1.x"));
    assert!(store
        .get(&key(Kind::ImageRepository, "app"))
        .await
        .unwrap()
        .is_some());
    let logged = events(&bus, names::CONFIG_FILTER).await;
    assert_eq!(logged.len(), 1);
    assert!(matches!(&logged[0].payload, Event::ConfigSynced(e) if e.commit == first));

    // Nothing new: nothing written, nothing published.
    assert_eq!(
        poll(&bus, &store, &settings).await.unwrap(),
        Outcome::Unchanged {
            commit: first.clone()
        }
    );
    assert_eq!(events(&bus, names::CONFIG_FILTER).await.len(), 1);

    // Changed.
    let clone = Clone::of(&repo);
    let changed = clone
        .write("clusters/images/policy.yaml", &policy("app", "2.x"))
        .push("policy: 2.x");
    let Outcome::Synced(synced) = poll(&bus, &store, &settings).await.unwrap() else {
        panic!("the change was not synced")
    };
    assert_eq!(synced.commit, changed);
    assert_eq!(synced.applied, [object("ImagePolicy", "app")]);
    assert_eq!(synced.unchanged, [object("ImageRepository", "app")]);
    assert_eq!(range_of(&store, "app").await.as_deref(), Some("2.x"));

    // Refused as a whole: a valid new policy and an invalid one in the same
    // commit, and neither is written.
    let before = store.snapshot().await.unwrap();
    let refused = clone
        .write("clusters/images/extra.yaml", &policy("extra", "3.x"))
        .write("clusters/images/policy.yaml", &policy("app", ">= 1.0 <<2"))
        .push("a broken range");
    let Outcome::Rejected(rejected) = poll(&bus, &store, &settings).await.unwrap() else {
        panic!("the invalid commit was not refused")
    };
    assert_eq!(rejected.commit, refused);
    assert_eq!(rejected.kept_commit.as_deref(), Some(changed.as_str()));
    assert_eq!(rejected.errors.len(), 1, "{:?}", rejected.errors);
    let error = &rejected.errors[0];
    assert_eq!(error.file, "clusters/images/policy.yaml");
    assert_eq!(error.field, "spec.policy.semver.range");
    assert_eq!(error.line, 11);
    assert_eq!(
        store.snapshot().await.unwrap(),
        before,
        "the last good configuration stays"
    );
    let logged = events(&bus, names::CONFIG_FILTER).await;
    assert!(
        matches!(&logged.last().unwrap().payload, Event::ConfigRejected(e) if e.commit == refused)
    );
    let count = logged.len();
    // Announced once, however often the refused tip is polled.
    assert!(matches!(
        poll(&bus, &store, &settings).await.unwrap(),
        Outcome::Rejected(_)
    ));
    assert_eq!(events(&bus, names::CONFIG_FILTER).await.len(), count);

    // Fixed, and a file deleted: the policy it held is deleted, the one
    // applied by hand is not.
    let fixed = clone
        .remove("clusters/images/policy.yaml")
        .push("fix: drop the app policy");
    let Outcome::Synced(synced) = poll(&bus, &store, &settings).await.unwrap() else {
        panic!("the fix was not synced")
    };
    assert_eq!(synced.commit, fixed);
    assert_eq!(synced.deleted, [object("ImagePolicy", "app")]);
    assert_eq!(synced.applied, [object("ImagePolicy", "extra")]);
    assert_eq!(range_of(&store, "app").await, None);
    assert_eq!(range_of(&store, "extra").await.as_deref(), Some("3.x"));
    assert_eq!(range_of(&store, "manual").await.as_deref(), Some("2.x"));

    // Everything removed from Git: everything the source wrote goes, the
    // hand-applied policy stays (its missing repository is then the
    // resolver's to report, as when a person deletes it).
    let emptied = clone
        .remove("clusters/images/repo.yaml")
        .remove("clusters/images/extra.yaml")
        .push("no more images");
    let Outcome::Synced(synced) = poll(&bus, &store, &settings).await.unwrap() else {
        panic!("the removal was not synced")
    };
    assert_eq!(synced.commit, emptied);
    assert_eq!(
        synced.deleted,
        [
            object("ImagePolicy", "extra"),
            object("ImageRepository", "app")
        ]
    );
    assert!(synced.applied.is_empty() && synced.unchanged.is_empty());
    let left: Vec<ObjectKey> = store.snapshot().await.unwrap().into_keys().collect();
    assert_eq!(left, [key(Kind::ImagePolicy, "manual")]);
}

#[tokio::test]
async fn image_update_commits_into_the_repository_cause_no_reaction() {
    let (_server, bus, store) = setup().await;
    let repo = BareRepo::seeded(
        "main",
        &[
            Seed::file(
                "clusters/images/app.yaml",
                &format!(
                    "{REPO}---\n{}---\n{}",
                    policy("app", "1.x"),
                    deployment("1.0.0")
                ),
            ),
            Seed::file("apps/web.yaml", &deployment("1.0.0")),
        ],
    );
    let cache = tempfile::tempdir().unwrap();
    let settings = settings(&repo, cache.path(), &["clusters/images"]);
    let Outcome::Synced(synced) = poll(&bus, &store, &settings).await.unwrap() else {
        panic!("not synced")
    };
    assert_eq!(
        synced.skipped.len(),
        1,
        "the Deployment is skipped, with a note"
    );
    assert!(synced.skipped[0].reason.contains("apps/v1 Deployment"));
    let keys = [
        key(Kind::ImageRepository, "app"),
        key(Kind::ImagePolicy, "app"),
    ];
    let written = revisions(&store, &keys).await;
    let announced = events(&bus, names::CONFIG_FILTER).await.len();

    // The bot's commits, as the committer makes them: one value changed in
    // a manifest outside the configuration path, then one inside it.
    repo.human_commit(
        "main",
        "apps/web.yaml",
        &deployment("1.1.0"),
        "Update app to 1.1.0",
    );
    let inside = repo.human_commit(
        "main",
        "clusters/images/app.yaml",
        &format!(
            "{REPO}---\n{}---\n{}",
            policy("app", "1.x"),
            deployment("1.1.0")
        ),
        "Update app to 1.1.0",
    );
    for _ in 0..3 {
        assert_eq!(
            poll(&bus, &store, &settings).await.unwrap(),
            Outcome::Unchanged {
                commit: inside.clone()
            }
        );
    }
    assert_eq!(revisions(&store, &keys).await, written, "no bucket write");
    assert_eq!(events(&bus, names::CONFIG_FILTER).await.len(), announced);
}

#[tokio::test]
async fn the_running_source_follows_pushes_and_stops_on_shutdown() {
    let (_server, bus, store) = setup().await;
    let repo = BareRepo::seeded("main", &[Seed::file("images/repo.yaml", REPO)]);
    let cache = tempfile::tempdir().unwrap();
    let settings = settings(&repo, cache.path(), &["."]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let readiness = Readiness::default();
    let task = {
        let (bus, settings, readiness) = (bus.clone(), settings.clone(), readiness.clone());
        tokio::spawn(async move {
            run(&bus, &settings, readiness, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    let pushed = Clone::of(&repo)
        .write("images/policy.yaml", &policy("app", "1.x"))
        .push("add a policy");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let synced = events(&bus, names::CONFIG_FILTER)
            .await
            .into_iter()
            .any(|e| matches!(&e.payload, Event::ConfigSynced(s) if s.commit == pushed));
        if synced {
            break;
        }
        assert!(Instant::now() < deadline, "the push was never synced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(readiness.is_ready());
    assert_eq!(range_of(&store, "app").await.as_deref(), Some("1.x"));
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops on shutdown")
        .unwrap()
        .unwrap();
    assert!(!readiness.is_ready());
}

#[tokio::test]
async fn the_configsource_nats_user_of_deploy_permissions_is_enough_and_no_more() {
    let server =
        NatsServer::start_with_config(include_str!("../../../deploy/nats/permissions.conf"));
    let auth = tagrelay_proto::bus::NatsAuth {
        user: Some("configsource".into()),
        password: Some("change-me-configsource".into()),
        ..Default::default()
    };
    let bus = Bus::connect_with(
        &server.url(),
        &auth,
        "configsource/t",
        BusSettings::default(),
    )
    .await
    .unwrap();
    let store = bus.config_store().await.unwrap();
    let repo = BareRepo::seeded(
        "main",
        &[
            Seed::file("images/repo.yaml", REPO),
            Seed::file("images/policy.yaml", &policy("app", "1.x")),
        ],
    );
    let cache = tempfile::tempdir().unwrap();
    let settings = settings(&repo, cache.path(), &["images"]);
    assert!(matches!(
        poll(&bus, &store, &settings).await.unwrap(),
        Outcome::Synced(_)
    ));
    Clone::of(&repo).remove("images/policy.yaml").push("drop");
    let Outcome::Synced(synced) = poll(&bus, &store, &settings).await.unwrap() else {
        panic!("not synced")
    };
    assert_eq!(synced.deleted, [object("ImagePolicy", "app")]);
    // Nothing but configuration events: a policy's subject is refused.
    let forbidden = Envelope::new(
        "configsource/t",
        Event::PolicyResolved(tagrelay_proto::event::PolicyResolved {
            policy: ObjectRef::new("apps", "app"),
            repository: ObjectRef::new("apps", "app"),
            image: "registry.example/app".into(),
            previous: None,
            current: SelectedImage {
                tag: "9.9.9".into(),
                digest: None,
            },
            cause: ResolveCause::PolicyChanged,
            tag_set_digest: tag_set_digest(["9.9.9"]),
        }),
    );
    let refused = tokio::time::timeout(Duration::from_secs(10), bus.publish(&forbidden)).await;
    assert!(
        matches!(refused, Ok(Err(_)) | Err(_)),
        "the configsource user must not publish PolicyResolved"
    );
}

#[tokio::test]
async fn a_repository_behind_basic_auth_is_read_with_the_mounted_secret_and_nothing_leaks() {
    let (_server, bus, store) = setup().await;
    let repo = BareRepo::seeded("main", &[Seed::file("images/repo.yaml", REPO)]);
    let remote = HttpRemote::serve(&repo.scratch(), Some(("bot", "s3cret-pw")));
    let cache = tempfile::tempdir().unwrap();
    let mut settings = settings(&repo, cache.path(), &["images"]);
    settings.remote.url = remote.url("remote.git");

    // Without the Secret the server refuses: no write, no event.
    let refused = poll(&bus, &store, &settings).await.unwrap_err();
    assert!(!refused.to_string().contains("s3cret-pw"), "{refused}");
    settings.remote.secret = Some(SecretRef {
        secrets_dir: cache.path().join("secrets"),
        namespace: "flux-system".into(),
        name: "config-repo".into(),
    });
    let missing = poll(&bus, &store, &settings).await.unwrap_err();
    assert!(
        missing.to_string().contains("flux-system/config-repo"),
        "{missing}"
    );
    assert!(events(&bus, names::CONFIG_FILTER).await.is_empty());

    let secret = cache.path().join("secrets/flux-system/config-repo");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("username"), "bot\n").unwrap();
    std::fs::write(secret.join("password"), "s3cret-pw\n").unwrap();
    let Outcome::Synced(synced) = poll(&bus, &store, &settings).await.unwrap() else {
        panic!("not synced with the Secret")
    };
    assert_eq!(synced.applied, [object("ImageRepository", "app")]);
    let logged = events(&bus, names::CONFIG_FILTER).await;
    for envelope in &logged {
        let json = String::from_utf8(envelope.to_json().unwrap()).unwrap();
        assert!(!json.contains("s3cret-pw"), "{json}");
    }
    assert!(store
        .get(&key(Kind::ImageRepository, "app"))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn the_binary_syncs_from_its_flags_serves_readyz_and_metrics_and_exits_cleanly_on_sigterm() {
    let (server, bus, store) = setup().await;
    let repo = BareRepo::seeded("main", &[Seed::file("cfg/repo.yaml", REPO)]);
    let work = tempfile::tempdir().unwrap();
    let port = tagrelay_testkit::free_port();
    let log = work.path().join("configsource.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tagrelay-configsource"))
        .args([
            "--git-url",
            &repo.url(),
            "--git-path",
            "./cfg/",
            "--git-interval",
            "200ms",
        ])
        .env("NATS_URL", server.url())
        .env("TAGRELAY_CONFIG_SOURCE_NAME", "fleet")
        .env("TAGRELAY_CONFIG_CACHE_DIR", work.path().join("cache"))
        .env("TAGRELAY_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store
        .get(&key(Kind::ImageRepository, "app"))
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "never synced:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logged = events(&bus, names::CONFIG_FILTER).await;
    assert!(
        matches!(&logged[..], [e] if matches!(&e.payload, Event::ConfigSynced(s) if s.paths == ["cfg"] && s.source == "fleet")),
        "{logged:?}"
    );
    let get = |path: &'static str| {
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        })
    };
    let ready = get("/readyz").await.unwrap();
    assert!(
        ready.starts_with("HTTP/1.1 200"),
        "/readyz answers 200 once the bus is bound: {ready}"
    );
    let metrics = get("/metrics").await.unwrap();
    let synced = metrics.lines().any(|line| {
        line.starts_with("tagrelay_config_polls_total")
            && line.contains(r#"outcome="synced""#)
            && line.contains(r#"source="fleet""#)
    });
    assert!(synced, "{metrics}");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "never exited after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "{status}:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[tokio::test]
async fn an_unreadable_repository_is_a_config_failed_retried_with_back_off_until_it_reads() {
    let (_server, bus, store) = setup().await;
    let place = tempfile::tempdir().unwrap();
    let path = place.path().join("fleet.git");
    let url = format!("file://{}", path.display());
    let cache = tempfile::tempdir().unwrap();
    let settings = Settings {
        name: "fleet".into(),
        remote: Remote {
            url: url.clone(),
            branch: "main".into(),
            cache: cache.path().join("fleet.git"),
            timeout: Duration::from_secs(30),
            secret: None,
        },
        paths: vec![".".into()],
        // Far longer than the test: only the back-off can bring the retry.
        interval: Duration::from_secs(120),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = {
        let (bus, settings) = (bus.clone(), settings.clone());
        tokio::spawn(async move {
            run(&bus, &settings, Readiness::default(), async {
                let _ = stopped.await;
            })
            .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let failures = loop {
        let failures: Vec<Envelope> = events(&bus, names::CONFIG_FILTER)
            .await
            .into_iter()
            .filter(|e| matches!(e.payload, Event::ConfigFailed(_)))
            .collect();
        if failures.len() >= 2 {
            break failures;
        }
        assert!(
            Instant::now() < deadline,
            "no ConfigFailed for a missing repository"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (i, envelope) in failures.iter().take(2).enumerate() {
        let Event::ConfigFailed(f) = &envelope.payload else {
            unreachable!()
        };
        assert_eq!(f.object, ObjectRef::new("config", "fleet"));
        assert_eq!(
            f.reason,
            tagrelay_proto::event::FailureReason::GitUnavailable
        );
        assert_eq!(f.attempt, u32::try_from(i + 1).unwrap());
        assert!(f.will_retry);
    }
    // The repository appears: the next retry, seconds away, reads it.
    let seed = BareRepo::seeded("main", &[Seed::file("images/repo.yaml", REPO)]);
    git(
        place.path(),
        &["clone", "-q", "--bare", &seed.url(), "fleet.git"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while store
        .get(&key(Kind::ImageRepository, "app"))
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "never read after the repository appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
