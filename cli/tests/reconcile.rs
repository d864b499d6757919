//! `tagrelay reconcile image repository` against a real nats-server, a real
//! registry and a scanner running in the test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::process::Output;
use std::sync::Arc;

use tagrelay_proto::bus::{Bus, BusSettings};
use tagrelay_proto::config::{load_documents, Object};
use tagrelay_scanner::{Scanner, ScannerSettings};
use tagrelay_testkit::registry::Registry;
use tagrelay_testkit::NatsServer;

async fn tagrelay(server: &NatsServer, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tagrelay"))
        .args(args)
        .env("NATS_URL", server.url())
        .output()
        .await
        .expect("run tagrelay")
}

#[tokio::test]
async fn reconcile_asks_the_scanner_for_a_scan_and_reports_its_result() {
    tagrelay_proto::runtime::install_crypto_provider();
    let server = NatsServer::start();
    let registry = Registry::start();
    registry.push_tags("demo/app", &["1.0.0"]).await;
    let bus = Bus::connect(&server.url(), "test", BusSettings::default())
        .await
        .unwrap();
    let store = bus.config_store().await.unwrap();
    let yaml = format!(
        "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: app\n  namespace: apps\nspec:\n  image: {}/demo/app\n  interval: 1h\n  insecure: true\n",
        registry.host()
    );
    for doc in load_documents(&yaml).unwrap() {
        store
            .put(&Object::decode(&doc.value).unwrap())
            .await
            .unwrap();
    }

    let missing = tagrelay(
        &server,
        &["reconcile", "image", "repository", "nope", "-n", "apps"],
    )
    .await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));

    let secrets = tempfile::tempdir().unwrap();
    let settings = ScannerSettings {
        secrets_dir: secrets.path().to_path_buf(),
        ..ScannerSettings::default()
    };
    let scanner = Arc::new(Scanner::new(&bus, settings).await.unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(tagrelay_scanner::run_scanner(scanner, async {
        let _ = stopped.await;
    }));
    let key = tagrelay_proto::config::ObjectKey::new(
        tagrelay_proto::config::Kind::ImageRepository,
        "apps",
        "app",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while store.status(&key).await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "no first scan");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The scheduled scan is done and the next is an hour away: only the
    // reconcile can make a scan see the new tag.
    registry.push_tags("demo/app", &["1.1.0"]).await;
    let done = tagrelay(
        &server,
        &["reconcile", "image", "repository", "app", "-n", "apps"],
    )
    .await;
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert_eq!(
        done.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        stdout.contains("scan of ImageRepository/apps/app requested"),
        "{stdout}"
    );
    assert!(
        stdout.contains("found 2 tags"),
        "the scan saw the new tag: {stdout}"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn reconcile_evaluates_a_policy_and_runs_an_automation_now_and_reports_them() {
    tagrelay_proto::runtime::install_crypto_provider();
    let server = NatsServer::start();
    let bus = Bus::connect(&server.url(), "test", BusSettings::default())
        .await
        .unwrap();
    let store = bus.config_store().await.unwrap();
    let repo = tagrelay_testkit::git::BareRepo::seeded(
        "main",
        &[tagrelay_testkit::git::Seed::file(
            "apps/readme.yaml",
            "a: 1\n",
        )],
    );
    let yaml = format!(
        "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata:\n  name: app\n  namespace: apps\nspec:\n  image: registry.example/app\n  interval: 1h\n---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: app\n  namespace: apps\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    semver:\n      range: 1.x\n---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: fleet\n  namespace: apps\nspec:\n  url: {}\n  interval: 1h\n  ref:\n    branch: main\n---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageUpdateAutomation\nmetadata:\n  name: fleet\n  namespace: apps\nspec:\n  interval: 1h\n  sourceRef:\n    kind: GitRepository\n    name: fleet\n  git:\n    commit:\n      author:\n        email: bot@example.com\n  update:\n    path: ./apps\n",
        repo.url()
    );
    for doc in load_documents(&yaml).unwrap() {
        store
            .put(&Object::decode(&doc.value).unwrap())
            .await
            .unwrap();
    }
    let tags = vec!["1.0.0".to_string(), "1.2.0".to_string()];
    bus.publish(&tagrelay_proto::event::Envelope::new(
        "scanner/test",
        tagrelay_proto::event::Event::TagsDiscovered(tagrelay_proto::event::TagsDiscovered {
            repository: tagrelay_proto::event::ObjectRef::new("apps", "app"),
            image: "registry.example/app".into(),
            tag_count: tags.len(),
            tag_set_digest: tagrelay_proto::event::tag_set_digest(tags.iter().map(String::as_str)),
            tags: Some(tags),
            tags_ref: None,
            previous_tag_set_digest: None,
            scanned_at: chrono::Utc::now(),
            trigger: tagrelay_proto::event::ScanTrigger::Schedule,
            images: Default::default(),
        }),
    ))
    .await
    .unwrap();

    let stalled = tagrelay(
        &server,
        &[
            "reconcile",
            "image",
            "policy",
            "app",
            "-n",
            "apps",
            "--timeout",
            "1s",
        ],
    )
    .await;
    assert_eq!(stalled.status.code(), Some(1), "no resolver runs yet");
    assert!(String::from_utf8_lossy(&stalled.stderr).contains("was not reconciled within 1s"));

    let dirs = tempfile::tempdir().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let resolver = tokio::spawn({
        let bus = bus.clone();
        let until = until_stopped();
        async move { tagrelay_resolver::run(&bus, Default::default(), until).await }
    });
    let committer = tokio::spawn({
        let bus = bus.clone();
        let settings = tagrelay_committer::Settings {
            cache_dir: dirs.path().join("cache"),
            secrets_dir: dirs.path().join("secrets"),
            commit_window: tagrelay_committer::service::COMMIT_WINDOW,
        };
        let until = until_stopped();
        async move { tagrelay_committer::run(&bus, settings, Default::default(), until).await }
    });

    for (what, name, said) in [
        ("policy", "app", "resolved to 1.2.0"),
        ("update", "fleet", "repository up-to-date"),
    ] {
        // The services' own first run is over before the request, so only
        // a run the request caused can answer it.
        let kind = match what {
            "policy" => tagrelay_proto::config::Kind::ImagePolicy,
            _ => tagrelay_proto::config::Kind::ImageUpdateAutomation,
        };
        let key = tagrelay_proto::config::ObjectKey::new(kind, "apps", name);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while store.status(&key).await.unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "{key}: no first run");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let done = tagrelay(
            &server,
            &[
                "reconcile",
                "image",
                what,
                name,
                "-n",
                "apps",
                "--timeout",
                "30s",
            ],
        )
        .await;
        let stdout = String::from_utf8_lossy(&done.stdout);
        assert_eq!(
            done.status.code(),
            Some(0),
            "{what}: {stdout}{}",
            String::from_utf8_lossy(&done.stderr)
        );
        assert!(stdout.contains("reconciliation of"), "{stdout}");
        assert!(stdout.contains(said), "{what}: {stdout}");
    }
    let status = |what: &'static str, name: &'static str| {
        let server = &server;
        async move {
            let out = tagrelay(
                server,
                &["get", "image", what, name, "-n", "apps", "-o", "json"],
            )
            .await;
            let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            list["items"][0]["status"].clone()
        }
    };
    let policy = status("policy", "app").await;
    assert_eq!(
        policy["latestRef"],
        serde_json::json!({"name": "registry.example/app", "tag": "1.2.0"}),
        "{policy:#}"
    );
    assert!(policy["lastHandledReconcileAt"].is_string(), "{policy:#}");
    assert_eq!(policy["conditions"][0]["reason"], "Succeeded", "{policy:#}");
    let update = status("update", "fleet").await;
    assert_eq!(
        update["observedPolicies"]["app"]["tag"], "1.2.0",
        "{update:#}"
    );
    assert!(update["lastHandledReconcileAt"].is_string(), "{update:#}");
    let _ = stop.send(true);
    resolver.await.unwrap().unwrap();
    committer.await.unwrap().unwrap();
}
