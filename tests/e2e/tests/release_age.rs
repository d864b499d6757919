//! The release-age gate end to end: a real registry (pushes made here), a
//! real nats-server, and the scanner and resolver services in-process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tagrelay_proto::bus::{Bus, BusSettings, ConfigStore};
use tagrelay_proto::config::{load_documents, Kind, Object, ObjectKey};
use tagrelay_proto::event::{Event, ObjectRef, PolicyResolved, ScanTrigger};
use tagrelay_proto::names;
use tagrelay_proto::scan::ScanRequest;
use tagrelay_proto::state::HeldBack;
use tagrelay_proto::status::ObjectStatus;
use tagrelay_testkit::registry::Registry;
use tagrelay_testkit::{events, NatsServer};
use tokio::sync::oneshot;

/// The gate under test: short, so the test never waits long.
const GATE_SECONDS: i64 = 3;

async fn apply(store: &ConfigStore, yaml: &str) {
    for doc in load_documents(yaml).unwrap() {
        store
            .put(&Object::decode(&doc.value).unwrap())
            .await
            .unwrap();
    }
}

async fn wait_until<T, F, Fut>(what: &str, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn resolutions(bus: &Bus) -> Vec<(DateTime<Utc>, PolicyResolved)> {
    events(bus, names::POLICY_FILTER)
        .await
        .into_iter()
        .filter_map(|e| match e.payload {
            Event::PolicyResolved(p) => Some((e.occurred_at, p)),
            _ => None,
        })
        .collect()
}

async fn policy_status(store: &ConfigStore) -> ObjectStatus {
    store
        .last_status(&ObjectKey::new(Kind::ImagePolicy, "apps", "app"))
        .await
}

async fn held_back(store: &ConfigStore, tag: &str) -> HeldBack {
    wait_until(&format!("{tag} held back"), || async {
        policy_status(store)
            .await
            .held_back
            .filter(|h| h.image.tag == tag)
    })
    .await
}

async fn scan_now(bus: &Bus) {
    let request = ScanRequest::new(
        ObjectRef::new("apps", "app"),
        ScanTrigger::Reconcile,
        ulid::Ulid::new().to_string(),
    );
    bus.request_scan(&request).await.unwrap();
}

struct Services {
    stop: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start_services(server: &NatsServer, secrets: &std::path::Path) -> Services {
    let mut services = Services {
        stop: Vec::new(),
        tasks: Vec::new(),
    };
    let url = server.url();
    let connect = |name: &str| Bus::connect(&url, name.to_string(), BusSettings::default());
    let scanner_bus = connect("scanner/0").await.unwrap();
    let settings = tagrelay_scanner::ScannerSettings {
        secrets_dir: secrets.to_path_buf(),
        tick: Duration::from_millis(100),
        ..Default::default()
    };
    let scanner = std::sync::Arc::new(
        tagrelay_scanner::Scanner::new(&scanner_bus, settings)
            .await
            .unwrap(),
    );
    let (tx, rx) = oneshot::channel();
    services.stop.push(tx);
    services.tasks.push(tokio::spawn(async move {
        tagrelay_scanner::run_scanner(scanner, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    }));
    let resolver_bus = connect("resolver/0").await.unwrap();
    let (tx, rx) = oneshot::channel();
    services.stop.push(tx);
    services.tasks.push(tokio::spawn(async move {
        tagrelay_resolver::run(&resolver_bus, Default::default(), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    }));
    services
}

#[tokio::test]
async fn a_gate_holds_a_pushed_tag_ships_it_when_it_comes_of_age_and_a_repush_restarts_its_age() {
    tagrelay_proto::runtime::install_crypto_provider();
    let registry = Registry::start();
    let built = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    registry
        .push_image("demo/app", "1.0.0", built("2026-01-01T00:00:00Z"))
        .await;
    let server = NatsServer::start();
    let bus = Bus::connect(&server.url(), "test", BusSettings::default())
        .await
        .unwrap();
    let store = bus.config_store().await.unwrap();
    let image = format!("{}/demo/app", registry.host());
    apply(&store, &format!("apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata:\n  name: app\n  namespace: apps\nspec:\n  image: {image}\n  interval: 1h\n  insecure: true\n---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: app\n  namespace: apps\n  annotations:\n    tagrelay.dev/minimum-age: {GATE_SECONDS}s\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    semver:\n      range: '>=1.0.0'\n")).await;
    let secrets = tempfile::tempdir().unwrap();
    let services = start_services(&server, secrets.path()).await;

    // The first scan sees 1.0.0 for the first time: too young to select.
    let waiting = held_back(&store, "1.0.0").await;
    assert!(!policy_status(&store).await.ready, "nothing selected yet");
    let first_until = waiting.until.unwrap();
    // It ships when it comes of age, with no scan in between.
    let shipped = wait_until("1.0.0 shipped", || async {
        resolutions(&bus).await.into_iter().next()
    })
    .await;
    assert_eq!(shipped.1.current.tag, "1.0.0");
    assert!(
        shipped.0 >= first_until,
        "shipped at {} before {first_until}",
        shipped.0
    );

    // 1.1.0 pushed: held back, 1.0.0 stays.
    registry
        .push_image("demo/app", "1.1.0", built("2026-01-02T00:00:00Z"))
        .await;
    scan_now(&bus).await;
    let held = held_back(&store, "1.1.0").await;
    let status = policy_status(&store).await;
    assert!(status.ready);
    assert!(status.latest_image.unwrap().ends_with(":1.0.0"));
    assert!(
        status.message.contains("1.1.0 is held back until"),
        "{}",
        status.message
    );
    let until = held.until.unwrap();
    assert!(
        until > Utc::now(),
        "the hold lasts {GATE_SECONDS}s from the scan"
    );

    // Pushed again with another image before it comes of age: its age
    // starts again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    registry
        .push_image("demo/app", "1.1.0", built("2026-01-03T00:00:00Z"))
        .await;
    scan_now(&bus).await;
    let restarted = wait_until("the age of 1.1.0 restarted", || async {
        policy_status(&store)
            .await
            .held_back
            .and_then(|h| h.until)
            .filter(|later| *later > until)
    })
    .await;
    assert!(
        restarted - until >= chrono::Duration::milliseconds(900),
        "restarted at {restarted}, first {until}"
    );

    // It ships when the new image comes of age, not when the old one would have.
    let moved = wait_until("1.1.0 shipped", || async {
        resolutions(&bus)
            .await
            .into_iter()
            .find(|(_, p)| p.current.tag == "1.1.0")
    })
    .await;
    assert!(
        moved.0 >= restarted,
        "shipped at {} before {restarted}",
        moved.0
    );
    assert_eq!(moved.1.previous.unwrap().tag, "1.0.0");
    assert_eq!(resolutions(&bus).await.len(), 2, "one resolution per move");
    assert!(policy_status(&store).await.held_back.is_none());

    for stop in services.stop {
        let _ = stop.send(());
    }
    for task in services.tasks {
        let _ = task.await;
    }
}
