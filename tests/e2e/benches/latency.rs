//! Push → commit latency over 100 pushes, with registry webhooks and with
//! polling at a 1 s interval. Real nats-server, registry and Git remote; the
//! three services run in this process through their `serve` functions.
//! Prints p50 / p99 / max per mode.
//!
//! `cargo bench -p tagrelay-testkit --bench latency` (PUSHES=N to change the
//! count).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::time::{Duration, Instant};

use tagrelay_proto::bus::{Bus, BusSettings};
use tagrelay_proto::config::{load_documents, Object};
use tagrelay_testkit::git::{BareRepo, Seed};
use tagrelay_testkit::registry::{Notifications, Registry, RegistryOptions};
use tagrelay_testkit::{free_port, NatsServer};

const SECRET: &str = "bench-secret";

fn manifest(host: &str) -> String {
    format!("image: {host}/bench/app:1.0.0 # {{\"$imagepolicy\": \"flux-system:app\"}}\n")
}

fn configuration(host: &str, git_url: &str, interval: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: fleet\nspec:\n  url: {git_url}\n  interval: 1h\n  ref:\n    branch: main\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: app\nspec:\n  image: {host}/bench/app\n  interval: {interval}\n  insecure: true\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    semver:\n      range: '>=1.0.0'\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageUpdateAutomation\nmetadata:\n  name: fleet\nspec:\n  interval: 1h\n  sourceRef:\n    kind: GitRepository\n    name: fleet\n  git:\n    commit:\n      author:\n        email: bench@example.com\n    push:\n      branch: main\n  update:\n    path: ./\n"
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn measure(webhook: bool, pushes: usize) -> Vec<f64> {
    let nats = NatsServer::start();
    let scanner_port = free_port();
    let registry = Registry::start_with(RegistryOptions {
        basic_auth: None,
        notifications: webhook.then(|| Notifications::to_scanner(scanner_port, SECRET)),
    });
    let host = registry.host();
    registry.push_tags("bench/app", &["1.0.0"]).await;
    let repo = BareRepo::seeded("main", &[Seed::file("app.yaml", &manifest(&host))]);
    let dirs = tempfile::tempdir().expect("temp dir");
    let secret_file = dirs.path().join("secret");
    std::fs::write(&secret_file, SECRET).expect("secret");
    let bus = Bus::connect(&nats.url(), "bench", BusSettings::default())
        .await
        .expect("bus");
    let store = bus.config_store().await.expect("store");
    let interval = if webhook { "1h" } else { "1s" };
    for doc in load_documents(&configuration(&host, &repo.url(), interval)).expect("yaml") {
        store
            .put(&Object::decode(&doc.value).expect("object"))
            .await
            .expect("put");
    }

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let secrets = tagrelay_proto::runtime::SecretsArgs {
        secrets_dir: dirs.path().join("secrets"),
    };
    let scanner_args = tagrelay_scanner::process::ScannerArgs {
        secrets: secrets.clone(),
        listen: format!("127.0.0.1:{scanner_port}")
            .parse()
            .expect("address"),
        webhook_secret_file: Some(secret_file),
        concurrency: 4,
        registry_rps: 1000.0,
        registry_burst: 1000,
        registry_timeout: Duration::from_secs(30),
        registry_resolve: Vec::new(),
    };
    let committer_args = tagrelay_committer::process::CommitterArgs {
        cache_dir: dirs.path().join("cache"),
        secrets,
        http_addr: None,
        // The pipeline's own latency: no wait for a burst to gather.
        commit_window: Duration::ZERO,
    };
    let resolver_args = tagrelay_resolver::process::ResolverArgs { http_addr: None };
    let mut tasks = Vec::new();
    for service in ["scanner", "resolver", "committer"] {
        let bus = Bus::connect(
            &nats.url(),
            format!("{service}/bench"),
            BusSettings::default(),
        )
        .await
        .expect("bus");
        let stopped = until(stopped.clone());
        let (s, r, c) = (
            scanner_args.clone(),
            resolver_args.clone(),
            committer_args.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let result = match service {
                "scanner" => tagrelay_scanner::process::serve(&bus, &s, stopped).await,
                "resolver" => tagrelay_resolver::process::serve(&bus, &r, stopped).await,
                _ => tagrelay_committer::process::serve(&bus, &c, stopped).await,
            };
            if let Err(e) = result {
                eprintln!("{service}: {e}");
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut latencies = Vec::new();
    for patch in 1..=pushes {
        let before = repo.tip("main");
        let pushed = Instant::now();
        registry
            .push_image("bench/app", &format!("1.0.{patch}"), chrono::Utc::now())
            .await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while repo.tip("main") == before {
            assert!(
                Instant::now() < deadline,
                "push {patch} never became a commit"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(pushed.elapsed().as_secs_f64());
    }
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    latencies
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tagrelay_proto::runtime::install_crypto_provider();
    let pushes: usize = std::env::var("PUSHES")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(100);
    for (name, webhook) in [("webhook", true), ("polling every 1s", false)] {
        let mut latencies = measure(webhook, pushes).await;
        latencies.sort_by(f64::total_cmp);
        println!(
            "push -> commit, {name}: {} pushes, p50 {:.3} s, p99 {:.3} s, max {:.3} s",
            latencies.len(),
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or_default()
        );
    }
}
