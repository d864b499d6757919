//! `tagrelay replay`: the recorded decisions of a real resolver are
//! reproduced; a tampered decision is reported; proposed policies are
//! evaluated over the recorded tag sets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tagrelay_proto::bus::{Bus, BusSettings};
use tagrelay_proto::config::{load_documents, Object};
use tagrelay_proto::event::{
    tag_set_digest, Envelope, Event, ObjectRef, PolicyResolved, ResolveCause, ScanTrigger,
    SelectedImage, TagsDiscovered,
};
use tagrelay_testkit::NatsServer;

const CONFIG: &str = "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: app\nspec:\n  image: registry.example/app\n  interval: 1m\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    semver:\n      range: '1.x'\n";

fn tagrelay(server: &NatsServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tagrelay"))
        .args(args)
        .env("NATS_URL", server.url())
        .output()
        .unwrap()
}

fn scan(tags: &[&str]) -> TagsDiscovered {
    TagsDiscovered {
        repository: ObjectRef::new("flux-system", "app"),
        image: "registry.example/app".into(),
        tags: Some(tags.iter().map(|t| t.to_string()).collect()),
        tags_ref: None,
        tag_count: tags.len(),
        tag_set_digest: tag_set_digest(tags.iter().copied()),
        previous_tag_set_digest: None,
        scanned_at: chrono::Utc::now(),
        trigger: ScanTrigger::Schedule,
        images: BTreeMap::new(),
    }
}

/// Runs a real resolver over three tag sets and returns once it has
/// published its three decisions.
async fn record(server: &NatsServer) -> Bus {
    let bus = Bus::connect(&server.url(), "test", BusSettings::default())
        .await
        .unwrap();
    let store = bus.config_store().await.unwrap();
    for doc in load_documents(CONFIG).unwrap() {
        store
            .put(&Object::decode(&doc.value).unwrap())
            .await
            .unwrap();
    }
    let resolver_bus = bus.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let resolver = tokio::spawn(async move {
        tagrelay_resolver::run(&resolver_bus, Default::default(), async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    for (count, tags) in [
        &["1.0.0"][..],
        &["1.0.0", "1.1.0"],
        &["1.0.0", "1.1.0", "1.2.0", "2.0.0"],
    ]
    .into_iter()
    .enumerate()
    {
        bus.publish(&Envelope::new(
            "scanner/t",
            Event::TagsDiscovered(scan(tags)),
        ))
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = tagrelay(server, &["audit"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.matches("PolicyResolved").count() == count + 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the resolver did not record decision {count}: {text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _ = stop.send(());
    resolver.await.unwrap();
    bus
}

#[tokio::test]
async fn recorded_decisions_are_reproduced_and_a_tampered_one_is_caught() {
    let server = NatsServer::start();
    let bus = record(&server).await;
    let out = tagrelay(&server, &["replay"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("3 decisions: 3 reproduced, 0 determinism failures"),
        "{text}"
    );

    let forged = Envelope::new(
        "resolver/forged",
        Event::PolicyResolved(PolicyResolved {
            policy: ObjectRef::new("flux-system", "app"),
            repository: ObjectRef::new("flux-system", "app"),
            image: "registry.example/app".into(),
            previous: Some(SelectedImage {
                tag: "1.2.0".into(),
                digest: None,
            }),
            current: SelectedImage {
                tag: "2.0.0".into(),
                digest: None,
            },
            cause: ResolveCause::TagsChanged,
            tag_set_digest: tag_set_digest(["1.0.0", "1.1.0", "1.2.0", "2.0.0"]),
        }),
    );
    bus.publish(&forged).await.unwrap();
    let out = tagrelay(&server, &["replay"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("1 determinism failures"), "{text}");
    assert!(
        text.contains("recorded 2.0.0 but the engine now chooses 1.2.0"),
        "{text}"
    );
}

/// `replay --policy` with `proposed` YAML; what it printed, having
/// succeeded.
fn what_if(server: &NatsServer, proposed: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proposed.yaml");
    std::fs::write(&path, proposed).unwrap();
    let out = tagrelay(server, &["replay", "--policy", &path.display().to_string()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test]
async fn proposed_policies_show_what_would_have_shipped() {
    let server = NatsServer::start();
    record(&server).await;
    let text = what_if(
        &server,
        "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: app\n  namespace: flux-system\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    semver:\n      range: '>=1.0.0'\n",
    );
    let ships: Vec<&str> = text.lines().filter(|l| l.contains("would ship")).collect();
    assert_eq!(ships.len(), 3, "{text}");
    assert!(
        ships[0].contains("registry.example/app:1.0.0 (recorded: 1.0.0)"),
        "{text}"
    );
    assert!(
        ships[2].contains("registry.example/app:2.0.0 (recorded: 1.2.0)"),
        "{text}"
    );
}

#[tokio::test]
async fn a_proposed_gate_shows_what_it_would_have_held_back_and_when_each_tag_ships() {
    let server = NatsServer::start();
    let bus = Bus::connect(&server.url(), "test", BusSettings::default())
        .await
        .unwrap();
    let at = |minutes: i64| {
        chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc)
            + chrono::Duration::minutes(minutes)
    };
    for (minutes, tags) in [
        (0, &["1.0.0"][..]),
        (60, &["1.0.0", "1.1.0"]),
        (90, &["1.0.0", "1.1.0", "1.2.0"]),
    ] {
        let mut scanned = scan(tags);
        scanned.scanned_at = at(minutes);
        bus.publish(&Envelope::new("scanner/t", Event::TagsDiscovered(scanned)))
            .await
            .unwrap();
    }
    let text = what_if(
        &server,
        "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: app\n  namespace: flux-system\n  annotations:\n    tagrelay.dev/minimum-age: 2h\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    semver:\n      range: '>=1.0.0'\n",
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "flux-system/app (proposed):",
            "  2026-12-01 10:00:00 UTC: holds back 1.0.0 until 2026-12-01 12:00:00 UTC",
            "  2026-12-01 11:00:00 UTC: holds back 1.1.0 until 2026-12-01 13:00:00 UTC",
            "  2026-12-01 11:30:00 UTC: holds back 1.2.0 until 2026-12-01 13:30:00 UTC",
            "  2026-12-01 12:00:00 UTC: would ship registry.example/app:1.0.0",
            "  2026-12-01 13:00:00 UTC: would ship registry.example/app:1.1.0",
            "  2026-12-01 13:30:00 UTC: would ship registry.example/app:1.2.0",
            "  3 moves, 3 tags held back by the minimum age of 2h",
        ],
        "{text}"
    );
}
