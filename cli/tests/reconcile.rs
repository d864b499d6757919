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
