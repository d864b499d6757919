//! Scanner benchmark against a real registry and a real nats-server:
//! `REPOS` repositories of `TAGS` tags each (default 1,000 × 1,000).
//!
//! Reports the wall time of a full round when every set is new (first
//! scans, one `TagsDiscovered` each) and of a round where nothing changed,
//! the registry calls per unchanged scan, and the peak RSS of this process
//! (the scanner; nats-server and the registry run as their own processes).
//!
//! `cargo bench -p tagrelay-scanner --bench scan -- [REPOS] [TAGS] [CONCURRENCY]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::sync::Arc;
use std::time::{Duration, Instant};

use tagrelay_proto::bus::{Bus, BusSettings};
use tagrelay_proto::config::{load_documents, Object};
use tagrelay_proto::event::{ObjectRef, ScanTrigger};
use tagrelay_proto::names;
use tagrelay_proto::scan::ScanRequest;
use tagrelay_scanner::registry::RegistrySettings;
use tagrelay_scanner::{Scanner, ScannerSettings};
use tagrelay_testkit::registry::Registry;
use tagrelay_testkit::NatsServer;

fn arg(position: usize, default: usize) -> usize {
    std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(position)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn stream_messages(bus: &Bus, stream: &str) -> u64 {
    let mut stream = bus.jetstream().get_stream(stream).await.unwrap();
    stream.info().await.unwrap().state.messages
}

async fn wait_until_drained(bus: &Bus) {
    while stream_messages(bus, names::SCAN_REQUESTS_STREAM).await > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() {
    tagrelay_proto::runtime::install_crypto_provider();
    let repos = arg(1, 1000);
    let tags = arg(2, 1000);
    let concurrency = arg(3, 16);
    println!(
        "scanner benchmark: {repos} repositories × {tags} tags, {concurrency} concurrent scans"
    );

    let setup = Instant::now();
    let server = NatsServer::start();
    let registry = Registry::start();
    registry.push_tags("bench/seed", &["seed"]).await;
    let names_of_tags: Vec<String> = (0..tags)
        .map(|i| format!("1.{}.{}", i / 100, i % 100))
        .collect();
    for r in 0..repos {
        registry.copy_tags_in_storage(
            "bench/seed",
            "seed",
            &format!("bench/r{r:04}"),
            &names_of_tags,
        );
    }
    let bus = Bus::connect(&server.url(), "bench", BusSettings::default())
        .await
        .unwrap();
    let store = bus.config_store().await.unwrap();
    for r in 0..repos {
        let yaml = format!(
            "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: r{r:04}\n  namespace: bench\nspec:\n  image: {}/bench/r{r:04}\n  interval: 24h\n  insecure: true\n",
            registry.host()
        );
        for doc in load_documents(&yaml).unwrap() {
            store
                .put(&Object::decode(&doc.value).unwrap())
                .await
                .unwrap();
        }
    }
    println!(
        "setup (registry storage, configuration): {:.1?}",
        setup.elapsed()
    );

    let secrets = tempfile::tempdir().unwrap();
    let settings = ScannerSettings {
        secrets_dir: secrets.path().to_path_buf(),
        concurrency,
        registry: RegistrySettings {
            rate: 100_000.0,
            burst: 100_000,
            ..RegistrySettings::default()
        },
        ..ScannerSettings::default()
    };
    let scanner = Arc::new(Scanner::new(&bus, settings).await.unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let task = tokio::spawn(tagrelay_scanner::run_scanner(scanner.clone(), async {
        let _ = stopped.await;
    }));
    while stream_messages(&bus, names::EVENTS_STREAM).await < repos as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = started.elapsed();
    let first_calls = scanner.registry_requests();
    println!(
        "round 1 (every set new, {repos} TagsDiscovered): {first:.2?} wall, {:.1} scans/s, {:.2} registry calls per scan",
        repos as f64 / first.as_secs_f64(),
        first_calls as f64 / repos as f64
    );

    for round in 2..=3 {
        let before = scanner.registry_requests();
        let events_before = stream_messages(&bus, names::EVENTS_STREAM).await;
        let started = Instant::now();
        for r in 0..repos {
            let request = ScanRequest::new(
                ObjectRef::new("bench", format!("r{r:04}")),
                ScanTrigger::Reconcile,
                format!("round-{round}"),
            );
            bus.request_scan(&request).await.unwrap();
        }
        wait_until_drained(&bus).await;
        let elapsed = started.elapsed();
        let calls = scanner.registry_requests() - before;
        let events = stream_messages(&bus, names::EVENTS_STREAM).await - events_before;
        println!(
            "round {round} (nothing changed, {events} events): {elapsed:.2?} wall, {:.1} scans/s, {:.2} registry calls per unchanged scan",
            repos as f64 / elapsed.as_secs_f64(),
            calls as f64 / repos as f64
        );
    }
    println!("peak RSS of the scanner process: {:.1} MiB", peak_rss_mib());
    let _ = stop.send(());
    let _ = task.await;
}
